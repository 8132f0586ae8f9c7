"""The LAN link between two network namespaces: file throughput, text latency, discovery, memory.

Everything runs in ONE run, side by side, so the ratios hold on a noisy machine. As root, the
script builds hosts ``a`` and ``b`` on a bridge with ``tests.netns.Network`` and measures:

1. A file (1 GiB; 64 MiB with ``--quick``) from a to b, in rotating order each round: Chimera
   (a driver process in a runs the real ``PeerWorker`` and sends to a real ``chimera --headless``
   in b); a bare mutual-TLS socket pair with the same certificates and TLS context (blocking
   sockets, 1 MiB file reads and file writes, no hashing: the ceiling); the same with SHA-256 on
   the receiver (the ceiling for a link that must verify, as Chimera's); and the peers of
   lan_peers.py: ``openssl s_server``/``s_client`` (TLS 1.3, same ECDSA keys), scp to an sshd
   in b, magic-wormhole with its own mailbox and transit relay in b. Chimera's clock runs from
   ``submit()`` on a warm, verified connection to the delivered state: offer, accept, data, the
   receiver's SHA-256 check, fsync and rename, ACK. Process start-up, discovery and the sender's
   own hashing (done when a file is queued) are outside it, which a driver makes exact where log
   lines would give milliseconds. The bare clock runs from the first byte to the receiver's
   one-byte answer after closing the file; each peer tool's is its command less the median of
   its set-up (a one-byte file). Every arrival is hashed against the source. CPU seconds per GiB
   on each side: psutil for Chimera and the bare pair, wait4 for the tools (and sshd's reaped
   children for scp). The receiver's RSS is sampled every 20 ms during Chimera's transfers. A
   tool that cannot run here keeps its row, with the reason in the peer column.
2. Text send->ACK over the persistent connection (the channel path ``_PeerSender`` uses, to a
   receiver that commits to SQLite before it ACKs; 10,000 texts, 500 with ``--quick``), then the
   same through the outbox (sender's database writes included); the peer figure of both is the
   original design's fresh TLS connection per message.
3. Discovery: two real ``chimera --headless`` started together; the time from the later
   "LAN up" log line to the later "verified on the LAN" line, median over a few runs.
4. Departure: the real discovery worker runs in a (as in every node) while bob's
   ``chimera --headless`` in b is stopped (SIGTERM: it says goodbye) or killed (SIGKILL: it falls
   silent); the time from the signal until a drops bob.

``--profile`` adds one Chimera transfer under py-spy (both processes) and prints where the time
goes. Traffic goes only to the addresses of the namespaces this script creates.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from common import Result, TextGenerator, finish, median, ms, parse_args, percentile, say
from lan_peers import (
    DEFAULT_TOOLS_VENV,
    OpenSslPair,
    ScpTool,
    Tool,
    ToolUnavailable,
    WormholePair,
    die_with_parent,
    process_cpu,
)

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from chimera_tk.config import LanSettings  # noqa: E402
from chimera_tk.events import (  # noqa: E402
    MessageChanged,
    PeerAnnounced,
    PeerExpired,
    PeerUnavailable,
    PeerVerified,
)
from chimera_tk.net.discovery.worker import DiscoveryWorker  # noqa: E402
from chimera_tk.net.peer.protocol import Ack, Hello, PeerSession, Text  # noqa: E402
from chimera_tk.net.peer.tls import (  # noqa: E402
    TlsFiles,
    client_context,
    peer_user_id,
    require_identity,
    server_context,
)
from chimera_tk.net.peer.worker import PeerLimits, PeerWorker  # noqa: E402
from chimera_tk.store import Store  # noqa: E402
from chimera_tk.store.records import utc_now_ms  # noqa: E402

ALICE, BOB = 1001, 2002
FILE_METHODS = {  # name -> label, in the order of the first round
    "chimera": "Chimera",
    "bare": "bare mutual-TLS pair (ceiling)",
    "bare+sha": "bare mutual-TLS pair + SHA-256 (ceiling that verifies)",
    "openssl": "openssl s_server/s_client (TLS 1.3)",
    "scp": "scp (OpenSSH)",
    "wormhole": "magic-wormhole",
}
PEER_PORT = 50052
BARE_PORT = 50060
MIB = 1 << 20
GIB = 1 << 30
FILE_RATIO_TARGETS = {"bare": 0.9, "scp": 1.4, "wormhole": 2.3}
TARGET_P50_MS = 1.0
TARGET_P99_MS = 3.0
TARGET_DISCOVERY_S = 1.0
TARGET_DEPARTURE_S = 15.0
TARGET_RSS_MIB = 64.0
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def tls_files(profile_root: Path, user_id: int) -> TlsFiles:
    return TlsFiles(profile_root / f"{user_id}.pem", profile_root / f"{user_id}_crt.pem",
                    profile_root / "ca_bundle.pem")


def cpu_seconds() -> float:
    return time.process_time()


# == roles: processes inside the namespaces =======================================================


class SenderDriver:
    """Host a: a real PeerWorker on the profile's database plus a bare TLS client, driven by
    JSON commands on stdin; each answer is one JSON line on stdout."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.peer_id = args.peer_id
        self.peer_address = args.peer_address
        self.tls = tls_files(args.profile_root, args.user_id)
        self.store = Store.open(args.database)
        self._cond = threading.Condition()
        self._finished: dict[int, tuple[float, str]] = {}
        self._verified_at: float | None = None
        self._unavailable: str | None = None
        self.worker = PeerWorker(args.user_id, "alice", self.tls, args.database, args.downloads,
                                 self._emit, host=args.address, port=PEER_PORT,
                                 limits=PeerLimits(ack_timeout_s=30, retry_after_s=0))
        self.texts = TextGenerator(seed=11, vocabulary=2_000)

    def _emit(self, event: object) -> None:
        now = time.perf_counter()
        with self._cond:
            if isinstance(event, MessageChanged) and event.message.state in (
                    "delivered", "failed", "queued"):
                self._finished[event.message.id] = (now, event.message.state)
            elif isinstance(event, PeerVerified) and event.user_id == self.peer_id:
                self._verified_at = now
            elif isinstance(event, PeerUnavailable):
                self._unavailable = event.reason
            self._cond.notify_all()

    def _wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"timed out waiting for {what} "
                                       f"(unavailable: {self._unavailable})")
                self._cond.wait(remaining)
            return result

    # -- commands --------------------------------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        self.worker.start()
        self.worker.learn_address(self.peer_id, self.peer_address, PEER_PORT)
        start = time.perf_counter()
        self.worker.verify(self.peer_id)
        verified = self._wait(lambda: self._verified_at, 20, "the peer's HELLO")
        return {"seconds": verified - start}

    def _claimed(self, text: str, file_id: int | None = None) -> int:
        with self.store.transaction():
            message = self.store.messages.add_outgoing(self.peer_id, text, file_id=file_id)
            self.store.outbox.enqueue(message.id)
        self.store.outbox.claim(message.id, "lan")
        return message.id

    def chimera_file(self, path: str, sha256: str, size: int) -> dict[str, Any]:
        source = Path(path)
        self.store.dialogs.ensure(self.peer_id, "user", "bob")
        with self.store.transaction():
            file = self.store.files.create(source.name, size, sha256=sha256,
                                           mime="application/octet-stream",
                                           path=str(source.resolve()), state="complete")
        message_id = self._claimed("", file.id)
        cpu, start = cpu_seconds(), time.perf_counter()
        self.worker.submit(self.peer_id, message_id)
        done, state = self._wait(lambda: self._finished.get(message_id), 600, "the file's ACK")
        return {"seconds": done - start, "cpu_s": cpu_seconds() - cpu, "state": state}

    def channel_texts(self, count: int) -> dict[str, Any]:
        """send->ACK exactly as _PeerSender does it: expect(uid), channel.send(TEXT), wait."""
        channel = self.worker.connect(self.peer_id)
        latencies, failed = [], 0
        for _ in range(count):
            uid = uuid.uuid4().hex
            text = self.texts.text()
            waiter = self.worker.expect(self.peer_id, uid)
            start = time.perf_counter()
            channel.send(Text(uid, utc_now_ms(), text))
            try:
                waiter.wait(15)
            except Exception:
                failed += 1
                continue
            latencies.append(time.perf_counter() - start)
        return {"latencies": latencies, "failed": failed}

    def outbox_texts(self, count: int) -> dict[str, Any]:
        """The whole sending side: message + outbox rows, claim, submit, delivered state."""
        self.store.dialogs.ensure(self.peer_id, "user", "bob")
        latencies, failed = [], 0
        for _ in range(count):
            start = time.perf_counter()
            message_id = self._claimed(self.texts.text())
            self.worker.submit(self.peer_id, message_id)
            done, state = self._wait(lambda m=message_id: self._finished.get(m), 30, "an ACK")
            if state != "delivered":
                failed += 1
                continue
            latencies.append(done - start)
        return {"latencies": latencies, "failed": failed}

    def handshake_texts(self, count: int) -> dict[str, Any]:
        """The original design: connect, TLS handshake, HELLO + TEXT, wait for the ACK, close."""
        context = client_context(self.tls)
        latencies, failed = [], 0
        for _ in range(count):
            uid = uuid.uuid4().hex
            start = time.perf_counter()
            try:
                raw = socket.create_connection((self.peer_address, PEER_PORT), timeout=5)
                with context.wrap_socket(raw) as sock:
                    require_identity(sock, self.peer_id)
                    session = PeerSession()
                    sock.sendall(session.send(Hello(name="alice"))
                                 + session.send(Text(uid, utc_now_ms(), self.texts.text())))
                    acked = False
                    while not acked:
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError("closed before the ACK")
                        session.receive_data(data)
                        while (event := session.next_event()) is not None:
                            acked = acked or (isinstance(event, Ack) and event.uid == uid)
            except (OSError, ConnectionError):
                failed += 1
                continue
            latencies.append(time.perf_counter() - start)
        return {"latencies": latencies, "failed": failed}

    def bare_file(self, path: str, size: int, port: int, sha256: bool) -> dict[str, Any]:
        """The ceiling: same certificates and TLS context, blocking socket, 1 MiB reads; with
        ``sha256`` the receiver also hashes what it writes (the check Chimera cannot skip)."""
        raw = socket.create_connection((self.peer_address, port), timeout=10)
        with client_context(self.tls).wrap_socket(raw) as sock:
            require_identity(sock, self.peer_id)
            sock.settimeout(None)
            buffer = bytearray(MIB)
            view = memoryview(buffer)
            cpu, start = cpu_seconds(), time.perf_counter()
            sock.sendall(struct.pack(">Q?", size, sha256))
            with open(path, "rb", buffering=0) as source:
                while count := source.readinto(buffer):
                    sock.sendall(view[:count])
            answer = sock.recv(1)
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "cpu_s": cpu_seconds() - cpu, "answer": answer.decode()}

    def serve(self) -> None:
        commands: dict[str, Callable[..., dict[str, Any]]] = {
            "connect": self.connect, "chimera_file": self.chimera_file,
            "channel_texts": self.channel_texts, "outbox_texts": self.outbox_texts,
            "handshake_texts": self.handshake_texts, "bare_file": self.bare_file,
        }
        print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            op = request.pop("op")
            if op == "quit":
                break
            try:
                reply = {"ok": True, **commands[op](**request)}
            except Exception as exc:  # reported to the controller, which fails the run
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
        self.worker.stop()
        self.worker.join(10)
        self.store.close()


def bare_server(args: argparse.Namespace) -> None:
    """Host b: the ceiling's receiver. Per connection: an 8-byte size and a hash-it flag, then
    the bytes, written to a file in 1 MiB writes (and hashed in line if asked); one byte back
    once the file is closed."""
    context = server_context(tls_files(args.profile_root, args.user_id))
    listener = socket.create_server((args.address, args.port))
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    for number in range(1_000_000):
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as sock:
            peer_user_id(sock)
            sock.settimeout(None)
            header = b""
            while len(header) < 9:
                header += sock.recv(9 - len(header))
            size, hashing = struct.unpack(">Q?", header)
            digest = hashlib.sha256()
            cpu = cpu_seconds()
            path = args.out / f"bare-{number}.bin"
            received = 0
            with open(path, "wb", buffering=0) as out:
                while received < size:
                    want, filled = min(MIB, size - received), 0
                    while filled < want:
                        got = sock.recv_into(view[filled:want])
                        if not got:
                            raise ConnectionError("the sender closed early")
                        filled += got
                    out.write(view[:filled])
                    if hashing:
                        digest.update(view[:filled])
                    received += filled
            sock.sendall(b"k")
            print(json.dumps({"event": "received", "path": str(path), "bytes": received,
                              "cpu_s": cpu_seconds() - cpu,
                              "sha256": digest.hexdigest() if hashing else None}), flush=True)


def discovery_observer(args: argparse.Namespace) -> None:
    """Host a: the real discovery worker with the app's settings, as every Chimera node runs it.
    Prints one JSON line per peer appearing or dropped (PeerExpired: the event on which the
    app's LAN service forgets the peer) with ``time.monotonic()``, shared by every process on
    the machine; ends when stdin closes."""
    def emit(event: object) -> None:
        now = time.monotonic()
        if isinstance(event, PeerAnnounced) and event.new:
            print(json.dumps({"event": "appeared", "user": event.user_id, "t": now}), flush=True)
        elif isinstance(event, PeerExpired):
            print(json.dumps({"event": "dropped", "user": event.user_id, "t": now}), flush=True)

    worker = DiscoveryWorker(args.user_id, PEER_PORT, LanSettings(interval_s=args.interval),
                             emit)
    worker.start()
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    worker.stop()
    worker.join(10)


def run_role(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="a process of bench/lan.py in a namespace")
    parser.add_argument("--role", choices=("sender", "bare-server", "observer"), required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--user-id", type=int, required=True)
    parser.add_argument("--profile-root", type=Path, required=True)
    parser.add_argument("--database", type=Path)
    parser.add_argument("--downloads", type=Path)
    parser.add_argument("--peer-id", type=int)
    parser.add_argument("--peer-address")
    parser.add_argument("--port", type=int, default=BARE_PORT)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--interval", type=float, default=LanSettings().interval_s)
    args = parser.parse_args(argv)
    if args.role == "sender":
        SenderDriver(args).serve()
    elif args.role == "observer":
        discovery_observer(args)
    else:
        bare_server(args)
    return 0


# == controller (root namespace) ==================================================================


class Driver:
    """The sender process in host a, spoken to in JSON lines."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        ready = self._line()
        self.pid = ready["pid"]

    def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the driver exited ({self.process.poll()})")
        return json.loads(line)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        reply = self._line()
        if not reply.pop("ok"):
            raise RuntimeError(f"driver {op}: {reply['error']}")
        return reply

    def quit(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(15)


class RssSampler:
    """Samples one process's RSS every 20 ms in a thread, for the length of a ``with`` block."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(self._process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self.samples.append(self._process.memory_info().rss)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (max(self.samples) - self.samples[0]) / MIB


def make_source(path: Path, size: int) -> str:
    """A file of random bytes (incompressible); returns its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for offset in range(0, size, MIB):
            block = os.urandom(min(MIB, size - offset))
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def newest_download(downloads: Path) -> Path:
    files = [p for p in downloads.iterdir() if p.is_file()]
    if not files:
        raise RuntimeError(f"nothing arrived in {downloads}")
    return max(files, key=lambda p: p.stat().st_mtime_ns)


def log_times(node: Any, text: str) -> list[float]:
    """Wall-clock times (epoch seconds) of the node's log lines that contain ``text``."""
    times = []
    for line in node.log().splitlines():
        match = _LOG_TIME.match(line)
        if match and text in line:
            times.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return times


def start_headless(node: Any) -> None:
    """``AppNode.start_headless``, with the process tied to this script's life."""
    started = node.log().count("LAN up as user")
    node.process = node.host.popen(node.chimera("--headless"), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    node.wait_for_log("LAN up as user", count=started + 1)


@contextlib.contextmanager
def headless_pair(alice: Any, bob: Any) -> Iterator[float]:
    """Both nodes started at once (yields the wall-clock time of the second spawn); both stopped
    (SIGTERM) after the block."""
    nodes = (alice, bob)
    counts = [node.log().count("LAN up as user") for node in nodes]
    for node in nodes:
        node.process = node.host.popen(node.chimera("--headless"), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    spawned = time.time()
    try:
        for node, count in zip(nodes, counts, strict=True):
            node.wait_for_log("LAN up as user", count=count + 1)
        yield spawned
    finally:
        for node in nodes:
            if node.process is not None:
                node.stop(signal.SIGTERM)


def measure_discovery(alice: Any, bob: Any, runs: int) -> tuple[list[float], list[float]]:
    """Per run, seconds until both verified the other: from the later node's "LAN up" log line,
    and from spawning the processes (Python and app start-up included)."""
    from_up, from_spawn = [], []
    for run in range(runs):
        seen = [len(log_times(node, "verified on the LAN")) for node in (alice, bob)]
        ups = [len(log_times(node, "LAN up as user")) for node in (alice, bob)]
        with headless_pair(alice, bob) as spawned:
            for node, count in zip((alice, bob), seen, strict=True):
                node.wait_for_log("verified on the LAN", timeout=30, count=count + 1)
            up = max(log_times(node, "LAN up as user")[count]
                     for node, count in zip((alice, bob), ups, strict=True))
            verified = max(log_times(node, "verified on the LAN")[count]
                           for node, count in zip((alice, bob), seen, strict=True))
        from_up.append(verified - up)
        from_spawn.append(verified - spawned)
        say(f"  discovery run {run + 1}: both verified {verified - up:.3f} s after the later "
            f"node's LAN came up ({verified - spawned:.2f} s after the processes started)")
    return from_up, from_spawn


def measure_departure(net: Any, bob: Any, tmp: Path, stops: int, kills: int,
                      interval_s: float) -> dict[str, list[float]]:
    """Seconds from signalling bob's ``chimera --headless`` to the moment the discovery worker
    of another node (host a) drops bob: after SIGTERM (bob says goodbye) and after SIGKILL (bob
    falls silent; dropped after three missed announcements). Each kill lands at a random point
    of bob's announcement interval. Both use ``interval_s`` (the default 5 s; shorter only in
    quick runs, which prove that the measurement works)."""
    import queue
    import random

    from chimera_tk.config import Config, TeamSettings, save_config

    save_config(bob.paths.config_file, Config(lan=LanSettings(interval_s=interval_s),
                                              team=TeamSettings(display_name=bob.name)))

    lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    observer = net["a"].python(
        str(SCRIPT), "--role", "observer", "--address", net["a"].address,
        "--user-id", str(ALICE), "--profile-root", str(tmp), "--interval", str(interval_s),
        stderr=open(tmp / "observer.err", "w"), preexec_fn=die_with_parent)  # noqa: SIM115
    assert observer.stdout is not None and observer.stdin is not None
    json.loads(observer.stdout.readline())  # ready
    threading.Thread(target=lambda: [lines.put(json.loads(line)) for line in observer.stdout],
                     daemon=True).start()

    def next_event(kind: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the observer in a saw no {kind} of bob in {timeout} s") \
                    from None
            if event["event"] == kind and event["user"] == BOB:
                return event["t"]

    rng = random.Random(5)
    found: dict[str, list[float]] = {"stop": [], "kill": []}
    try:
        for mode in ["stop"] * stops + ["kill"] * kills:
            start_headless(bob)
            next_event("appeared", 20)
            if mode == "kill":
                time.sleep(rng.uniform(0.05, 1.0) * interval_s)
            signalled = time.monotonic()
            assert bob.process is not None
            bob.process.send_signal(signal.SIGTERM if mode == "stop" else signal.SIGKILL)
            bob.process.wait(30)
            bob.process = None
            seconds = next_event("dropped", 30) - signalled
            found[mode].append(seconds)
            say(f"  departure after {'SIGTERM' if mode == 'stop' else 'SIGKILL'}: dropped by "
                f"the node in a after {seconds:.2f} s")
    finally:
        observer.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            observer.wait(15)
        save_config(bob.paths.config_file, Config(team=TeamSettings(display_name=bob.name)))
    return found


class FileRound:
    """The file transfers of one method, accumulated over the rounds."""

    def __init__(self, name: str, label: str) -> None:
        self.name = name
        self.label = label
        self.seconds: list[float] = []
        self.sender_cpu: list[float] = []
        self.receiver_cpu: list[float] = []
        self.damaged = 0
        self.unavailable = ""  # why this method did not run, when it could not

    def add(self, seconds: float, sender_cpu: float, receiver_cpu: float, arrived: Path,
            expected_sha: str) -> None:
        self.seconds.append(seconds)
        self.sender_cpu.append(sender_cpu)
        self.receiver_cpu.append(receiver_cpu)
        if sha256_of(arrived) != expected_sha:
            self.damaged += 1
            say(f"  !! {self.name}: {arrived} arrived with another SHA-256")
        arrived.unlink()


def settle_disk(source: Path) -> None:
    """Start every method from the same state: the previous round's file written out (a bare
    pair leaves a GiB of dirty pages, whose writeback would otherwise run during the next
    method's round), the source in the page cache."""
    os.sync()
    with open(source, "rb", buffering=0) as warm:
        while warm.read(8 * MIB):
            pass


def start_tool(tool: Tool, file_round: FileRound, setup_runs: int) -> Tool | None:
    """Start a peer tool and measure its set-up; None (the reason kept in the round) if it
    cannot run here."""
    try:
        say(f"starting {tool.label}")
        tool.start()
        setup = tool.measure_setup(setup_runs)
    except (ToolUnavailable, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        file_round.unavailable = str(exc) if isinstance(exc, ToolUnavailable) \
            else f"could not start: {exc}"
        say(f"  {tool.name}: {file_round.unavailable}: no {tool.name} figures")
        tool.stop()
        return None
    if setup_runs:
        say(f"  {tool.name} set-up (a one-byte file, subtracted): {ms(setup.seconds):.0f} ms, "
            f"CPU {setup.sender_cpu:.2f} s sender, {setup.receiver_cpu:.2f} s receiver")
    return tool


def run_benchmark(args: argparse.Namespace) -> list[Result]:
    from tests.lan_nodes import AppNode
    from tests.netns import Network
    from tests.pki_factory import TeamCA

    size = (args.size_mib or (64 if args.quick else 1024)) * MIB
    rounds = args.rounds or (1 if args.quick else 5)
    messages = args.messages or (500 if args.quick else 10_000)
    outbox_messages = max(100, messages // 5)
    handshakes = 50 if args.quick else 200
    discovery_runs = 1 if args.quick else 5
    departures = (1, 1) if args.quick else (3, 3)
    departure_interval = 1.0 if args.quick else LanSettings().interval_s
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="chimera-bench-lan-", dir=args.dir) as tmp_name, \
            Network(("a", "b")) as net:
        tmp = Path(tmp_name)
        ca = TeamCA.create()
        alice = AppNode(net["a"], tmp / "a", "alice", ALICE, ca)
        bob = AppNode(net["b"], tmp / "b", "bob", BOB, ca)
        say(f"lan: hosts a={net['a'].address} b={net['b'].address}; file {size // MIB} MiB x "
            f"{rounds} round(s); {messages:,} texts; discovery x {discovery_runs}")

        say("discovery: two `chimera --headless` started together")
        discovery, discovery_cold = measure_discovery(alice, bob, discovery_runs)
        say(f"departure: bob stopped {departures[0]}x, killed {departures[1]}x")
        departure = measure_departure(net, bob, tmp, *departures, departure_interval)

        source = tmp / "source.bin"
        say(f"making a {size // MIB} MiB source file")
        source_sha = make_source(source, size)
        bare_out, tool_out = tmp / "bare-out", tmp / "tool-out"
        bare_out.mkdir()
        tool_out.mkdir(mode=0o777)

        start_headless(bob)
        bare = net["b"].python(
            str(SCRIPT), "--role", "bare-server", "--address", net["b"].address,
            "--user-id", str(BOB), "--profile-root", str(bob.paths.root),
            "--port", str(BARE_PORT), "--out", str(bare_out),
            stdin=subprocess.DEVNULL, stderr=open(tmp / "bare.err", "w"),  # noqa: SIM115
            preexec_fn=die_with_parent)
        assert bare.stdout is not None
        json.loads(bare.stdout.readline())  # ready
        driver = Driver(net["a"].python(
            str(SCRIPT), "--role", "sender", "--address", net["a"].address,
            "--user-id", str(ALICE), "--profile-root", str(alice.paths.root),
            "--database", str(alice.paths.database), "--downloads", str(alice.paths.downloads),
            "--peer-id", str(BOB), "--peer-address", net["b"].address,
            stderr=open(tmp / "driver.err", "w"), preexec_fn=die_with_parent))  # noqa: SIM115
        rounds_by_name = {name: FileRound(name, label) for name, label in FILE_METHODS.items()}
        tools: list[Tool] = []
        try:
            connected = driver.call("connect")
            say(f"driver in a connected to the headless receiver in b "
                f"({ms(connected['seconds']):.0f} ms)")
            candidates = {
                "openssl": lambda: OpenSslPair(net, tmp / "openssl",
                                               tls_files(alice.paths.root, ALICE),
                                               tls_files(bob.paths.root, BOB), BOB),
                "scp": lambda: ScpTool(net, tmp / "ssh"),
                "wormhole": lambda: WormholePair(net, tmp / "wormhole", args.tools_venv),
            }
            runners: dict[str, Callable[[], None]] = {}
            for name, make in candidates.items():
                if name in args.methods:
                    tool = start_tool(make(), rounds_by_name[name], 0 if args.quick else 3)
                    if tool is not None:
                        tools.append(tool)
                        runners[name] = lambda t=tool: run_tool(t)
            rss_growth: list[float] = []

            def run_chimera() -> None:
                receiver_cpu = process_cpu(bob.process.pid)
                with RssSampler(bob.process.pid) as rss:
                    reply = driver.call("chimera_file", path=str(source), sha256=source_sha,
                                        size=size)
                receiver_cpu = process_cpu(bob.process.pid) - receiver_cpu
                if reply["state"] != "delivered":
                    raise RuntimeError(f"the Chimera transfer ended {reply['state']}")
                rss_growth.append(rss.growth_mib)
                rounds_by_name["chimera"].add(reply["seconds"], reply["cpu_s"], receiver_cpu,
                                              newest_download(bob.paths.downloads), source_sha)

            def run_bare(name: str, sha256: bool) -> None:
                file_round = rounds_by_name[name]
                reply = driver.call("bare_file", path=str(source), size=size, port=BARE_PORT,
                                    sha256=sha256)
                report = json.loads(bare.stdout.readline())
                if sha256 and report["sha256"] != source_sha:
                    file_round.damaged += 1
                file_round.add(reply["seconds"], reply["cpu_s"], report["cpu_s"],
                               Path(report["path"]), source_sha)

            def run_tool(tool: Tool) -> None:
                target = tool_out / f"{tool.name}.bin"
                done = tool.transfer(source, target)
                rounds_by_name[tool.name].add(done.seconds, done.sender_cpu, done.receiver_cpu,
                                              target, source_sha)

            runners.update({"chimera": run_chimera, "bare": lambda: run_bare("bare", False),
                            "bare+sha": lambda: run_bare("bare+sha", True)})
            methods = [name for name in FILE_METHODS if name in args.methods and name in runners]
            for round_no in range(rounds):
                shift = round_no % len(methods)
                for name in methods[shift:] + methods[:shift]:
                    file_round = rounds_by_name[name]
                    if file_round.unavailable:
                        continue
                    settle_disk(source)
                    try:
                        runners[name]()
                    except (RuntimeError, OSError) as exc:
                        if name not in candidates:
                            raise  # Chimera or the ceiling broke: no ratio means anything
                        file_round.unavailable = f"failed in round {round_no + 1}: {exc}"
                        say(f"  {name}: {file_round.unavailable}")
                        continue
                    say(f"  round {round_no + 1} {name:<9}: "
                        f"{size / MIB / file_round.seconds[-1]:7.0f} MiB/s "
                        f"({file_round.seconds[-1]:.2f} s; CPU sender "
                        f"{file_round.sender_cpu[-1]:.2f} s, receiver "
                        f"{file_round.receiver_cpu[-1]:.2f} s)")

            if args.profile:
                profile_transfer(driver, bob, source, source_sha, size, tmp)

            say(f"texts: {messages:,} send->ACK over the persistent connection")
            channel = driver.call("channel_texts", count=messages)
            say(f"texts: {outbox_messages:,} through the outbox")
            outbox = driver.call("outbox_texts", count=outbox_messages)
            say(f"texts: {handshakes} with a fresh TLS connection each")
            fresh = driver.call("handshake_texts", count=handshakes)
        finally:
            driver.quit()
            for tool in tools:
                tool.stop()
            bare.kill()
            bare.wait(5)
            if bob.process is not None:
                bob.stop()

    chosen = [rounds_by_name[name] for name in FILE_METHODS if name in args.methods]
    results += file_results(size, chosen, rss_growth, args.quick)
    results += latency_results(channel, outbox, fresh)
    results += [
        Result("lan discovery median", median(discovery), "s", TARGET_DISCOVERY_S, "lower",
               note=f"{len(discovery)} runs; two nodes started together: from the later "
                    "node's LAN up to both having verified the other"),
        Result("lan discovery max", max(discovery), "s", TARGET_DISCOVERY_S, "lower"),
        Result("lan discovery from process start, median", median(discovery_cold), "s",
               note="two `chimera --headless` spawned together -> both verified"),
    ]
    for mode, label in (("stop", "stopped (SIGTERM, goodbye)"),
                        ("kill", "killed (SIGKILL, silent)")):
        values = departure[mode]
        results.append(Result(f"lan departure, node {label}, max", max(values), "s",
                              TARGET_DEPARTURE_S, "lower",
                              note=f"{len(values)} runs, median {median(values):.2f} s, "
                                   f"announcements every {departure_interval:g} s; signal -> "
                                   "another node's discovery drops it (PeerExpired, on which "
                                   "the app forgets the peer)"))
    return results


def file_results(size: int, rounds: list[FileRound], rss_growth: list[float],
                 quick: bool = False) -> list[Result]:
    """Chimera's rate and CPU beside each other method's, measured in the same rounds; a method
    that could not run still has its row, saying why."""
    def rate(file_round: FileRound) -> float:
        return size / MIB / median(file_round.seconds)

    def per_gib(values: list[float]) -> float:
        return median(values) * GIB / size

    by_name = {r.name: r for r in rounds}
    chimera = by_name.get("chimera")
    limit = cpu_limit(size, by_name)
    ran = [r for r in rounds if r.seconds]
    size_text = f"{size // MIB} MiB" if size < GIB else f"{size / GIB:g} GiB"
    results = []
    if chimera is None or not chimera.seconds:
        for file_round in ran:
            results.append(Result(f"lan file {file_round.label}", rate(file_round), "MiB/s",
                                  note=f"{size_text}, median of {len(file_round.seconds)}"))
    else:
        for file_round in rounds:
            if file_round is chimera:
                continue
            name = file_round.name
            peer = (f"{file_round.label}: {file_round.unavailable}" if file_round.unavailable
                    else file_round.label)
            note = (f"{size_text} a->b, medians of {len(chimera.seconds)} rounds "
                    "(rotating order)")
            if name in ("openssl", "scp", "wormhole"):
                note += ("; the tool's set-up (one-byte file) subtracted" if not quick
                         else "; quick: the tool's set-up is included")
            results.append(Result(
                f"lan file Chimera vs {name}", rate(chimera), "MiB/s", better="higher",
                note=note, peer=peer,
                peer_figure=rate(file_round) if file_round.seconds else None,
                ratio_target=FILE_RATIO_TARGETS.get(name),
                limit=limit[0] if limit and name in FILE_RATIO_TARGETS else None))
        bare = by_name.get("bare")
        if bare is not None and bare.seconds:
            results.append(Result(
                "lan file Chimera vs bare, best rounds", size / MIB / min(chimera.seconds),
                "MiB/s", better="higher", peer=bare.label,
                peer_figure=size / MIB / min(bare.seconds),
                note="the fastest round of each: less exposed to noise"))
        if limit is not None:
            results.append(Result("lan file, the most this machine's CPUs allow with SHA-256",
                                  limit[0], "MiB/s", note=limit[1]))
            results.append(Result(
                "lan file, share of all CPUs kept busy, Chimera vs bare",
                busy_share(size, chimera), "%", better="higher", peer=by_name["bare"].label,
                peer_figure=busy_share(size, by_name["bare"]),
                note="CPU seconds of both ends over the transfer time, over the CPU count"))
        for side in ("sender", "receiver"):
            for file_round in ran:
                if file_round is chimera:
                    continue
                results.append(Result(
                    f"lan CPU per GiB {side}, Chimera vs {file_round.name}",
                    per_gib(getattr(chimera, f"{side}_cpu")), "s", better="lower",
                    peer=file_round.label,
                    peer_figure=per_gib(getattr(file_round, f"{side}_cpu"))))
    results.append(Result("lan files with a wrong SHA-256 on arrival",
                          sum(r.damaged for r in ran), "files", 0, "equal"))
    if rss_growth:
        results.append(Result("lan receiver RSS growth during a file", max(rss_growth), "MiB",
                              TARGET_RSS_MIB, "lower",
                              note=f"max over the Chimera transfers of {size_text}"))
    return results


def cpu_limit(size: int, by_name: dict[str, FileRound]) -> tuple[float, str] | None:
    """The fastest a file can cross between two ends that share this machine's CPUs when the
    receiver must also hash it (as Chimera must), with every CPU busy all the time: the CPUs
    over the cheapest CPU per GiB (both ends) seen for that work in this run. That is the bare
    pair's cheapest round plus SHA-256's own CPU per GiB measured here, unless a round of the
    bare pair with SHA-256, or of Chimera itself, did the whole work for less (on this VM the
    bare pair's page-cache writes sometimes cost more than everything Chimera does: a limit
    above which Chimera itself went would prove nothing). Chimera also makes the file durable
    before its ACK; that cost is left out of the others, which only raises the limit."""
    bare = by_name.get("bare")
    if bare is None or not bare.seconds:
        return None
    scale = GIB / size

    def cheapest(file_round: FileRound) -> float:
        return min(s + r for s, r in zip(file_round.sender_cpu, file_round.receiver_cpu,
                                         strict=True)) * scale

    transfer = cheapest(bare)
    hashing = sha256_cpu_per_gib()
    floor, source = transfer + hashing, (
        f"both ends of the bare pair's cheapest round, {transfer:.2f} s per GiB, + "
        f"{hashing:.2f} s per GiB of SHA-256")
    for name in ("bare+sha", "chimera"):
        other = by_name.get(name)
        if other is not None and other.seconds and cheapest(other) < floor:
            floor, source = cheapest(other), (
                f"both ends of the cheapest {FILE_METHODS.get(name, name)} round, which did the "
                f"whole work for less than the bare pair's cheapest + SHA-256 "
                f"({transfer + hashing:.2f} s)")
    cores = os.cpu_count() or 1
    limit = cores / floor * GIB / MIB
    note = (f"{cores} CPUs / {floor:.2f} s per GiB ({source}) = {limit:.0f} MiB/s, with every "
            "CPU busy all the time")
    return limit, note


def sha256_cpu_per_gib(rounds: int = 3, size: int = 256 * MIB) -> float:
    """CPU seconds SHA-256 takes per GiB here (hashlib, as the receiver uses it; best of a
    few rounds over a buffer in memory)."""
    block = os.urandom(MIB) * (8 * MIB // MIB)
    best = math.inf
    for _ in range(rounds):
        digest, start = hashlib.sha256(), time.process_time()
        for _ in range(size // len(block)):
            digest.update(block)
        best = min(best, time.process_time() - start)
    return best * GIB / size


def busy_share(size: int, file_round: FileRound) -> float:
    """How much of all the machine's CPUs a method's two ends kept busy (percent)."""
    cpu = sum(file_round.sender_cpu) + sum(file_round.receiver_cpu)
    return 100 * cpu / sum(file_round.seconds) / (os.cpu_count() or 1)


def latency_results(channel: dict[str, Any], outbox: dict[str, Any],
                    fresh: dict[str, Any]) -> list[Result]:
    def pct(reply: dict[str, Any], p: float) -> float:
        return ms(percentile(reply["latencies"], p)) if reply["latencies"] else float("nan")

    count = len(channel["latencies"]) + channel["failed"]
    peer = "a fresh TLS connection per message (original design)"
    return [
        Result("lan text send->ACK p50", pct(channel, 50), "ms", TARGET_P50_MS, "lower",
               note=f"{count:,} sequential texts over one persistent connection; the peer: "
                    f"{len(fresh['latencies']) + fresh['failed']:,} texts with a connect + "
                    "TLS handshake + HELLO each", peer=peer, peer_figure=pct(fresh, 50)),
        Result("lan text send->ACK p99", pct(channel, 99), "ms", TARGET_P99_MS, "lower",
               peer=peer, peer_figure=pct(fresh, 99)),
        Result("lan text via outbox p50", pct(outbox, 50), "ms", better="lower",
               note=f"{len(outbox['latencies']) + outbox['failed']:,} texts, the sender's "
                    "database writes included", peer=peer, peer_figure=pct(fresh, 50)),
        Result("lan text via outbox p99", pct(outbox, 99), "ms", better="lower", peer=peer,
               peer_figure=pct(fresh, 99)),
        Result("lan texts not acknowledged",
               channel["failed"] + outbox["failed"] + fresh["failed"], "msgs", 0, "equal"),
    ]


# -- profiling -----------------------------------------------------------------------------------


def profile_transfer(driver: Driver, bob: Any, source: Path, source_sha: str, size: int,
                     tmp: Path) -> None:
    """Two more Chimera transfers, one under py-spy (the Python stacks of each thread) and one
    under Linux perf (the share of the kernel, libcrypto, libc and the interpreter, which py-spy
    cannot see), each on the sender driver and the headless receiver."""
    py_spy, perf = shutil.which("py-spy"), shutil.which("perf")
    if py_spy is None:
        say("--profile: py-spy is not installed (pip install py-spy)")
    else:
        outs = profiled_transfer(
            driver, bob, source, source_sha, size, tmp, "py-spy", ".folded",
            lambda pid, out: [py_spy, "record", "--threads", "--rate", "500", "--format", "raw",
                              "--output", str(out), "--pid", str(pid)])
        for name, out in outs.items():
            say(f"-- {name}: where each thread spends its samples (self time, top frames)")
            for line in summarize_folded(out):
                say("   " + line)
    if perf is None:
        say("--profile: perf is not installed (apt install linux-perf): no native profile")
        return
    outs = profiled_transfer(
        driver, bob, source, source_sha, size, tmp, "perf", ".perf",
        lambda pid, out: [perf, "record", "-F", "999", "-p", str(pid), "-o", str(out)])
    for name, out in outs.items():
        for sort, top in (("dso", 8), ("sym", 15)):
            report = subprocess.run(
                [perf, "report", "-i", str(out), "--no-children", "--sort", sort, "--stdio"],
                capture_output=True, text=True, check=False)
            rows = [line.strip() for line in report.stdout.splitlines()
                    if line.strip() and not line.startswith("#")][:top]
            say(f"-- {name}: CPU samples by {'library' if sort == 'dso' else 'function'}")
            for row in rows:
                say("   " + row)


def profiled_transfer(driver: Driver, bob: Any, source: Path, source_sha: str, size: int,
                      tmp: Path, tool: str, suffix: str,
                      command: Callable[[int, Path], list[str]]) -> dict[str, Path]:
    """One Chimera transfer with a sampling profiler attached to each side; its output files."""
    samplers = {}
    for name, pid in (("sender", driver.pid), ("receiver", bob.process.pid)):
        out = tmp / f"{name}{suffix}"
        samplers[name] = (out, subprocess.Popen(command(pid, out), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # let the profilers attach
    reply = driver.call("chimera_file", path=str(source), sha256=source_sha, size=size)
    newest_download(bob.paths.downloads).unlink()
    for _out, sampler in samplers.values():
        sampler.send_signal(signal.SIGINT)
        sampler.wait(30)
    say(f"profile: one transfer under {tool} took {reply['seconds']:.2f} s")
    return {name: out for name, (out, _sampler) in samplers.items()}


def summarize_folded(path: Path, top: int = 8) -> list[str]:
    """Per thread: the share of samples by innermost frame, from py-spy's raw (folded) output."""
    per_thread: dict[str, Counter[str]] = {}
    if not path.exists():
        return ["(no samples)"]
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0]
        leaf = re.sub(r" \((?:/[^)]*/)?([^/)]+)\)$", r" (\1)", frames[-1])
        per_thread.setdefault(thread, Counter())[leaf] += int(count)
    lines = []
    for thread, counts in sorted(per_thread.items(), key=lambda kv: -kv[1].total()):
        total = counts.total()
        if total < 50:
            continue
        lines.append(f"{thread}: {total} samples")
        for leaf, count in counts.most_common(top):
            lines.append(f"    {100 * count / total:5.1f}%  {leaf}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--role" in argv:
        return run_role(argv)

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size-mib", type=int, help="file size (default 1024; quick 64)")
        parser.add_argument("--rounds", type=int, help="file rounds (default 3; quick 1)")
        parser.add_argument("--messages", type=int, help="texts (default 10,000; quick 500)")
        parser.add_argument("--dir", help="where the files go (default: the system temp dir)")
        parser.add_argument("--tools-venv", type=Path, default=DEFAULT_TOOLS_VENV,
                            help="virtual environment for magic-wormhole (made with pip on "
                                 f"first use; default {DEFAULT_TOOLS_VENV})")
        parser.add_argument("--methods", type=lambda text: text.split(","),
                            default=list(FILE_METHODS),
                            help="file transfers to compare (default: all of "
                                 f"{','.join(FILE_METHODS)})")
        parser.add_argument("--profile", action="store_true",
                            help="one more Chimera transfer under py-spy, summarized")

    args = parse_args(__doc__.splitlines()[0], argv, extra)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        say("lan: needs root and iproute2 (it creates network namespaces)")
        return 1
    # SIGTERM unwinds like Ctrl+C: namespaces, sshd and every process started are cleaned up
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    results = run_benchmark(args)
    return finish("lan", results, args.results)


if __name__ == "__main__":
    sys.exit(main())
