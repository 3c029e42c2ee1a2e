"""The patient's genomic results: from prefetch, else from the EHR's FHIR server.

Prefetch keys follow CDS Hooks 2.0.1: a key that is absent was not prefetched (we query
the FHIR server ourselves); ``null`` means the client has no such data (nothing to
fetch); an OperationOutcome means the client failed (we query ourselves). When the data
can be neither read nor fetched, the answer is 412 with a body naming what is missing.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from ..core.errors import PreconditionFailed
from ..core.hook_request import HookRequest
from ..core.json_limits import loads_finite_json
from ..core.known_json import Unread
from ..core.trace import Trace
from .limits import FetchFailed
from .reads import Sent, bounded_get, send_get, wait_for

GENOMIC_RESULTS = "genomicResults"
UNREADABLE = "the FHIR server could not be read"
DEFAULT_BUDGET = 2.0
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# A relative FHIR reference: resource type, then an id of FHIR id characters.
REFERENCE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")

log = logging.getLogger("cds_service.fhir")


class FhirUnavailable(Exception):
    """The FHIR server could not be read; the message is fit for the caller (it never holds
    the remote status or connection error: those go to the log)."""


def under_base(url: str, base: str) -> bool:
    """``url`` is on the server of ``base`` and, path segments resolved, under its path."""
    try:
        u, b = urlsplit(url), urlsplit(base)
        u_port, b_port = u.port, b.port
    except ValueError:
        return False
    defaults = {"http": 80, "https": 443}
    if (
        u.scheme.lower() != b.scheme.lower()
        or u.username is not None
        or u.password is not None
        or (u.hostname or "") != (b.hostname or "")
        or (u_port or defaults.get(u.scheme.lower())) != (b_port or defaults.get(b.scheme.lower()))
    ):
        return False
    path = unquote(u.path)
    if "\\" in path or any(seg in (".", "..") for seg in path.split("/")):
        return False
    return u.path.startswith(b.path.rstrip("/") + "/")


def valid_reference(reference: str) -> bool:
    """``Type/id`` with FHIR id characters (``..`` is no id)."""
    return bool(REFERENCE.match(reference)) and reference.split("/")[1] not in (".", "..")


@functools.lru_cache(maxsize=512)
def _wire_param(param: str) -> str:
    """``name=value`` with the value percent-encoded (commas, FHIR's "or", and escapes kept)."""
    name, mark, value = param.partition("=")
    return f"{name}={quote(value, safe=',%')}" if mark else param


class FhirClient:
    """Minimal read-only FHIR client: bearer token, page bound, and one time budget and a
    size cap for all its reads (one client serves one hook call)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float,
        max_pages: int,
        session: requests.Session | None = None,
        budget: float = DEFAULT_BUDGET,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._token = token
        self.timeout = timeout
        self.max_pages = max_pages
        self.session = session or requests.Session()
        self.deadline = time.monotonic() + budget
        self.budget = budget
        self.max_bytes = max_bytes
        self._sent: dict[str, Sent] = {}  # reads started ahead (``send_ahead``), by URL

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    def search_url(self, query: str) -> str:
        """The URL of a search (``Type?params``) as sent: each parameter's value
        percent-encoded (``code=http%3A%2F%2Floinc.org%7C…``). Servers read both forms alike,
        but a proxy in front of one may not: the SMART launcher's FHIR proxy collapses the
        ``//`` of a system URI left as written, and the search then finds nothing."""
        kind, mark, params = query.partition("?")
        if not mark:
            return self.base_url + query
        return f"{self.base_url}{kind}?{'&'.join(_wire_param(p) for p in params.split('&'))}"

    def send_ahead(self, queries: Iterable[str], pool: Executor) -> None:
        """Start the reads of ``queries`` (searches ``Type?…``, reads ``Type/id``) now, all at
        once (``reads.send_get``); ``search`` or ``read`` of the same query later takes
        its answer. What is not taken is dropped by ``close``."""
        for query in queries:
            url = self.search_url(query)
            if (
                url in self._sent
                or ("?" not in query and not valid_reference(query))
                or not under_base(url, self.base_url)  # (``_get`` would refuse it)
            ):
                continue
            self._sent[url] = send_get(self.session, url, pool=pool, **self._bounds())

    def close(self) -> None:
        """Drop the reads started ahead that nobody took (their connections are closed)."""
        while self._sent:
            self._sent.popitem()[1].discard()

    def _bounds(self) -> dict[str, Any]:
        """Each read's headers (the token) and bounds: the call's deadline, the size cap, the
        timeout of one socket read."""
        headers = {"Accept": "application/fhir+json, application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return {
            "headers": headers,
            "deadline": self.deadline,
            "max_bytes": self.max_bytes,
            "timeout": self.timeout,
        }

    def search(self, query: str, trace: Trace, *, first_page: bool = False) -> list[dict[str, Any]]:
        """All resources of a search (``Type?params``), following ``next`` within the bound;
        with ``first_page``, those of its first page only (a search sorted newest first)."""
        if not first_page:
            return self.follow(self.search_url(query), trace)
        found = bundle_resources(self._get(self.search_url(query)))
        trace.add("fetch", f"read {len(found)} resources (first page of {query.split('?')[0]})")
        return found

    def read(self, reference: str) -> dict[str, Any]:
        """One resource by relative reference (``Observation/123``)."""
        if not valid_reference(reference):
            raise FhirUnavailable("the reference is not a valid 'Type/id'")
        return self._get(self.base_url + reference, expect=reference.split("/")[0])

    def follow(self, url: str, trace: Trace, pages: int = 0) -> list[dict[str, Any]]:
        resources: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url:
            if pages >= self.max_pages:
                trace.add("fetch", f"stopped after {self.max_pages} pages (PGX_CDS_FHIR_MAX_PAGES)")
                raise FhirUnavailable(f"more than {self.max_pages} pages of results")
            bundle = self._get(next_url)
            pages += 1
            resources.extend(bundle_resources(bundle))
            next_url = next_link(bundle)
        trace.add("fetch", f"read {len(resources)} resources in {pages} page(s)")
        return resources

    def _get(self, url: str, expect: str = "Bundle") -> dict[str, Any]:
        if not under_base(url, self.base_url):
            # Never send the token anywhere but under the request's fhirServer.
            log.warning("refused a FHIR URL outside the fhirServer base (%s)", expect)
            raise FhirUnavailable("a link or reference points outside the FHIR server")
        sent = self._sent.pop(url, None)
        try:
            # No redirects: the token goes to the FHIR server the request names, nowhere else.
            if sent is not None:
                wait_for(sent, self._sent.values())
                status, raw = sent.result()
            else:
                status, raw = bounded_get(self.session, url, **self._bounds())
        except FetchFailed as exc:
            log.warning("FHIR read of %s failed: %s", expect, exc)
            raise FhirUnavailable(UNREADABLE) from None
        if status != 200:
            log.warning("FHIR read of %s: HTTP %s", expect, status)
            raise FhirUnavailable(UNREADABLE)
        try:
            body = loads_finite_json(raw)
        except (ValueError, RecursionError):
            log.warning("FHIR read of %s: the answer is not JSON", expect)
            raise FhirUnavailable(UNREADABLE) from None
        if not isinstance(body, dict) or body.get("resourceType") != expect:
            log.warning("FHIR read of %s: the answer is not a %s", expect, expect)
            raise FhirUnavailable(UNREADABLE)
        return body


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def bundle_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in _list(bundle.get("entry")):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") != "OperationOutcome":
            out.append(resource)
    return out


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in _list(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def is_operation_outcome(value: Any) -> bool:
    """Did the client report that it could not fulfil the prefetch (an OperationOutcome, or a
    Bundle of nothing else)? A search Bundle whose outcomes only say how the search went
    (``search.mode`` "outcome", none an error: Epic answers an empty search with one warning,
    "Resource request returns no results") is an empty result, not a failure."""
    if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
        return True
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        # only OperationOutcomes, at least one (the first other resource settles it)
        seen = failed = False
        for entry in _list(value.get("entry")):
            if not isinstance(entry, dict):
                continue
            resource = entry.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
                return False
            seen = True
            failed = failed or not _search_note(entry, resource)
        return seen and failed
    return False


def _search_note(entry: dict[str, Any], outcome: dict[str, Any]) -> bool:
    """An OperationOutcome a search returns about itself, with no error in it."""
    search = entry.get("search")
    if not isinstance(search, dict) or search.get("mode") != "outcome":
        return False
    severities = {
        issue.get("severity") for issue in _list(outcome.get("issue")) if isinstance(issue, dict)
    }
    return bool(severities) and severities <= {"information", "warning"}


def sent_results(request: HookRequest) -> bytes | None:
    """The bytes the genomic results were prefetched as, when the web edge left them unread
    (``core.known_json``: the same bytes were read and accepted before); else None."""
    value = (request.prefetch or {}).get(GENOMIC_RESULTS)
    return value.raw if isinstance(value, Unread) else None


def genomic_results(
    request: HookRequest, query: str, client: FhirClient | None, trace: Trace
) -> tuple[list[dict[str, Any]], bool]:
    """The patient's genomic result resources (unfiltered: ``genomic_facts`` judges them),
    and whether they are all the prefetch's own (no further page, no FHIR search).

    ``query`` is the prefetch template with the patient filled in; ``client`` is None when
    the request gave no ``fhirServer``.
    """
    prefetch = request.prefetch or {}
    reason: str
    if GENOMIC_RESULTS in prefetch:
        value = prefetch[GENOMIC_RESULTS]
        if isinstance(value, Unread):
            value = value.value()
        if value is None:
            trace.add("prefetch", f"{GENOMIC_RESULTS} is null: the client has no genomic results")
            return [], True
        if is_operation_outcome(value):
            reason = f"the client reported an error for prefetch '{GENOMIC_RESULTS}'"
        elif isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources = bundle_resources(value)
            trace.add("prefetch", f"{GENOMIC_RESULTS}: {len(resources)} resources prefetched")
            more = next_link(value)
            if more:
                if client is None:
                    raise PreconditionFailed(
                        f"prefetch '{GENOMIC_RESULTS}' has more pages but the request names no "
                        "fhirServer",
                        missing=[GENOMIC_RESULTS],
                    )
                try:
                    resources += client.follow(more, trace, pages=1)
                except FhirUnavailable as exc:
                    raise PreconditionFailed(
                        f"could not read the remaining pages of prefetch '{GENOMIC_RESULTS}': "
                        f"{exc}",
                        missing=[GENOMIC_RESULTS],
                    ) from None
            return resources, not more
        elif isinstance(value, list):
            return [r for r in value if isinstance(r, dict)], True
        elif isinstance(value, dict) and value.get("resourceType"):
            return [value], True
        else:
            reason = f"prefetch '{GENOMIC_RESULTS}' is neither a Bundle nor a resource"
        trace.add("prefetch", f"{reason}; querying the FHIR server instead")
    else:
        reason = f"prefetch '{GENOMIC_RESULTS}' was not provided"
        trace.add("prefetch", f"{reason}; querying the FHIR server")

    if client is None:
        raise PreconditionFailed(
            f"{reason} and the request names no fhirServer to query", missing=[GENOMIC_RESULTS]
        )
    try:
        return client.search(query, trace), False
    except FhirUnavailable as exc:
        raise PreconditionFailed(f"{reason} and {exc}", missing=[GENOMIC_RESULTS]) from None


ACTIVE_MEDICATIONS = "activeMedications"
MEDICATION_STATEMENTS = "medicationStatements"
PATIENT = "patient"
#: the label rules' chart reads (``queries.chart_reads``)
RECENT_PROCEDURES = "recentProcedures"
ACTIVE_CONDITIONS = "activeConditions"
BREASTFEEDING_STATUS = "breastfeedingStatus"


def optional_resources(
    request: HookRequest,
    key: str,
    query: str,
    client: FhirClient | None,
    trace: Trace,
    *,
    first_page: bool = False,
) -> list[dict[str, Any]] | None:
    """Resources of a prefetch key the service can work without (the patient, their active
    medications, their medication list, the label rules' chart reads): from prefetch, else
    from the FHIR server; None when neither has them (the cards that need them are then not
    given, and the trace says so). ``first_page``: a search sorted newest first is read one
    page only."""
    prefetch = request.prefetch or {}
    if key in prefetch:
        value = prefetch[key]
        if value is None:
            trace.add("prefetch", f"{key} is null: the client has no such data")
            return []
        if isinstance(value, dict) and not is_operation_outcome(value):
            if value.get("resourceType") == "Bundle":
                resources = bundle_resources(value)
                trace.add("prefetch", f"{key}: {len(resources)} resources prefetched")
                return resources
            if value.get("resourceType"):
                return [value]
        if isinstance(value, list):
            return [r for r in value if isinstance(r, dict)]
        trace.add("prefetch", f"prefetch '{key}' is unusable; querying the FHIR server")
    if client is None:
        trace.add("prefetch", f"{key} not prefetched and no fhirServer: not used")
        return None
    try:
        if "?" in query:
            return client.search(query, trace, first_page=first_page)
        resource = client.read(query)
        trace.add("fetch", f"read {query.split('/')[0]}")
        return [resource]
    except FhirUnavailable as exc:
        trace.add("fetch", f"{key} could not be read ({exc}): not used")
        return None
