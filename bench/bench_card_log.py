#!/usr/bin/env python3
"""Hook-call latency as the card log grows, with and without the index on ``overridden_at``.

Each process asks the database, at most once a second and only on calls that return cards,
when a card was last overridden (``card_log.LATEST_OVERRIDE``). Without an index that question
reads the whole card log, so one call a second waits for it: invisible at p50, a spike at the
tail that grows with the log (kept until purged: months or years of cards). The benchmark
fills a SQLite card log with N cards (1 in 100 overridden), then calls ``order-select`` for
codeine in a CYP2D6 ultrarapid metabolizer in-process for a few seconds, and prints p50,
p99.9 and the slowest call, with the index (as migrated) and after dropping it (as before
migration 0004).

Usage: ``python bench/bench_card_log.py [--rows 10000 100000 1000000] [--seconds 4]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from builders import (  # noqa: E402
    APAP_CODEINE,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

from cds_service.settings import Settings  # noqa: E402
from cds_service.store import schema  # noqa: E402
from cds_service.web.app import create_app  # noqa: E402

FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO card_log (card_uuid, issued_at, hook, service_id, drug, genes, phenotype,
    recommendation_id, indicator, knowledge_version, shown, patient_hash, order_hash,
    overridden_at)
SELECT 'bench-' || i, datetime('now', '-' || (i % 365) || ' days'), 'order-select',
    'pgx-order-select', 'codeine', 'CYP2D6', 'Ultrarapid Metabolizer', 'codeine-cyp2d6-um',
    'critical', 'bench', 1, printf('%064d', i % 50000), printf('%064d', i),
    CASE WHEN i % 100 = 0 THEN datetime('now', '-' || (i % 365 + 1) || ' days') END
FROM n
"""


def latencies(url: str, seconds: float) -> list[float]:
    app = create_app(Settings(database_url=url, log_level="ERROR"))
    client = app.test_client()
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(phenotype_obs("Ultrarapid Metabolizer")),
    )
    for _ in range(20):
        client.post("/cds-services/pgx-order-select", json=body)
    samples: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        response = client.post("/cds-services/pgx-order-select", json=body)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and response.get_json()["cards"]
    app.extensions["pgx"].store.card_log.flush()
    return samples


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p999 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.999))]
    print(
        f"  {label:<24} {len(samples):>7} {statistics.median(samples):>8.2f} "
        f"{p999:>9.2f} {ordered[-1]:>9.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=4.0, help="of calls per measurement")
    args = parser.parse_args()
    print("order-select, codeine, CYP2D6 UM, in-process; latency in ms")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/cards.sqlite3"
            engine = create_engine(url)
            schema.upgrade(engine)
            with engine.begin() as conn:
                conn.execute(text(FILL), {"rows": rows})
            print(f"\n{rows:,} cards in the log")
            print(f"  {'':<24} {'calls':>7} {'p50':>8} {'p99.9':>9} {'slowest':>9}")
            report("with the index", latencies(url, args.seconds))
            with engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_card_log_overridden_at"))
            report("without (before 0004)", latencies(url, args.seconds))
            engine.dispose()


if __name__ == "__main__":
    main()
