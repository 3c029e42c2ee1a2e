"""The benchmark script still runs (it measures; this only checks it works)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_hook.py"), "--runs", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "HTTP POST through Flask, card returned" in result.stdout


def test_load_bench_runs_and_reports():
    """bench/bench_load.py --quick: both servers, the FHIR path and the growth table (it
    checks that the benchmark runs and reports; the figures of a quick run mean nothing)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_load.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pgx-cds serve" in out and "trivial Flask app" in out and "ratio" in out
    assert "memory per worker" in out
    assert "1000 results" in out and "100 draft order(s)" in out


def test_card_log_bench_runs_and_reports():
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_card_log.py"),
            "--rows",
            "2000",
            "--seconds",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "2,000 cards in the log" in result.stdout
    assert "with the index" in result.stdout and "without (before 0004)" in result.stdout
