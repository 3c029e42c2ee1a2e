"""The benchmark script still runs (it measures; this only checks it works)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(script: str, *args: str, timeout: float = 120) -> str:
    """What ``bench/<script>`` printed; it must exit 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_bench_runs():
    assert "HTTP POST through Flask, card returned" in bench("bench_hook.py", "--runs", "3")


def test_load_bench_runs_and_reports():
    """bench/bench_load.py --quick: the quiet and the alerting path (card log on SQLite, and on
    PostgreSQL where it is installed) against the trivial app under sync workers and under the
    service's settings, the FHIR path and the growth table (it checks that the benchmark runs
    and reports; the figures of a quick run mean nothing)."""
    out = bench("bench_load.py", "--quick", timeout=300)
    assert "trivial Flask app, gunicorn's default (sync)" in out
    assert "trivial Flask app, the service's settings" in out
    assert "pgx-cds serve, no card" in out
    assert "pgx-cds serve, alerting, card log on SQLite" in out
    assert ("alerting, card log on PostgreSQL" in out) or ("PostgreSQL: skipped" in out)
    # every alerting call answered had its card written to the card log (and a call still in
    # flight when a run stopped may have had its card written too)
    found = re.findall(
        r"(\d+) cards written for (\d+) alerting calls answered, (\d+) at most in flight", out
    )
    assert found
    for written, answered, in_flight in found:
        assert int(answered) <= int(written) <= int(answered) + int(in_flight)
    assert "memory per worker" in out
    assert "1000 results" in out and "100 draft order(s)" in out and "alerting" in out


def test_card_log_bench_runs_and_reports():
    out = bench("bench_card_log.py", "--rows", "2000", "--seconds", "0.3")
    assert "2,000 cards in the log" in out
    assert "with the index" in out and "without (before 0004)" in out


def test_reads_bench_runs_and_reports():
    out = bench("bench_reads.py", "--reads", "20", "--rounds", "1")
    assert "direct (direct.py)" in out and "urllib3 pool" in out and "CPU per read" in out
