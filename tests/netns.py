"""A throwaway network for tests: hosts in their own network namespaces, joined by a bridge.

``Network(("a", "b", "c"))`` creates a "switch" namespace holding a Linux bridge and one namespace
per host, each linked to the bridge by a veth pair (``eth0`` in the host, ``p-<name>`` on the
switch) with address ``10.<x>.0.<n>/24`` and its broadcast address set. No interface is created in
the caller's own namespace, so nothing a test sends can leave this network. Names carry the pid
and a random token, so parallel and leftover runs never clash; leaving the ``with`` block (also on
failure) kills the processes started through it and deletes every namespace.

Tests that use it are marked ``netns``; :func:`require_netns` fails them (never skips) when the
machine cannot create namespaces. ``python -m tests.netns capture IFACE`` is a tiny packet counter
for "what did this host send" assertions (see :meth:`Host.capture_outgoing`).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import secrets
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "chimt"
_STALE = re.compile(rf"^{PREFIX}(\d+)x[0-9a-f]+-")
_counter = itertools.count()


def require_netns() -> None:
    """Fail the calling test with a clear message unless namespaces can be created here."""
    import pytest  # here, so that the capture helper starts without pytest

    if os.geteuid() != 0:
        pytest.fail("netns tests must run as root (they create network namespaces); "
                    "run them as root, as CI does", pytrace=False)
    if shutil.which("ip") is None:
        pytest.fail("netns tests need the `ip` command (apt-get install iproute2)", pytrace=False)
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"`ip netns` does not work here: {probe.stderr.strip()}", pytrace=False)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


class Host:
    """One machine on the test network."""

    def __init__(self, network: Network, name: str, number: int) -> None:
        self.network = network
        self.name = name
        self.namespace = f"{network.base}-{name}"
        self.address = f"{network.subnet}.{number}"
        self.interface = "eth0"
        self.switch_port = f"p-{name}"

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.address})"

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, argv: Sequence[str], *, check: bool = True,
            **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` in this host's namespace to the end, output captured as text."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("env", self.network.env())  # as popen: the namespace's own broadcast
        kwargs.setdefault("cwd", REPO_ROOT)
        return subprocess.run(self._argv(argv), check=check, **kwargs)

    def popen(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` in this host's namespace; it is killed when the network goes away.

        ``env`` defaults to :meth:`Network.env` (no loopback-only broadcast override, the
        repository on PYTHONPATH)."""
        kwargs.setdefault("cwd", REPO_ROOT)
        process = subprocess.Popen(self._argv(argv), env=env or self.network.env(), **kwargs)
        self.network.processes.append(process)
        return process

    def python(self, *args: str, env: dict[str, str] | None = None,
               **kwargs: Any) -> subprocess.Popen:
        """``python -m ...`` or ``python script`` in this host, with pipes for text lines."""
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("text", True)
        kwargs.setdefault("bufsize", 1)
        return self.popen([sys.executable, *args], env=env, **kwargs)

    def enter_this_thread(self) -> None:
        """Move the calling thread (and every thread it starts later) into this host's network
        namespace, so an in-process component (say, a whole app sharing an in-process fake
        Telegram with another host's app) opens its sockets on this host. One way only: use it
        in a thread made for the purpose."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.namespace}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), f"setns into {self.namespace} failed")
        finally:
            os.close(fd)

    # -- link faults -----------------------------------------------------------------------------

    def cut_link(self) -> None:
        """Pull the cable: the switch port goes down; the host keeps its address and routes but
        nothing it sends arrives, and nothing reaches it."""
        _ip("-n", self.network.switch, "link", "set", self.switch_port, "down")

    def restore_link(self) -> None:
        _ip("-n", self.network.switch, "link", "set", self.switch_port, "up")

    def interface_down(self) -> None:
        """Take the host's own interface down (its routes go; sends fail with an error)."""
        _ip("-n", self.namespace, "link", "set", self.interface, "down")

    def interface_up(self) -> None:
        _ip("-n", self.namespace, "link", "set", self.interface, "up")

    # -- observation -----------------------------------------------------------------------------

    def capture_outgoing(self) -> Capture:
        """Start recording every frame this host sends on its interface (until ``stop()``)."""
        process = self.python("-m", "tests.netns", "capture", self.interface)
        assert process.stdout is not None
        ready = process.stdout.readline()
        if ready.strip() != "ready":
            process.kill()
            raise RuntimeError(f"packet capture in {self} did not start: {ready!r}")
        return Capture(process)


class Capture:
    """Frames a host sent, as dictionaries (see :func:`_describe`), once :meth:`stop` returns."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._process = process

    def stop(self, timeout: float = 10.0) -> tuple[list[dict[str, Any]], int]:
        """Returns (frames, frames the kernel dropped because the capture fell behind)."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        output = self._process.stdout.read()
        self._process.wait(timeout)
        summary = json.loads(output)
        return summary["frames"], summary["drops"]


class Network:
    """A switch and some hosts; use as a context manager."""

    def __init__(self, hosts: Sequence[str] = ("a", "b", "c")) -> None:
        if len(set(hosts)) != len(hosts) or not 1 <= len(hosts) <= 250:
            raise ValueError("host names must be unique, 1-250 of them")
        pid = os.getpid()
        self.base = f"{PREFIX}{pid}x{secrets.token_hex(2)}"
        self.switch = f"{self.base}-sw"
        self.subnet = f"10.{(pid + next(_counter)) % 250 + 1}.0"
        self.broadcast = f"{self.subnet}.255"
        self.prefix_length = 24
        self.hosts = {name: Host(self, name, number) for number, name in enumerate(hosts, 1)}
        self.processes: list[subprocess.Popen] = []
        self._namespaces: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Network:
        _delete_stale_namespaces()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for processes in a host: the caller's, minus the loopback-only
        broadcast override (a namespace only has its own interfaces), plus the repository on
        PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if k != "CHIMERA_BROADCAST_ADDRESSES"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env.update(extra)
        return env

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        # IPv6 neighbour discovery and MLD would add chatter to every packet count.
        subprocess.run(["ip", "netns", "exec", name, "sh", "-c",
                        "for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 1 > $f; done"],
                       capture_output=True)

    def _create(self) -> None:
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            self._add_namespace(host.namespace)
            _ip("-n", self.switch, "link", "add", host.switch_port, "type", "veth",
                "peer", "name", host.interface, "netns", host.namespace)
            _ip("-n", self.switch, "link", "set", host.switch_port, "master", "br0", "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/{self.prefix_length}",
                "brd", "+", "dev", host.interface)
            _ip("-n", host.namespace, "link", "set", host.interface, "up")

    def close(self) -> None:
        """Kill what was started in the hosts and delete every namespace. Idempotent."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.processes.clear()
        errors = []
        for name in reversed(self._namespaces):
            result = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if result.returncode != 0:
                errors.append(f"{name}: {result.stderr.strip()}")
        self._namespaces.clear()
        if errors:
            raise RuntimeError("could not delete namespaces: " + "; ".join(errors))


def _delete_stale_namespaces() -> None:
    """Namespaces of an earlier run that was killed before it could clean up."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _STALE.match(name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            age = time.time() - os.stat(f"/run/netns/{name}").st_mtime
        except OSError:
            continue
        if age > 60:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


# -- packet capture (runs inside a host) -----------------------------------------------------------

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = 33
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_SKF_AD_PKTTYPE = -0x1000 + 4


def _outgoing_only_filter() -> tuple[bytes, ctypes.Array]:
    """A classic BPF program keeping only frames the host sends, so a flood it receives cannot
    crowd them out of the capture's buffer."""
    program = [
        (0x20, 0, 0, _SKF_AD_PKTTYPE & 0xFFFFFFFF),  # ld [pkttype]
        (0x15, 0, 1, _PACKET_OUTGOING),  # jeq #OUTGOING, keep, drop
        (0x06, 0, 0, 0x40000),  # ret #262144 (keep)
        (0x06, 0, 0, 0),  # ret #0 (drop)
    ]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    return struct.pack("HL", len(program), ctypes.addressof(code)), code


def _describe(frame: bytes, at: float) -> dict[str, Any]:
    ethertype = int.from_bytes(frame[12:14], "big")
    info: dict[str, Any] = {"t": at, "ethertype": ethertype, "length": len(frame)}
    if ethertype != 0x0800 or len(frame) < 34:
        return info
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    info.update(protocol=ip[9], src=socket.inet_ntoa(ip[12:16]), dst=socket.inet_ntoa(ip[16:20]))
    if ip[9] == socket.IPPROTO_UDP:
        sport, dport, length = struct.unpack("!HHH", ip[header:header + 6])
        info.update(sport=sport, dport=dport, payload=ip[header + 8:header + length].hex())
    return info


def _capture_main(interface: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    program, _keep_alive = _outgoing_only_filter()
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)
    # Root may exceed rmem_max for this one socket; the host's settings stay untouched.
    sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 16 * 1024 * 1024)
    sock.bind((interface, _ETH_P_ALL))
    frames: list[dict[str, Any]] = []
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([sock, sys.stdin], [], [])
        if sock in readable:
            frame, address = sock.recvfrom(65535)
            if address[2] == _PACKET_OUTGOING:
                frames.append(_describe(frame, time.monotonic()))
        if sys.stdin in readable and not sys.stdin.readline():
            break
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            frame, address = sock.recvfrom(65535)
            if address[2] == _PACKET_OUTGOING:
                frames.append(_describe(frame, time.monotonic()))
    _packets, drops = struct.unpack("II", sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8))
    print(json.dumps({"frames": frames, "drops": drops}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "capture":
        _capture_main(sys.argv[2])
    else:
        sys.exit("usage: python -m tests.netns capture INTERFACE")
