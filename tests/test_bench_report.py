"""The benchmark record: ratios against a peer, verdicts on them, RESULTS.md and results.json."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import Result, load_results, table  # noqa: E402
from report import machine_info, results_dir, write_reports  # noqa: E402


def test_ratio_says_how_many_times_better_ours_is_for_rates_and_for_times() -> None:
    rate = Result("file", 300.0, "MiB/s", better="higher", peer="scp", peer_figure=150.0)
    latency = Result("p50", 0.5, "ms", 1.0, "lower", peer="handshake", peer_figure=5.0)
    assert rate.ratio == 2.0
    assert latency.ratio == 10.0
    assert Result("plain", 1.0, "s").ratio is None


def test_ratio_target_decides_the_verdict_beside_the_absolute_target() -> None:
    assert Result("f", 90.0, "MiB/s", better="higher", peer="bare", peer_figure=100.0,
                  ratio_target=0.9).verdict == "PASS"
    assert Result("f", 80.0, "MiB/s", better="higher", peer="bare", peer_figure=100.0,
                  ratio_target=0.9).verdict == "SHORT"
    # ratio fine, absolute target missed: SHORT
    assert Result("p99", 4.0, "ms", 3.0, "lower", peer="x", peer_figure=40.0,
                  ratio_target=2.0).verdict == "SHORT"


def test_a_ratio_just_short_of_its_target_is_never_printed_as_the_target() -> None:
    short = Result("f", 517.0, "MiB/s", better="higher", peer="wormhole", peer_figure=225.0,
                   ratio_target=2.3)
    assert short.verdict == "SHORT" and short.ratio_text == "2.298x"
    met = Result("f", 520.0, "MiB/s", better="higher", peer="wormhole", peer_figure=225.0,
                 ratio_target=2.3)
    assert met.verdict == "PASS" and met.ratio_text == "2.31x"


def test_a_peer_that_could_not_run_keeps_its_row_with_the_reason_and_no_verdict() -> None:
    row = Result("file vs wormhole", 300.0, "MiB/s", better="higher",
                 peer="magic-wormhole: could not be installed (no network)", ratio_target=2.3)
    assert row.verdict == "n/a"
    assert row.ratio_text == "-"
    assert "could not be installed" in row.peer_text
    assert "could not be installed" in table([row])


def test_old_rows_without_peer_fields_still_load(tmp_path: Path) -> None:
    jsonl = tmp_path / "results.jsonl"
    jsonl.write_text(json.dumps({"metric": "m", "value": 2.0, "unit": "s", "target": 1.0,
                                 "better": "lower", "note": ""}) + "\n")
    (row,) = load_results(jsonl)
    assert row.verdict == "SHORT" and row.peer == "" and row.ratio is None


def test_quick_and_partial_runs_never_write_the_committed_results(tmp_path: Path) -> None:
    assert results_dir(BENCH, quick=False, only=None) == BENCH
    assert results_dir(BENCH, quick=True, only=None) == BENCH / "out"
    assert results_dir(BENCH, quick=False, only=["lan"]) == BENCH / "out"
    assert results_dir(BENCH, quick=False, only=None, out=tmp_path) == tmp_path


def test_reports_hold_the_same_rows_machine_and_strict_json(tmp_path: Path) -> None:
    rows = [
        Result("lan file Chimera vs scp", 300.0, "MiB/s", better="higher", peer="scp",
               peer_figure=200.0, ratio_target=1.4, note="1 GiB"),
        Result("lan text p50", float("nan"), "ms", 1.0, "lower"),
        Result("lost | rows", 0, "msgs", 0, "equal"),
    ]
    machine = machine_info([1.0, 1.0, 1.0], [2.0, 1.5, 1.0])
    runs = [{"name": "lan", "exit": 0, "seconds": 12.5, "load_before": [1.0, 1.0, 1.0],
             "load_after": [2.0, 1.5, 1.0]}]
    markdown_path, json_path = write_reports(tmp_path / "out", rows, machine, runs, "quick")

    data = json.loads(json_path.read_text())  # strict: NaN became null
    assert data["mode"] == "quick"
    for key in ("cpu_count", "load_average_before", "load_average_after", "python",
                "openssl_python", "date", "commit"):
        assert key in data["machine"]
    first = data["results"][0]
    assert (first["peer_figure"], first["ratio"], first["verdict"]) == (200.0, 1.5, "PASS")
    assert data["results"][1]["value"] is None

    text = markdown_path.read_text()
    row = "| lan file Chimera vs scp | 300 MiB/s | scp: 200 MiB/s | 1.50x | >= 1.40x peer | PASS |"
    assert row in text
    assert "lost \\| rows" in text  # a pipe in a metric does not break the table
    assert f"{machine['cpu_count']} CPUs" in text
    assert not list((tmp_path / "out").glob(".*partial"))


def test_a_short_row_whose_target_is_beyond_the_machine_limit_says_limit() -> None:
    def row(limit: float | None) -> Result:
        return Result("file vs wormhole", 520.0, "MiB/s", better="higher", peer="wormhole",
                      peer_figure=320.0, ratio_target=2.3, limit=limit)
    assert row(None).verdict == "SHORT"
    assert row(700.0).verdict == "LIMIT"  # 2.3 x 320 = 736 asked, 700 possible
    assert row(740.0).verdict == "SHORT"  # reachable here, so plainly short
    assert "machine limit 700 MiB/s" in row(700.0).target_text
    assert Result("f", 800.0, "MiB/s", better="higher", peer="w", peer_figure=320.0,
                  ratio_target=2.3, limit=700.0).verdict == "PASS"


def _rounds(name: str, *cpu: tuple[float, float]):
    from lan import FileRound

    file_round = FileRound(name, name)
    for sender, receiver in cpu:
        file_round.seconds.append(1.0)
        file_round.sender_cpu.append(sender)
        file_round.receiver_cpu.append(receiver)
    return file_round


def test_the_machine_limit_never_sits_below_what_chimera_itself_did() -> None:
    import lan

    size = lan.GIB
    bare = _rounds("bare", (1.0, 1.0), (0.8, 0.9))
    limit, note = lan.cpu_limit(size, {"bare": bare})
    cores = os.cpu_count() or 1
    # SHA-256 is measured inside; the note says what it found (two decimals)
    hashing = float(re.search(r"([0-9.]+) s per GiB of SHA-256", note).group(1))
    assert abs(limit - cores * 1024 / (1.7 + hashing)) < 0.005 * limit
    assert "bare pair's cheapest round" in note
    # a bare pair whose page-cache writes were expensive, and a Chimera round cheaper than it
    slow_bare = _rounds("bare", (2.0, 1.8), (2.1, 1.7))
    chimera = _rounds("chimera", (1.2, 2.0), (1.1, 2.1))
    limit, note = lan.cpu_limit(size, {"bare": slow_bare, "chimera": chimera})
    assert abs(limit - cores * 1024 / 3.2) < 0.01 * limit
    assert "cheapest Chimera round" in note
