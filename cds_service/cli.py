"""The ``pgx-cds`` command: serve, knowledge check/list, explain, sandbox load, report, purge."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ClientError
from .knowledge import Knowledge, KnowledgeError
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgx-cds", description="PGx pain CDS Hooks service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service on a production WSGI server (waitress)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--threads", type=int, default=8)

    kn = sub.add_parser("knowledge", help="lint or list the knowledge")
    kn.add_argument("action", choices=["check", "list"])
    kn.add_argument("--dir", type=Path, help="knowledge folder (default: PGX_CDS_KNOWLEDGE_DIR)")

    explain = sub.add_parser("explain", help="show how the service decides on a hook request file")
    explain.add_argument("request", type=Path, help="a hook request JSON file (prefetch included)")
    explain.add_argument("--fhir", help="FHIR server to query when the file has no prefetch")
    explain.add_argument("--token", help="bearer token for --fhir")

    sandbox = sub.add_parser("sandbox", help="load the synthetic sandbox patients")
    sandbox.add_argument("action", choices=["load"])
    sandbox.add_argument("--fhir", required=True, help="FHIR R4 base URL")
    sandbox.add_argument("--token", help="bearer token for the FHIR server")
    sandbox.add_argument(
        "--dir", type=Path, help="folder of patient bundles (default: sandbox/patients)"
    )

    from .report import add_commands

    add_commands(sub)

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"pgx-cds: invalid PGX_CDS_ setting:\n{exc}", file=sys.stderr)
        return 2

    if args.command == "serve":
        return _serve(settings, args.host, args.port, args.threads)
    if args.command == "knowledge":
        if args.action == "check" and settings.site_config and not args.dir:
            from .site_config import load  # the site file is checked with the knowledge

            try:
                load(settings)
            except KnowledgeError as exc:
                print(f"knowledge check FAILED\n{exc}", file=sys.stderr)
                return 1
            print(f"site configuration {settings.site_config}: OK")
        return _knowledge(args.dir or settings.knowledge_dir, settings.site_codes, args.action)
    if args.command == "explain":
        return _explain(settings, args.request, args.fhir, args.token)
    if args.command in ("report", "purge"):
        from .report import run_command

        return run_command(settings, args)
    return _sandbox_load(args.fhir, args.token, args.dir)


def _serve(settings: Settings, host: str, port: int, threads: int) -> int:
    import waitress

    from .app import create_app

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        app = create_app(settings)
    except KnowledgeError as exc:
        print(f"pgx-cds: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("cds_service").info("serving on http://%s:%d/cds-services", host, port)
    waitress.serve(app, host=host, port=port, threads=threads, ident="pgx-cds")
    return 0


def _knowledge(directory: Path, site_codes: Path | None, action: str) -> int:
    try:
        knowledge = Knowledge(directory, site_codes)
    except KnowledgeError as exc:
        print(f"knowledge check FAILED\n{exc}", file=sys.stderr)
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
    print(f"{'drug':<15} {'gene(s)':<26} {'rows':>4}  source")
    for (drug, genes), (count, guideline) in sorted(_pairs(knowledge).items()):
        source = guideline.name + (f", PMID {guideline.pmid}" if guideline.pmid else "")
        print(f"{drug:<15} {genes:<26} {count:>4}  {source}")
    print("\nreviewed, no recommendation (never alert):")
    for guideline, item in sorted(
        knowledge.no_recommendations(), key=lambda p: (p[1].drug, p[1].gene)
    ):
        print(f"{item.drug:<15} {item.gene:<26}       {guideline.name}, {item.table}")
    source = knowledge.not_covered.source["url"]
    print(f"\nconsidered, no guideline recommendation (never alert; {source}):")
    for pair in knowledge.not_covered.pairs:
        drugs = ", ".join(pair.drugs) or "any drug"
        print(f"{pair.gene:<15} {drugs:<26}       {pair.reason}")
    return 0


def _pairs(knowledge: Knowledge) -> dict[tuple[str, str], tuple[int, Any]]:
    pairs: dict[tuple[str, str], tuple[int, Any]] = {}
    for rec in knowledge.recommendations:
        key = (rec.drug, " + ".join(rec.genes))
        count = pairs.get(key, (0, None))[0]
        pairs[key] = (count + 1, rec.guideline)
    return pairs


def _explain(settings: Settings, path: Path, fhir: str | None, token: str | None) -> int:
    from .pipeline import Engine
    from .request import parse_hook_request, parse_json
    from .site_config import load

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
        if fhir:
            body["fhirServer"] = fhir
        if token:
            body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    engine = Engine(knowledge, settings, site=site)
    try:
        hook = body.get("hook", "") if isinstance(body, dict) else ""
        request = parse_hook_request(body, hook)
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
            card = attempt.get("indicator") or "no card"
            print(f"      -> {card}: {attempt['expect']}")
    print(f"\nloaded {len(loaded)} patients into {fhir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
