"""The written record of a ``bench/run``: ``RESULTS.md`` (a table to read) and ``results.json``.

Both hold the same rows (metric, our figure, the ceiling or peer measured beside it in the same
run, the ratio, the target, the verdict) plus what the figures depend on: the machine (CPU count,
load average before and after), the Python and OpenSSL versions, the date and the git commit. A
full run of every benchmark writes them into ``bench/``, where they are committed; ``--quick`` and
``--only`` runs write into ``bench/out/`` (ignored by git) unless ``--out`` says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import ssl
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Result, format_number

REPO_ROOT = Path(__file__).resolve().parent.parent
VERDICTS = ("PASS", "SHORT", "LIMIT", "FAIL", "n/a", "info")


def results_dir(bench_dir: Path, *, quick: bool, only: Sequence[str] | None,
                out: Path | None = None) -> Path:
    """Where a run writes RESULTS.md and results.json: ``out`` if given, ``bench/`` (the
    committed results) for a full run of every benchmark, else ``bench/out/``."""
    if out is not None:
        return out
    return bench_dir if not quick and not only else bench_dir / "out"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _command_output(argv: Sequence[str]) -> str:
    if shutil.which(argv[0]) is None:
        return ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO_ROOT,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def git_commit() -> dict[str, Any]:
    commit = _command_output(["git", "rev-parse", "HEAD"])
    changed = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit or None, "uncommitted_changes": bool(changed)}


def machine_info(load_before: list[float], load_after: list[float]) -> dict[str, Any]:
    """What the figures were measured on (for results.json and the head of RESULTS.md)."""
    memory_gib = None
    with contextlib.suppress(ValueError, OSError):
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": memory_gib,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "openssl_python": ssl.OPENSSL_VERSION,
        "openssl_cli": _command_output(["openssl", "version"]),
        **git_commit(),
    }


def _plain(value: Any) -> Any:
    """NaN and infinities become null: results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_json(results: Sequence[Result], machine: dict[str, Any], runs: Sequence[dict[str, Any]],
            mode: str) -> dict[str, Any]:
    return {
        "schema": 1,
        "mode": mode,
        "machine": machine,
        "benchmarks": list(runs),
        "results": [{key: _plain(value) for key, value in r.as_json().items()} for r in results],
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(results: Sequence[Result], machine: dict[str, Any],
             runs: Sequence[dict[str, Any]], mode: str) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    commit = machine.get("commit") or "unknown"
    if machine.get("uncommitted_changes"):
        commit += " (plus uncommitted changes)"
    lines = [
        "# Chimera benchmark results",
        "",
        f"Written by `bench/run{' --quick' if mode == 'quick' else ''}` on {machine['date']}, "
        f"commit {commit}. Every ratio is against a ceiling or a peer measured side by side in "
        "the same run; ratio > 1 means Chimera is better (ours / peer for rates, peer / ours for "
        "times and CPU). A figure that misses its target is SHORT, or LIMIT when the target asks "
        "for more than this machine allows (the machine limit in the target column, measured "
        "in the same run; its note says how); FAIL is a broken invariant; n/a is a comparison "
        "whose peer could not run (the peer column says why).",
        "",
        f"Machine: {machine['cpu_count']} CPUs ({machine['cpu_model'] or 'unknown model'}), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}; Python {machine['python']}, "
        f"{machine['openssl_python']}; load average before "
        f"{' '.join(map(str, machine['load_average_before']))}, after "
        f"{' '.join(map(str, machine['load_average_after']))}.",
        "",
        "| metric | ours | ceiling / peer | ratio | target | verdict |",
        "| --- | ---: | --- | ---: | --- | --- |",
    ]
    for r in results:
        lines.append(f"| {_cell(r.metric)} | {_cell(r.figure_text)} | {_cell(r.peer_text)} | "
                     f"{r.ratio_text} | {_cell(r.target_text)} | {r.verdict} |")
    lines += ["", f"{len(results)} figures: "
              + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + ".", ""]
    lines += ["## Benchmarks", "", "| benchmark | exit | seconds | load before | load after |",
              "| --- | --- | ---: | --- | --- |"]
    for run in runs:
        lines.append(f"| {run['name']} | {run['exit']} | {format_number(run['seconds'])} | "
                     f"{run['load_before'][0]} | {run['load_after'][0]} |")
    notes = [r for r in results if r.note]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- **{_cell(r.metric)}**: {r.note}" for r in notes]
    return "\n".join(lines) + "\n"


def write_reports(out_dir: Path, results: Sequence[Result], machine: dict[str, Any],
                  runs: Sequence[dict[str, Any]], mode: str) -> tuple[Path, Path]:
    """Write RESULTS.md and results.json into ``out_dir`` (each replaced whole, atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
            ("RESULTS.md", markdown(results, machine, runs, mode)),
            ("results.json", json.dumps(as_json(results, machine, runs, mode), indent=1,
                                        allow_nan=False) + "\n")):
        path = out_dir / name
        partial = path.with_name(f".{name}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
        written.append(path)
    return written[0], written[1]
