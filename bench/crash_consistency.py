"""Crash consistency: random SIGKILLs of sender or receiver during a LAN exchange lose nothing.

As root, builds hosts ``a`` and ``b`` with ``tests.netns.Network``, runs a real ``chimera
--headless`` in each, and lets ``tests/crash_harness.py`` queue texts and files at Alice while
killing (SIGKILL) one of the two processes at random moments and starting it again. Full run:
100 kills, 1,000 texts, 20 files (up to 32 MiB); ``--quick``: 10 kills, 100 texts, 3 files.
The seed is printed; ``--seed N`` replays a run. Every count below must be exactly its target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from common import Result, finish, parse_args, say

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests import crash_harness  # noqa: E402
from tests.netns import Network  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seed", type=int, help="replay this run (default: random)")
        parser.add_argument("--kills", type=int, help="SIGKILLs (default 100; quick 10)")
        parser.add_argument("--texts", type=int, help="texts (default 1,000; quick 100)")
        parser.add_argument("--files", type=int, help="files (default 20; quick 3)")

    args = parse_args(__doc__.splitlines()[0], argv, extra)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        say("crash_consistency: needs root and iproute2 (it creates network namespaces)")
        return 1
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    plan = crash_harness.CrashPlan(
        seed=args.seed or crash_harness.default_seed(),
        kills=args.kills or (10 if args.quick else 100),
        texts=args.texts or (100 if args.quick else 1000),
        files=args.files or (3 if args.quick else 20),
        max_file_bytes=(24 if args.quick else 32) << 20,
        max_pause_s=0.8 if args.quick else 1.2,
        settle_timeout_s=60 if args.quick else 180)
    with tempfile.TemporaryDirectory(prefix="chimera-crash-") as tmp, \
            Network(("a", "b")) as network:
        report = crash_harness.run(network, Path(tmp), plan, say)
    return finish("crash consistency", results(report), args.results)


def results(report: crash_harness.CrashReport) -> list[Result]:
    note = f"seed {report.seed}"
    return [
        Result("crash SIGKILLs done (sender + receiver)", report.kills, "", note=(
            f"{report.sender_kills} sender, {report.receiver_kills} receiver; {note}")),
        Result("crash SIGKILLs while starting up", report.startup_kills, ""),
        Result("crash messages sent (texts + files)", report.texts + report.files, "",
               note=f"{report.texts} texts, {report.files} files"),
        Result("crash messages lost", report.lost, "", 0, "equal"),
        Result("crash messages duplicated", report.duplicated, "", 0, "equal"),
        Result("crash texts altered", report.wrong_text, "", 0, "equal"),
        Result("crash files identical (SHA-256)", report.files_identical, "", report.files,
               "equal"),
        Result("crash sender outbox left / failed", report.outbox_left + report.sender_failed,
               "", 0, "equal"),
        Result("crash partial or orphan files", report.partial_files_left + report.orphan_files,
               "", 0, "equal"),
        Result("crash integrity_check not ok", int(report.integrity_sender != "ok")
               + int(report.integrity_receiver != "ok"), "", 0, "equal",
               note=f"{report.integrity_sender} / {report.integrity_receiver}"),
        Result("crash other problems", len(report.problems), "", 0, "equal",
               note="; ".join(report.problems)[:200]),
        Result("crash transfers resumed after a kill", report.resumed_transfers, ""),
        Result("crash run time", round(report.seconds, 1), "s"),
    ]


if __name__ == "__main__":
    sys.exit(main())
