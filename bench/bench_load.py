#!/usr/bin/env python3
"""Throughput and latency under load: the service on its production server against a trivial
Flask app, with the same body and the same load generator, in one run.

Measures, and prints as a table (``bench/bodies.py`` makes the bodies):

* **the quiet path**: an ``order-select`` for acetaminophen/codeine whose prefetch carries 31
  genomic results of a CYP2D6 normal metabolizer (a realistic patient): no card;
* **the alerting path**: the same patient as an ultrarapid metabolizer: the critical card with
  its one-click suggestions, written to the card log, with the card log on SQLite and on
  PostgreSQL (a throw-away cluster, as the integration tests start one; skipped with a message
  where PostgreSQL is not installed);
* against ``bench/trivial_app.py`` under gunicorn's default (sync) workers and under the
  service's own settings (gthread, ``THREADS`` threads): requests/s, p50, p99 and, for each
  service line, the medians over alternating rounds of its ratios to each trivial server
  within the same round, and the spread of its rounds (wrk when installed, else a Python load
  generator); the cards the card log wrote against the alerting calls answered;
* **FHIR path**: the alerting order without prefetch against the integration FHIR server
  (``tests/integration/fhir_server``, started here), p50 of one caller, and what the service
  adds to the FHIR server's own latency for the same reads (median of back-to-back pairs);
* memory (RSS) per worker;
* how the cost of one call grows with the number of genomic results (10, 100, 1,000) and of
  draft orders (1, 10, 100), in-process, on the quiet path and the alerting one.

Usage: ``.venv/bin/python bench/bench_load.py [--duration 3] [--rounds 9] [--connections 16]
[--no-postgres] [--quick]``. ``--quick`` runs everything briefly (the CI smoke test); figures
from it mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
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

from bodies import NORMAL, ULTRARAPID, prefetch_body  # noqa: E402
from builders import APAP_CODEINE, hook_request, med_order  # noqa: E402
from postgres import throwaway_postgres  # noqa: E402
from serving import (  # noqa: E402
    clean_env,
    free_port,
    node_and_npm,
    run_fhir_server,
    start_service,
    stop_process,
)

HOOK = "/cds-services/pgx-order-select"
#: threads per worker of ``pgx-cds serve`` (its default)
THREADS = 4
HASH_KEY = "3f1c9a7be24d5086c1f7e9a2b4d6083e5a7c9e1f3b5d7092a4c6e8f0b2d4f617"


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
def service(database_url: str, workers: int, **extra: str) -> Iterator[Server]:
    """``pgx-cds serve`` at the defaults a hospital runs with (INFO: one log line a request;
    one worker per core, ``THREADS`` threads each), its card log in ``database_url``."""
    running = start_service(
        clean_env(PGX_CDS_DATABASE_URL=database_url, PGX_CDS_HASH_KEY=HASH_KEY, **extra),
        "--workers",
        str(workers),
        "--threads",
        str(THREADS),
        keep_log=False,
    )
    try:
        yield Server(running.proc, running.port)
    finally:
        running.stop()


def trivial(workers: int, threads: int | None) -> contextlib.AbstractContextManager[Server]:
    """The trivial app under gunicorn: its default (sync) workers when ``threads`` is None,
    else gthread workers with ``threads`` threads (the service's own settings)."""
    port = free_port()
    cmd = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    if threads is not None:
        cmd += ["--worker-class", "gthread", "--threads", str(threads)]
    cmd += ["--log-level", "warning", "bench.trivial_app:app"]
    return serving(cmd, port, dict(os.environ), "/cds-services/x")


def cards_logged(database_url: str) -> int:
    """Rows in the service's card log (what its writers have committed)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM card_log")).scalar() or 0)
    finally:
        engine.dispose()


# -- load -------------------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50: float
    p99: float
    tool: str
    requests: int = 0


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
    done = next((int(ln.split()[0]) for ln in out.splitlines() if " requests in " in ln), 0)
    return Load(rps, lat["50%"], lat["99%"], "wrk", done)


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
        len(samples),
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


def fhir_path(base: str, svc: Server, runs: int) -> tuple[float, float, float, int]:
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

    failed = 0

    def hook() -> None:
        nonlocal failed
        try:
            urllib.request.urlopen(call).read()
        except urllib.error.HTTPError as exc:  # (412: the FHIR server answered too late)
            if exc.code not in (412, 503):
                raise
            failed += 1
            raise TimeoutError from None

    # the call must do what is measured: read the FHIR server and answer with the card
    [card] = json.loads(urllib.request.urlopen(call).read())["cards"]
    assert card["indicator"] == "critical", card

    direct: list[float] = []
    through: list[float] = []
    for i in range(runs + 10):  # alternating, so that the FHIR server's own drift hits both
        pair = []
        try:
            for run in (search, hook):
                started = time.perf_counter()
                run()
                pair.append((time.perf_counter() - started) * 1000)
        except TimeoutError:
            continue  # (a call that failed is no measure of the service: counted, left out)
        if i >= 10:  # warm-up
            direct.append(pair[0])
            through.append(pair[1])
    if not direct:
        raise SystemExit(f"FHIR path: every call failed ({failed} answered 412 or 503)")
    added = [t - d for d, t in zip(direct, through, strict=True)]
    return (
        statistics.median(direct),
        statistics.median(through),
        statistics.median(added),
        failed,
    )


# -- scaling ----------------------------------------------------------------------------------


def scaling(runs: int) -> list[tuple[str, float, float]]:
    """In-process cost of one call (``Engine.evaluate``, p50 ms) as the results and the draft
    orders grow: the quiet path and the alerting one (its cards handed to the card log)."""
    from cds_service.core.hook_request import parse_hook_request
    from cds_service.settings import Settings
    from cds_service.web.app import create_app

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(database_url=f"sqlite:///{tmp}/s.sqlite3", log_level="ERROR"))
        engine = app.extensions["pgx"].engine
        for results, orders in ((10, 1), (100, 1), (1000, 1), (31, 10), (31, 100)):
            ms = []
            for cyp2d6 in (NORMAL, ULTRARAPID):
                request = parse_hook_request(prefetch_body(results, orders, cyp2d6), "order-select")
                ms.append(
                    sequential_ms(
                        lambda r=request: engine.evaluate(r, later=lambda log: log()),
                        max(3, runs // (1 + orders)),
                    )
                )
            rows.append((f"{results} results, {orders} draft order(s)", ms[0], ms[1]))
        app.extensions["pgx"].store.card_log.flush(timeout=30)
    return rows


@dataclass
class Path_:
    """One measured line: a name, the server that answers it, the body it is sent."""

    name: str
    server: str
    body: bytes
    alerting: bool = False


def check_answers(servers: dict[str, Server], quiet: bytes, alerting: bytes) -> None:
    """Each service answers what is measured: no card for the quiet body, the critical card
    with suggestions for the alerting one."""
    for key in ("sqlite", "postgresql"):
        if key not in servers:
            continue
        for body, indicator in ((quiet, None), (alerting, "critical")):
            call = urllib.request.Request(
                servers[key].url + HOOK, data=body, headers={"Content-Type": "application/json"}
            )
            cards = json.loads(urllib.request.urlopen(call).read())["cards"]
            if indicator is None:
                assert cards == [], cards
            else:
                [card] = cards
                assert card["indicator"] == indicator and card["suggestions"], card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=9, help="alternating runs of each")
    parser.add_argument("--quick", action="store_true", help="brief run (smoke test)")
    parser.add_argument("--no-postgres", action="store_true", help="card log on SQLite only")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.duration
    runs = 10 if args.quick else 200
    rounds = 1 if args.quick else args.rounds
    quiet = json.dumps(prefetch_body(cyp2d6=NORMAL)).encode()
    alerting = json.dumps(prefetch_body(cyp2d6=ULTRARAPID)).encode()

    print(
        f"load: {args.connections} connections, {seconds:g} s per run, {args.workers} worker(s), "
        f"{rounds} alternating round(s) of every line (medians shown)"
    )
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        postgres = None if args.no_postgres else stack.enter_context(throwaway_postgres())
        urls = {"sqlite": f"sqlite:///{tmp}/bench.sqlite3"}
        if postgres:
            urls["postgresql"] = postgres
        servers = {
            "sync": stack.enter_context(trivial(args.workers, None)),
            "own": stack.enter_context(trivial(args.workers, THREADS)),
            **{key: stack.enter_context(service(url, args.workers)) for key, url in urls.items()},
        }
        check_answers(servers, quiet, alerting)
        time.sleep(1.0)  # (the check's cards written first: the writers write within 0.05 s)
        logged_before = {key: cards_logged(url) for key, url in urls.items()}
        paths = [
            Path_("trivial Flask app, gunicorn's default (sync)", "sync", quiet),
            Path_(f"trivial Flask app, the service's settings (gthread x{THREADS})", "own", quiet),
            Path_("pgx-cds serve, no card (normal metabolizer)", "sqlite", quiet),
            Path_("pgx-cds serve, alerting, card log on SQLite", "sqlite", alerting, True),
        ]
        if postgres:
            paths.append(
                Path_(
                    "pgx-cds serve, alerting, card log on PostgreSQL", "postgresql", alerting, True
                )
            )
        measured: dict[str, list[Load]] = {p.name: [] for p in paths}
        for _ in range(rounds):  # alternate, so that a noisy moment hits every line alike
            for p in paths:
                measured[p.name].append(
                    load(servers[p.server].url + HOOK, p.body, seconds, args.connections)
                )
        time.sleep(1.0)  # (the card log's writers write within 0.05 s)
        logged = {key: cards_logged(url) - logged_before[key] for key, url in urls.items()}
        rss = servers["sqlite"].workers_rss_mb()
        with fhir_server() as base:
            fhir = fhir_path(base, servers["sqlite"], runs) if base else None
    report(
        paths,
        measured,
        logged,
        rss,
        fhir,
        len(alerting),
        postgres is not None or args.no_postgres,
        args.connections,
    )
    print("\nin-process cost of one call as it grows (Engine.evaluate, p50 ms):")
    print(f"  {'':<36} {'no card':>9} {'alerting':>9}")
    for name, quiet_ms, alerting_ms in scaling(runs):
        print(f"  {name:<36} {quiet_ms:>9.3f} {alerting_ms:>9.3f}")


def report(
    paths: list[Path_],
    measured: dict[str, list[Load]],
    logged: dict[str, int],
    rss: list[float],
    fhir: tuple[float, float, float, int] | None,
    body_bytes: int,
    postgres_tried: bool,
    connections: int,
) -> None:
    tool = measured[paths[0].name][0].tool
    print(f"\nprefetch path ({tool}; body {body_bytes // 1024} KB, 31 genomic results)")
    if tool == "python":
        print(
            "  (no wrk: the Python load generator shares the machine's cores with the servers "
            "and slows the trivial app more than the service, so its ratios flatter the "
            "service; install wrk for figures to set against the goals)"
        )
    print(
        f"{'':<56} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}   {'vs sync':>13}   "
        f"{'vs own settings':>15}   req/s of rounds"
    )
    print(f"{'':<56} {'':>7} {'':>7} {'':>7}   {'req/s':>6} {'p99':>6}   {'req/s':>7} {'p99':>7}")
    bases = [measured[paths[0].name], measured[paths[1].name]]
    for p in paths:
        loads = measured[p.name]
        m = _median(loads)
        line = f"{p.name:<56} {m.rps:>7.0f} {m.p50:>7.2f} {m.p99:>7.2f}"
        if p.server in ("sync", "own"):
            line += " " * 35
        else:  # medians of the ratios within each round (each pair ran back to back)
            ratios = [
                (
                    statistics.median(o.rps / t.rps for o, t in zip(loads, base, strict=True)),
                    statistics.median(o.p99 / t.p99 for o, t in zip(loads, base, strict=True)),
                )
                for base in bases
            ]
            line += (
                f"   {ratios[0][0]:>6.2f} {ratios[0][1]:>6.2f}   {ratios[1][0]:>7.2f} "
                f"{ratios[1][1]:>7.2f}"
            )
        line += f"   {min(x.rps for x in loads):.0f}-{max(x.rps for x in loads):.0f}"
        print(line)
    print("  (ratios: medians over the rounds of service / trivial within the same round)")
    for p in paths[2:]:
        loads, base = measured[p.name], bases[0]
        print(
            f"  per round, {p.name.removeprefix('pgx-cds serve, ')} vs sync (req/s / p99): "
            + ", ".join(
                f"{o.rps / t.rps:.2f} / {o.p99 / t.p99:.2f}"
                for o, t in zip(loads, base, strict=True)
            )
        )
    for key, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        runs = [x for p in paths if p.server == key and p.alerting for x in measured[p.name]]
        answered = sum(x.requests for x in runs)
        if key in logged:
            # (the load generator stops with calls in flight: answered, logged, not counted)
            print(
                f"  card log on {label}: {logged[key]} cards written for {answered} alerting calls"
                f" answered, {len(runs) * connections} at most in flight when runs stopped"
            )
    if not postgres_tried:
        print("  card log on PostgreSQL: skipped (no PostgreSQL server binaries: initdb, pg_ctl)")
    print(f"\nmemory per worker (RSS): {', '.join(f'{m:.0f} MB' for m in rss) or 'n/a'}")
    if fhir:
        print(
            f"\nFHIR path (one caller, p50): the call's FHIR reads alone {fhir[0]:.2f} ms, hook "
            f"call without prefetch {fhir[1]:.2f} ms; the service adds {fhir[2]:.2f} ms (median "
            "of the differences within back-to-back pairs)"
        )
        if fhir[3]:
            print(
                f"  ({fhir[3]} call(s) answered 412 or 503, the FHIR server too slow for the "
                "service's deadline: those pairs left out)"
            )
    else:
        print("\nFHIR path: skipped (Node.js not found for the integration FHIR server)")


if __name__ == "__main__":
    main()
