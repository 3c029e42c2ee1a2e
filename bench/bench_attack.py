#!/usr/bin/env python3
"""A normal caller's latency while hostile callers load the service (issue 10).

Starts ``pgx-cds serve`` on a free loopback port, measures an ordinary order-select call
alone, then while ``--attackers`` threads send the issue's reproducers in a loop: 50,000
codeine orders in one ~5 MB request, and a 4.8 MB medication text. Prints the normal
caller's median and 99th percentile, and what the attackers got.

Usage: ``python bench/bench_attack.py [--seconds 10] [--attackers 4]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from builders import (  # noqa: E402
    APAP_CODEINE,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)
from serving import clean_env, start_service  # noqa: E402

PM = phenotype_obs("Poor Metabolizer")


def _bodies() -> tuple[bytes, list[bytes]]:
    normal = json.dumps(
        hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(PM))
    ).encode()
    many = hook_request(
        "order-sign",
        [med_order(APAP_CODEINE, order_id=f"rx-{i}") for i in range(50_000)],
        prefetch=with_results(PM),
    )
    # trim to the 5 MB limit, as the attack did
    many["context"]["draftOrders"]["entry"] = many["context"]["draftOrders"]["entry"][:8_500]
    text = hook_request("order-sign", [med_order(APAP_CODEINE)], prefetch=with_results(PM))
    order = text["context"]["draftOrders"]["entry"][0]["resource"]
    order["medicationCodeableConcept"] = {"text": "tramadol " * 500_000}
    return normal, [json.dumps(many).encode(), json.dumps(text).encode()]


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"n={len(ordered)} p50={statistics.median(ordered):.1f} ms p99={p99:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--attackers", type=int, default=4)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="pgx-bench-")
    server = start_service(
        clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{data}/f.db"),
        "--host",
        "127.0.0.1",
        keep_log=False,
    )
    url = server.url
    try:
        normal, attacks = _bodies()
        headers = {"Content-Type": "application/json"}
        session = requests.Session()

        def measure(seconds: float) -> list[float]:
            out = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                started = time.perf_counter()
                response = session.post(
                    f"{url}/cds-services/pgx-order-select", data=normal, headers=headers, timeout=30
                )
                out.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            return out

        print("alone:        ", _percentiles(measure(args.seconds / 2)))
        stop = threading.Event()
        outcomes: Counter[str] = Counter()
        attack_ms: list[float] = []

        def attack(i: int) -> None:
            own = requests.Session()
            while not stop.is_set():
                body = attacks[i % len(attacks)]
                started = time.perf_counter()
                try:
                    r = own.post(
                        f"{url}/cds-services/pgx-order-sign", data=body, headers=headers, timeout=60
                    )
                    outcomes[f"{r.status_code} ({len(r.content)} bytes)"] += 1
                except requests.RequestException as exc:
                    outcomes[type(exc).__name__] += 1
                attack_ms.append((time.perf_counter() - started) * 1000)

        threads = [threading.Thread(target=attack, args=(i,)) for i in range(args.attackers)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        print("under attack: ", _percentiles(measure(args.seconds)))
        stop.set()
        for t in threads:
            t.join()
        print("attackers got:", dict(outcomes), "in", _percentiles(attack_ms))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
