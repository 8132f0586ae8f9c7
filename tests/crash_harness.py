"""Crash consistency between two real ``chimera --headless`` processes in network namespaces.

Alice sends Bob texts and files; at random moments (seeded RNG) one of the two processes is
killed with SIGKILL and started again. Messages are queued into Alice's database the way
``chimera send`` hands them to a running app (message + outbox row in one transaction), also
while her process is dead. At the end the harness waits for Alice's outbox to drain and checks
what the design promises: every uid exactly once on Bob's side with the same text, every file
byte-identical, no partial or orphan file under a final name, no leftover ``*.part``, and
``PRAGMA integrity_check`` ok on both databases.

Used by tests/test_crash_consistency_netns.py (quick variant) and bench/crash_consistency.py
(the full 100-kill run).
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chimera_tk.net.peer.files import PARTIAL_DIR
from chimera_tk.net.peer.worker import placeholder_title
from chimera_tk.router import Router, file_sha256
from chimera_tk.store import Store
from tests.lan_nodes import AppNode
from tests.netns import Network
from tests.pki_factory import TeamCA

ALICE, BOB = 1001, 2002
_QUEUED = re.compile(r"queued in the running Chimera as message (\S+)")
# Several files share a name, so the receiver's collision handling runs under the kills too.
FILE_NAMES = ("photo.jpg", "report final.pdf", "photo.jpg", "../../etc/passwd", "notes.txt",
              "photo.jpg", "archive.tar.gz", "CON", "relatório.pdf", "a" * 240 + ".bin")


@dataclass(frozen=True, slots=True)
class CrashPlan:
    seed: int
    kills: int
    texts: int
    files: int
    max_file_bytes: int = 24 << 20
    max_pause_s: float = 1.2  # longest wait between queueing a batch and the next kill
    settle_timeout_s: float = 120.0
    # Alice's link is slowed to this (tc) so that files take seconds and kills land mid-file
    link_rate: str = "100mbit"


@dataclass
class CrashReport:
    seed: int
    kills: int = 0
    sender_kills: int = 0
    receiver_kills: int = 0
    startup_kills: int = 0  # extra kills of a process still starting (recovery, migrations)
    texts: int = 0
    files: int = 0
    file_bytes: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_text: int = 0
    files_identical: int = 0
    files_damaged: int = 0
    sender_failed: int = 0
    outbox_left: int = 0
    partial_files_left: int = 0
    orphan_files: int = 0  # files in downloads that no message points at
    resumed_transfers: int = 0
    integrity_sender: str = ""
    integrity_receiver: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.problems and self.lost == 0 and self.duplicated == 0
                and self.wrong_text == 0 and self.files_damaged == 0
                and self.files_identical == self.files and self.sender_failed == 0
                and self.outbox_left == 0 and self.partial_files_left == 0
                and self.orphan_files == 0 and self.integrity_sender == "ok"
                and self.integrity_receiver == "ok")

    def summary(self) -> str:
        return (f"seed {self.seed}: {self.kills} SIGKILLs ({self.sender_kills} sender, "
                f"{self.receiver_kills} receiver; {self.startup_kills} more while starting), "
                f"{self.texts} texts + {self.files} files "
                f"({self.file_bytes / 2**20:.1f} MiB) -> lost {self.lost}, duplicated "
                f"{self.duplicated}, wrong text {self.wrong_text}, files identical "
                f"{self.files_identical}/{self.files}, sender failed {self.sender_failed}, "
                f"outbox left {self.outbox_left}, partial files left {self.partial_files_left}, "
                f"orphan files {self.orphan_files}, resumed transfers {self.resumed_transfers}, "
                f"integrity_check {self.integrity_sender}/{self.integrity_receiver}, "
                f"{self.seconds:.1f} s")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def integrity(database: Path) -> str:
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)


def _make_files(rng: random.Random, folder: Path, plan: CrashPlan) -> list[Path]:
    """``plan.files`` files of random content: one empty, one of the largest size, the rest
    random sizes; names from FILE_NAMES (colliding and hostile ones included)."""
    paths = []
    for index in range(plan.files):
        if index == 0:
            size = 0
        elif index == 1:
            size = plan.max_file_bytes
        else:
            size = rng.randrange(1, plan.max_file_bytes)
        name = FILE_NAMES[index % len(FILE_NAMES)]
        safe_local = name.replace("/", "_").replace("..", "__")
        target = folder / f"{index:03d}" / safe_local
        target.parent.mkdir(parents=True)
        with open(target, "wb") as out:
            remaining = size
            while remaining:
                step = min(remaining, 1 << 20)
                out.write(rng.randbytes(step))
                remaining -= step
        paths.append(target)
    return paths


def _queue(alice: AppNode, items: list[str | Path]) -> list[tuple[str, str | Path]]:
    """Queue texts and files at Alice's running app; returns (uid, item).

    Files go through the real ``chimera send --file`` command; texts, for speed, through the
    same code it runs when the profile is open in another process (message + outbox row in one
    transaction in the shared database)."""
    queued = [(_send_command(alice, item), item) for item in items if isinstance(item, Path)]
    store = Store.open(alice.paths.database)
    try:
        store.dialogs.ensure(BOB, "user", placeholder_title(BOB))
        router = Router(store, lambda _event: None)
        for item in items:
            if not isinstance(item, Path):
                queued.append((router.send_text(BOB, item).uid, item))
        return queued
    finally:
        store.close()


def _send_command(alice: AppNode, path: Path) -> str:
    result = alice.send(BOB, file=path, wait=0)
    found = _QUEUED.search(result.stderr)
    if found is None:
        raise AssertionError(f"chimera send did not queue {path.name} in the running app "
                             f"(exit {result.returncode}):\n{result.stderr}")
    return found.group(1)


def _kill(node: AppNode) -> None:
    if node.process is None:
        return
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(timeout=30)
    node.process = None


def _kill_while_starting(node: AppNode, after_s: float) -> None:
    node.process = node.host.popen(node.chimera("--headless", "-v"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(after_s)
    _kill(node)


def _outbox_state(alice: AppNode) -> tuple[int, int]:
    """(outbox rows left, failed outgoing messages) in Alice's database."""
    conn = sqlite3.connect(alice.paths.database, timeout=30)
    try:
        left = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        failed = conn.execute(
            "SELECT count(*) FROM messages WHERE outgoing = 1 AND state = 'failed'").fetchone()[0]
    finally:
        conn.close()
    return left, failed


def _settle(alice: AppNode, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left, failed = _outbox_state(alice)
        if left == 0 or left == failed:
            return True
        time.sleep(0.3)
    return False


def run(network: Network, workdir: Path, plan: CrashPlan,
        say: Callable[[str], None] = print) -> CrashReport:
    """Run ``plan`` on hosts ``a`` (Alice, sender) and ``b`` (Bob, receiver) of ``network``."""
    began = time.monotonic()
    rng = random.Random(plan.seed)
    report = CrashReport(seed=plan.seed)
    say(f"crash consistency: seed {plan.seed}, {plan.kills} kills, {plan.texts} texts, "
        f"{plan.files} files, link {plan.link_rate or 'unlimited'}")
    ca = TeamCA.create()
    alice = AppNode(network["a"], workdir / "a", "alice", ALICE, ca)
    bob = AppNode(network["b"], workdir / "b", "bob", BOB, ca)
    sources = _make_files(rng, workdir / "outgoing", plan)
    report.file_bytes = sum(p.stat().st_size for p in sources)
    texts = [f"message {i} · {rng.getrandbits(64):x} " + "x" * rng.randrange(0, 2000)
             for i in range(plan.texts)]
    items: list[str | Path] = [*texts, *sources]
    rng.shuffle(items)
    batches = [items[i::plan.kills + 1] for i in range(plan.kills + 1)]
    expected: dict[str, str | Path] = {}
    if plan.link_rate:
        network["a"].run(["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
                          plan.link_rate, "burst", "256kb", "latency", "200ms"])
    bob.start_headless()
    alice.start_headless()
    for number, batch in enumerate(batches):
        expected.update(_queue(alice, batch))
        if number == plan.kills:
            break
        time.sleep(rng.uniform(0, plan.max_pause_s))
        victim = rng.choice((alice, bob))
        _kill(victim)
        report.kills += 1
        if victim is alice:
            report.sender_kills += 1
        else:
            report.receiver_kills += 1
        if rng.random() < 0.3:  # sometimes stay down a while: the other side must notice
            time.sleep(rng.uniform(0, 2 * plan.max_pause_s))
        if rng.random() < 0.15:  # and sometimes die again while starting up
            _kill_while_starting(victim, rng.uniform(0.05, 1.5))
            report.startup_kills += 1
        victim.start_headless()
    if not _settle(alice, plan.settle_timeout_s):
        report.problems.append(f"Alice's outbox did not drain in {plan.settle_timeout_s:.0f} s")
    _check(report, alice, bob, expected)
    for node in (alice, bob):
        if node.stop() != 0:
            report.problems.append(f"{node.name} did not exit 0 on SIGTERM")
    report.integrity_sender = integrity(alice.paths.database)
    report.integrity_receiver = integrity(bob.paths.database)
    report.resumed_transfers = sum(
        1 for line in bob.log().splitlines()
        if "receiving file" in line and not line.endswith(" byte 0"))
    report.seconds = time.monotonic() - began
    say(report.summary())
    for problem in report.problems:
        say(f"  problem: {problem}")
    return report


def _check(report: CrashReport, alice: AppNode, bob: AppNode,
           expected: dict[str, str | Path]) -> None:
    report.texts = sum(1 for item in expected.values() if not isinstance(item, Path))
    report.files = len(expected) - report.texts
    report.outbox_left, report.sender_failed = _outbox_state(alice)
    received = [m for m in bob.export() if m["direction"] == "in" and m["dialog"] == ALICE]
    counts = Counter(m["uid"] for m in received)
    report.duplicated = sum(n - 1 for n in counts.values())
    report.lost = sum(1 for uid in expected if uid not in counts)
    unexpected = [uid for uid in counts if uid not in expected]
    if unexpected:
        report.problems.append(f"{len(unexpected)} received uids were never sent")
    downloads = bob.paths.downloads.resolve()
    referenced: set[Path] = set()
    by_uid = {m["uid"]: m for m in received}
    for uid, item in expected.items():
        message = by_uid.get(uid)
        if message is None:
            continue
        if not isinstance(item, Path):
            if message["text"] != item or message["file"] is not None:
                report.wrong_text += 1
            continue
        file = message["file"]
        if file is None or file["state"] != "complete" or not file["path"]:
            report.files_damaged += 1
            report.problems.append(f"file {uid} ended as {file and file['state']}")
            continue
        path = Path(file["path"])
        referenced.add(path.resolve())
        if path.resolve().parent != downloads:
            report.problems.append(f"file {uid} saved outside downloads: {path}")
        if path.is_file() and file_sha256(path) == file_sha256(item):
            report.files_identical += 1
        else:
            report.files_damaged += 1
    finals = {p.resolve() for p in downloads.iterdir() if p.is_file()}
    report.orphan_files = len(finals - referenced)
    for orphan in sorted(finals - referenced):
        report.problems.append(f"orphan under a final name: {orphan.name} "
                               f"({orphan.stat().st_size} bytes)")
    partial_dir = downloads / PARTIAL_DIR
    report.partial_files_left = (len([p for p in partial_dir.iterdir()])
                                 if partial_dir.exists() else 0)


def default_seed() -> int:
    return int(os.environ.get("CHIMERA_CRASH_SEED", "0")) or random.SystemRandom().randrange(
        1, 2**31)
