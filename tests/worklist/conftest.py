"""A FHIR server in memory behind ``responses`` for the worklist's unit tests: searches by the
parameters the worklist sends, paging with next links, conditional create of Tasks; every
request kept for the tests to look at."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import responses

from cds_service.fhir.session import guarded_session
from cds_service.governance.site_config import SiteConfig
from cds_service.knowledge.loader import Knowledge
from cds_service.pipeline import Engine
from cds_service.settings import Settings

BASE = "https://ehr.example.org/fhir"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TOKEN = "worklist-secret-token"


def _ids(value: str) -> set[str]:
    return {v.split("/")[-1] for v in value.split(",")}


def _codes(resource: dict[str, Any]) -> set[str]:
    """Each coding's code, alone and with its system (a token search matches either)."""
    concept = resource.get("medicationCodeableConcept") or resource.get("code") or {}
    codings = concept.get("coding", [])
    return {c.get("code") for c in codings} | {
        f"{c.get('system')}|{c.get('code')}" for c in codings
    }


def _subject(resource: dict[str, Any]) -> str:
    return (resource.get("subject") or resource.get("patient") or {}).get("reference", "")


def _matches(resource: dict[str, Any], name: str, value: str) -> bool:
    name = name.split(":")[0]
    if name in ("_count", "_offset", "_include", "_lastUpdated"):
        return True
    if name == "code":
        return bool(_codes(resource) & set(value.split(",")))
    if name == "status":
        return resource.get("status") in value.split(",")
    if name in ("patient", "subject"):
        return _subject(resource).split("/")[-1] in _ids(value)
    if name == "_id":
        return resource.get("id") in value.split(",")
    if name == "medication":
        ref = (resource.get("medicationReference") or {}).get("reference", "")
        return ref in value.split(",")
    if name == "identifier":
        wanted = {v.replace("\\", "") for v in value.split(",")}
        have = {f"{i['system']}|{i['value']}" for i in resource.get("identifier", [])}
        return bool(wanted & have)
    raise AssertionError(f"the fake FHIR server does not know the search parameter {name}")


@dataclass
class FakeFhir:
    resources: list[dict[str, Any]] = field(default_factory=list)
    capability: dict[str, Any] = field(
        default_factory=lambda: {"resourceType": "CapabilityStatement", "rest": []}
    )
    page_size: int = 100  # at most, whatever _count says
    fail: Callable[[str], int | None] = lambda url: None  # a status to answer instead
    next_url: str | None = None  # a next link to give instead of the real one
    requests: list[Any] = field(default_factory=list)

    def add(self, *resources: dict[str, Any]) -> None:
        self.resources.extend(resources)

    def searches(self, resource_type: str) -> list[str]:
        """The query strings (decoded) of the searches of ``resource_type`` sent so far."""
        prefix = f"{BASE}/{resource_type}?"
        return [unquote(r.url[len(prefix) :]) for r in self.requests if r.url.startswith(prefix)]

    def _answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.requests.append(request)
        failure = self.fail(request.url)
        if failure:
            return failure, {}, json.dumps({"resourceType": "OperationOutcome"})
        path = urlsplit(request.url).path.removeprefix(urlsplit(BASE).path).strip("/")
        if request.method == "POST":
            return self._create(request, path)
        if path == "metadata":
            return 200, {}, json.dumps(self.capability)
        params = parse_qsl(urlsplit(request.url).query)
        found = [
            r
            for r in self.resources
            if r["resourceType"] == path and all(_matches(r, n, v) for n, v in params)
        ]
        query = dict(params)
        included = self._included(found, query.get("_include", ""))
        count = min(int(query.get("_count", self.page_size)), self.page_size)
        offset = int(query.get("_offset", 0))
        page = found[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"resource": r} for r in page + included],
        }
        if self.next_url:
            bundle["link"] = [{"relation": "next", "url": self.next_url}]
        elif offset + count < len(found):
            rest = "&".join(f"{n}={v}" for n, v in params if n != "_offset")
            bundle["link"] = [
                {"relation": "next", "url": f"{BASE}/{path}?{rest}&_offset={offset + count}"}
            ]
        return 200, {}, json.dumps(bundle)

    def _included(self, found: list[dict[str, Any]], include: str) -> list[dict[str, Any]]:
        if not include.endswith((":subject", ":patient")):
            return []
        ids = {_subject(r).split("/")[-1] for r in found}
        return [r for r in self.resources if r["resourceType"] == "Patient" and r["id"] in ids]

    def _create(self, request: Any, path: str) -> tuple[int, dict[str, str], str]:
        resource = json.loads(request.body)
        condition = request.headers.get("If-None-Exist")
        if condition:
            name, _, value = condition.partition("=")
            if any(
                r["resourceType"] == path and _matches(r, name, unquote(value))
                for r in self.resources
            ):
                return 200, {}, "{}"
        resource["id"] = f"task-{len(self.resources)}"
        self.resources.append(resource)
        return 201, {}, json.dumps(resource)


@pytest.fixture
def fhir() -> Iterator[FakeFhir]:
    fake = FakeFhir()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        pattern = re.compile(re.escape(BASE) + r"(/.*)?$")
        mock.add_callback(responses.GET, pattern, callback=fake._answer)
        mock.add_callback(responses.POST, pattern, callback=fake._answer)
        yield fake


@pytest.fixture
def engine(knowledge: Knowledge, tmp_path) -> Engine:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    return Engine(knowledge, settings, session=guarded_session(), site=SiteConfig())


def with_site(engine: Engine, site: SiteConfig) -> Engine:
    return Engine(engine.knowledge, engine.settings, session=engine.session, site=site)


def order(
    order_id: str,
    patient: str,
    code: tuple[str, str],
    *,
    status: str = "active",
    resource_type: str = "MedicationRequest",
    written: str = "2026-01-10",
) -> dict[str, Any]:
    concept = {"text": code[1], "coding": [{"system": RXNORM, "code": code[0], "display": code[1]}]}
    resource: dict[str, Any] = {
        "resourceType": resource_type,
        "id": order_id,
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": concept,
    }
    if resource_type == "MedicationRequest":
        resource.update(intent="order", authoredOn=written)
    else:
        resource["dateAsserted"] = written
    return resource


def patient(patient_id: str, birth_date: str = "1980-05-01") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": patient_id, "birthDate": birth_date}
