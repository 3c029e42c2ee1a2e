"""The ``pgx-cds`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgx-cds", description="PGx pain CDS Hooks service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service on a production WSGI server (waitress)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--threads", type=int, default=8)

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"pgx-cds: invalid PGX_CDS_ setting:\n{exc}", file=sys.stderr)
        return 2

    if args.command == "serve":
        return _serve(settings, args.host, args.port, args.threads)
    return 2


def _serve(settings: Settings, host: str, port: int, threads: int) -> int:
    import waitress

    from .app import create_app
    from .knowledge import KnowledgeError

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


if __name__ == "__main__":
    raise SystemExit(main())
