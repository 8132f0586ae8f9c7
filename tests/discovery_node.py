"""Processes for discovery tests in network namespaces, and the test-side handle on them.

``python -m tests.discovery_node node --user-id N [--interval S] [--instance X]`` runs one real
DiscoveryWorker and prints what happens as JSON lines on stdout: ``started`` (with ``starting``,
the time just before ``start()``), every event, ``stats`` and ``peers`` on request, ``stopped``.
It reads commands from stdin: ``stats``, ``peers``, ``quit``; end of input or SIGTERM stops it
gracefully (the worker says goodbye); SIGKILL is the way to vanish without one.

``python -m tests.discovery_node flood --target IP --port P --seed S`` sends
:func:`malformed_datagrams` to a node: ``send N`` on stdin sends the next N and answers with the
total sent so far.

:class:`NodeClient` is the test's side: it collects a node's lines in a thread and waits for them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# -- datagrams that no valid node may accept -------------------------------------------------------

_BAD_INSTANCES = ("", "x" * 33, "a.b", "a b", "a+b", "a/b", "ä", "a\tb", "a:b")


def malformed_datagrams(seed: int, count: int) -> list[bytes]:
    """``count`` datagrams, each malformed by construction (random bytes, near misses of the
    announcement and goodbye forms, oversize, non-ASCII, whitespace, extra or empty fields)."""
    rng = random.Random(seed)
    result: list[bytes] = []
    makers: list[Callable[[random.Random], bytes]] = [
        _random_bytes, _oversize, _near_miss, _near_miss, _near_miss]
    while len(result) < count:
        result.append(rng.choice(makers)(rng))
    return result


def _random_bytes(rng: random.Random) -> bytes:
    length = rng.randrange(0, 200)
    data = bytes(rng.randrange(256) for _ in range(length))
    if data[:1] in (b"0", b"1"):  # only these can start a valid datagram
        data = b"\xff" + data[1:]
    return data


def _oversize(rng: random.Random) -> bytes:
    head = f"1:{rng.randrange(1, 2**63)}:50052:".encode()
    return head + b"a" * rng.randrange(129 - len(head), 1400)


def _near_miss(rng: random.Random) -> bytes:
    uid = rng.randrange(1, 2**63)
    port = rng.randrange(1, 65536)
    inst = "".join(rng.choice("abcXYZ019_-") for _ in range(rng.randrange(1, 33)))
    forms = [
        f"1:0{uid}", f"1:{2**63 + rng.randrange(10**6)}", "1:0", f"1:-{uid}", f"1:+{uid}",
        f"1:{uid}.0", f"1:{uid}e3", "1:", "1", "0", ":", "", f"1::{port}", f"1:{uid}:",
        f"1:{uid}:{port}:", f"1:{uid}::{inst}", f"1:{uid}:0", f"1:{uid}:65536",
        f"1:{uid}:0{port}", f"1:{uid}:{port}:{inst}:x", f"1:{uid}:{port}:{inst}:",
        f"1:{uid}:{rng.randrange(10**6, 10**9)}", f" 1:{uid}", f"1:{uid} ", f"1:{uid}\n",
        f"1:{uid}\r\n", f"1: {uid}", f"1:{uid}\x00", f"2:{uid}", f"10:{uid}", f"01:{uid}",
        f"0:{uid}", f"0:{uid}:{port}", f"0:{uid}:{port}:{inst}:x", f"0:0:{port}:{inst}",
        f"0:{uid}:0:{inst}", f"1:{uid}:{port}:{rng.choice(_BAD_INSTANCES)}",
        f"0:{uid}:{port}:{rng.choice(_BAD_INSTANCES)}", f"1:{uid}\u0663", "1:\u0663",
        f"1:{uid}:{port}:{inst}\u00e9", f"1:{'9' * rng.randrange(20, 60)}",
    ]
    return rng.choice(forms).encode("utf-8")


# -- the node process ------------------------------------------------------------------------------

_print_lock = threading.Lock()


def _say(kind: str, **fields: Any) -> None:
    line = json.dumps({"kind": kind, "t": time.monotonic(), **fields})
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _emit(event: object) -> None:
    fields = dataclasses.asdict(event) if dataclasses.is_dataclass(event) else {"repr": event}
    _say(type(event).__name__, **fields)


def _node_main(args: argparse.Namespace) -> None:
    from chimera_tk.config import LanSettings
    from chimera_tk.net.discovery.worker import DiscoveryWorker

    settings = LanSettings(interval_s=args.interval)
    worker = DiscoveryWorker(args.user_id, args.tls_port, settings, _emit, instance=args.instance)

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        starting = time.monotonic()
        worker.start()
        _say("started", instance=worker.instance, announcement=worker.announcement.decode(),
             starting=starting)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                _say("stats", **dataclasses.asdict(worker.stats()))
            elif command == "peers":
                _say("peers", peers={str(k): v._asdict() for k, v in worker.peers().items()})
            elif command == "quit":
                break
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        joined = worker.join(5.0)
        _say("stopped", joined=joined, **dataclasses.asdict(worker.stats()))


def _flood_main(args: argparse.Namespace) -> None:
    datagrams = malformed_datagrams(args.seed, args.count)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 2 or parts[0] != "send":
            continue
        for data in datagrams[sent:sent + int(parts[1])]:
            while True:
                try:
                    sock.sendto(data, (args.target, args.port))
                    break
                except OSError:  # ENOBUFS: the qdisc is momentarily full
                    time.sleep(0.001)
            sent += 1
        _say("flooded", sent=sent)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.discovery_node")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node")
    node.add_argument("--user-id", type=int, required=True)
    node.add_argument("--tls-port", type=int, default=50052)
    node.add_argument("--interval", type=float, default=5.0)
    node.add_argument("--instance")
    flood = sub.add_parser("flood")
    flood.add_argument("--target", required=True)
    flood.add_argument("--port", type=int, default=50050)
    flood.add_argument("--seed", type=int, default=0)
    flood.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)
    if args.command == "node":
        _node_main(args)
    else:
        _flood_main(args)


# -- the test's side -------------------------------------------------------------------------------


class NodeClient:
    """Reads a node (or flooder) process's JSON lines in a thread; lets the test wait on them."""

    def __init__(self, process: subprocess.Popen, label: str = "") -> None:
        self.process = process
        self.label = label
        self.lines: list[dict[str, Any]] = []
        self._new: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._seen = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self._new.put(json.loads(line))
        self._new.put(None)

    def _pull(self, timeout: float) -> str:
        """Move one line from the reader to ``lines``: "line", "timeout" or "end"."""
        try:
            item = self._new.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return "timeout"
        if item is None:
            self._new.put(None)  # keep reporting the end to later waits
            return "end"
        self.lines.append(item)
        return "line"

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 *, after: int = 0) -> dict[str, Any]:
        """The first line (at index >= ``after``) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        index = after
        while True:
            while index < len(self.lines):
                if predicate(self.lines[index]):
                    return self.lines[index]
                index += 1
            if self._pull(deadline - time.monotonic()) != "line":
                raise AssertionError(
                    f"{self.label}: no matching line within {timeout} s "
                    f"(exit code {self.process.poll()}); last lines: {self.lines[-10:]}")

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def request(self, command: str, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        mark = len(self.lines)
        self.send(command)
        return self.wait_for(lambda line: line["kind"] == kind, timeout, after=mark)

    def stats(self) -> dict[str, Any]:
        return self.request("stats", "stats")

    def events(self, kind: str) -> list[dict[str, Any]]:
        while self._pull(0) == "line":
            pass
        return [line for line in self.lines if line["kind"] == kind]


if __name__ == "__main__":
    main()
