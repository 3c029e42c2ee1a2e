#!/usr/bin/env python3
"""Latency of one hook call on the hot path, and what would cost more.

Measures, for an order-select request whose prefetch holds 20 genomic Observations:

* ``json.loads`` of the prefetch Bundle (the floor: parsing the request at all);
* validating that Bundle with fhir.resources (what the service deliberately does not do);
* ``Engine.evaluate`` (context -> medications -> facts -> recommendations -> cards);
* the whole HTTP call through Flask (``POST /cds-services/pgx-order-select``);
* a call for a drug no guideline covers (answered before any genomic data is read).

Usage: ``python bench/bench_hook.py [--runs 300]``. Prints median and 95th percentile in ms.
CDS Hooks asks for answers on the order of 500 ms, most of which the EHR itself uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from builders import (  # noqa: E402
    APAP_CODEINE,
    bundle,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
)

from cds_service.core.hook_request import parse_hook_request  # noqa: E402
from cds_service.settings import Settings  # noqa: E402
from cds_service.web.app import create_app  # noqa: E402


def twenty_observations() -> dict:
    genes = ["CYP2D6", "CYP2C9", "CYP2C19", "CYP2D6", "CYP2C9"]
    obs = []
    for i in range(10):
        gene = genes[i % len(genes)]
        obs.append(
            phenotype_obs("Normal Metabolizer", gene, obs_id=f"p{i}", date=f"20{10 + i}-01-01")
        )
        obs.append(genotype_obs("*1/*1", gene, obs_id=f"g{i}", date=f"20{10 + i}-01-01"))
    obs[-1] = genotype_obs("*1/*2x2", "CYP2D6", obs_id="g-latest", date="2025-06-01")
    return bundle(*obs)


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(min(20, runs)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    runs = parser.parse_args().runs

    prefetch = twenty_observations()
    raw_bundle = json.dumps(prefetch)
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch={"genomicResults": prefetch}
    )
    raw_body = json.dumps(body)
    uncovered = json.dumps(
        hook_request(
            "order-select",
            [med_order(("617993", "Amoxicillin"))],
            prefetch={"genomicResults": prefetch},
        )
    )

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(database_url=f"sqlite:///{tmp}/bench.sqlite3"))
        engine = app.extensions["pgx"].engine
        client = app.test_client()
        assert (
            len(
                client.post(
                    "/cds-services/pgx-order-select", data=raw_body, content_type="application/json"
                ).get_json()["cards"]
            )
            == 1
        )

        rows = [("json.loads, 20-Observation Bundle", timed(lambda: json.loads(raw_bundle), runs))]
        try:
            from fhir.resources.R4B.bundle import Bundle

            rows.append(
                (
                    "fhir.resources R4B validation of it (not used)",
                    timed(
                        lambda: Bundle.model_validate(json.loads(raw_bundle)), max(10, runs // 10)
                    ),
                )
            )
        except ImportError:
            pass
        rows.append(
            (
                "Engine.evaluate (parse + decide + cards)",
                timed(
                    lambda: engine.evaluate(
                        parse_hook_request(json.loads(raw_body), "order-select")
                    ),
                    runs,
                ),
            )
        )
        rows.append(
            (
                "HTTP POST through Flask, card returned",
                timed(
                    lambda: client.post(
                        "/cds-services/pgx-order-select",
                        data=raw_body,
                        content_type="application/json",
                    ),
                    runs,
                ),
            )
        )
        rows.append(
            (
                "HTTP POST, drug not covered (early exit)",
                timed(
                    lambda: client.post(
                        "/cds-services/pgx-order-select",
                        data=uncovered,
                        content_type="application/json",
                    ),
                    runs,
                ),
            )
        )

        store = app.extensions["pgx"].store
        store.card_log.flush()  # the card log's writer is done before the folder goes
        store.engine.dispose()

    print(f"{'what':<52} {'median ms':>10} {'p95 ms':>8}")
    for name, (median, p95) in rows:
        print(f"{name:<52} {median:>10.3f} {p95:>8.3f}")


if __name__ == "__main__":
    main()
