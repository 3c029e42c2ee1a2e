"""The ``pgx-cds`` command: serve, knowledge check/list, explain, sandbox load, worklist, report,
purge, summary."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from .core.errors import ClientError
from .core.files import TooLarge, read_config
from .knowledge.loader import Knowledge, KnowledgeError
from .settings import Settings

log = logging.getLogger("cds_service")

#: The FHIR base in sandbox/requests/no-prefetch: replaced by --fhir (or with sed, see README).
FHIR_PLACEHOLDER = "{{FHIR_BASE}}"


def entry() -> int:
    """The console script: ``main``, and a quiet exit when the reader of our output goes away
    (``pgx-cds knowledge list | head``): no traceback, as other command-line tools do."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's advice: point stdout at devnull so the flush at exit fails no more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


def version_text() -> str:
    """``pgx-cds 0.2.0 (knowledge 2026.12.1)``: the package and the knowledge it ships."""
    from . import __version__
    from .settings import default_knowledge_dir

    try:
        manifest = json.loads((default_knowledge_dir() / "manifest.json").read_text())
        knowledge = f" (knowledge {manifest['version']})"
    except (OSError, ValueError, KeyError):
        knowledge = ""
    return f"pgx-cds {__version__}{knowledge}"


TOKEN_ENV = "PGX_CDS_FHIR_TOKEN"


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token for a command's FHIR server: ``--token-file`` (a file holding it, e.g.
    a mounted secret), else ``PGX_CDS_FHIR_TOKEN``, else ``--token`` (shown in ``ps``: for
    tests only). Raises ValueError naming what cannot be read."""
    path: Path | None = getattr(args, "token_file", None)
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read --token-file {path}: {exc.strerror}") from None
        if not token:
            raise ValueError(f"--token-file {path} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or getattr(args, "token", None)


def _add_token_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        type=Path,
        help=f"file holding the FHIR server's bearer token (else ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--token",
        help=f"the bearer token itself (visible to other users in ps; prefer ${TOKEN_ENV})",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgx-cds", description="PGx pain CDS Hooks service")
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service on a production WSGI server (gunicorn)")
    serve.add_argument("--host", help="address to listen on (default: PGX_CDS_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PGX_CDS_PORT, 8080)")
    serve.add_argument(
        "--workers", type=int, help="worker processes (default: PGX_CDS_WORKERS, else one per core)"
    )
    serve.add_argument("--threads", type=int, default=4, help="threads per worker (default: 4)")

    db = sub.add_parser("db", help="the feedback database's schema")
    db.add_argument(
        "action",
        choices=["upgrade", "current"],
        help="upgrade: bring the schema up to date (under a lock); current: show its revision",
    )

    kn = sub.add_parser("knowledge", help="lint or list the knowledge")
    kn.add_argument(
        "action",
        choices=["check", "list", "prefetch"],
        help="check: lint the knowledge (and the site file); list: the drug-gene pairs covered, "
        "with their sources, and those reviewed without a recommendation; prefetch: the "
        "prefetch keys and FHIR queries to enter in an EHR that does not read discovery (Epic), "
        "with the site's own result codes",
    )
    kn.add_argument("--dir", type=Path, help="knowledge folder (default: PGX_CDS_KNOWLEDGE_DIR)")

    explain = sub.add_parser("explain", help="show how the service decides on a hook request file")
    explain.add_argument(
        "request",
        type=Path,
        help="a hook request JSON file (prefetch included), or the name of a packaged sandbox "
        "request (see `pgx-cds sandbox requests`)",
    )
    explain.add_argument("--fhir", help="FHIR server to query when the file has no prefetch")
    _add_token_options(explain)

    sandbox = sub.add_parser("sandbox", help="the sandbox kit: synthetic patients and requests")
    sandbox.add_argument(
        "action",
        choices=["load", "requests", "request"],
        help="load: put the synthetic patients on a FHIR server (--fhir); requests: list the "
        "packaged hook requests and the card each gives; request NAME: print one (to POST it)",
    )
    sandbox.add_argument("name", nargs="?", help="with `request`: the request's name")
    sandbox.add_argument("--fhir", help="FHIR R4 base URL (load)")
    _add_token_options(sandbox)
    sandbox.add_argument(
        "--dir", type=Path, help="folder of patient bundles (default: sandbox/patients)"
    )

    worklist = sub.add_parser(
        "worklist",
        help="list the active orders whose prescribing check gives a warning or critical card "
        "(read from a FHIR server)",
    )
    worklist.add_argument("--fhir-server", required=True, help="the FHIR R4 server's base URL")
    worklist.add_argument(
        "--since",
        help="only orders written, or results issued, on or after this FHIR date or dateTime "
        "(e.g. 2026-01-31)",
    )
    worklist.add_argument("--csv", type=Path, help="write the list as CSV to this file")
    worklist.add_argument("--html", type=Path, help="write the list as an HTML page to this file")
    worklist.add_argument(
        "--task",
        action="store_true",
        help="write a FHIR Task for the pharmacist per listed order and advice (the only "
        "writes; a rerun writes none twice)",
    )
    worklist.add_argument(
        "--budget", type=float, help="seconds for the whole run (default: PGX_CDS_WORKLIST_BUDGET)"
    )
    worklist.add_argument(
        "--max-pages",
        type=int,
        help="pages a search may have at most (default: PGX_CDS_WORKLIST_MAX_PAGES)",
    )
    worklist.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_token_options(worklist)

    from .governance.report_command import add_commands
    from .summary.command import add_command as add_summary

    add_commands(sub)
    add_summary(sub, _add_token_options)

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        return _fail(_settings_problem(exc))

    if args.command == "serve":
        try:
            port, workers, threads = _serve_flags(settings, args)
        except ValueError as exc:
            return _fail(str(exc))
        return _serve(settings, args.host or settings.host, port, workers, threads)
    if args.command == "db":
        return _db(settings, args.action)
    if args.command == "knowledge" and args.action == "prefetch":
        return _prefetch(settings, args.dir)
    if args.command == "knowledge":
        site_settings = settings.site_config or settings.pretest_drugs
        if args.action == "check" and site_settings and not args.dir:
            from .governance.site_config import (
                load,
            )  # the site's file and drugs are checked with it

            try:
                load(settings)
            except KnowledgeError as exc:
                print(f"knowledge check FAILED\n{exc}", file=sys.stderr)
                return 1
            if settings.site_config:
                print(f"site configuration {settings.site_config}: OK")
        return _knowledge(
            args.dir or settings.knowledge_dir,
            settings.site_codes,
            args.action,
            _chosen_guidelines(settings),
        )
    if args.command in ("report", "purge"):
        from .governance.report_command import run_command

        return run_command(settings, args)
    if args.command == "sandbox" and args.action != "load":
        return _sandbox_requests(args.action, args.name)
    try:
        token = _token(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.command == "explain":
        return _explain(settings, _request_path(args.request), args.fhir, token)
    if args.command == "worklist":
        from .worklist.command import worklist as run_worklist

        return run_worklist(settings, args, token)
    if args.command == "summary":
        from .summary.command import run as run_summary

        return run_summary(settings, args, token)
    if not args.fhir:
        return _fail("sandbox load needs --fhir URL (the FHIR R4 server to load)")
    return _sandbox_load(args.fhir, token, args.dir)


_HINTS = {
    "trusted_issuers": "set it to a JSON object of issuer to JWKS URL, e.g. "
    '{"https://ehr.example.org": "https://ehr.example.org/.well-known/jwks.json"}',
    "public_url": "set it to the service's public https:// base URL",
}


def _settings_problem(exc: ValidationError | SettingsError) -> str:
    """One line naming the environment variable that is wrong and how to fix it."""
    if isinstance(exc, SettingsError):  # a complex value (JSON) that does not parse
        found = re.search(r'field "(\w+)"', str(exc))
        field = found.group(1) if found else ""
        name = f"PGX_CDS_{field.upper()}" if field else "a PGX_CDS_ setting"
        hint = _HINTS.get(field, "see the settings table in docs/operations.md")
        return f"{name} is not valid JSON; {hint}"
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"PGX_CDS_{field.upper()}" if field else "settings"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {message}")
    return (
        "invalid setting: "
        + "; ".join(problems)
        + " (see the settings table in docs/operations.md)"
    )


def _serve_flags(settings: Settings, args: argparse.Namespace) -> tuple[int, int, int]:
    """The port, workers and threads of ``pgx-cds serve``: a flag that is given is checked as
    its environment variable is (``--port 0`` is an error, not the default); ValueError with
    one line naming the flag."""
    chosen = {"port": settings.port, "workers": settings.workers}
    for name in chosen:
        value = getattr(args, name)
        if value is None:
            continue
        try:
            Settings.model_validate({**settings.model_dump(), name: value})
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            raise ValueError(f"invalid option: --{name} {value}: {message}") from None
        chosen[name] = value
    if args.threads < 1:
        raise ValueError(
            f"invalid option: --threads {args.threads}: Input should be greater than or equal to 1"
        )
    return chosen["port"], chosen["workers"], args.threads


def _open_app(settings: Settings) -> Any:
    """The app, or a StartupError with one line saying what to fix."""
    from sqlalchemy.exc import SQLAlchemyError

    from .store.schema import SchemaError
    from .web.app import create_app
    from .web.server import StartupError
    from .web.wiring import services

    _check_site_codes(settings.site_codes)
    _check_database_dir(settings.database_url)
    try:
        app = create_app(settings)
        # the key sets, fetched once before the workers fork (they inherit them); readiness
        # fetches any still missing
        missing = services(app).verifier.warm()
        if missing:
            log.warning(
                "%d trusted issuer(s)' key sets could not be fetched at start: their calls "
                "answer 503 and /readyz is not ready until they are",
                len(missing),
            )
        return app
    except KnowledgeError as exc:
        raise StartupError(str(exc).replace("\n", " ")) from None
    except SchemaError as exc:
        raise StartupError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise StartupError(_database_problem(settings.database_url, exc)) from None


def _check_site_codes(path: Path | None) -> None:
    from .web.server import StartupError

    if path is None:
        return
    try:
        json.loads(read_config(path))
    except OSError as exc:
        raise StartupError(
            f"cannot read the site-code file {path} (PGX_CDS_SITE_CODES): {exc.strerror}; "
            "fix the path or its permissions, or unset PGX_CDS_SITE_CODES"
        ) from None
    except TooLarge as exc:
        raise StartupError(f"the site-code file (PGX_CDS_SITE_CODES): {exc}") from None
    except ValueError as exc:
        raise StartupError(
            f"the site-code file {path} (PGX_CDS_SITE_CODES) is not valid JSON: {exc}"
        ) from None


def _check_database_dir(url: str) -> None:
    """A SQLite file needs a writable folder: say which, and which user must own it."""
    from .store.schema import sqlite_file
    from .web.server import StartupError

    database = sqlite_file(url)
    if database is None:
        return
    folder = database.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK | os.X_OK)
    except OSError:
        writable = False
    if not writable:
        raise StartupError(
            f"cannot write the feedback database in {folder}: the folder is not writable by "
            f"uid {os.getuid()}; make it so (e.g. chown {os.getuid()} {folder}) or set "
            "PGX_CDS_DATABASE_URL to a PostgreSQL database"
        )


def _database_problem(url: str, exc: Exception) -> str:
    from .settings import describe_database

    where = describe_database(url)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    return f"cannot use the database {where} (PGX_CDS_DATABASE_URL): {reason}"


def _fail(message: str) -> int:
    """A start-up problem: one line on stderr, exit code 2."""
    print(f"pgx-cds: {message}", file=sys.stderr)
    return 2


def _serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> int:
    from .web import server

    master, metrics_dir = os.getpid(), None
    try:
        server.check_port_free(host, port)
        if settings.metrics_port is not None:
            if settings.metrics_port == port:
                raise server.StartupError("PGX_CDS_METRICS_PORT must differ from --port")
            server.check_port_free(host, settings.metrics_port)
        metrics_dir = server.prepare_metrics_dir()
        app = _open_app(settings)
    except server.StartupError as exc:
        server.cleanup(metrics_dir)
        return _fail(str(exc))
    try:
        server.run(app, host, port, workers, threads, settings)
    finally:
        # Workers leave through here too (gunicorn forks inside run): only the master cleans.
        if os.getpid() == master:
            server.cleanup(metrics_dir)
    return 0


def _db(settings: Settings, action: str) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from .store import schema
    from .store.feedback import FeedbackStore
    from .web.logs import configure_logging
    from .web.server import StartupError

    configure_logging(settings.log_level, settings.log_format)
    try:
        _check_database_dir(settings.database_url)
        engine = FeedbackStore(settings.database_url).engine
        if action == "upgrade":
            revision = schema.upgrade(engine)
            print(f"database schema at revision {revision} (newest)")
        else:
            found, newest = schema.current(engine), schema.head()
            if found == newest:
                state = "up to date"
            elif schema.newer_than_this_version(found):
                state = f"newer than this version of the service, which knows up to {newest}"
            else:
                state = f"newest is {newest}"
            print(f"database schema at revision {found or 'none'} ({state})")
    except (StartupError, schema.SchemaError) as exc:
        return _fail(str(exc))
    except SQLAlchemyError as exc:
        return _fail(_database_problem(settings.database_url, exc))
    return 0


def _prefetch(settings: Settings, directory: Path | None) -> int:
    from .fhir.queries import prefetch_text
    from .governance.site_config import load

    try:
        knowledge, _ = load(
            settings.model_copy(update={"knowledge_dir": directory}) if directory else settings
        )
    except KnowledgeError as exc:
        print(f"knowledge prefetch FAILED\n{exc}", file=sys.stderr)
        return 1
    print(prefetch_text(knowledge), end="")
    return 0


def _chosen_guidelines(settings: Settings) -> tuple[str, ...]:
    """The guideline sets the service advises by: the site file's, else the setting's."""
    if settings.site_config:
        from .governance.site_config import SiteConfigError, read

        try:
            chosen = read(settings.site_config).guidelines
        except SiteConfigError:
            chosen = None  # (``knowledge check`` names the file's problem)
        if chosen:
            return tuple(chosen)
    return settings.guideline_list


def _knowledge(
    directory: Path,
    site_codes: Path | None,
    action: str,
    guidelines: tuple[str, ...] = ("cpic",),
) -> int:
    try:
        knowledge = Knowledge(directory, site_codes, guidelines=guidelines)
    except KnowledgeError as exc:
        print(f"knowledge {action} FAILED\n{exc}", file=sys.stderr)
        return 1
    if action == "check":
        print(
            f"knowledge {knowledge.version}: OK "
            f"({len(knowledge.recommendations)} recommendation rows, "
            f"{len(knowledge.no_recommendations())} no-recommendation pairs, "
            f"{len(knowledge.drugs)} drugs, {len(knowledge.products)} RxNorm codes)"
        )
        return 0
    print(f"knowledge {knowledge.version}")
    print(
        f"guideline sets in use, first decides: {', '.join(knowledge.guideline_sets)} "
        "(PGX_CDS_GUIDELINES or the site file's 'guidelines'; FDA label rows always apply; "
        "'*' marks a set not in use)"
    )
    print(f"{'drug':<15} {'gene(s)':<26} {'rows':>4}  source")
    for (drug, genes, _), (count, guideline) in sorted(_pairs(knowledge).items()):
        source = guideline.name + (f", PMID {guideline.pmid}" if guideline.pmid else "")
        unused = "" if guideline.organization in knowledge.precedence else " *"
        print(f"{drug:<15} {genes:<26} {count:>4}  {source}{unused}")
    print("\nreviewed, no recommendation or no action (never alert):")
    for guideline, item in sorted(
        knowledge.no_recommendations(every=True), key=lambda p: (p[1].drug, p[1].gene)
    ):
        unused = "" if guideline.organization in knowledge.precedence else " *"
        print(f"{item.drug:<15} {item.gene:<26}       {guideline.name}, {item.table}{unused}")
    for gf in knowledge.guidelines:
        if gf.not_covered:
            print(f"\nnot covered by {gf.guideline.name} (no guideline found):")
        for pair in gf.not_covered:
            print(f"{pair.gene:<15} {', '.join(pair.drugs):<26}       {pair.reason}")
    source = knowledge.not_covered.source["url"]
    print(f"\nconsidered, no guideline recommendation (never alert; {source}):")
    for pair in knowledge.not_covered.pairs:
        drugs = ", ".join(pair.drugs) or "any drug"
        print(f"{pair.gene:<15} {drugs:<26}       {pair.reason}")
    return 0


def _pairs(knowledge: Knowledge) -> dict[tuple[str, str, str], tuple[int, Any]]:
    """(drug, genes, guideline) -> rows and guideline, for every guideline set."""
    pairs: dict[tuple[str, str, str], tuple[int, Any]] = {}
    for rec in knowledge.all_recommendations:
        key = (rec.drug, " + ".join(rec.genes), rec.guideline.id if rec.guideline else "")
        count = pairs.get(key, (0, None))[0]
        pairs[key] = (count + 1, rec.guideline)
    return pairs


def _explain(settings: Settings, path: Path, fhir: str | None, token: str | None) -> int:
    from .core.hook_request import parse_hook_request
    from .core.json_limits import parse_json
    from .governance.site_config import load
    from .pipeline import Engine

    try:
        knowledge, site = load(settings)
    except KnowledgeError as exc:
        print(f"pgx-cds: {exc}", file=sys.stderr)
        return 1
    try:
        body = parse_json(path.read_bytes())
    except OSError as exc:
        print(f"pgx-cds: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"pgx-cds: {path}: {exc.message}", file=sys.stderr)
        return 2
    if isinstance(body, dict):
        if not fhir and FHIR_PLACEHOLDER in str(body.get("fhirServer", "")):
            print(
                f"pgx-cds: {path} has no prefetch and a placeholder FHIR server: "
                "name yours with --fhir URL (and --token)",
                file=sys.stderr,
            )
            return 2
        if fhir:
            body["fhirServer"] = fhir
        if token:
            body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    engine = Engine(knowledge, settings, site=site)
    try:
        hook = body.get("hook", "") if isinstance(body, dict) else ""
        request = parse_hook_request(body, hook)
        engine.check_fhir_server(request)
        if request.hook == "patient-view":
            answer, trace = engine.patient_view(request)
        else:
            answer, trace = engine.evaluate(request, read_results=True)
    except ClientError as exc:
        print(f"request rejected (HTTP {exc.status}): {json.dumps(exc.body())}")
        return 1
    print(f"hook {request.hook}, knowledge {knowledge.version}\n")
    print(trace.render())
    print(f"\n{len(answer['cards'])} card(s)")
    for card in answer["cards"]:
        print(f"- [{card['indicator']}] {card['summary']}")
    return 0


def _requests_dir() -> Path:
    from .settings import shipped_dir

    return shipped_dir("sandbox") / "requests"


def _request_path(given: Path) -> Path:
    """A request file, or the name of a packaged sandbox request (with or without .json)."""
    if given.exists() or given.parent != Path("."):
        return given
    packaged = _requests_dir() / given.with_suffix(".json").name
    return packaged if packaged.exists() else given


def _sandbox_requests(action: str, name: str | None) -> int:
    """List the packaged sandbox requests with the card each gives, or print one."""
    folder = _requests_dir()
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    if action == "requests":
        for file, what in sorted(expected.items()):
            indicator = what.get("indicator") or "no card"
            print(f"{Path(file).stem}\n    [{indicator}] {what['expect']}")
        print(
            f"\n{len(expected)} requests in {folder}; print one with `pgx-cds sandbox request NAME`"
        )
        return 0
    if not name:
        return _fail("sandbox request needs a NAME (see `pgx-cds sandbox requests`)")
    path = folder / Path(name).with_suffix(".json").name
    if Path(name).with_suffix(".json").name not in expected or not path.exists():
        return _fail(f"no packaged sandbox request {name!r} (see `pgx-cds sandbox requests`)")
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def _sandbox_load(fhir: str, token: str | None, directory: Path | None) -> int:
    from .sandbox import LoadError, load_patients

    try:
        loaded = load_patients(fhir, token, directory)
    except (LoadError, OSError, ValueError) as exc:
        print(f"pgx-cds: loading failed: {exc}", file=sys.stderr)
        return 1
    for patient in loaded:
        print(f"{patient.patient_id}  ({patient.name}, {patient.resources} resources)")
        for attempt in patient.tries:
            print(f"    order {attempt['order']} {attempt.get('order_display', '')}")
            indicator = attempt.get("indicator")
            expect = attempt["expect"]
            print(f"      -> {indicator}: {expect}" if indicator else f"      -> {expect}")
            for label in attempt.get("suggestions", []):
                print(f"         suggestion: {label}")
    print(f"\nloaded {len(loaded)} patients into {fhir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
