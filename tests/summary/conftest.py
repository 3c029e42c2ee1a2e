"""Fixtures of the summary's unit tests: the fake FHIR server and a signing key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from shc_fakes import FakeFhir

from cds_service.summary import keys


@pytest.fixture
def fhir() -> Iterator[FakeFhir]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeFhir(mock)


@pytest.fixture(scope="session")
def signing_jwk() -> dict[str, str]:
    return keys.generate()


@pytest.fixture
def key_file(tmp_path: Path, signing_jwk: dict[str, str]) -> Path:
    path = tmp_path / "shc-key.json"
    path.write_text(json.dumps(signing_jwk))
    return path
