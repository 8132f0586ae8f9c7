"""``bench/run --quick`` still runs every benchmark and prints every figure (no timing limits)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_METRICS = [
    "store ingest rate (best batch)",
    "store ingest best batch size",
    "store ingest rows lost",
    "chat latest_page query p95",
    "chat page_before query p95",
    "chat open first paint",
    "chat open painted median",
    "chat open painted p95",
    "chat older page median",
    "chat older page p95",
    "chat pages loaded per scroll",
    "fts build time",
    "fts common word p95",
    "fts rare word p95",
    "fts two words p95",
    "fts prefix p95",
    "fts one letter p95",
    "fts common word, one chat p95",
    "fts queries found their words",
    "event stall p99 tick gap",
    "event stall max tick gap",
    "event storm achieved rate",
    "event latency p99",
    "event storm messages in db",
    "event storm newest shown last, in order",
    "event storm messages kept in view",
    "event storm events handled",
    "event storm handler failures",
    "cold start window visible median",
    "cold start first paint median",
    "cold start exit 0 on SIGTERM",
    "cold start telethon/pystray imported",
]


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.timeout(600)
def test_quick_bench_runs_every_benchmark_and_prints_every_metric() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=540, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "== summary ==" in proc.stdout, output[-6000:]
    summary = proc.stdout.split("== summary ==")[-1]
    missing = [metric for metric in EXPECTED_METRICS
               if not re.search(rf"^{re.escape(metric)}\s+-?\d[\d,]*(\.\d+)?\b", summary, re.M)]
    assert not missing, f"no figure for {missing} in:\n{summary}"
    assert not re.search(r"\bFAIL$", summary, re.M), summary
