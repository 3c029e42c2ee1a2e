"""``pgx-cds worklist``: the options checked, the run, its files and its exit code.

stdout: the listing (without ``--csv``/``--html``) and a line of counts; stderr: progress and
why a list is incomplete, never a patient or order reference (a CronJob's output goes to
logs). Exit code 0: complete; 1: incomplete (a search failed, the budget ran out, an order
could not be judged, a Task could not be written: what was found is still written); 2: the
options, the settings or the FHIR server are not usable.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ..core.errors import ClientError
from ..core.hook_request import parse_hook_request
from ..core.logsafe import quiet_http_libraries
from ..fhir.session import guarded_session
from ..governance.site_config import load
from ..knowledge.loader import KnowledgeError
from ..pipeline import Engine
from ..settings import Settings
from . import output
from .judge import HOOKS
from .run import run

#: A FHIR date or dateTime (a time needs its zone).
FHIR_DATE = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$"
)


def _fail(message: str) -> int:
    print(f"pgx-cds worklist: {message}", file=sys.stderr)
    return 2


def worklist(settings: Settings, args: argparse.Namespace, token: str | None) -> int:
    if args.since is not None and not FHIR_DATE.match(args.since):
        return _fail(f"--since {args.since!r}: not a date (YYYY-MM-DD) or FHIR dateTime")
    budget = settings.worklist_budget if args.budget is None else args.budget
    max_pages = settings.worklist_max_pages if args.max_pages is None else args.max_pages
    if not budget > 0:
        return _fail(f"--budget {args.budget}: must be more than 0 seconds")
    if max_pages < 1:
        return _fail(f"--max-pages {args.max_pages}: must be at least 1")
    for path in (args.csv, args.html):
        if path is not None and not path.parent.is_dir():
            return _fail(f"cannot write {path}: no such folder {path.parent}")
    try:
        knowledge, site = load(settings)
    except KnowledgeError as exc:
        print(f"pgx-cds: {exc}", file=sys.stderr)
        return 1
    engine = Engine(knowledge, settings, session=guarded_session(), site=site)
    try:
        # the FHIR server as a hook request would name it, and checked as one is (SSRF)
        probe = {"hook": HOOKS[0], "hookInstance": "worklist", "context": {"patientId": "-"}}
        request = parse_hook_request({**probe, "fhirServer": args.fhir_server}, HOOKS[0])
        engine.check_fhir_server(request)
    except ClientError as exc:
        details = "; ".join(d["problem"] for d in exc.details)
        return _fail(f"--fhir-server: {exc.message}" + (f" ({details})" if details else ""))
    fhir_server = str(request.fhirServer)
    quiet_http_libraries()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"worklist: {message}", file=sys.stderr, flush=True)

    try:
        outcome = run(
            engine,
            fhir_server,
            token,
            since=args.since,
            budget=budget,
            max_pages=max_pages,
            tasks=args.task,
            progress=progress,
        )
    finally:
        engine.pool.shutdown(wait=False, cancel_futures=True)
    for problem in output.problems_text(outcome):
        print(f"worklist: incomplete: {problem}", file=sys.stderr)
    if args.csv is not None:
        _write(args.csv, output.to_csv(outcome))
    if args.html is not None:
        page = output.to_html(outcome, fhir_server, knowledge.version, args.since)
        _write(args.html, page)
    if args.csv is None and args.html is None:
        sys.stdout.write(output.to_text(outcome))
    print(output.summary_line(outcome))
    return 0 if outcome.complete else 1


def _write(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (a reader never sees half a list), readable by the
    owner only: the file holds patient references."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    os.replace(temporary, path)
