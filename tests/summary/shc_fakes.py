"""A FHIR server behind ``responses`` holding the sandbox patients (the summary's tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import responses

ROOT = Path(__file__).resolve().parents[2]
BASE = "https://ehr.example.org/fhir"
TOKEN = "summary-secret-token"


def sandbox_resources(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((ROOT / "sandbox" / "patients" / f"{name}.json").read_text())
    return [e["resource"] for e in bundle["entry"]]


class FakeFhir:
    def __init__(self, mock: responses.RequestsMock) -> None:
        self.resources: list[dict[str, Any]] = []
        self.tokens: list[str | None] = []
        self.mock = mock
        #: the EHR's .well-known/smart-configuration (None: 404)
        self.smart_config: dict[str, Any] | None = None
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), self._answer)

    def load(self, name: str) -> None:
        self.resources += sandbox_resources(name)

    def _answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.tokens.append(request.headers.get("Authorization"))
        parts = urlsplit(request.url)
        path = parts.path[len(urlsplit(BASE).path) + 1 :]
        if path == ".well-known/smart-configuration" and self.smart_config is not None:
            return 200, {}, json.dumps(self.smart_config)
        if "/" in path:
            kind, rid = path.split("/", 1)
            for r in self.resources:
                if r["resourceType"] == kind and r.get("id") == rid:
                    return 200, {}, json.dumps(r)
            return 404, {}, json.dumps({"resourceType": "OperationOutcome", "issue": []})
        query = dict(parse_qsl(parts.query))
        patient = (query.get("patient") or query.get("subject") or "").split("/")[-1]
        found = [
            r
            for r in self.resources
            if r["resourceType"] == path
            and (r.get("subject") or r.get("patient") or {}).get("reference", "").split("/")[-1]
            == patient
        ]
        body = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in found],
        }
        return 200, {}, json.dumps(body)
