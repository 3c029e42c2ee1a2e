"""``pgx-cds summary``: write a patient's summary page, or verify a SMART Health Card.

* ``pgx-cds summary --fhir-server URL --patient ID --html FILE``: the page (with its signed
  card when ``PGX_CDS_PUBLIC_URL`` is set), from the pipeline's patient-view decisions.
  The FHIR server is checked as a hook request's is (allow-list, no metadata addresses);
  the token comes from ``--token-file`` or ``PGX_CDS_FHIR_TOKEN``. The file is readable by
  its owner only; nothing about the patient is printed (stdout: the file and the card's
  key id; stderr: what went wrong).
* ``pgx-cds summary --verify 'shc:/…'``: the card's signature against its issuer's key set
  (``<iss>/.well-known/jwks.json`` over HTTPS with the guarded HTTP client, or ``--jwks
  FILE``), its structure, and what it holds (that is for the person who scanned it).
* ``pgx-cds summary --rotate-key``: a new signing key kept in the database; the old ones stay
  in the key set.

Exit codes: 0 done (a card verified); 1 the card does not verify, or the FHIR server could
not be read; 2 the options or settings are not usable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..core.errors import ClientError
from ..core.logsafe import quiet_http_libraries
from ..fhir.limits import FetchFailed
from ..fhir.patient_data import FhirUnavailable
from ..fhir.reads import bounded_get
from ..fhir.session import guarded_session
from ..governance.site_config import load
from ..knowledge.loader import Knowledge, KnowledgeError
from ..pipeline import Engine
from ..settings import Settings, insecure_http
from ..store import schema
from ..store.feedback import FeedbackStore
from . import shc
from .build import summarise
from .bundle import genes_in
from .document import document
from .keys import Issuer, ShcKeyError

JWKS_SECONDS = 10.0
JWKS_MAX_BYTES = 256 * 1024


def add_command(sub: Any, add_token_options: Any) -> None:
    summary = sub.add_parser(
        "summary",
        help="write a patient's PGx summary page with a SMART Health Card, or verify a card",
    )
    summary.add_argument("--fhir-server", help="the FHIR R4 server's base URL")
    summary.add_argument("--patient", help="the patient's id on that server")
    summary.add_argument("--html", type=Path, help="write the summary page to this file")
    summary.add_argument("--card", type=Path, help="also write the card (shc:/...) to this file")
    summary.add_argument("--verify", metavar="SHC", help="verify a card: 'shc:/...' or a file")
    summary.add_argument(
        "--jwks", type=Path, help="with --verify: the issuer's key set from this file"
    )
    summary.add_argument(
        "--rotate-key",
        action="store_true",
        help="make a new signing key in the database (the old ones stay in the key set)",
    )
    add_token_options(summary)


def _fail(message: str, code: int = 2) -> int:
    print(f"pgx-cds summary: {message}", file=sys.stderr)
    return code


def run(settings: Settings, args: argparse.Namespace, token: str | None) -> int:
    quiet_http_libraries()
    if args.verify:
        return _verify(settings, args)
    if args.rotate_key:
        return _rotate(settings)
    if not (args.fhir_server and args.patient and args.html):
        return _fail("give --fhir-server, --patient and --html (or --verify, --rotate-key)")
    for path in (args.html, args.card):
        if path is not None and not path.parent.is_dir():
            return _fail(f"cannot write {path}: no such folder {path.parent}")
    try:
        knowledge, site = load(settings)
    except KnowledgeError as exc:
        return _fail(str(exc), 1)
    engine = Engine(knowledge, settings, session=guarded_session(), site=site)
    try:
        keys = _issuer(settings) if settings.public_url else None
        summary, _ = summarise(engine, args.fhir_server, token, args.patient)
        made = document(summary, knowledge, keys, settings.public_url)
    except ClientError as exc:
        return _fail(f"--fhir-server: {exc.message}")
    except FhirUnavailable as exc:
        return _fail(f"the patient could not be read ({exc})", 1)
    except ShcKeyError as exc:
        return _fail(str(exc))
    except (SQLAlchemyError, schema.SchemaError) as exc:
        return _fail(f"the database (where the signing key is kept): {type(exc).__name__}", 1)
    finally:
        engine.pool.shutdown(wait=False, cancel_futures=True)
    _write(args.html, made.html)
    if args.card is not None and made.card:
        _write(args.card, made.card + "\n")
    if made.card:
        kid = json.loads(_b64json(shc.from_numeric(made.card).split(".")[0]))["kid"]
        print(f"wrote {args.html}: {len(summary.genes)} gene(s), card signed with key {kid}")
    else:
        print(f"wrote {args.html}: {len(summary.genes)} gene(s), no card ({made.problem})")
    return 0


def _issuer(settings: Settings) -> Issuer:
    """The issuer's keys: the file, else the database (its schema brought up to date, as
    the service does at start)."""
    if settings.shc_key is not None:
        return Issuer(settings.shc_key, None)
    database = FeedbackStore(settings.database_url).engine
    schema.prepare(database, settings.migrate_on_start)
    return Issuer(None, database)


def _rotate(settings: Settings) -> int:
    try:
        issuer = _issuer(settings)
        key = issuer.rotate()
    except ShcKeyError as exc:
        return _fail(str(exc))
    except (SQLAlchemyError, schema.SchemaError) as exc:
        return _fail(f"the database: {type(exc).__name__}", 1)
    print(f"new signing key {key.kid}; older keys stay in the key set")
    return 0


def _b64json(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _card_text(given: str) -> str:
    if given.strip().lower().startswith("shc:/"):
        return given.strip()
    path = Path(given)
    if path.is_file() and path.stat().st_size < 64 * 1024:
        return path.read_text(encoding="utf-8").strip()
    raise shc.CardError("give the card as 'shc:/...' or a file holding it")


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    try:
        text = _card_text(args.verify)
        jws = shc.from_numeric(text) if text.lower().startswith("shc:/") else text
        issuer = _unverified_issuer(jws)
        jwks = _read_jwks(args.jwks) if args.jwks else _fetch_jwks(issuer, settings)
        card = shc.verify(jws, jwks)
    except shc.CardError as exc:
        print(f"NOT VERIFIED: {exc}")
        return 1
    knowledge = Knowledge(settings.knowledge_dir)
    print(f"VERIFIED: signed by {card.issuer} (key {card.kid})")
    issued = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(card.issued_at))
    print(f"issued: {issued}")
    for entry in card.bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            names = res.get("name") or [{}]
            name = names[0].get("text") if isinstance(names[0], dict) else None
            print(f"patient: {name or '(no name)'}, born {res.get('birthDate') or '?'}")
    for gene, facts in sorted(genes_in(card.bundle, knowledge).items()):
        words = ", ".join(f"{k} {v}" for k, v in facts.items())
        print(f"  {gene}: {words}")
    return 0


def _unverified_issuer(jws: str) -> str:
    """The ``iss`` the card claims (to know whose key set to fetch: trusted only once the
    signature holds against it)."""
    parts = jws.split(".")
    if len(parts) != 3:
        raise shc.CardError("not a compact JWS (three parts separated by dots)")
    try:
        payload = json.loads(shc.inflate(_b64json(parts[1])))
    except ValueError as exc:
        if isinstance(exc, shc.CardError):
            raise
        raise shc.CardError("the payload cannot be read") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(issuer, str) or not issuer:
        raise shc.CardError("the card names no issuer (iss)")
    return issuer


def _read_jwks(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise shc.CardError(f"cannot read the key set {path} ({type(exc).__name__})") from None
    if not isinstance(found, dict):
        raise shc.CardError(f"{path} is not a JWK Set")
    return found


def _fetch_jwks(issuer: str, settings: Settings) -> dict[str, Any]:
    """``<iss>/.well-known/jwks.json``, over HTTPS (plain http only to this machine, or with
    PGX_CDS_ALLOW_INSECURE_HTTP), through the guarded client: no metadata or link-local
    address, bounded in time and size, no redirect."""
    url = issuer.rstrip("/") + "/.well-known/jwks.json"
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("https", "http") or (insecure_http(url) and not settings.allow_insecure_http):
        raise shc.CardError(f"the issuer {issuer} is not an https:// URL")
    try:
        status, raw = bounded_get(
            guarded_session(),
            url,
            deadline=time.monotonic() + JWKS_SECONDS,
            max_bytes=JWKS_MAX_BYTES,
            timeout=JWKS_SECONDS,
        )
    except FetchFailed as exc:
        raise shc.CardError(f"the issuer's key set could not be read ({exc})") from None
    if status != 200:
        raise shc.CardError(f"the issuer's key set answered HTTP {status}")
    try:
        found = json.loads(raw)
    except ValueError:
        raise shc.CardError("the issuer's key set is not JSON") from None
    if not isinstance(found, dict):
        raise shc.CardError("the issuer's key set is not a JWK Set")
    return found


def _write(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all, readable by the owner only (it is health data)."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    os.replace(temporary, path)
