"""Discovery at scale: many nodes on one bridge, the traffic each one carries, time to full view.

As root, the script builds ``--nodes`` hosts (50; 8 with ``--quick``) on one Linux bridge with
``tests.netns.Network`` and runs ONE real ``DiscoveryWorker`` per host (the discovery worker
alone, not whole apps: the TLS verification that an app starts for each announced peer is
outside this measurement; see docs/SCALE.md for what it adds). Every node process imports and
builds its worker first, then all are started together by one "go" line, the harshest start
(every node hears every other as new at once). Measured:

1. Time to full view: until every node has heard all ``n - 1`` others, from the last node's
   start (the "go" lines reach the nodes one after another). The ceiling is one interval plus
   the longest early delay: a node that starts after the others spent their early
   announcement of this interval hears them at their next regular one.
2. Steady state over ``--window`` seconds once the view is full: datagrams and bytes each node
   sent and received per second, counted twice and compared, in the workers
   (``DiscoveryStats``) and on the bridge's veth ports (the kernel's counters, Ethernet frames);
   the peer figure is the protocol's arithmetic, ``1 / interval`` sent and ``n / interval``
   received per node.
3. CPU seconds per node per minute in the steady state (``getrusage`` in each node process).

docs/SCALE.md extrapolates these per-node figures to 500 nodes. Traffic goes only to the
namespaces this script creates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import Result, finish, median, parse_args, say

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from chimera_tk.net.discovery.protocol import EARLY_DELAY_S  # noqa: E402

FIRST_USER_ID = 700_000_001
INTERVAL_S = 5.0  # the shipped default (LanSettings.interval_s)
EARLY_MAX_S = EARLY_DELAY_S[1]


# == the node process (inside a namespace) ========================================================


def run_node(argv: list[str]) -> int:
    """One DiscoveryWorker; JSON lines out: ready, started, new (peer), stats; "go", "stats",
    "quit" in."""
    import resource

    from chimera_tk.config import LanSettings
    from chimera_tk.events import PeerAnnounced
    from chimera_tk.net.discovery.worker import DiscoveryWorker

    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("node",))
    parser.add_argument("--user-id", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    args = parser.parse_args(argv)
    lock = threading.Lock()

    def say_json(kind: str, **fields: Any) -> None:
        with lock:
            sys.stdout.write(json.dumps({"kind": kind, "t": time.monotonic(), **fields}) + "\n")
            sys.stdout.flush()

    def emit(event: object) -> None:
        if isinstance(event, PeerAnnounced) and event.new:
            say_json("new", user_id=event.user_id)

    worker = DiscoveryWorker(args.user_id, 50052, LanSettings(interval_s=args.interval), emit)
    say_json("ready", pid=os.getpid())
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "go":
                worker.start()
                say_json("started")
            elif command == "stats":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                say_json("stats", cpu_s=usage.ru_utime + usage.ru_stime,
                         **{k: getattr(worker.stats(), k)
                            for k in ("sent", "received", "malformed", "own_ignored", "peers",
                                      "early_announcements", "table_full")})
            elif command == "quit":
                break
    finally:
        worker.stop()
        worker.join(5.0)
    return 0


# == the controller (root namespace) ==============================================================


class Node:
    """A node process and the lines it printed (read in a thread)."""

    def __init__(self, host: Any, user_id: int, interval_s: float) -> None:
        self.host = host
        self.user_id = user_id
        self.process = host.python(str(SCRIPT), "--role", "node", "--user-id", str(user_id),
                                   "--interval", str(interval_s), stderr=subprocess.DEVNULL)
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                with self._cond:
                    self.lines.append(json.loads(line))
                    self._cond.notify_all()
        with self._cond:
            self.lines.append({"kind": "exit"})
            self._cond.notify_all()

    def wait(self, kind: str, timeout: float, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if line["kind"] == kind:
                        return line
                    if line["kind"] == "exit":
                        raise RuntimeError(f"node {self.user_id} exited")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"node {self.user_id}: no {kind!r} in {timeout} s")
                self._cond.wait(left)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            mark = len(self.lines)
        self.send("stats")
        return self.wait("stats", 30, after=mark)

    def started_at(self) -> float:
        return self.wait("started", 1)["t"]

    def full_view_at(self, others: int) -> float | None:
        """The monotonic time this node had heard ``others`` distinct peers, if it has."""
        seen: set[int] = set()
        with self._cond:
            for line in self.lines:
                if line["kind"] == "new":
                    seen.add(line["user_id"])
                    if len(seen) == others:
                        return line["t"]
        return None


def port_counters(net: Any) -> dict[str, dict[str, int]]:
    """The bridge's veth ports' counters: {host name: {rx_packets, rx_bytes, tx_...}}. A port's
    rx is what its host sent, its tx what the host was given."""
    out = subprocess.run(["ip", "-n", net.switch, "-s", "-j", "link", "show"], check=True,
                         capture_output=True, text=True).stdout
    counters = {}
    for link in json.loads(out):
        name = link.get("ifname", "")
        if name.startswith("p-"):
            stats = link["stats64"]
            counters[name[2:]] = {f"{d}_{k}": stats[d][k] for d in ("rx", "tx")
                                  for k in ("packets", "bytes")}
    return counters


def udp_drops(host: Any) -> int:
    """Datagrams the kernel of ``host``'s namespace dropped for a full receive buffer."""
    lines = [line.split() for line in host.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Udp:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("RcvbufErrors")])


def run_benchmark(args: argparse.Namespace) -> list[Result]:
    from tests.netns import Network

    count = args.nodes or (8 if args.quick else 50)
    interval = args.interval
    window = args.window or (2 * interval if args.quick else 6 * interval)
    names = [f"n{i:03d}" for i in range(count)]
    say(f"scale: {count} discovery nodes on one bridge, interval {interval:g} s, steady-state "
        f"window {window:g} s")
    with Network(names) as net:
        began = time.monotonic()
        nodes = [Node(net[name], FIRST_USER_ID + i, interval) for i, name in enumerate(names)]
        for node in nodes:
            node.wait("ready", 120)
        say(f"  {count} node processes ready in {time.monotonic() - began:.1f} s; go")
        go = time.monotonic()
        for node in nodes:
            node.send("go")
        for node in nodes:
            node.wait("started", 30)
        last_started = max(node.started_at() for node in nodes)
        deadline = go + max(30.0, 4 * interval)
        while time.monotonic() < deadline:
            views = [node.full_view_at(count - 1) for node in nodes]
            if all(v is not None for v in views):
                break
            time.sleep(0.1)
        views = [node.full_view_at(count - 1) for node in nodes]
        incomplete = sum(v is None for v in views)
        full_times = [v - go for v in views if v is not None]
        after_last = max(full_times, default=float("nan")) - (last_started - go)
        say(f"  full view: {count - incomplete}/{count} nodes; last after "
            f"{max(full_times, default=float('nan')):.2f} s (all started within "
            f"{last_started - go:.2f} s of go; {after_last:.2f} s after the last start)")

        time.sleep(interval)  # let the start-up burst (early announcements) pass
        before = [node.stats() for node in nodes]
        wire_before = port_counters(net)
        start = time.monotonic()
        time.sleep(window)
        after = [node.stats() for node in nodes]
        wire_after = port_counters(net)
        seconds = time.monotonic() - start
        drops = sum(udp_drops(net[name]) for name in names)
        for node in nodes:
            with contextlib.suppress(OSError, ValueError):
                node.send("quit")
        for node in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(10)

    def per_node_rate(key: str) -> list[float]:
        # each node's own clock: the stats requests reach the nodes one after another
        return [(a[key] - b[key]) / (a["t"] - b["t"]) for a, b in zip(after, before, strict=True)]

    def wire_rate(key: str) -> list[float]:
        return [(wire_after[n][key] - wire_before[n][key]) / seconds for n in names]

    sent = per_node_rate("sent")
    received = per_node_rate("received")
    wire_sent = wire_rate("rx_packets")
    wire_got = wire_rate("tx_packets")
    wire_got_bytes = wire_rate("tx_bytes")
    cpu_per_min = [rate * 60 for rate in per_node_rate("cpu_s")]  # getrusage in each node
    expected_rx = count / interval
    peers_known = min(a["peers"] for a in after)
    return [
        Result("scale nodes", count, "nodes", note="one DiscoveryWorker per namespace, one bridge"),
        Result("scale nodes with a full view", count - incomplete, "nodes", count, "equal",
               note=f"each heard all {count - 1} others"),
        Result("scale time to full view vs ceiling", after_last, "s", interval + EARLY_MAX_S,
               "lower", note="every node heard all others, from the last node's start",
               peer="one interval + the longest early delay (the protocol's bound)",
               peer_figure=interval + EARLY_MAX_S),
        Result("scale time to full view from go", max(full_times, default=float("nan")), "s",
               note=f"all {count} started within {last_started - go:.2f} s of go"),
        Result("scale time to full view median", median(full_times) if full_times
               else float("nan"), "s"),
        Result("scale datagrams sent per node per s", median(sent), "1/s",
               note=f"workers' count; protocol: 1/interval = {1 / interval:.2f}"),
        Result("scale datagrams received per node per s vs protocol", median(received), "1/s",
               better="lower", note="workers' count, own echo included",
               peer="the protocol: n / interval", peer_figure=expected_rx),
        Result("scale frames received per node per s (veth)", median(wire_got), "1/s",
               note="kernel counters on the bridge ports"),
        Result("scale frames sent per node per s (veth)", median(wire_sent), "1/s"),
        Result("scale bytes received per node per s (veth)", median(wire_got_bytes), "B/s",
               note="Ethernet frames"),
        Result("scale bytes per frame (veth)",
               sum(wire_got_bytes) / max(sum(wire_got), 1e-9), "B"),
        Result("scale CPU per node per minute", median(cpu_per_min), "s",
               note=f"steady state, max {max(cpu_per_min):.3f} s"),
        Result("scale CPU per received datagram",
               median(cpu_per_min) / 60 / max(median(received), 1e-9) * 1e6, "us",
               note="steady-state CPU / datagrams received (whole process)"),
        Result("scale peers known by every node", peers_known, "peers", count - 1, "equal"),
        Result("scale UDP receive-buffer drops (all nodes)", drops, "datagrams",
               note="RcvbufErrors in every namespace, whole run"),
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--role" in argv:
        return run_node(argv)

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--nodes", type=int, help="hosts on the bridge (default 50; quick 8)")
        parser.add_argument("--interval", type=float, default=INTERVAL_S,
                            help=f"announcement interval (default {INTERVAL_S:g} s)")
        parser.add_argument("--window", type=float,
                            help="steady-state window (default 6 intervals; quick 2)")

    args = parse_args(__doc__.splitlines()[0], argv, extra)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        say("scale: needs root and iproute2 (it creates network namespaces)")
        return 1
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    return finish("scale", run_benchmark(args), args.results)


if __name__ == "__main__":
    sys.exit(main())
