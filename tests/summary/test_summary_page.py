"""The patient's summary page: from the patient-view card's own decisions, per gene, with
the drugs whose advice changes, the clinician's section, the wallet card and its QR."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from shc_fakes import BASE, ROOT, TOKEN

from cds_service.core.trace import Trace
from cds_service.fhir.session import guarded_session
from cds_service.genomics import genomic_facts
from cds_service.governance.site_config import load
from cds_service.pipeline import Engine
from cds_service.settings import Settings
from cds_service.summary import bundle, page, shc, wording
from cds_service.summary.build import summarise
from cds_service.summary.document import document
from cds_service.summary.keys import signing_key

INDEX = json.loads((ROOT / "sandbox" / "patients" / "index.json").read_text())
WITH_RESULTS = [p for p in INDEX if p.get("genes") and p.get("patient_view")]


class _Keys:
    def __init__(self, jwk):
        self.key = signing_key(jwk)

    def signing(self):
        return self.key


@pytest.fixture(scope="module")
def engine():
    settings = Settings()
    knowledge, site = load(settings)
    return Engine(knowledge, settings, session=guarded_session(), site=site)


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("patient", WITH_RESULTS, ids=lambda p: p["id"])
def test_page_shows_each_gene_and_the_card_s_decisions(patient, engine, fhir, signing_jwk):
    fhir.load(patient["id"])
    summary, _ = summarise(engine, BASE, TOKEN, patient["id"])
    # the same decisions as the patient-view card: the card's own summary line
    if patient["patient_view"]["summary"].startswith("no card"):  # (an RYR1 VUS: no advice)
        assert summary.card_summary is None and summary.drugs == []
        return
    assert summary.card_summary == patient["patient_view"]["summary"]
    made = document(summary, engine.knowledge, _Keys(signing_jwk), "https://cds.example.org/")
    text = _text(made.html)
    assert patient["name"] in text
    for gene, expected in patient["genes"].items():
        # (an HLA result is about an allele of the gene: HLA-B*15:02 of HLA-B)
        (line,) = [g for g in summary.genes if g.gene.split("*")[0] == gene]
        assert f'data-gene="{line.gene}"' in made.html
        if "diplotype" in expected:  # (an RYR1/CACNA1S result names a variant instead)
            typed = expected["diplotype"] and expected["diplotype"].split("#")[-1]  # GL string
            assert line.diplotype == typed and (typed is None or typed in text)
        else:
            assert line.diplotype and expected["variant"].split(" ")[0] in line.diplotype
            assert line.diplotype in text
        if line.readings:  # results that disagree: said, with each result
            assert wording.text("disagree") in text
        else:
            assert wording.phenotype_words(line.phenotype, line.usable, line.gene) in text
        assert line.date and line.date in text
    # the card counts "N pain drugs affected": the page lists those N drugs
    counted = re.search(r"(\d+) pain drugs? affected", patient["patient_view"]["summary"])
    listed = {d.drug for d in summary.drugs} | {r.drug for r in summary.rules if not r.pretest}
    if counted:
        assert len(listed) == int(counted.group(1))
    for d in summary.drugs:
        assert f'data-drug="{d.drug}"' in made.html
        assert d.recommendation in text  # the clinician's section: the guideline's advice
        assert d.url is not None and f'href="{d.url}"' in made.html
    # the QR holds a card of these genes (unclear ones as typed), issued by the public URL
    assert made.card is not None
    verified = shc.verify(made.card, {"keys": [signing_key(signing_jwk).public_jwk]})
    assert verified.issuer == "https://cds.example.org"
    in_card = bundle.genes_in(verified.bundle, engine.knowledge)
    assert set(in_card) == {g.gene for g in summary.genes}
    # the service itself reads the card's results back as the same results
    observations = [e["resource"] for e in verified.bundle["entry"][1:]]
    for n, o in enumerate(observations):
        o.update(id=f"card-{n}", subject={"reference": f"Patient/{patient['id']}"})
    read = genomic_facts.summarise(observations, patient["id"], engine.knowledge, Trace(), None)
    # (results that disagree are read back as disagreeing, with the same readings)
    assert {g: {r.phenotype for r in f.all_readings} for g, f in read.items()} == {
        g.gene: {r.phenotype for r in g.readings} or {g.phenotype} for g in summary.genes
    }
    # (and an unclear result is read back as unclear, never as a usable one)
    assert {g for g, f in read.items() if not f.actionable} == {
        g.gene for g in summary.genes if not g.usable
    }
    assert fhir.tokens and all(t == f"Bearer {TOKEN}" for t in fhir.tokens)


def test_lay_advice_follows_the_guideline_action(engine, fhir, signing_jwk):
    fhir.load("pgx-cyp2d6-pm-cyp2c9-pm")
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-cyp2d6-pm-cyp2c9-pm")
    html = document(summary, engine.knowledge, None, None).html
    codeine = next(d for d in summary.drugs if d.drug == "codeine")
    assert codeine.action == "avoid" and codeine.level == "critical"
    item = re.search(r'<li data-drug="codeine">.*?</li>', html).group(0)
    assert wording.ACTION_WORDS["avoid"] in _text(item)
    celecoxib = re.search(r'<li data-drug="celecoxib">.*?</li>', html).group(0)
    assert wording.ACTION_WORDS["adjust-dose"] in _text(celecoxib)
    # without a public URL: no card, and the page says why
    assert "<svg" not in html and wording.text("card_unsigned") in _text(html)


def test_phenoconversion_and_disagreeing_results_are_said_plainly(engine, fhir):
    fhir.load("pgx-cyp2d6-nm-paroxetine")
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-cyp2d6-nm-paroxetine")
    (cyp2d6,) = [g for g in summary.genes if g.gene == "CYP2D6"]
    assert cyp2d6.phenotype == "Normal Metabolizer" and cyp2d6.acting == "Poor Metabolizer"
    assert "paroxetine" in _text(page.render(summary))
    fhir.resources.clear()
    fhir.load("pgx-cyp2d6-discordant")
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-cyp2d6-discordant")
    (cyp2d6,) = [g for g in summary.genes if g.gene == "CYP2D6"]
    assert cyp2d6.discordant and wording.text("disagree") in _text(page.render(summary))
    # never one settled meaning: each result, its date and its lab; the card carries each
    text = _text(page.render(summary))
    assert wording.phenotype_words("Normal Metabolizer") not in text
    for reading in ("normal metabolizer (2018-03-12)", "poor metabolizer (2024-06-03)"):
        assert reading in text
    assert "Acme Genomics Laboratory" in text and "Northside Reference Laboratory" in text
    card = bundle.bundle(summary, engine.knowledge)
    assert len(card["entry"]) == 1 + len(cyp2d6.readings) == 3


def test_the_lab_is_named_where_the_result_names_it(engine, fhir):
    fhir.load("pgx-cyp2d6-discordant")
    for r in fhir.resources:
        if r["resourceType"] == "Observation":
            r["performer"] = [{"display": "Example Genomics Lab"}]
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-cyp2d6-discordant")
    assert {g.lab for g in summary.genes} == {"Example Genomics Lab"}
    assert "Example Genomics Lab" in page.render(summary)


def test_an_unclear_result_is_listed_as_unclear_with_its_rules(engine, fhir):
    fhir.load("pgx-hla-b15-lowres")
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-hla-b15-lowres")
    (line,) = summary.genes
    assert not line.usable
    text = _text(page.render(summary))
    assert wording.PHENOTYPE_UNCLEAR in text and "HLA-B*15, HLA-B*40" in text
    assert wording.text("no_results") not in text
    # (phenytoin and fosphenytoin depend on HLA-B*15:02 too, since issue 24)
    assert {r.drug for r in summary.rules} == {
        "carbamazepine",
        "oxcarbazepine",
        "phenytoin",
        "fosphenytoin",
    }


def test_no_results_gives_a_page_that_says_so(engine, fhir):
    fhir.load("pgx-no-results")
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-no-results")
    assert summary.genes == [] and summary.card_summary is None
    assert wording.text("no_results") in _text(page.render(summary))


def test_no_results_gives_no_signed_card(engine, fhir, signing_jwk):
    """A signed card that holds no result could be read as "tested, nothing found": none is
    made, and the page says why there is no QR code."""
    fhir.load("pgx-no-results")
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-no-results")
    made = document(summary, engine.knowledge, _Keys(signing_jwk), "https://cds.example.org/")
    assert made.card is None and "no pharmacogenomic result on file" in str(made.problem)
    assert "<svg" not in made.html
    assert wording.text("card_no_results") in _text(made.html)


def test_words_from_the_record_are_escaped(engine, fhir):
    fhir.load("pgx-cyp2d6-pm")
    patient = next(r for r in fhir.resources if r["resourceType"] == "Patient")
    patient["name"] = [{"text": "<script>alert(1)</script>"}]
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-cyp2d6-pm")
    html = page.render(summary)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_print_css_fits_a4_and_letter_and_keeps_the_wallet_card_whole():
    css = page.CSS
    assert "@media print" in css and "@page" in css
    assert "width: 85.6mm" in css and "height: 54mm" in css  # ID-1, the size of a bank card
    assert "break-inside: avoid" in css
    # the page's width fits both papers' printable width (A4 210 mm, Letter 215.9 mm, 12 mm
    # margins each side)
    width = float(re.search(r"max-width: ([\d.]+)mm", css).group(1))
    assert width <= 210 - 24


def test_every_word_comes_from_the_wording_module():
    # a translation is one more table with the same keys: the page uses no key it lacks
    source = (ROOT / "cds_service" / "summary" / "page.py").read_text()
    used = set(re.findall(r"""t\(\s*["']([a-z_]+)["']""", source))
    assert used and used <= set(wording.EN)


def test_a_result_that_changes_no_advice_is_still_listed_and_called_unclear(
    engine, fhir, signing_jwk
):
    """An RYR1 variant of uncertain significance gives no patient-view card (CPIC: no advice
    of its own), but the patient's record must not hide it: the page lists the gene, the
    variant and that the result is unclear (it does not rule susceptibility out)."""
    fhir.load("pgx-ryr1-vus")
    summary, _ = summarise(engine, BASE, TOKEN, "pgx-ryr1-vus")
    assert summary.card_summary is None and summary.drugs == []
    (line,) = summary.genes
    assert line.gene == "RYR1" and not line.usable and line.diplotype
    made = document(summary, engine.knowledge, _Keys(signing_jwk), "https://cds.example.org/")
    text = _text(made.html)
    assert 'data-gene="RYR1"' in made.html and line.diplotype in text
    said = wording.phenotype_words(line.phenotype, line.usable, line.gene)
    assert said in text and "neither shows nor rules out" in said
    # the card carries it as typed, with no phenotype: a clinic reading it sees it settles
    # nothing (and this service reads it back as unclear)
    verified = shc.verify(made.card, {"keys": [signing_key(signing_jwk).public_jwk]})
    carried = bundle.genes_in(verified.bundle, engine.knowledge)
    assert carried["RYR1"]["genotype"] == line.diplotype
    assert carried["RYR1"]["phenotype"].startswith("unclear")
    observations = [e["resource"] for e in verified.bundle["entry"][1:]]
    for n, o in enumerate(observations):
        o.update(id=f"card-{n}", subject={"reference": "Patient/pgx-ryr1-vus"})
    read = genomic_facts.summarise(observations, "pgx-ryr1-vus", engine.knowledge, Trace(), None)
    assert not read["RYR1"].actionable


def test_an_unclear_phenotype_reported_alone_travels_in_the_card_as_reported(engine):
    """A result with no typing and a phenotype the service cannot use ("Indeterminate") is
    carried too: a phenotype result whose value is the phenotype as reported, read back by
    this service as unclear, never dropped from the card."""
    from cds_service.summary.build import GeneLine, Summary

    line = GeneLine(gene="CYP2D6", phenotype="Indeterminate", date="2024-01-02", usable=False)
    summary = Summary("p1", "A B", "1970-01-01", [line], [], [], [], [], "k", "2026-12-07")
    assert bundle.carries(summary)
    made = bundle.bundle(summary, engine.knowledge)
    assert bundle.genes_in(made, engine.knowledge)["CYP2D6"]["phenotype"] == "Indeterminate"
    (obs,) = [e["resource"] for e in made["entry"][1:]]
    obs.update(id="card-0", subject={"reference": "Patient/p1"})
    read = genomic_facts.summarise([obs], "p1", engine.knowledge, Trace(), None)
    assert not read["CYP2D6"].actionable
