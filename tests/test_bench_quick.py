"""``bench/run --quick`` still runs every benchmark and prints every figure (no timing limits)."""

from __future__ import annotations

import json
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
    "pki enroll median (builtin)",
    "pki renew median (builtin)",
    "pki enroll median (step-ca)",
    "pki renew median (step-ca)",
    "pki enrollments and renewals with the right id",
    "telegram upload chimera vs telethon default",
    "telegram download chimera vs telethon default",
    "telegram upload chimera vs link",
    "telegram upload requests, chimera vs telethon default",
    "telegram download client path, cryptg vs OpenSSL via ctypes",
    "telegram transfers that arrived damaged",
    "scale nodes with a full view",
    "scale time to full view vs ceiling",
    "scale datagrams received per node per s vs protocol",
    "scale CPU per node per minute",
    "memory RSS, 1M stored + big chat open vs empty profile",
    "memory database bytes per message",
]
# LAN rows compared with a peer measured in the same run: each must carry the peer's figure and a
# ratio, or say why the peer could not run (verdict n/a), in RESULTS.md and results.json.
EXPECTED_LAN_PEER_ROWS = [
    "lan file Chimera vs bare",
    "lan file Chimera vs bare+sha",
    "lan file Chimera vs openssl",
    "lan file Chimera vs scp",
    "lan file Chimera vs wormhole",
    "lan CPU per GiB sender, Chimera vs bare",
    "lan CPU per GiB receiver, Chimera vs bare",
    "lan text send->ACK p50",
    "lan text send->ACK p99",
]
EXPECTED_METRICS += [
    *EXPECTED_LAN_PEER_ROWS,
    "lan files with a wrong SHA-256 on arrival",
    "lan receiver RSS growth during a file",
    "lan texts not acknowledged",
    "lan discovery median",
    "lan departure, node stopped (SIGTERM, goodbye), max",
    "lan departure, node killed (SIGKILL, silent), max",
]


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.netns
@pytest.mark.timeout(600)
def test_quick_bench_runs_every_benchmark_and_prints_every_metric(tmp_path: Path) -> None:
    committed = ROOT / "bench" / "RESULTS.md"
    committed_before = committed.read_bytes() if committed.exists() else None
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run"), "--quick", "--out",
                           str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=540, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "== summary ==" in proc.stdout, output[-6000:]
    summary = proc.stdout.split("== summary ==")[-1]
    missing = [metric for metric in EXPECTED_METRICS
               if not re.search(rf"^{re.escape(metric)}\s+-?\d[\d,]*(\.\d+)?\b", summary, re.M)]
    assert not missing, f"no figure for {missing} in:\n{summary}"
    assert not re.search(r"\bFAIL$", summary, re.M), summary

    # the written record: the same rows with their peers and ratios, the machine, the commit
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["mode"] == "quick" and record["machine"]["cpu_count"] >= 1
    assert len(record["machine"]["load_average_before"]) == 3
    rows = {row["metric"]: row for row in record["results"]}
    assert not [metric for metric in EXPECTED_METRICS if metric not in rows]
    for metric in EXPECTED_LAN_PEER_ROWS:
        row = rows[metric]
        assert row["peer"], row
        assert (row["peer_figure"] is not None and row["ratio"] is not None) \
            or row["verdict"] == "n/a", row
    table = (tmp_path / "RESULTS.md").read_text()
    for metric in EXPECTED_METRICS:
        assert f"| {metric} | " in table, metric
    # a quick run never rewrites the committed results
    assert (committed.read_bytes() if committed.exists() else None) == committed_before
