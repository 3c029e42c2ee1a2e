"""``pgx-cds report`` and ``pgx-cds purge``: the commands (``report.py`` counts, ``report_page.py``
draws the page)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..knowledge.loader import Knowledge, KnowledgeError
from ..settings import Settings
from ..store import schema
from ..store.card_log import purge
from ..store.feedback import FeedbackStore
from .report import build, text, write_csv
from .report_page import html_page

# -- the commands ---------------------------------------------------------------------------


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def add_commands(sub: Any) -> None:
    report = sub.add_parser("report", help="cards, feedback and override rates over a period")
    report.add_argument("--since", type=_day, help="first day, YYYY-MM-DD (default: 30 days ago)")
    report.add_argument("--until", type=_day, help="last day, included (default: today, UTC)")
    report.add_argument("--csv", type=Path, help="also write the figures to this CSV file")
    report.add_argument(
        "--html",
        type=Path,
        help="also write an HTML report with charts; '-': the page to standard output (the "
        "table then goes to standard error)",
    )
    purge_cmd = sub.add_parser(
        "purge", help="delete card log and feedback rows older than the retention"
    )
    purge_cmd.add_argument(
        "--days", type=int, help="keep this many days (default: PGX_CDS_RETENTION_DAYS)"
    )


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        engine = FeedbackStore(settings.database_url).engine
        schema.prepare(engine, settings.migrate_on_start)  # as the service does at start
    except schema.SchemaError as exc:  # the schema is older or newer than this version's
        print(f"pgx-cds: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"pgx-cds: cannot open the database: {type(exc).__name__}", file=sys.stderr)
        return 1
    try:
        if args.command == "purge":
            days = args.days if args.days is not None else settings.retention_days
            return _purge(engine, days)
        until = args.until or datetime.now(UTC).date()
        since = args.since or until - timedelta(days=29)
        if since > until:
            print("pgx-cds: --since is after --until", file=sys.stderr)
            return 2
        try:
            knowledge: Knowledge | None = Knowledge(settings.knowledge_dir)
        except KnowledgeError:
            knowledge = None  # (rows are labelled as logged)
        try:
            report = build(engine, since, until, knowledge)
        except SQLAlchemyError as exc:
            print(f"pgx-cds: cannot read the database: {type(exc).__name__}", file=sys.stderr)
            return 1
        to_stdout = args.html is not None and str(args.html) == "-"
        told = sys.stderr if to_stdout else sys.stdout
        print(text(report), file=told)
        if args.csv:
            write_csv(report, args.csv)
            print(f"\nCSV written to {args.csv}", file=told)
        if args.html:
            page = html_page(report)
            if to_stdout:
                sys.stdout.write(page)
                sys.stdout.flush()
            else:
                args.html.write_text(page, encoding="utf-8")
                print(f"HTML report written to {args.html}", file=told)
        return 0
    finally:
        engine.dispose()


def _purge(engine: Engine, days: int | None) -> int:
    if not days or days < 1:
        print("pgx-cds: give --days N (N >= 1) or set PGX_CDS_RETENTION_DAYS", file=sys.stderr)
        return 2
    try:
        cards, items = purge(engine, days)
    except SQLAlchemyError as exc:
        print(f"pgx-cds: cannot purge: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"deleted {cards} card log row(s) and {items} feedback item(s) older than {days} days")
    return 0
