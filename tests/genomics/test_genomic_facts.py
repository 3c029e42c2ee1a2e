"""Which results count, and what they say: safety rules first."""

from __future__ import annotations

import gc

import pytest
from builders import (
    APAP_CODEINE,
    genotype_obs,
    hook_request,
    implication_obs,
    med_order,
    phenotype_obs,
    shown,
    with_results,
)

from cds_service.core.trace import Trace
from cds_service.genomics import genomic_facts
from cds_service.genomics.genomic_facts import Memo, _Cache, summarise
from cds_service.knowledge.loader import Knowledge
from cds_service.settings import default_knowledge_dir


def cards_for(call, *observations):
    status, answer = call(
        hook_request(
            "order-select", [med_order(APAP_CODEINE)], prefetch=with_results(*observations)
        )
    )
    assert status == 200
    return answer["cards"]


@pytest.mark.parametrize(
    "status", ["entered-in-error", "preliminary", "registered", "cancelled", None]
)
def test_results_not_final_are_ignored(call, status):
    obs = phenotype_obs("Ultrarapid Metabolizer", status=status)
    if status is None:
        del obs["status"]
    assert cards_for(call, obs) == []


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_final_amended_corrected_count(call, status):
    assert len(cards_for(call, phenotype_obs("Poor Metabolizer", status=status))) == 1


def test_other_patients_results_are_ignored(call):
    assert cards_for(call, phenotype_obs("Ultrarapid Metabolizer", patient="someone-else")) == []


def test_result_without_subject_is_ignored(call):
    obs = phenotype_obs("Ultrarapid Metabolizer")
    del obs["subject"]
    assert cards_for(call, obs) == []


def test_absolute_subject_reference_counts_only_on_the_requests_server(call):
    obs = phenotype_obs("Ultrarapid Metabolizer")
    obs["subject"] = {"reference": "https://ehr.example.org/fhir/Patient/pat-1"}
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(obs),
        fhir_server="https://ehr.example.org/fhir",
    )
    assert len(call(body)[1]["cards"]) == 1
    # the same id on another hospital's server is another patient
    body["fhirServer"] = "https://other-hospital.example/fhir"
    assert call(body)[1]["cards"] == []
    assert cards_for(call, obs) == []  # no fhirServer: an absolute reference cannot be checked


@pytest.mark.parametrize(
    "text",
    [
        "Indeterminate",
        "Unknown",
        "Possible poor metabolizer",
        # (CPIC's "Likely intermediate metabolizer" acts as one: tests/genomics/test_lab_codes.py)
        "Likely normal metabolizer",  # no CPIC term
        "see report",
        "",
    ],
)
def test_unclear_phenotype_text_gives_no_alert(call, text):
    assert cards_for(call, phenotype_obs(text, as_text=True)) == []


@pytest.mark.parametrize(
    "diplotype",
    ["*1/*", "*4/*999", "*1/*4/*5", "positive", "*41/*2xN", "*1/*43x2", "CYP2C19 *1/*2"],
)
def test_unparseable_or_unknown_diplotype_gives_no_alert(call, diplotype):
    assert cards_for(call, genotype_obs(diplotype)) == []


def test_text_phenotype_is_read(call):
    [card] = cards_for(call, phenotype_obs("CYP2D6 ultrarapid metabolizer", as_text=True))
    assert card["indicator"] == "critical"


@pytest.mark.parametrize(
    "component", ["therapeutic-implication", "predicted-therapeutic-implication"]
)
def test_therapeutic_implication_forms(call, component):
    obs = implication_obs("Poor Metabolizer", component_code=component)
    [card] = cards_for(call, obs)
    assert "poor metabolizer" in card["summary"]


@pytest.mark.parametrize("where", ["text", "display", "valueString"])
def test_diplotype_wherever_it_is_written(call, where):
    [card] = cards_for(call, genotype_obs("*4/*4", where=where))
    assert "poor metabolizer" in card["summary"]


def test_gene_from_value_text_when_no_component(call):
    [card] = cards_for(call, genotype_obs("CYP2D6 *1/*2x2", gene=None))
    assert "ultrarapid" in card["summary"]


def test_gene_of_another_gene_is_not_cyp2d6(call):
    assert cards_for(call, phenotype_obs("Poor Metabolizer", gene="CYP2C19")) == []


def test_older_and_newer_results_that_no_rule_change_explains_are_shown_not_resolved(call):
    """'Normal' in 2019 and 'ultrarapid' in 2024: no CPIC change makes a normal metabolizer
    ultrarapid. The card follows the riskier reading and says the results disagree."""
    old = phenotype_obs("Normal Metabolizer", obs_id="old", date="2019-01-01")
    new = phenotype_obs("Ultrarapid Metabolizer", obs_id="new", date="2024-01-01")
    [card] = cards_for(call, old, new)
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("CYP2D6 results disagree — verify before prescribing")
    assert "ultrarapid" in card["summary"]
    assert "'Normal metabolizer' (read as normal metabolizer), 2019-01-01" in card["detail"]


def test_an_older_label_a_former_cpic_rule_explains_leaves_the_newer_to_decide(call):
    """'Ultrarapid' in 2019 and 'normal' in 2024: before the 2019 consensus an activity score
    of 2.5 (e.g. *1x2/*41) was ultrarapid; it is normal today. The newer result decides."""
    assert (
        cards_for(
            call,
            phenotype_obs("Ultrarapid Metabolizer", obs_id="a", date="2019-01-01"),
            phenotype_obs("Normal Metabolizer", obs_id="b", date="2024-01-01"),
        )
        == []
    )


def test_genotype_on_file_decides_over_a_lab_label_a_former_rule_gives(call):
    """Today's CPIC rules applied to the genotype decide; a label a former rule gives for it
    (*1/*4, activity score 1, was normal before 2019) is shown beside."""
    pheno = phenotype_obs("Normal Metabolizer", obs_id="p", date="2018-01-01")
    geno = genotype_obs("*1/*4", obs_id="g", date="2018-01-01")
    [card] = cards_for(call, pheno, geno)
    assert card["indicator"] == "info" and "intermediate metabolizer" in card["summary"]
    assert "reported by the lab as 'normal metabolizer'" in shown(card["detail"]).lower()
    assert "*1/*4 is an intermediate metabolizer" in shown(card["detail"])
    assert "disagree" not in card["detail"]


def test_a_lab_label_no_rule_gives_for_the_genotype_is_a_discordance(call):
    """*4/*4 and a 'normal' label, or *1/*1 and a 'poor' one: shown, the riskier reading
    followed (the poor metabolizer's avoid), whichever of the two it is."""
    for label, genotype in (("Normal Metabolizer", "*4/*4"), ("Poor Metabolizer", "*1/*1")):
        [card] = cards_for(
            call, phenotype_obs(label, obs_id="p"), genotype_obs(genotype, obs_id="g")
        )
        assert card["indicator"] == "critical"
        assert card["summary"] == (
            "CYP2D6 results disagree — verify before prescribing codeine "
            "(if poor metabolizer: avoid)"
        )
        assert f"`{genotype}`" in card["detail"]


def test_agreeing_genotype_adds_diplotype_to_the_card(call):
    [card] = cards_for(
        call,
        phenotype_obs("Ultrarapid Metabolizer", obs_id="p"),
        genotype_obs("*1/*1x3", obs_id="g"),
    )
    assert "`*1/*1x3`" in card["detail"] and "activity score ≥4" in card["detail"]


def test_same_day_conflicting_lab_phenotypes_are_shown_with_the_riskier_advice(call):
    a = phenotype_obs("Ultrarapid Metabolizer", obs_id="a")
    b = phenotype_obs("Poor Metabolizer", obs_id="b")
    [card] = cards_for(call, a, b)
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("CYP2D6 results disagree — verify before prescribing")
    # both readings say avoid: the card names each, with its advice
    assert "**If CYP2D6 ultrarapid metabolizer" in card["detail"]
    assert "**If CYP2D6 poor metabolizer" in card["detail"]


def test_same_day_results_that_agree_give_the_usual_card(call):
    [card] = cards_for(
        call, phenotype_obs("Poor Metabolizer", obs_id="a"), genotype_obs("*4/*4", obs_id="b")
    )
    assert card["summary"] == "Avoid codeine: CYP2D6 poor metabolizer"
    assert "disagree" not in card["detail"]


def test_trace_says_why_results_were_ignored(knowledge):
    trace = Trace()
    facts = summarise(
        [
            phenotype_obs("Poor Metabolizer", obs_id="e", status="entered-in-error"),
            phenotype_obs("Poor Metabolizer", obs_id="o", patient="other"),
            genotype_obs("*1/*999", obs_id="u"),
        ],
        "pat-1",
        knowledge,
        trace,
    )
    text = trace.render()
    assert "Observation/e ignored: status 'entered-in-error'" in text
    assert "Observation/o ignored: its subject is not the patient" in text
    assert "Observation/u (CYP2D6 genotype): no usable result" in text
    assert "*999 has no CPIC activity value" in text
    assert facts["CYP2D6"].phenotype == "Indeterminate"
    assert "pat-1" not in text and "other" not in text  # no patient identifiers


# -- the caches: the same results read again give the same facts, never stale ones ------------


@pytest.fixture
def memo(knowledge):
    return Memo(knowledge)


def _facts(knowledge, observations, patient="pat-1", resolve=None, needed=None, memo=None):
    trace = Trace()
    facts = summarise(observations, patient, knowledge, trace, resolve, needed=needed, memo=memo)
    return facts, trace.lines


def test_the_same_results_again_give_the_same_facts_and_trace(knowledge, memo):
    results = [genotype_obs("*1/*1xN", obs_id="g1"), phenotype_obs("Ultrarapid Metabolizer")]
    first = _facts(knowledge, results, memo=memo)
    assert len(memo.summaries._items) == 1 and len(memo.readings._items) == 2
    again = _facts(knowledge, [dict(r) for r in results], memo=memo)
    assert again == first  # (from the memo: the facts and the trace lines alike)
    assert first[0]["CYP2D6"].phenotype == "Ultrarapid Metabolizer"


def test_a_memo_serves_only_its_own_knowledge(knowledge):
    with pytest.raises(ValueError, match="only the knowledge"):
        summarise([], "pat-1", knowledge, Trace(), memo=Memo(Knowledge(default_knowledge_dir())))


def test_knowledge_objects_made_one_after_another_never_share_readings():
    """Issue 30, item 2: the caches were module globals keyed by id(knowledge), and Python
    reuses ids: a knowledge object made after another, without the site's code for a local
    result, got the other's reading of it (17 of 30 rounds in a review; here 5 of 30 on the
    code before). A reading is now remembered only in a Memo of its own knowledge."""
    local = {"http://lab.example.org/codes|PGX-2D6": {"kind": "phenotype", "gene": "CYP2D6"}}
    result = phenotype_obs("Poor Metabolizer", obs_id="local-1")
    result["code"] = {"coding": [{"system": "http://lab.example.org/codes", "code": "PGX-2D6"}]}
    # (3 rounds: each gc.collect() walks the whole heap, seconds late in a full test run)
    for _ in range(3):
        for with_memo in (False, True):
            site = Knowledge(default_knowledge_dir(), extra_codes=local)
            memo = Memo(site) if with_memo else None
            assert "CYP2D6" in summarise([result], "pat-1", site, Trace(), memo=memo)
            del site, memo
            gc.collect()  # (frees the object: its id may now be given to the next)
            plain = Knowledge(default_knowledge_dir())
            memo = Memo(plain) if with_memo else None
            assert "CYP2D6" not in summarise([result], "pat-1", plain, Trace(), memo=memo)
            del plain, memo
            gc.collect()


def test_a_changed_value_is_read_again_not_taken_from_the_cache(knowledge, memo):
    before = _facts(knowledge, [phenotype_obs("Ultrarapid Metabolizer", obs_id="p1")], memo=memo)
    after = _facts(knowledge, [phenotype_obs("Poor Metabolizer", obs_id="p1")], memo=memo)
    assert before[0]["CYP2D6"].phenotype == "Ultrarapid Metabolizer"
    assert after[0]["CYP2D6"].phenotype == "Poor Metabolizer"


def test_the_same_results_for_another_patient_are_not_theirs(knowledge, memo):
    results = [phenotype_obs("Ultrarapid Metabolizer", patient="pat-1")]
    assert _facts(knowledge, results, patient="pat-1", memo=memo)[0]["CYP2D6"].actionable
    assert "CYP2D6" not in _facts(knowledge, results, patient="pat-2", memo=memo)[0]


def test_results_that_needed_another_read_are_read_again_each_time(knowledge, memo):
    """A 3.0 implication names its gene through the genotype it derives from, read from the
    FHIR server: that read's answer can change, so the summary is not kept."""
    implication = implication_obs("Poor Metabolizer", obs_id="t1")
    implication["component"] = implication["component"][:-1]  # no gene: only derivedFrom
    implication["derivedFrom"] = [{"reference": "Observation/g-remote"}]
    reads = []

    def resolve(reference):
        reads.append(reference)
        return genotype_obs("*4/*4", obs_id="g-remote")

    first = _facts(knowledge, [implication], resolve=resolve, memo=memo)
    _facts(knowledge, [implication], resolve=resolve, memo=memo)
    assert reads == ["Observation/g-remote", "Observation/g-remote"]
    assert first[0]["CYP2D6"].phenotype == "Poor Metabolizer"


def test_a_cache_keeps_at_most_its_bytes_of_keys_dropping_the_least_recently_used():
    cache: _Cache[str] = _Cache(size=100, max_bytes=250)
    for name in "abc":
        cache.put(("p1", name.encode() * 100), name)
    assert cache.get(("p1", b"a" * 100)) is None  # the oldest went, the limit held
    assert cache.get(("p1", b"b" * 100)) == "b" and cache.get(("p1", b"c" * 100)) == "c"
    assert cache.bytes == 204  # the JSON and the patient ids
    cache.put(("p1", b"c" * 100), "c again")  # the same key again: replaced, not counted twice
    assert cache.get(("p1", b"c" * 100)) == "c again" and cache.bytes == 204
    cache.put(("p1", b"d" * 300), "d")  # alone past the limit: not kept, nothing dropped
    assert cache.get(("p1", b"d" * 300)) is None and cache.bytes == 204
    cache.put(("p" * 200, b"e"), "e")  # a long patient id counts too
    assert cache.get(("p1", b"b" * 100)) is None and cache.bytes <= 250


def test_a_long_set_of_results_is_remembered_by_its_digest_and_never_confused(
    knowledge, monkeypatch
):
    """Past ``LONGEST_KEY`` of JSON a set is looked up by its SHA-256: the same set again
    gives the same facts, a changed one is read again."""
    monkeypatch.setattr(genomic_facts, "LONGEST_KEY", 64)
    memo = Memo(knowledge)
    results = [phenotype_obs("Ultrarapid Metabolizer", obs_id="p1")]
    first = _facts(knowledge, results, memo=memo)
    ((key, _),) = memo.summaries._items.items()
    assert key[-2] == "sha256" and len(key[-1]) == 32
    assert _facts(knowledge, [dict(r) for r in results], memo=memo) == first
    changed = _facts(knowledge, [phenotype_obs("Poor Metabolizer", obs_id="p1")], memo=memo)
    assert changed[0]["CYP2D6"].phenotype == "Poor Metabolizer"


# -- several results for one gene: found by a clinical review -------------------------------

CELECOXIB = ("205323", "celecoxib 200 MG Oral Capsule")


def _celecoxib_cards(call, *observations):
    status, answer = call(
        hook_request("order-select", [med_order(CELECOXIB)], prefetch=with_results(*observations))
    )
    assert status == 200
    return answer["cards"]


def test_same_day_results_that_differ_in_activity_score_are_a_conflict_whatever_their_order(
    call,
):
    """CYP2C9 *1/*2 (score 1.5) and *1/*3 (score 1.0) are both intermediate metabolizers, but
    the NSAID advice depends on the score: the answer must not depend on which comes first."""
    a = genotype_obs("*1/*2", gene="CYP2C9", obs_id="a")
    b = genotype_obs("*1/*3", gene="CYP2C9", obs_id="b")
    first, second = _celecoxib_cards(call, a, b), _celecoxib_cards(call, b, a)
    for cards in (first, second):  # the lower score's advice, with the discordance stated
        [card] = cards
        assert card["indicator"] == "warning"
        assert card["summary"].startswith("CYP2C9 results disagree — verify before prescribing")
        assert "(if intermediate metabolizer: adjust dose)" in card["summary"]
    assert [c["detail"] for c in first] == [c["detail"] for c in second]


def test_a_newer_phenotype_overrules_an_older_genotype_that_cannot_give_it(call):
    """A 2024 test reports an ultrarapid metabolizer (e.g. it counted gene copies); a 2019
    genotype without copy numbers read *1/*1. The newer result decides: avoid codeine."""
    old = genotype_obs("*1/*1", obs_id="g", date="2019-01-01")
    new = phenotype_obs("Ultrarapid Metabolizer", obs_id="p", date="2024-05-01")
    [card] = cards_for(call, old, new)
    assert card["indicator"] == "critical" and "ultrarapid" in card["summary"].lower()
    assert "an older genotype (2019-01-01) *1/*1 reads as normal metabolizer" in shown(
        card["detail"]
    )


@pytest.mark.parametrize(
    "text", ["Ultrarapid metabolizer (activity score 3.0)", "Ultrarapid metabolizer; AS 3.0"]
)
def test_a_phenotype_printed_with_its_activity_score_is_read(call, text):
    [card] = cards_for(call, phenotype_obs(text, as_text=True))
    assert card["indicator"] == "critical" and "ultrarapid" in card["summary"].lower()


def test_the_printed_activity_score_decides_the_nsaid_advice(call):
    """CYP2C9 intermediate metabolizer: score 1.0 changes the celecoxib dose, 1.5 does not."""
    one = phenotype_obs("Intermediate metabolizer (activity score 1.0)", "CYP2C9", as_text=True)
    one_and_half = phenotype_obs(
        "Intermediate metabolizer (activity score 1.5)", "CYP2C9", as_text=True
    )
    [card] = _celecoxib_cards(call, one)
    assert "celecoxib" in card["summary"].lower()
    assert _celecoxib_cards(call, one_and_half) == []


@pytest.mark.parametrize(
    "text",
    ["Poor metabolizer (activity score 2.0)", "Normal metabolizer (no enzyme activity)"],
)
def test_a_phenotype_whose_printed_score_contradicts_it_is_not_used(call, text):
    assert cards_for(call, phenotype_obs(text, as_text=True)) == []


def test_a_corrected_result_replaces_the_original_of_the_same_date(call):
    """The lab corrected *1/*1 to *4/*4: the correction, issued later, decides."""
    original = genotype_obs("*1/*1", obs_id="original")
    original["issued"] = "2024-03-02T10:00:00Z"
    corrected = genotype_obs("*4/*4", obs_id="corrected", status="corrected")
    corrected["issued"] = "2024-04-02T10:00:00Z"
    for observations in ((original, corrected), (corrected, original)):
        [card] = cards_for(call, *observations)
        assert card["indicator"] == "critical" and "poor metabolizer" in card["summary"]


def test_a_later_result_that_saw_less_does_not_overrule_the_genotype(call, knowledge):
    """Only a later ultrarapid result over a genotype without copy numbers overrules it. A
    later 'normal' over *1/*2x2 (a panel that did not count copies) is a discordance: the
    genotype's ultrarapid reading is followed, the disagreement stated. A label a former CPIC
    rule gives for the genotype (same report, today's words) leaves the genotype to decide."""
    duplication = genotype_obs("*1/*2x2", obs_id="g", date="2019-01-01")
    later_normal = phenotype_obs("Normal Metabolizer", obs_id="p", date="2023-01-01")
    [card] = cards_for(call, duplication, later_normal)
    assert card["indicator"] == "critical" and "ultrarapid" in card["summary"].lower()
    assert "results disagree" in card["summary"]

    same_report = genotype_obs("*1/*4", obs_id="g2", date="2018-05-01T10:00:00Z")
    label = phenotype_obs("Normal Metabolizer", obs_id="p2", date="2018-05-01T10:00:05Z")
    facts = summarise([same_report, label], "pat-1", knowledge, Trace())
    assert facts["CYP2D6"].phenotype == "Intermediate Metabolizer"

    undated = genotype_obs("*1/*1", obs_id="g3", date=None)
    later_um = phenotype_obs("Ultrarapid Metabolizer", obs_id="p3", date="2024-01-01")
    facts = summarise([undated, later_um], "pat-1", knowledge, Trace())
    # undated: it cannot be "later", so no copy count explains it: both readings stand
    assert facts["CYP2D6"].phenotype == "Normal Metabolizer"
    assert [r.phenotype for r in facts["CYP2D6"].readings] == [
        "Normal Metabolizer",
        "Ultrarapid Metabolizer",
    ]


# -- results looked up by the bytes they were sent as (``summarise_sent``) -------------------


def _sent_facts(knowledge, memo, sent, observations, all_sent=True, patient="pat-1", resolve=None):
    """``summarise_sent`` with a ``read`` that writes a trace line, as the prefetch does;
    the facts, the trace lines, and how many times ``read`` was called."""
    reads = []

    def read():
        reads.append(1)
        trace.add("prefetch", f"genomicResults: {len(observations)} resources prefetched")
        return observations, all_sent

    trace = Trace()
    facts = genomic_facts.summarise_sent(sent, read, patient, knowledge, trace, resolve, memo=memo)
    return facts, trace.lines, len(reads)


def test_results_sent_as_the_same_bytes_are_not_read_again(knowledge, memo):
    results = [genotype_obs("*1/*1xN", obs_id="g1"), phenotype_obs("Ultrarapid Metabolizer")]
    first = _sent_facts(knowledge, memo, b"the bytes", results)
    again = _sent_facts(knowledge, memo, b"the bytes", results)
    assert first[2] == 1 and again[2] == 0  # not read the second time
    assert again[:2] == first[:2]  # the same facts, and the same trace lines: read's too
    assert first[1][0] == ("prefetch", "genomicResults: 2 resources prefetched")
    assert first[0]["CYP2D6"].phenotype == "Ultrarapid Metabolizer"
    plain = _facts(knowledge, results)
    assert (first[0], first[1][1:]) == plain  # what summarise gives, after read's line


def test_results_sent_as_other_bytes_or_for_another_patient_are_read(knowledge, memo):
    ultrarapid = [phenotype_obs("Ultrarapid Metabolizer", patient="pat-1")]
    poor = [phenotype_obs("Poor Metabolizer", patient="pat-1")]
    assert _sent_facts(knowledge, memo, b"one", ultrarapid)[0]["CYP2D6"].actionable
    other = _sent_facts(knowledge, memo, b"two", poor)
    assert other[2] == 1 and other[0]["CYP2D6"].phenotype == "Poor Metabolizer"
    theirs = _sent_facts(knowledge, memo, b"one", ultrarapid, patient="pat-2")
    assert theirs[2] == 1 and "CYP2D6" not in theirs[0]


def test_results_with_a_page_read_or_a_resource_looked_up_are_read_each_time(knowledge, memo):
    """A further page, or a resource a result refers to, comes from the FHIR server: its
    answer can change, so what the bytes summarise to is not kept."""
    results = [phenotype_obs("Ultrarapid Metabolizer")]
    assert [_sent_facts(knowledge, memo, b"p", results, all_sent=False)[2] for _ in "ab"] == [1, 1]
    implication = implication_obs("Poor Metabolizer", obs_id="t1")
    implication["component"] = implication["component"][:-1]
    implication["derivedFrom"] = [{"reference": "Observation/g-remote"}]
    looked_up = []

    def resolve(reference):
        looked_up.append(reference)
        return genotype_obs("*4/*4", obs_id="g-remote")

    for _ in "ab":
        facts, _, reads = _sent_facts(knowledge, memo, b"i", [implication], resolve=resolve)
        assert reads == 1 and facts["CYP2D6"].phenotype == "Poor Metabolizer"
    assert len(looked_up) == 2


def test_results_sent_without_known_bytes_or_memo_are_read_each_time(knowledge, memo):
    results = [phenotype_obs("Ultrarapid Metabolizer")]
    assert [_sent_facts(knowledge, memo, None, results)[2] for _ in "ab"] == [1, 1]
    assert [_sent_facts(knowledge, None, b"x", results)[2] for _ in "ab"] == [1, 1]
    with pytest.raises(ValueError, match="only the knowledge"):
        _sent_facts(knowledge, Memo(Knowledge(default_knowledge_dir())), b"x", results)
