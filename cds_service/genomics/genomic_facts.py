"""Genomic facts: one phenotype per gene (or HLA marker) from the patient's results.

The stage between the patient's data and the recommendations:

* ``result_reading`` reads each Observation (every shape labs and EHRs store) into findings;
* ``gene_decision`` decides one result per gene from them (genotype re-interpreted with
  today's CPIC tables, newest definite result, discrepancies noted);
* ``star_alleles`` and ``hla`` are the grammars for diplotypes and HLA typing.

Every step says in the trace what it used or ignored and why; ``pgx-cds explain`` prints it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

from ..core.trace import Trace
from ..knowledge.loader import Knowledge
from .gene_decision import GeneResult, Reported, combine_haplotypes, decide
from .result_reading import Finding, ResultReader

__all__ = ["GeneResult", "Memo", "Resolver", "summarise", "summarise_sent"]

Resolver = Callable[[str], dict[str, Any] | None]

#: How many Observations' readings are remembered (the same patient's results come back on
#: every order-select while the prescriber picks drugs, and again at order-sign).
READ_CACHE_SIZE = 8192
#: How many whole sets of results are remembered with what they summarise to.
SUMMARY_CACHE_SIZE = 1024
#: Each cache holds at most about this many bytes of keys (the JSON they are looked up by, the
#: patient id and server): a caller sending many large results cannot grow a worker's memory
#: without bound.
CACHE_BYTES = 16 * 1024 * 1024
#: A set of results whose JSON is longer than this is looked up by its SHA-256 instead (what
#: that costs is small beside reading so many results), so that it does not fill the cache.
LONGEST_KEY = 256 * 1024

V = TypeVar("V")


class _Cache(Generic[V]):
    """Least recently used, by exact content (see the keys below), shared by a worker's
    threads: the same JSON read again gives the same findings and the same trace lines.
    At most ``size`` items and ``max_bytes`` of keys (``_weight``)."""

    def __init__(self, size: int, max_bytes: int = CACHE_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple[Any, ...], V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: V) -> None:
        weight = _weight(key)
        if weight > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self._items[key] = value
                return
            self._items[key] = value
            self.bytes += weight
            while len(self._items) > self.size or self.bytes > self.max_bytes:
                oldest, _ = self._items.popitem(last=False)
                self.bytes -= _weight(oldest)


def _weight(key: tuple[Any, ...]) -> int:
    """Roughly the bytes a key holds: its JSON and its texts (a patient id or server URL may
    be as long as a caller likes)."""
    return sum(len(part) for part in key if isinstance(part, bytes | str))


Lines = tuple[Any, ...]


class Memo:
    """What has been read with one knowledge: each Observation's reading, by (context, its
    JSON), and each whole set of results' summary, by (context, their JSON, or its SHA-256
    when long), and by (context, the bytes they were sent as, when known: ``summarise_sent``):
    an ordering session sends the same set with every order-select and again at order-sign.
    It belongs to that knowledge (the engine keeps one for its own): a reading depends on
    everything in it, the site's own result codes included, so another knowledge object
    never shares it (keying by ``id()`` did: Python reuses ids)."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge
        self.readings: _Cache[tuple[tuple[Finding, ...], Lines]] = _Cache(READ_CACHE_SIZE)
        self.summaries: _Cache[tuple[dict[str, GeneResult], Lines]] = _Cache(SUMMARY_CACHE_SIZE)


def _set_key(observations: list[dict[str, Any]]) -> tuple[str, bytes]:
    """The exact JSON itself (a dictionary hashes it without letting go of the interpreter
    lock, as ``hashlib`` does past 2 KB); past ``LONGEST_KEY``, its SHA-256."""
    text = orjson.dumps(observations)
    if len(text) <= LONGEST_KEY:
        return ("json", text)
    return ("sha256", hashlib.sha256(text).digest())


def summarise(
    observations: list[dict[str, Any]],
    patient_id: str,
    knowledge: Knowledge,
    trace: Trace,
    resolve: Resolver | None = None,
    fhir_base: str | None = None,
    needed: frozenset[str] | None = None,
    memo: Memo | None = None,
) -> dict[str, GeneResult]:
    """One result per gene (or HLA marker) from the patient's Observations.

    ``resolve`` reads a referenced Observation (``Observation/id``) that is not among
    ``observations``, e.g. the genotype a 3.0 therapeutic implication is derived from.
    ``fhir_base`` is the request's FHIR server: an absolute subject reference counts only
    when it points there (the same id on another server is another patient). ``needed``:
    the genes (and HLA alleles) the ordered drugs depend on; results for others are not read
    (None: all, as for the patient view and ``explain``). ``memo``: what was read before with
    this knowledge (None: nothing is remembered).
    """
    read = lambda: (observations, True)  # noqa: E731 - (no bytes: looked up by their JSON)
    return summarise_sent(
        None, read, patient_id, knowledge, trace, resolve, fhir_base, needed, memo
    )


def summarise_sent(
    sent: bytes | None,
    read: Callable[[], tuple[list[dict[str, Any]], bool]],
    patient_id: str,
    knowledge: Knowledge,
    trace: Trace,
    resolve: Resolver | None = None,
    fhir_base: str | None = None,
    needed: frozenset[str] | None = None,
    memo: Memo | None = None,
) -> dict[str, GeneResult]:
    """``summarise`` for the results ``read`` gives (the resources, and whether they are all
    what ``sent`` holds), looked up first by ``sent``: the bytes the EHR sent them as, read
    and accepted before (``core.known_json``; None: not known). ``read`` is then called only
    when those bytes were not summarised before; on a hit the trace gets the lines that
    ``read`` and the summary wrote the first time."""
    if memo is not None and memo.knowledge is not knowledge:
        raise ValueError("a Memo serves only the knowledge it was made for")
    context = (patient_id, fhir_base, needed)
    key = (*context, "sent", sent) if memo is not None and sent is not None else None
    hit = memo.summaries.get(key) if memo is not None and key is not None else None
    if hit is not None:
        trace.lines.extend(hit[1])
        return dict(hit[0])
    mark = len(trace.lines)
    observations, all_sent = read()
    results, keep = _remembered(observations, context, knowledge, trace, resolve, memo)
    if memo is not None and key is not None and keep and all_sent:
        memo.summaries.put(key, (dict(results), tuple(trace.lines[mark:])))
    return results


def _remembered(
    observations: list[dict[str, Any]],
    context: tuple[str, str | None, frozenset[str] | None],
    knowledge: Knowledge,
    trace: Trace,
    resolve: Resolver | None,
    memo: Memo | None,
) -> tuple[dict[str, GeneResult], bool]:
    """``summarise``, and whether its answer may be kept (it read no other resource); the
    memo already checked to be of ``knowledge`` (``summarise_sent``)."""
    key = None
    if memo is not None:
        try:
            key = (*context, *_set_key(observations))
        except (TypeError, ValueError, orjson.JSONEncodeError):  # e.g. a huge int: not kept
            key = None
    hit = memo.summaries.get(key) if memo is not None and key is not None else None
    if hit is not None:
        trace.lines.extend(hit[1])
        return dict(hit[0]), True
    mark = len(trace.lines)
    results, looked_up = _summarise(
        observations, context, knowledge, trace, resolve, context[1], memo
    )
    if memo is not None and key is not None and not looked_up:  # (not one that read others)
        memo.summaries.put(key, (dict(results), tuple(trace.lines[mark:])))
    return results, not looked_up


def _summarise(
    observations: list[dict[str, Any]],
    context: tuple[Any, ...],
    knowledge: Knowledge,
    trace: Trace,
    resolve: Resolver | None,
    fhir_base: str | None,
    memo: Memo | None,
) -> tuple[dict[str, GeneResult], bool]:
    """``summarise`` without its cache of sets; and whether any reading looked up another
    resource."""
    patient_id, needed = context[0], context[2]
    # The same result twice (prefetch and a paged search overlapping) is one result.
    unique: dict[str, dict[str, Any]] = {}
    for o in observations:
        if isinstance(o, dict):
            key = f"{o.get('resourceType')}/{o.get('id')}" if o.get("id") else str(id(o))
            unique.setdefault(key, o)
    local = {
        f"Observation/{o.get('id')}": o
        for o in unique.values()
        if o.get("resourceType") == "Observation"
    }

    def lookup(reference: str) -> dict[str, Any] | None:
        key = "/".join(reference.split("/_history/")[0].split("/")[-2:])
        if key in local:
            return local[key]
        return resolve(key) if resolve else None

    reader = ResultReader(patient_id, knowledge, trace, lookup, fhir_base, needed)
    findings: list[Finding] = []
    haplotypes: list[Finding] = []
    looked_up = False
    for obs in unique.values():
        memo_key: tuple[Any, ...] | None = None
        if memo is not None:
            try:
                memo_key = (*context, orjson.dumps(obs))
            except (TypeError, ValueError, orjson.JSONEncodeError):  # e.g. a huge int
                memo_key = None
        hit = memo.readings.get(memo_key) if memo is not None and memo_key is not None else None
        if hit is not None:
            trace.lines.extend(hit[1])
            for finding in hit[0]:
                (haplotypes if finding.kind == "haplotype" else findings).append(finding)
            continue
        mark = len(trace.lines)
        reader.looked_up = False
        # No error is caught here: the reader reads any JSON value as absent or unclear (an
        # unclear result is indeterminate, traced with its reason), so an error is a bug in
        # the service, not the result's fault. It fails the call (a 500, logged at ERROR with
        # where it happened, counted), never quietly becomes "no result", which is no alert.
        interpreted = reader.interpret(obs)
        looked_up = looked_up or reader.looked_up
        if memo is not None and memo_key is not None and not reader.looked_up:  # (not one that
            memo.readings.put(
                memo_key, (tuple(interpreted), tuple(trace.lines[mark:]))
            )  # used others)
        for finding in interpreted:
            (haplotypes if finding.kind == "haplotype" else findings).append(finding)
    findings.extend(combine_haplotypes(haplotypes, findings, knowledge, trace))

    results: dict[str, GeneResult] = {}
    for gene in sorted({f.gene for f in findings}):
        result = decide([f for f in findings if f.gene == gene], knowledge)
        results[gene] = result
        if result.discordant:
            trace.add(
                "facts",
                f"{gene}: results disagree and no change of CPIC's rules explains it: "
                + "; ".join(_reported(r) for r in result.disagreeing)
                + f". Readings: {', '.join(r.phenotype for r in result.readings)}; each "
                "drug follows the riskier one and its card says the results disagree",
            )
        trace.add(
            "facts",
            f"{gene}: {result.phenotype} (from {result.kind} {result.observation})"
            + "".join(f"; {n}" for n in result.notes),
        )
    return results, looked_up


def _reported(r: Reported) -> str:
    """One disagreeing result in a trace line (the lab's words quoted: not logged)."""
    lab = f", lab '{r.performer}'" if r.performer else ""
    score = f", activity score {r.activity_score_text}" if r.activity_score_text else ""
    return (
        f"{r.observation} ({r.kind} '{r.value}' -> {r.phenotype}{score}, "
        f"{r.date_text or 'undated'}{lab})"
    )
