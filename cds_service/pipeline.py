"""One hook call, end to end.

context -> medications -> genomic facts -> medication history (interacting drugs,
continuing therapy) -> interactions (phenoconversion) -> recommendations (with the order's
dose) -> cards, plus label rules (age, and what the chart says: procedures, conditions,
breastfeeding) and pre-test cards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .clinical import (
    cards,
    dose_limits,
    interactions,
    label_rules,
    medication_history,
    medications,
    patient_view,
    recommendations,
    unclear_results,
)
from .clinical.chart import Chart
from .clinical.patient_view import Policy as PatientViewPolicy
from .core.errors import ClientError
from .core.hook_request import HookRequest
from .core.trace import Trace
from .fhir import hook_context, patient_data
from .fhir.addresses import forbidden_host
from .fhir.queries import (
    active_medications_query,
    chart_reads,
    genomic_query,
    medication_statements_query,
    patient_query,
)
from .fhir.session import proxies_for
from .genomics import genomic_facts
from .governance.site_config import SiteConfig, apply
from .knowledge.loader import Knowledge
from .settings import Settings
from .store.call_counts import CallCounts
from .store.card_log import CardLog, IssuedCard, ordering_session

log = logging.getLogger("cds_service")

#: The card log's ``drug`` for the patient-view profile card (it is about no one drug).
PATIENT_VIEW = "patient-view"
#: Told the cards of each call as they are decided: (hook, shown, silent) records.
CardsDecided = Callable[[str, list[IssuedCard], list[IssuedCard]], None]


@dataclass(frozen=True)
class Call:
    """One hook call as the engine's steps share it (typed, instead of four parameters
    threaded through each step): the request, the call's FHIR client (None: prefetch only),
    its trace, the patient id quoted for FHIR queries, and where its cards are logged."""

    request: HookRequest
    client: patient_data.FhirClient | None
    trace: Trace
    patient: str
    service_id: str | None = None
    later: Callable[[Callable[[], None]], None] | None = None


def _fhir_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="fhir")


@dataclass
class Engine:
    """What every call shares: the knowledge, the settings and pooled HTTP connections."""

    knowledge: Knowledge
    settings: Settings
    session: requests.Session = field(default_factory=requests.Session)
    card_log: CardLog | None = None
    #: threads for the FHIR reads of a call that run side by side
    pool: ThreadPoolExecutor = field(default_factory=_fhir_threads)
    site: SiteConfig = field(default_factory=SiteConfig)
    #: the calls and orders judged, for the report's denominator (the service's; None for
    #: ``explain`` and the worklist, which are not hook calls)
    call_counts: CallCounts | None = None
    #: told the cards each call decided, shown and silent (the service's metrics)
    on_cards: CardsDecided | None = None

    def __post_init__(self) -> None:
        #: drugs that get a pre-test card when untested (settings and site file, once)
        self.pretest_drugs = self.site.pretest_drugs(self.knowledge, self.settings.pretest_drug_set)
        #: the results read with this engine's knowledge, remembered (genomic_facts.Memo)
        self.facts_memo = genomic_facts.Memo(self.knowledge)

    def close(self) -> None:
        """Write the call counts, let the FHIR threads go and close pooled connections (when
        the app is closed; the engine still works after, starting new ones)."""
        if self.call_counts is not None:
            self.call_counts.close()
        old, self.pool = self.pool, _fhir_threads()
        old.shutdown(wait=False)
        self.session.close()

    def evaluate(
        self,
        request: HookRequest,
        *,
        read_results: bool = False,
        service_id: str | None = None,
        later: Callable[[Callable[[], None]], None] | None = None,
    ) -> tuple[dict[str, Any], Trace]:
        """Cards for one hook call, and the trace of how they were decided.

        Genomic results are read only when a covered drug is ordered, unless
        ``read_results`` (``pgx-cds explain`` shows them in any case). The cards are written
        to the card log now, or handed to ``later`` (the app: once the answer is sent).
        """
        trace = Trace()
        if self.site.hook_mode(request.hook) == "off":
            trace.add("site", f"hook {request.hook} is off by site configuration: no cards")
            self._count(request, service_id, [], [])
            return {"cards": []}, trace
        session = hook_context.session_orders(request.hook, request.context)
        session = hook_context.judged(session, request.patient_id, trace)
        orders = hook_context.selected(request.hook, request.context, session)
        if len(orders) > MAX_ORDERS:  # bounded work per call (no real order session nears it)
            raise ClientError(
                f"too many draft orders: this service judges at most {MAX_ORDERS} per call",
                details=[{"field": "context", "problem": f"more than {MAX_ORDERS} draft orders"}],
            )
        trace.add("context", f"{len(orders)} order(s) to judge")
        with self._client(request) as client:
            call = Call(
                request, client, trace, quote(request.patient_id, safe=""), service_id, later
            )
            return self._judge(call, orders, session, read_results)

    def _judge(
        self,
        call: Call,
        orders: list[hook_context.DraftOrder],
        session: list[hook_context.DraftOrder],
        read_results: bool,
    ) -> tuple[dict[str, Any], Trace]:
        """``evaluate`` for the ``orders`` it selected, with the call's FHIR client."""
        request, client, trace = call.request, call.client, call.trace
        service_id, later = call.service_id, call.later
        with_medication = self._medication_reader(client, trace)
        orders = [with_medication(o) for o in orders]
        drugs: list[medications.IdentifiedDrug] = []
        for order in orders:
            name = order.reference or order.resource_type or "order"
            if not order.is_medication_order:
                trace.add("medications", f"{name}: not a medication order")
                continue
            found, how = medications.identify(order, self.knowledge)
            trace.add("medications", f"{name}: {how}")
            drugs.extend(d for d in found if d.drug in self.knowledge.covered_drugs)
        if any(self.site.drug_mode(d.drug) == "off" for d in drugs):
            trace.add("site", "drugs switched off by site configuration are not evaluated")
            drugs = [d for d in drugs if self.site.drug_mode(d.drug) != "off"]
        self._count(request, service_id, orders, drugs)
        if not drugs:
            trace.add("medications", "no drug with a pharmacogenomic recommendation: no cards")
            if not read_results:
                return {"cards": []}, trace

        needed = None if read_results else self._genes_for(drugs)
        ordered = {d.drug for d in drugs}
        convertible = self._convertible_genes(drugs)  # genes an inhibitor could change
        uses_label_rules = any(rule.drug in ordered for rule in self.knowledge.label_rules)
        needs_patient, chart_kinds = (
            label_rules.chart_needs(drugs, self.knowledge)
            if uses_label_rules
            else (False, frozenset())
        )
        needs_patient = needs_patient or dose_limits.needs_age(drugs, self.knowledge)
        continuing = ordered & self.knowledge.continuing_drugs  # the history may change them
        # What the FHIR server must give, all asked for at once (one round)
        self._read_ahead(call, bool(convertible) or bool(continuing), needs_patient, chart_kinds)
        facts = self._facts(call, needed)
        genetic_facts = facts
        # genes with a usable result whose phenotype an inhibitor could change
        matter = {g for g in convertible if g in facts and facts[g].actionable}
        history = (
            self._medication_history(call, session)
            if matter or continuing
            else medication_history.MedicationHistory()
        )
        for gene, uses in interactions.find_all(history, self.knowledge, trace, matter).items():
            converted = interactions.phenoconvert(facts[gene], uses, self.knowledge, trace)
            if converted is not facts[gene]:
                facts = {**facts, gene: converted}
        therapies = medication_history.therapies(continuing, history, self.knowledge, trace)
        # (a converted result carries both readings: each drug follows the more severe)
        matched = recommendations.match(drugs, facts, self.knowledge, trace, therapies)
        matched = [label_rules.with_dose(m, self.knowledge, trace) for m in matched]
        notices, person = self._label_notices(call, drugs, needs_patient, chart_kinds)
        matched = [dose_limits.apply(m, person, self.knowledge, trace) for m in matched]
        notices += label_rules.pretest(
            drugs,
            genetic_facts,
            self.knowledge,
            self.pretest_drugs,
            trace,
        )
        # an unclear result is never quieter than none: its own card (an allele not excluded)
        notices += unclear_results.notices(
            drugs, genetic_facts, matched, self.knowledge, self.pretest_drugs, trace
        )
        built = cards.build_cards(matched, self.knowledge, notices, trace)
        return {"cards": self._logged(built, request, service_id, trace, later)}, trace

    def _logged(
        self,
        made: list[cards.BuiltCard],
        request: HookRequest,
        service_id: str | None,
        trace: Trace,
        later: Callable[[Callable[[], None]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Apply the site policy (silent cards are logged, not returned); drop advice already
        overridden for the same order in this session; log the rest (now, or ``later``)."""
        if not made:
            return []  # (no card: nothing to apply, suppress or log)
        built, issued, silent = apply(
            [c.body for c in made], [c.issued for c in made], request.hook, self.site, trace
        )
        if self.card_log is None:
            self._decided(request.hook, issued, silent)
            return built
        session = ordering_session(request.context)
        overridden = self.card_log.overridden(issued, request.patient_id, trace, session)
        if overridden:
            keep = {
                i.uuid for i in issued if (i.recommendation_id, i.order_reference) not in overridden
            }
            for i in issued:
                if i.uuid not in keep:
                    trace.add(
                        "card log",
                        f"{i.recommendation_id} for {i.order_reference}: overridden earlier in "
                        "this ordering session; not shown again",
                    )
            built = [c for c in built if c["uuid"] in keep]
            issued = [i for i in issued if i.uuid in keep]
        self._decided(request.hook, issued, silent)
        self._log_cards(request, service_id, issued, silent, trace, later)
        return built

    def _log_cards(
        self,
        request: HookRequest,
        service_id: str | None,
        issued: list[IssuedCard],
        silent: list[IssuedCard],
        trace: Trace,
        later: Callable[[Callable[[], None]], None] | None,
    ) -> None:
        """Write the call's shown and silent cards to the card log (now, or ``later``)."""
        card_log = self.card_log
        if card_log is None:
            return
        session = ordering_session(request.context)

        def log_cards() -> None:
            for records, shown in ((issued, True), (silent, False)):
                card_log.record(
                    records,
                    hook=request.hook,
                    service_id=service_id or request.hook,
                    patient_id=request.patient_id,
                    knowledge_version=self.knowledge.version,
                    shown=shown,
                    trace=trace,
                    session=session,
                    client=request.client,
                )

        if later is None:
            log_cards()
        else:
            later(log_cards)

    def _decided(self, hook: str, shown: list[IssuedCard], silent: list[IssuedCard]) -> None:
        if self.on_cards is not None and (shown or silent):
            self.on_cards(hook, shown, silent)

    def _count(
        self,
        request: HookRequest,
        service_id: str | None,
        orders: list[hook_context.DraftOrder],
        drugs: list[medications.IdentifiedDrug],
    ) -> None:
        """Count the call and the orders it judged, by covered drug (``call_counts``)."""
        if self.call_counts is None:
            return
        per_drug: dict[str, set[int]] = {}
        for d in drugs:
            per_drug.setdefault(d.drug, set()).add(id(d.order))
        self.call_counts.count(
            request.hook,
            service_id or request.hook,
            len(orders),
            {drug: len(found) for drug, found in per_drug.items()},
        )

    def patient_view(
        self,
        request: HookRequest,
        *,
        service_id: str | None = None,
        later: Callable[[Callable[[], None]], None] | None = None,
        decided: Callable[[patient_view.Decided], None] | None = None,
    ) -> tuple[dict[str, Any], Trace]:
        """The ``patient-view`` hook (no orders): the patient's PGx profile for pain care,
        from the same results, phenoconversion, rows, age and pre-test rules and site policy
        as ``evaluate`` (``patient_view.py``). Its card is logged as the prescribing cards are
        (``drug`` ``patient-view``); a hook the site made ``silent`` logs the card it would
        show without returning it. ``decided`` is told what its card is built from (the
        patient's summary page reads the same decisions)."""
        trace = Trace()
        mode = self.site.hook_mode(request.hook)
        self._count(request, service_id, [], [])
        if mode == "off":
            trace.add("site", f"hook {request.hook} is off by site configuration: no cards")
            return {"cards": []}, trace
        patient = quote(request.patient_id, safe="")
        drugs = patient_view.virtual_orders(self.knowledge)
        # the label rules read what they would for an order of each covered drug
        needs_patient, chart_kinds = label_rules.chart_needs(drugs, self.knowledge)
        with self._client(request) as client:
            call = Call(request, client, trace, patient, service_id, later)
            self._read_ahead(call, True, needs_patient, chart_kinds)
            facts = self._facts(call)
            # (the same history as a prescribing call: every covered drug is judged as ordered)
            continuing = (
                self.knowledge.continuing_drugs
                if self.knowledge.continuing_genes & facts.keys()
                else frozenset()
            )
            matter = {
                g
                for g in self.knowledge.phenoconversion_genes
                if g in facts and facts[g].actionable
            }
            history = (
                self._medication_history(
                    call,
                    hook_context.session_orders(request.hook, request.context),
                )
                if matter or continuing
                else medication_history.MedicationHistory()
            )
            inhibitors = interactions.find_all(history, self.knowledge, trace, matter)
            # (as for an order of each covered drug)
            notices, _ = self._label_notices(call, drugs, needs_patient, chart_kinds)
        therapies = medication_history.therapies(set(continuing), history, self.knowledge, trace)
        notices += label_rules.pretest(drugs, facts, self.knowledge, self.pretest_drugs, trace)
        found_cards = patient_view.build_cards(
            facts,
            inhibitors,
            self.knowledge,
            trace,
            notices=notices,
            # (a silent hook: the card it would show, logged)
            policy=self._patient_view_policy(request.hook, as_shown=mode != "on"),
            pretest_drugs=self.pretest_drugs,
            no_results_card=self.settings.patient_view_no_results_card,
            therapies=therapies,
            decided=decided,
        )
        records = [self._profile_record(card, facts) for card in found_cards]
        if mode != "on":
            trace.add("site", f"hook {request.hook} is {mode} by site configuration: logged only")
            self._decided(request.hook, [], records)
            self._log_cards(request, service_id, [], records, trace, later)
            return {"cards": []}, trace
        self._decided(request.hook, records, [])
        self._log_cards(request, service_id, records, [], trace, later)
        return {"cards": found_cards}, trace

    def _patient_view_policy(self, hook: str, *, as_shown: bool = False) -> PatientViewPolicy:
        """The site's policy for a drug's advice in the patient view, as ``apply`` decides it
        for a prescribing card (mode by drug and gene, the site's indicator); ``as_shown``:
        without the silence of the whole site or hook (the card a silent hook logs)."""
        site = (
            self.site.model_copy(update={"silent": False, "hooks": {**self.site.hooks, hook: "on"}})
            if as_shown
            else self.site
        )

        def policy(
            drug: str, genes: tuple[str, ...], topic: str, level: str | None
        ) -> tuple[str, str | None]:
            record = IssuedCard(
                uuid="",
                drug=drug,
                genes="/".join(genes) or "-",
                phenotype="",
                recommendation_id=topic,
                indicator=level or "info",
                order_reference=None,
            )
            mode = site.card_mode(record, hook)
            return mode, (site.indicator_for(record) if level is not None else None)

        return policy

    def _label_notices(
        self,
        call: Call,
        drugs: list[medications.IdentifiedDrug],
        needs_patient: bool,
        chart_kinds: frozenset[str],
    ) -> tuple[list[label_rules.Notice], dict[str, Any] | None]:
        """The label rules' cards for ``drugs``: the patient (its age) read when a rule (or a
        dose limit) needs it, the chart's resources (``chart_kinds``) when a rule needs them;
        and the patient read (None: not needed or not found)."""
        if not (needs_patient or chart_kinds):
            return [], None
        request, client, trace, patient = call.request, call.client, call.trace, call.patient
        person = None
        if needs_patient:
            found = patient_data.optional_resources(
                request, patient_data.PATIENT, patient_query(patient), client, trace
            )
            person = label_rules.patient_in_context(found, request.patient_id, trace)
        chart = self._chart(call, chart_kinds)
        return label_rules.age_rules(drugs, person, self.knowledge, trace, chart=chart), person

    def _profile_record(
        self, card: dict[str, Any], facts: dict[str, genomic_facts.GeneResult]
    ) -> IssuedCard:
        """What the card log keeps of a patient-view card: the genes with a usable result."""
        usable = sorted(
            g for g, f in facts.items() if f.actionable and g in self.knowledge.covered_genes
        )
        topic = ((card.get("source") or {}).get("topic") or {}).get("code") or PATIENT_VIEW
        return IssuedCard(
            uuid=card["uuid"],
            drug=PATIENT_VIEW,
            genes="/".join(usable),
            phenotype="; ".join(f"{g} {facts[g].phenotype}" for g in usable) or "no result",
            recommendation_id=str(topic),
            indicator=str(card.get("indicator", "info")),
            order_reference=None,
        )

    def _facts(
        self, call: Call, needed: frozenset[str] | None = None
    ) -> dict[str, genomic_facts.GeneResult]:
        """One result per gene from the patient's genomic results (prefetch, else FHIR);
        prefetched bytes already summarised are not read again."""
        request, client, trace, patient = call.request, call.client, call.trace, call.patient
        query = genomic_query(self.knowledge, patient)
        return genomic_facts.summarise_sent(
            patient_data.sent_results(request),
            lambda: patient_data.genomic_results(request, query, client, trace),
            request.patient_id,
            self.knowledge,
            trace,
            _resolver(client, trace),
            fhir_base=request.fhirServer,
            needed=needed,
            memo=self.facts_memo,
        )

    def _read_ahead(
        self,
        call: Call,
        medications_needed: bool,
        patient_needed: bool,
        chart: frozenset[str] = frozenset(),
    ) -> None:
        """Start every read the call needs that was not prefetched (the genomic results; the
        orders on file and the medication list, for phenoconversion and continuing therapy;
        the patient for age rules; the ``chart`` sources of the label rules' findings) at once:
        they run side by side, within one deadline, and each is taken where it is used (or
        dropped, if no rule needs it)."""
        request, client, patient = call.request, call.client, call.patient
        prefetched = request.prefetch or {}
        if client is None:
            return
        wanted: list[str] = []
        if patient_data.GENOMIC_RESULTS not in prefetched:
            wanted.append(genomic_query(self.knowledge, patient))
        if patient_data.ACTIVE_MEDICATIONS not in prefetched and medications_needed:
            wanted.append(active_medications_query(patient))
        if patient_data.MEDICATION_STATEMENTS not in prefetched and medications_needed:
            wanted.append(medication_statements_query(patient))
        if patient_data.PATIENT not in prefetched and patient_needed:
            wanted.append(patient_query(patient))
        reads = chart_reads(self.knowledge, patient)
        wanted += [reads[k][1] for k in sorted(chart) if reads[k][0] not in prefetched]
        client.send_ahead(wanted, self.pool)

    def _chart(self, call: Call, kinds: frozenset[str]) -> Chart:
        """The chart sources of the label rules (``kinds``), each taken when a rule first
        needs it (prefetch, else the read sent ahead), and a reader for the Condition or
        Procedure an order's reason references (on the request's FHIR server, a few a call)."""
        request, client, trace, patient = call.request, call.client, call.trace, call.patient
        reads = chart_reads(self.knowledge, patient)
        loaders = {
            kind: partial(
                patient_data.optional_resources,
                request,
                reads[kind][0],
                reads[kind][1],
                client,
                trace,
                first_page=True,
            )
            for kind in kinds
        }
        readers = {
            kind: _reference_reader(client, trace, "label rules", kind)
            for kind in ("Condition", "Procedure")
        }

        def resolve(reference: str) -> dict[str, Any] | None:
            if client is not None and reference.startswith(client.base_url):
                reference = reference[len(client.base_url) :]  # absolute, on this server
            read = readers.get(reference.split("/")[0])
            return read(reference, "an order's reason") if read is not None else None

        return Chart(request.patient_id, request.fhirServer, loaders, resolve)

    def _genes_for(self, drugs: list[medications.IdentifiedDrug]) -> frozenset[str]:
        """The genes and HLA alleles the ordered drugs' rows and pre-test cards depend on."""
        genes = {
            g for d in drugs for r in self.knowledge.recommendations_for(d.drug) for g in r.when
        }
        genes |= {
            self.knowledge.pretest.drugs[d.drug].test
            for d in drugs
            if d.drug in self.knowledge.pretest.drugs
        }
        return frozenset(genes)

    def _convertible_genes(self, drugs: list[medications.IdentifiedDrug]) -> set[str]:
        """The genes the ordered drugs' rows use that an inhibitor can change."""
        return {
            g
            for d in drugs
            for r in self.knowledge.recommendations_for(d.drug)
            for g in r.when
            if g in self.knowledge.phenoconversion_genes
        }

    def _medication_history(
        self, call: Call, session: list[hook_context.DraftOrder]
    ) -> medication_history.MedicationHistory:
        """The patient's medication records: the orders on file and the medication list
        (prefetch, else the FHIR server; each may be missing, and the trace says so) and the
        other draft orders of this ordering ``session``."""
        request, client, trace, patient = call.request, call.client, call.trace, call.patient
        orders = patient_data.optional_resources(
            request,
            patient_data.ACTIVE_MEDICATIONS,
            active_medications_query(patient),
            client,
            trace,
        )
        statements = patient_data.optional_resources(
            request,
            patient_data.MEDICATION_STATEMENTS,
            medication_statements_query(patient),
            client,
            trace,
        )
        return medication_history.history(
            orders, statements, session, request.patient_id, request.fhirServer
        )

    def check_fhir_server(self, request: HookRequest, issuer: str | None = None) -> None:
        """The request's fhirServer is one we may send the EHR's token to (403 otherwise):
        never a link-local or metadata host, and on the allow-list (the authenticated
        ``issuer``'s own, when it has one). A server the environment's egress proxy
        (``HTTPS_PROXY``...) would be asked for must be listed even without authentication:
        the proxy resolves the name where the address guard cannot see it. Callers check
        before ``evaluate``."""
        url = request.fhirServer
        if not url:
            return
        host = urlsplit(url).hostname or ""
        reason = None
        if forbidden_host(host):
            reason = "a link-local or metadata address"
        elif not self.settings.fhir_server_allowed(url, issuer):
            reason = "not on the allow-list"
        elif proxies_for(url) and not self.settings.fhir_server_listed(url, issuer):
            reason = "not on the allow-list, and read through the egress proxy"
        if reason:
            # the reason, not the host: the caller chose it (it could be any text)
            log.info("refused the request's fhirServer: %s", reason)
            raise ClientError(
                "the request's fhirServer is not one this service may query (PGX_CDS_FHIR_SERVERS)",
                status=403,
            )

    @contextmanager
    def _client(self, request: HookRequest) -> Iterator[patient_data.FhirClient | None]:
        """The call's FHIR client (None without a fhirServer); at the end, the reads it
        started ahead that nobody took are dropped (``FhirClient.close``)."""
        if not request.fhirServer:
            yield None
            return
        client = patient_data.FhirClient(
            request.fhirServer,
            request.access_token,
            timeout=self.settings.fhir_timeout,
            max_pages=self.settings.fhir_max_pages,
            session=self.session,
            budget=self.settings.fhir_budget,
            max_bytes=self.settings.fhir_max_bytes,
        )
        try:
            yield client
        finally:
            client.close()

    @staticmethod
    def _medication_reader(
        client: patient_data.FhirClient | None, trace: Trace
    ) -> Callable[[hook_context.DraftOrder], hook_context.DraftOrder]:
        """Reads the Medication an order references when the client did not send it: on the
        request's FHIR server only, each at most once, a few per call."""
        read = _reference_reader(client, trace, "medications", "Medication")

        def with_medication(order: hook_context.DraftOrder) -> hook_context.DraftOrder:
            ref = order.medication_reference or ""
            if client is not None and ref.startswith(client.base_url):
                ref = ref[len(client.base_url) :]  # absolute reference on this server
            if read is None or not order.is_medication_order or order.coded_medication is not None:
                return order
            found = read(ref, order.reference or "an order")
            return order.with_medication(found, ref) if found else order

        return with_medication


MAX_REFERENCE_READS = 5


MAX_ORDERS = 100


def _resolver(
    client: patient_data.FhirClient | None, trace: Trace
) -> Callable[[str], dict[str, Any] | None] | None:
    """Reads referenced Observations (``derivedFrom``) the search did not return, a few at most."""
    read = _reference_reader(client, trace, "fetch", "Observation")
    if read is None:
        return None
    return lambda reference: read(reference, "a result")


def _reference_reader(
    client: patient_data.FhirClient | None, trace: Trace, stage: str, resource_type: str
) -> Callable[[str, str], dict[str, Any] | None] | None:
    """Reads resources of ``resource_type`` by relative reference on the request's FHIR server:
    each at most once, at most ``MAX_REFERENCE_READS`` a call; None without a server."""
    if client is None:
        return None
    reads: dict[str, dict[str, Any] | None] = {}

    def read(reference: str, referenced_by: str) -> dict[str, Any] | None:
        if reference in reads:
            return reads[reference]
        if len(reads) >= MAX_REFERENCE_READS or not reference.startswith(f"{resource_type}/"):
            return None
        try:
            reads[reference] = client.read(reference)
            trace.add(stage, f"read {reference} (referenced by {referenced_by})")
        except patient_data.FhirUnavailable as exc:
            trace.add(stage, f"could not read {reference}: {exc}")
            reads[reference] = None
        return reads[reference]

    return read
