"""The worklist's reads of the FHIR server: searches page by page, each page one bounded read.

Every page is read as the hooks read: through ``fhir.patient_data.FhirClient`` (the guarded
session: no link-local or metadata address; next links only under the FHIR base; no
redirects; the bearer token nowhere else), within ``PGX_CDS_FHIR_TIMEOUT`` per socket read,
``PGX_CDS_FHIR_BUDGET`` for the read and ``PGX_CDS_FHIR_MAX_BYTES``. All of a run's reads
share its own, longer budget (``PGX_CDS_WORKLIST_BUDGET``, ``--budget``) and a search has at
most ``--max-pages`` pages. Nothing here writes.

The server's CapabilityStatement says what it supports: ``_include`` is only asked for where
it is declared, and resource types it lists without search are not searched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from ..fhir.patient_data import FhirClient, FhirUnavailable, bundle_resources, next_link
from ..fhir.values import as_dict, as_str, objects
from ..settings import Settings

#: Resources asked for per page (servers may give fewer).
PAGE_SIZE = 100
#: The longest query a search is given: servers and proxies refuse long URLs (8 KB is a
#: common limit; this leaves room for the base and the parameters a next link adds).
MAX_QUERY = 2000
#: Patients one batched search names at most.
PATIENTS_PER_SEARCH = 50
#: How often a long search says how far it is (pages).
PROGRESS_EVERY = 20


class OutOfTime(Exception):
    """The run's budget is spent: what was read so far is all there is."""


class SearchFailed(Exception):
    """A search could not be read whole; the message says which and why (no patient data)."""


class _PageClient(FhirClient):
    """``FhirClient``'s guarded, bounded read of one answer, its deadline set per read."""

    def page(self, url: str, deadline: float, expect: str = "Bundle") -> dict[str, Any]:
        self.deadline = deadline
        return self._get(url, expect=expect)


class Reader:
    """One run's reads of one FHIR server."""

    def __init__(
        self,
        base: str,
        token: str | None,
        settings: Settings,
        session: requests.Session,
        *,
        budget: float,
        max_pages: int,
        progress: Callable[[str], None],
    ) -> None:
        self.client = _PageClient(
            base,
            token,
            timeout=settings.fhir_timeout,
            max_pages=max_pages,
            session=session,
            budget=settings.fhir_budget,
            max_bytes=settings.fhir_max_bytes,
        )
        self.base = self.client.base_url  # ends with "/"
        self.token = token
        self.session = session
        self.settings = settings
        self.read_budget = settings.fhir_budget
        self.deadline = time.monotonic() + budget
        self.max_pages = max_pages
        self.progress = progress
        self.pages = 0  # pages read in this run

    def left(self) -> float:
        """Seconds left of the run's budget."""
        return self.deadline - time.monotonic()

    def read_deadline(self) -> float:
        """The deadline of one read: the hooks' budget, never past the run's end."""
        left = self.left()
        if left <= 0:
            raise OutOfTime("the run's time budget (--budget) is spent")
        return time.monotonic() + min(self.read_budget, left)

    def search(self, query: str, what: str) -> list[dict[str, Any]]:
        """Every resource of ``query`` (``Type?params``), following next links."""
        return [r for page in self.pages_of(query, what) for r in page]

    def pages_of(self, query: str, what: str) -> Iterator[list[dict[str, Any]]]:
        """The resources of ``query``, a page at a time."""
        url: str | None = self.base + query
        pages = found = 0
        while url:
            if pages >= self.max_pages:
                raise SearchFailed(
                    f"{what}: more than {self.max_pages} pages (raise --max-pages or "
                    "PGX_CDS_WORKLIST_MAX_PAGES)"
                )
            deadline = self.read_deadline()
            try:
                bundle = self.client.page(url, deadline)
            except FhirUnavailable as exc:
                if self.left() <= 0:
                    raise OutOfTime("the run's time budget (--budget) is spent") from None
                raise SearchFailed(f"{what}: {exc}") from None
            pages += 1
            self.pages += 1
            resources = bundle_resources(bundle)
            found += len(resources)
            yield resources
            url = next_link(bundle)
            if url and pages % PROGRESS_EVERY == 0:
                self.progress(f"{what}: {pages} pages, {found} resources so far")

    def capabilities(self) -> Capabilities:
        """What the server says it supports (``metadata``); unread, nothing is assumed."""
        try:
            statement = self.client.page(
                self.base + "metadata", self.read_deadline(), expect="CapabilityStatement"
            )
        except FhirUnavailable:
            return Capabilities(None)
        return Capabilities.of(statement)


@dataclass(frozen=True)
class Capabilities:
    """The server's resource types and their search features, as its CapabilityStatement
    lists them; ``resources`` None: it lists none (every search is tried, no ``_include``)."""

    resources: dict[str, dict[str, Any]] | None

    @classmethod
    def of(cls, statement: dict[str, Any]) -> Capabilities:
        listed: dict[str, dict[str, Any]] = {}
        for rest in objects(statement.get("rest")):
            if as_str(rest.get("mode")) not in ("", "server"):
                continue
            for resource in objects(rest.get("resource")):
                if as_str(resource.get("type")):
                    listed[resource["type"]] = resource
        return cls(listed or None)

    def searchable(self, resource_type: str) -> bool:
        """May ``resource_type`` be searched (listed with search-type, or no list at all)?"""
        if self.resources is None:
            return True
        resource = self.resources.get(resource_type)
        if resource is None:
            return False
        interactions = [as_str(i.get("code")) for i in objects(resource.get("interaction"))]
        return not interactions or "search-type" in interactions

    def include(self, resource_type: str, *params: str) -> str | None:
        """The first of ``params`` (``MedicationRequest:subject``, …) the server declares it
        can ``_include`` with ``resource_type``; None when it declares none of them."""
        if self.resources is None:
            return None
        declared = as_dict(self.resources.get(resource_type)).get("searchInclude")
        names = {as_str(v) for v in declared} if isinstance(declared, list) else set()
        for param in params:
            if param in names or "*" in names:
                return param
        return None


def joined(prefix: str, name: str, values: list[str], suffix: str = "") -> list[str]:
    """``prefix`` + ``name=v1,v2,…`` + ``suffix`` as few times as keep each query within
    ``MAX_QUERY`` characters (a value longer than that alone gets a search of its own).
    ``values`` must be URL-safe already (no ``,`` ``&`` ``#``)."""
    room = MAX_QUERY - len(prefix) - len(name) - 1 - len(suffix)
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for value in values:
        if chunk and size + len(value) + 1 > room:
            out.append(f"{prefix}{name}={','.join(chunk)}{suffix}")
            chunk, size = [], 0
        chunk.append(value)
        size += len(value) + 1
    if chunk:
        out.append(f"{prefix}{name}={','.join(chunk)}{suffix}")
    return out
