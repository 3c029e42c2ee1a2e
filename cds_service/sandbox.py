"""Load the synthetic sandbox patients (``sandbox/patients``) into a FHIR R4 server.

Each patient is a transaction Bundle of PUTs with fixed ids, so loading twice leaves the
same data. ``index.json`` says, per patient, what to order and which card to expect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .settings import shipped_dir


def default_patients_dir() -> Path:
    return shipped_dir("sandbox") / "patients"


@dataclass(frozen=True)
class Loaded:
    patient_id: str
    name: str
    resources: int
    tries: list[dict[str, Any]]


class LoadError(Exception):
    pass


def load_patients(
    fhir_base: str, token: str | None, directory: Path | None = None, timeout: float = 30.0
) -> list[Loaded]:
    directory = directory or default_patients_dir()
    index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    loaded = []
    with requests.Session() as session:
        for patient in index:
            bundle = json.loads((directory / f"{patient['id']}.json").read_text(encoding="utf-8"))
            try:
                response = session.post(
                    fhir_base.rstrip("/"), json=bundle, headers=headers, timeout=timeout
                )
            except requests.RequestException as exc:
                raise LoadError(
                    f"{patient['id']}: could not reach {fhir_base} ({type(exc).__name__})"
                ) from None
            if response.status_code not in (200, 201):
                raise LoadError(
                    f"{patient['id']}: the server answered HTTP {response.status_code}: "
                    f"{response.text[:300]}"
                )
            loaded.append(
                Loaded(
                    patient["id"],
                    patient.get("name", ""),
                    len(bundle.get("entry", [])),
                    patient.get("try", []),
                )
            )
    return loaded
