"""Card details are Markdown (CDS Hooks: GitHub Flavored Markdown), and EHRs and the public
sandbox render them. An allele name must read as written after rendering: two bare stars
("HLA-B*15:02 … HLA-A*31:01") would be taken for emphasis, lose both stars and set the words
between in italics on a critical card. Every card detail the knowledge can give is rendered
here with a real CommonMark renderer (markdown-it-py, with GitHub's tables and strikethrough)
and each allele name and diplotype is looked for verbatim in what a reader sees."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import pytest
from builders import med_order
from markdown_it import MarkdownIt

from cds_service.clinical import cards, label_rules, patient_view, unclear_results
from cds_service.clinical.medications import IdentifiedDrug
from cds_service.clinical.recommendations import Match
from cds_service.core.trace import Trace
from cds_service.core.wording import code_span, escaped, inert
from cds_service.fhir.hook_context import DraftOrder
from cds_service.genomics.gene_decision import GeneResult
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.models import Recommendation

RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
#: an allele or star-allele name: HLA-B*15:02, HLA-B*1502, CYP2C9*2, *4
ALLELE = re.compile(r"(?:[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)?)?\*\d+(?::\d+)*")
#: a diplotype or typing as labs report them, one per gene (what the card shows in code)
TYPING = {
    "CYP2D6": "*1/*2x2",
    "CYP2C9": "*1/*3",
    "CYP2C19": "*2/*17",
    "HLA-B*15:02": "HLA-B*15:02:01+HLA-B*07:02:01",
    "HLA-A*31:01": "HLA-A*31:01:02+HLA-A*02:01:01",
}


def rendered(markdown: str) -> tuple[str, str]:
    """(the HTML a CommonMark client makes, the text a reader sees)."""
    out = RENDERER.render(markdown)
    return out, html.unescape(re.sub(r"<[^>]+>", "", out))


def assert_verbatim(markdown: str, *sources: str) -> None:
    """Every allele name in ``sources`` (the texts that went into the card) reads verbatim
    in the rendered card, and nothing of the card was set in italics or struck through."""
    out, text = rendered(markdown)
    names = {n for s in sources for n in ALLELE.findall(s)}
    for name in names:
        assert name in text, (name, text)
    assert "<em>" not in out and "<del>" not in out and "<s>" not in out, out


def _result(gene: str, rec: Recommendation) -> GeneResult:
    cond = rec.when[gene]
    phenotype = cond.phenotype or "Intermediate Metabolizer"
    return GeneResult(
        gene=gene,
        phenotype=phenotype,
        observation="Observation/x",
        kind="genotype",
        date_text="2024-03-01",
        diplotype=TYPING.get(gene),
        activity_score=cond.activity_score_min,
        activity_score_text=f"{cond.activity_score_min:g}"
        if cond.activity_score_min is not None
        else None,
        notes=(f"reported by the lab as '{gene} {phenotype}'",),
    )


def _drug(knowledge: Knowledge, drug: str) -> IdentifiedDrug:
    code = knowledge.drugs[drug].rxcui or "0"
    return IdentifiedDrug(drug, DraftOrder(med_order((code, drug))), f"RxNorm {code}", drug)


def _sources(rec: Recommendation, knowledge: Knowledge) -> list[str]:
    texts = [rec.implication, rec.recommendation, *rec.when, *(TYPING.get(g, "") for g in rec.when)]
    for gene, cond in rec.when.items():
        texts += [
            s.text for s in knowledge.label_statements_for(rec.drug, gene, cond.phenotype or "")
        ]
    return texts


def _rows(knowledge: Knowledge) -> list[Recommendation]:
    return [r for r in knowledge.recommendations if cards.indicator(r) is not None]


def test_the_walk_meets_the_names_that_used_to_break(knowledge):
    """The knowledge has rows naming both HLA alleles: the case of the issue."""
    both = [
        r
        for r in _rows(knowledge)
        if "HLA-B*15:02" in r.implication + r.recommendation
        and "HLA-A*31:01" in r.implication + r.recommendation
    ]
    assert both
    naive = RENDERER.render(both[0].implication)
    assert "<em>" in naive  # unescaped, the stars pair up: what the escaping prevents


def test_every_recommendation_card_shows_allele_names_verbatim(knowledge):
    rows = _rows(knowledge)
    assert len(rows) > 50
    for rec in rows:
        drug = _drug(knowledge, rec.drug)
        results = tuple(_result(g, rec) for g in rec.when)
        match = Match(drug, rec, results)
        detail = cards.build_card(match, "warning", knowledge).body["detail"]
        assert_verbatim(detail, *_sources(rec, knowledge))
        # a result that spans rows lists each of them
        others = [r for r in knowledge.recommendations_for(rec.drug) if r.id != rec.id]
        spanning = replace(match, possible=(rec, *others[:2]))
        detail = cards.build_card(spanning, "warning", knowledge).body["detail"]
        sources = [*(r.recommendation for r in spanning.possible), *_sources(rec, knowledge)]
        sources.remove(rec.implication)  # a spanning card gives each row's advice, no 'why'
        assert_verbatim(detail, *sources)


def test_every_notice_card_shows_allele_names_verbatim(knowledge):
    """Pre-test cards (all switched on), age-rule cards and unclear-result cards, with their
    sources' titles and sections and the unclear typing."""
    drugs = [
        _drug(knowledge, d)
        for d in sorted(
            {
                *knowledge.pretest.drugs,
                *(r.drug for r in knowledge.label_rules),
                *(r.drug for r in knowledge.unclear_rules),
            }
        )
    ]
    for d in drugs:
        d.order.resource["reasonCode"] = [{"text": "after tonsillectomy"}]
    notices = label_rules.pretest(
        drugs, {}, knowledge, frozenset(knowledge.pretest.drugs), Trace()
    ) + label_rules.age_rules(drugs, {"birthDate": "2022-01-01"}, knowledge, Trace())
    # unclear results: each rule's marker, and each pre-test gene, typed without settling it
    unclear = {
        gene: GeneResult(
            gene,
            "Indeterminate",
            "Observation/u",
            "genotype",
            "2024-03-01",
            f"{gene.split(':')[0]}+HLA-B*07:02" if "*" in gene else "*1/*999",
            notes=(f"'{gene.split(':')[0]}' is ambiguous about {gene}",),
        )
        for gene in {r.marker for r in knowledge.unclear_rules}
        | {p.test for p in knowledge.pretest.drugs.values()}
    }
    notices += unclear_results.notices(
        drugs, unclear, [], knowledge, frozenset(knowledge.pretest.drugs), Trace()
    )
    assert {n.id for n in notices} >= {r.id for r in knowledge.unclear_rules}
    assert {n.drug.drug for n in notices} >= {"carbamazepine", "oxcarbazepine", "codeine"}
    for notice in notices:
        [built] = cards.build_cards([], knowledge, [notice])
        card = built.body
        sources = [notice.text, notice.source.title, notice.source.section or ""]
        if notice.result is not None:
            sources += [notice.result.gene, notice.result.diplotype or "", *notice.result.notes]
        assert_verbatim(card["detail"], *sources)


def test_the_patient_view_card_shows_allele_names_and_typing_verbatim(knowledge):
    facts = {
        "HLA-B*15:02": GeneResult(
            "HLA-B*15:02",
            "positive",
            "Observation/b",
            "genotype",
            "2024-03-01",
            TYPING["HLA-B*15:02"],
        ),
        "HLA-A*31:01": GeneResult(
            "HLA-A*31:01",
            "Indeterminate",
            "Observation/a",
            "genotype",
            "2024-03-01",
            "HLA-A*31+HLA-A*02:01",
            notes=("'HLA-A*31+HLA-A*02:01' is ambiguous about HLA-A*31:01",),
        ),
        "CYP2D6": GeneResult(
            "CYP2D6", "Poor Metabolizer", "Observation/d", "genotype", "2024-03-01", "*4/*4|*4/*5"
        ),
    }
    [card] = patient_view.build_cards(facts, {}, knowledge, Trace())
    sources = [*facts, *(f.diplotype or "" for f in facts.values()), *facts["HLA-A*31:01"].notes]
    assert_verbatim(card["detail"], *sources)
    _, text = rendered(card["detail"])
    assert "*4/*4|*4/*5" in text  # a '|' in a typing does not split the table's cells


@pytest.mark.parametrize(
    "words",
    [
        "HLA-B*15:02 and HLA-A*31:01",
        "CYP2C9*2 or CYP2C8*3 carriers",
        "*1/*4 _and_ *4/*4",
        "~5 weeks ~3 months",
        "a [link](https://example.org) <b>bold</b> &amp; `code` | cell",
        "# not a heading",
        "- not a list",
        "1. not a list either",
        "> not a quote",
        "back\\slash",
    ],
)
def test_escaped_prose_reads_exactly_as_written(words):
    out, text = rendered(escaped(words))
    assert text.strip() == words
    assert out.startswith("<p>")  # one plain paragraph: no heading, list or quote


@pytest.mark.parametrize("words", ["*1/*2x2", "HLA-B*15:02+HLA-B*07:02|HLA-B*15:13+HLA-B*07:02"])
def test_a_code_span_shows_a_typing_verbatim_also_in_a_table_cell(words):
    _, text = rendered(code_span(words))
    assert text.strip() == words
    table = f"| a | b |\n|---|---|\n| result | {code_span(words, table=True)} |"
    _, text = rendered(table)
    assert words in text


def test_the_service_s_own_formatting_survives(knowledge):
    """Escaping the texts does not escape the labels, links and tables the service writes."""
    rec = next(r for r in knowledge.recommendations if r.id == "carbamazepine-hlab1502-pos")
    match = Match(_drug(knowledge, rec.drug), rec, tuple(_result(g, rec) for g in rec.when))
    out, _ = rendered(cards.build_card(match, "critical", knowledge).body["detail"])
    assert "<strong>Recommendation</strong>" in out and "<strong>Why:</strong>" in out
    assert f'<a href="{rec.guideline.url}">Guideline</a>' in out
    assert "<li>" in out and "<code>HLA-B*15:02:01+HLA-B*07:02:01</code>" in out


def test_request_words_stay_inert(knowledge):
    """The order's text is the prescriber's (or a hostile client's): it cannot add a link."""
    words = "[click](https://evil.example) *Codeine* <script>x</script>"
    _, text = rendered(inert(words))
    assert text.strip() == words
