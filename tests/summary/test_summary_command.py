"""``pgx-cds summary``: the page written from a FHIR server, and a card verified against its
issuer's key set (fetched, or a file)."""

from __future__ import annotations

import json
import stat

import pytest
import responses
from shc_fakes import BASE, TOKEN

from cds_service.cli import main
from cds_service.summary import keys

PUBLIC = "https://cds.example.org"
PATIENT = "pgx-cyp2d6-pm-cyp2c9-pm"
NAME = "Dora Double Testpatient"


@pytest.fixture
def env(monkeypatch, tmp_path, key_file):
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.setenv("PGX_CDS_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("PGX_CDS_SHC_KEY", str(key_file))
    monkeypatch.setenv("PGX_CDS_FHIR_TOKEN", TOKEN)
    return tmp_path


def _write_page(fhir, env, capsys):
    fhir.load(PATIENT)
    page, card = env / "summary.html", env / "card.txt"
    args = ["summary", "--fhir-server", BASE, "--patient", PATIENT, "--html", str(page)]
    code = main([*args, "--card", str(card)])
    out, err = capsys.readouterr()
    return code, page, card, out, err


def test_summary_writes_the_page_and_a_signed_card(fhir, env, capsys, signing_jwk):
    code, page, card, out, err = _write_page(fhir, env, capsys)
    assert code == 0, err
    assert NAME in page.read_text() and "<svg" in page.read_text()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600  # health data: the owner's only
    assert card.read_text().startswith("shc:/")
    assert signing_jwk["kid"] in out and "2 gene(s)" in out
    # nothing about the patient on the terminal (it may go to a log)
    assert NAME not in out + err and PATIENT not in out + err
    assert fhir.tokens and set(fhir.tokens) == {f"Bearer {TOKEN}"}


def test_verify_fetches_the_issuer_s_key_set(fhir, env, capsys, signing_jwk):
    _write_page(fhir, env, capsys)
    card = (env / "card.txt").read_text().strip()
    fhir.mock.add(
        responses.GET,
        f"{PUBLIC}/.well-known/jwks.json",
        json={"keys": [keys.public_jwk(signing_jwk)]},
    )
    assert main(["summary", "--verify", card]) == 0
    out = capsys.readouterr().out
    assert f"VERIFIED: signed by {PUBLIC} (key {signing_jwk['kid']})" in out
    assert NAME in out and "born 1966-03-02" in out
    assert "CYP2D6: genotype *4/*4, phenotype Poor Metabolizer" in out
    assert "CYP2C9: genotype *3/*3, phenotype Poor Metabolizer" in out


def test_verify_with_a_key_set_file_and_another_issuer_s_keys(fhir, env, capsys):
    _write_page(fhir, env, capsys)
    card = (env / "card.txt").read_text().strip()
    stranger = env / "other.json"
    stranger.write_text(json.dumps({"keys": [keys.public_jwk(keys.generate())]}))
    assert main(["summary", "--verify", card, "--jwks", str(stranger)]) == 1
    assert "NOT VERIFIED: the card's key (kid) is not in the issuer's key set" in (
        capsys.readouterr().out
    )
    # a card file works as well as the text
    mine = env / "mine.json"
    mine.write_text(
        json.dumps({"keys": [keys.public_jwk(json.loads((env / "shc-key.json").read_text()))]})
    )
    assert main(["summary", "--verify", str(env / "card.txt"), "--jwks", str(mine)]) == 0


def test_verify_refuses_a_plain_http_issuer(env, capsys, signing_jwk):
    from cds_service.summary import shc

    card = shc.issue(
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        "http://issuer.example.org",
        keys.signing_key(signing_jwk),
    )
    assert main(["summary", "--verify", card]) == 1
    assert "is not an https:// URL" in capsys.readouterr().out


def test_options_and_a_refused_server_exit_2(env, capsys, monkeypatch):
    assert main(["summary", "--patient", "x"]) == 2
    assert "give --fhir-server, --patient and --html" in capsys.readouterr().err
    metadata = "http://169.254.169.254/fhir"
    page = str(env / "p.html")
    assert main(["summary", "--fhir-server", metadata, "--patient", "x", "--html", page]) == 2
    assert "--fhir-server" in capsys.readouterr().err


def test_without_a_public_url_the_page_has_no_card(fhir, env, capsys, monkeypatch):
    monkeypatch.delenv("PGX_CDS_PUBLIC_URL")
    code, page, card, out, _ = _write_page(fhir, env, capsys)
    assert code == 0 and "no card" in out and not card.exists()
    assert "<svg" not in page.read_text()


def test_rotate_key_in_the_database(env, capsys, monkeypatch):
    monkeypatch.delenv("PGX_CDS_SHC_KEY")
    assert main(["summary", "--rotate-key"]) == 0
    assert "new signing key" in capsys.readouterr().out
