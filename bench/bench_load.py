#!/usr/bin/env python3
"""Throughput and latency under load: the service on its production server against a trivial
Flask app on the same server, with the same body and the same load generator, in one run.

Measures, and prints as a table:

* **prefetch path**: an ``order-select`` for acetaminophen/codeine whose prefetch carries 31
  genomic results (a realistic patient), against ``pgx-cds serve`` (gunicorn, one worker per
  core by default) and ``bench/trivial_app.py`` under the same gunicorn settings: requests/s,
  p50, p99 and their ratios (wrk when it is installed, else a Python load generator);
* **FHIR path**: the same order without prefetch against the integration FHIR server
  (``tests/integration/fhir_server``, started here), p50 of one caller, and what the service
  adds to the FHIR server's own latency for the same search;
* memory (RSS) per worker;
* how the cost of one call grows with the number of genomic results (10, 100, 1,000) and of
  draft orders (1, 10, 100), in-process.

Usage: ``.venv/bin/python bench/bench_load.py [--duration 8] [--connections 16] [--quick]``.
``--quick`` runs everything briefly (the CI smoke test); figures from it mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))
BIN = Path(sys.executable).parent

from bodies import prefetch_body  # noqa: E402
from builders import APAP_CODEINE, hook_request, med_order  # noqa: E402
from serving import (  # noqa: E402
    clean_env,
    free_port,
    node_and_npm,
    run_fhir_server,
    start_service,
    stop_process,
)

HOOK = "/cds-services/pgx-order-select"


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[Any]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers_rss_mb(self) -> list[float]:
        out = []
        for child in Path("/proc").glob("[0-9]*"):
            try:
                status = (child / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("PPid", "").strip() == str(self.proc.pid):
                out.append(int(fields.get("VmRSS", "0 kB").split()[0]) / 1024)
        return sorted(out)


def wait_for(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error: it answers
                return
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds} s")


@contextmanager
def serving(cmd: list[str], port: int, env: dict[str, str], probe: str) -> Iterator[Server]:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        wait_for(f"http://127.0.0.1:{port}{probe}", proc)
        yield Server(proc, port)
    finally:
        stop_process(proc)


@contextmanager
def service(tmp: Path, workers: int, **extra: str) -> Iterator[Server]:
    """``pgx-cds serve`` at the defaults a hospital runs with (INFO: one log line a request),
    with a database of its own."""
    running = start_service(
        clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3", **extra),
        "--workers",
        str(workers),
        keep_log=False,
    )
    try:
        yield Server(running.proc, running.port)
    finally:
        running.stop()


def trivial(workers: int, threads: int) -> Iterator[Server]:
    port = free_port()
    cmd = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        "bench.trivial_app:app",
    ]
    return serving(cmd, port, dict(os.environ), "/cds-services/x")


# -- load -------------------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50: float
    p99: float
    tool: str


def load(url: str, body: bytes, seconds: float, connections: int) -> Load:
    if shutil.which("wrk"):
        return _wrk(url, body, seconds, connections)
    return _python_load(url, body, seconds, connections)


def _wrk(url: str, body: bytes, seconds: float, connections: int) -> Load:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body.json").write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{tmp}/body.json", "rb"); wrk.body = f:read("*a"); f:close()\n'
        )
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rps = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("Requests/sec")))
    lat = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            lat[parts[0]] = _ms(parts[1])
    return Load(rps, lat["50%"], lat["99%"], "wrk")


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def _python_load(url: str, body: bytes, seconds: float, connections: int) -> Load:
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    samples: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        conn = HTTPConnection(host, int(port), timeout=10)
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            mine.append((time.perf_counter() - started) * 1000)
        conn.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    samples.sort()
    return Load(
        len(samples) / elapsed,
        statistics.median(samples),
        samples[int(0.99 * (len(samples) - 1))],
        "python",
    )


def _median(loads: list[Load]) -> Load:
    return Load(
        statistics.median(x.rps for x in loads),
        statistics.median(x.p50 for x in loads),
        statistics.median(x.p99 for x in loads),
        loads[0].tool,
    )


def sequential_ms(fn: Callable[[], object], runs: int) -> float:
    for _ in range(min(10, runs)):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


# -- FHIR path --------------------------------------------------------------------------------


@contextmanager
def fhir_server() -> Iterator[str | None]:
    """The integration tests' FHIR server (None without Node.js)."""
    if node_and_npm() is None:
        yield None
        return
    with run_fhir_server("bench-token") as (base, _log):
        yield base


def fhir_path(base: str, svc: Server, runs: int) -> tuple[float, float, float]:
    """p50 of the FHIR server's own search, of a hook call that needs it (one caller), and of
    what the call adds: the difference within each pair, run back to back (the FHIR server's
    own latency drifts by more than the difference between the two medians can show)."""
    subprocess.run(
        [str(BIN / "pgx-cds"), "sandbox", "load", "--fhir", base, "--token", "bench-token"],
        check=True,
        capture_output=True,
    )
    from cds_service.fhir.queries import prefetch_templates
    from cds_service.knowledge.loader import Knowledge
    from cds_service.settings import get_settings

    templates = prefetch_templates(Knowledge(get_settings().knowledge_dir))
    # the same headers as the service's FHIR client (requests asks for gzip, too)
    auth = {
        "Authorization": "Bearer bench-token",
        "Accept": "application/fhir+json, application/json",
        "Accept-Encoding": "gzip, deflate",
    }
    # the reads the hook call needs (results, active medications, the patient), made side by
    # side as the service makes them: the FHIR server's own latency for this call
    reads = [
        urllib.request.Request(
            f"{base}/" + template.replace("{{context.patientId}}", "pgx-cyp2d6-um"), headers=auth
        )
        for template in templates.values()
    ]

    def search() -> None:
        threads = [
            threading.Thread(target=lambda r=r: urllib.request.urlopen(r).read()) for r in reads
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    body = json.dumps(
        hook_request(
            "order-select",
            [med_order(APAP_CODEINE, patient="pgx-cyp2d6-um")],
            fhir_server=base,
            token="bench-token",
            patient="pgx-cyp2d6-um",
        )
    ).encode()
    call = urllib.request.Request(
        svc.url + HOOK, data=body, headers={"Content-Type": "application/json"}
    )

    def hook() -> None:
        urllib.request.urlopen(call).read()

    # the call must do what is measured: read the FHIR server and answer with the card
    [card] = json.loads(urllib.request.urlopen(call).read())["cards"]
    assert card["indicator"] == "critical", card

    direct: list[float] = []
    through: list[float] = []
    for i in range(runs + 10):  # alternating, so that the FHIR server's own drift hits both
        for run, into in ((search, direct), (hook, through)):
            started = time.perf_counter()
            run()
            if i >= 10:  # warm-up
                into.append((time.perf_counter() - started) * 1000)
    added = [t - d for d, t in zip(direct, through, strict=True)]
    return statistics.median(direct), statistics.median(through), statistics.median(added)


# -- scaling ----------------------------------------------------------------------------------


def scaling(runs: int) -> list[tuple[str, float]]:
    from cds_service.core.hook_request import parse_hook_request
    from cds_service.settings import Settings
    from cds_service.web.app import create_app

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(database_url=f"sqlite:///{tmp}/s.sqlite3", log_level="ERROR"))
        engine = app.extensions["pgx"].engine
        for results, orders in ((10, 1), (100, 1), (1000, 1), (31, 10), (31, 100)):
            body = prefetch_body(results, orders)
            request = parse_hook_request(body, "order-select")
            ms = sequential_ms(lambda r=request: engine.evaluate(r), max(3, runs // (1 + orders)))
            rows.append((f"{results} results, {orders} draft order(s)", ms))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=9, help="alternating runs of each")
    parser.add_argument("--quick", action="store_true", help="brief run (smoke test)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.duration
    runs = 10 if args.quick else 200
    rounds = 1 if args.quick else args.rounds
    body = json.dumps(prefetch_body()).encode()

    print(
        f"load: {args.connections} connections, {seconds:g} s per run, {args.workers} worker(s), "
        f"{rounds} alternating round(s) per server (medians shown)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        with service(Path(tmp), args.workers) as svc, trivial(args.workers, 4) as bare:
            both: dict[str, list[Load]] = {"ours": [], "theirs": []}
            for _ in range(rounds):  # alternate, so that a noisy moment hits both alike
                both["theirs"].append(load(bare.url + HOOK, body, seconds, args.connections))
                both["ours"].append(load(svc.url + HOOK, body, seconds, args.connections))
            ours, theirs = (_median(both[k]) for k in ("ours", "theirs"))
            # ratios per round (each pair ran back to back, under the same conditions)
            ratios = [
                (o.rps / t.rps, o.p50 / t.p50, o.p99 / t.p99)
                for o, t in zip(both["ours"], both["theirs"], strict=True)
            ]
            rss = svc.workers_rss_mb()
        with service(Path(tmp), args.workers) as svc, fhir_server() as base:
            fhir = fhir_path(base, svc, runs) if base else None

    print(f"\nprefetch path ({ours.tool}; body {len(body) // 1024} KB, 31 genomic results)")
    print(f"{'server':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'pgx-cds serve':<44} {ours.rps:>8.0f} {ours.p50:>8.2f} {ours.p99:>8.2f}")
    print(
        f"{'trivial Flask app, same gunicorn settings':<44} "
        f"{theirs.rps:>8.0f} {theirs.p50:>8.2f} {theirs.p99:>8.2f}"
    )
    rps_ratio, p50_ratio, p99_ratio = (statistics.median(r[i] for r in ratios) for i in range(3))
    print(
        f"{'ratio (service / trivial), median of rounds':<44} {rps_ratio:>8.2f} "
        f"{p50_ratio:>8.2f} {p99_ratio:>8.2f}"
    )
    print(
        "  per round (throughput / p99 ratios): "
        + ", ".join(f"{r[0]:.2f} / {r[2]:.2f}" for r in ratios)
    )
    # A slow spell of the machine only ever lowers a round's throughput: each server's best
    # round is what it does undisturbed (as timeit takes the fastest run).
    best_ours, best_theirs = (max(x.rps for x in both[k]) for k in ("ours", "theirs"))
    print(
        f"  best rounds: service {best_ours:.0f} req/s, trivial {best_theirs:.0f} req/s, "
        f"ratio {best_ours / best_theirs:.2f}"
    )
    print(f"\nmemory per worker (RSS): {', '.join(f'{m:.0f} MB' for m in rss) or 'n/a'}")
    if fhir:
        print(
            f"\nFHIR path (one caller, p50): the call's FHIR reads alone {fhir[0]:.2f} ms, hook "
            f"call without prefetch {fhir[1]:.2f} ms; the service adds {fhir[2]:.2f} ms (median "
            "of the differences within back-to-back pairs)"
        )
    else:
        print("\nFHIR path: skipped (Node.js not found for the integration FHIR server)")
    print("\nin-process cost of one call as it grows (Engine.evaluate, p50):")
    for name, ms in scaling(runs):
        print(f"  {name:<36} {ms:>8.3f} ms")


if __name__ == "__main__":
    main()
