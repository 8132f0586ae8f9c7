"""The discovery worker with real sockets on loopback (127.255.255.255 only), in this process.

Ports are picked free for each test, so these never hear or disturb a Chimera running here.
The tests between real hosts are in test_discovery_netns.py.
"""

from __future__ import annotations

import logging
import queue
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from chimera_tk.config import LanSettings
from chimera_tk.errors import ConfigError, UserError
from chimera_tk.events import PeerAnnounced, PeerExpired, StatusChanged
from chimera_tk.net.discovery import worker as worker_module
from chimera_tk.net.discovery.worker import DiscoveryWorker

LOOPBACK_BROADCAST = ("127.255.255.255",)


def _free_udp_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def lan() -> LanSettings:
    discovery, announce = _free_udp_ports(2)
    return LanSettings(discovery_port=discovery, announce_port=announce, interval_s=0.5,
                       broadcast_addresses=LOOPBACK_BROADCAST)


class Inbox:
    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.seen: list[object] = []

    def wait_for(self, predicate: Callable[[object], bool], timeout: float = 3.0) -> object:
        deadline = time.monotonic() + timeout
        for event in self.seen:
            if predicate(event):
                return event
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"no matching event within {timeout} s; saw {self.seen}")


@pytest.fixture
def started() -> Iterator[list[DiscoveryWorker]]:
    workers: list[DiscoveryWorker] = []
    yield workers
    for worker in workers:
        worker.stop()
    for worker in workers:
        assert worker.join(2.0)


def _worker(lan: LanSettings, uid: int, started: list[DiscoveryWorker],
            **kwargs: object) -> tuple[DiscoveryWorker, Inbox]:
    inbox = Inbox()
    worker = DiscoveryWorker(uid, 6000 + uid, lan, inbox.queue.put, **kwargs)
    worker.start()
    started.append(worker)
    return worker, inbox


def test_two_workers_on_one_machine_find_each_other_and_ignore_themselves(
        lan: LanSettings, started: list[DiscoveryWorker]) -> None:
    one, inbox1 = _worker(lan, 1, started)
    two, inbox2 = _worker(lan, 2, started)
    event = inbox1.wait_for(lambda e: isinstance(e, PeerAnnounced) and e.user_id == 2)
    assert event == PeerAnnounced(2, "127.0.0.1", 6002, two.instance, new=True)
    inbox2.wait_for(lambda e: isinstance(e, PeerAnnounced) and e.user_id == 1 and e.new)
    assert set(one.peers()) == {2} and one.peers()[2].port == 6002
    assert one.stats().own_ignored >= 1 and one.stats().sent >= 1


def test_stopped_worker_says_goodbye_and_stops_promptly(
        lan: LanSettings, started: list[DiscoveryWorker]) -> None:
    slow = LanSettings(discovery_port=lan.discovery_port, announce_port=lan.announce_port,
                       interval_s=3600, broadcast_addresses=LOOPBACK_BROADCAST)
    _one, inbox1 = _worker(slow, 1, started)
    two = DiscoveryWorker(2, 6002, slow, lambda e: None)
    two.start()
    inbox1.wait_for(lambda e: isinstance(e, PeerAnnounced) and e.user_id == 2)
    began = time.monotonic()
    two.stop()
    assert two.join(1.0), "the worker thread did not end"
    inbox1.wait_for(lambda e: e == PeerExpired(2, "127.0.0.1"), timeout=1.0)
    assert time.monotonic() - began < 1.0  # the goodbye, not a 3-hour expiry
    assert two.stats().sent == 2  # one announcement, one goodbye


def test_malformed_datagrams_are_counted_and_the_worker_carries_on(
        lan: LanSettings, started: list[DiscoveryWorker]) -> None:
    one, inbox1 = _worker(lan, 1, started)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for data in (b"", b"hello", b"1:01", b"\xff" * 2000, b"1:2:3:4:5"):
            sender.sendto(data, ("127.0.0.1", lan.discovery_port))
        sender.sendto(b"1:77:6077:after", ("127.0.0.1", lan.discovery_port))
    inbox1.wait_for(lambda e: isinstance(e, PeerAnnounced) and e.user_id == 77)
    assert one.stats().malformed == 5


def test_port_held_by_another_program_is_a_user_error(lan: LanSettings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("", lan.discovery_port))  # no SO_REUSEADDR: it does not share
        worker = DiscoveryWorker(1, 6001, lan, lambda e: None)
        with pytest.raises(UserError, match=f"UDP port {lan.discovery_port}"):
            worker.start()
    assert worker.join(0.1)


def test_bad_configured_broadcast_address_fails_at_start(lan: LanSettings) -> None:
    bad = LanSettings(discovery_port=lan.discovery_port, announce_port=lan.announce_port,
                      broadcast_addresses=("not-an-address",))
    with pytest.raises(ConfigError, match="not-an-address"):
        DiscoveryWorker(1, 6001, bad, lambda e: None).start()


def test_disabled_lan_starts_nothing(lan: LanSettings) -> None:
    off = LanSettings(enabled=False, discovery_port=lan.discovery_port)
    worker = DiscoveryWorker(1, 6001, off, lambda e: None)
    worker.start()
    worker.stop()
    assert worker.join(0.1) and worker.stats().sent == 0


def test_malformed_count_is_logged_periodically(lan: LanSettings, started: list[DiscoveryWorker],
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(worker_module, "STATS_LOG_INTERVAL_S", 0.2)
    caplog.set_level(logging.INFO, logger=worker_module.__name__)
    _one, _inbox = _worker(lan, 1, started)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(3):
            sender.sendto(b"junk", ("127.0.0.1", lan.discovery_port))
    deadline = time.monotonic() + 3
    while "3 malformed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "dropped 3 malformed datagrams" in caplog.text and "from 127.0.0.1" in caplog.text


def test_a_failing_thread_reports_itself_instead_of_dying_silently(
        lan: LanSettings, started: list[DiscoveryWorker], monkeypatch: pytest.MonkeyPatch) -> None:
    one, inbox = _worker(lan, 1, started)

    def broken(*_args: object) -> list[object]:
        raise RuntimeError("bug in the protocol code")

    monkeypatch.setattr(one._state, "receive", broken)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"1:2", ("127.0.0.1", lan.discovery_port))
    status = inbox.wait_for(lambda e: isinstance(e, StatusChanged))
    assert status == StatusChanged("lan", "LAN discovery stopped: bug in the protocol code",
                                   "error")
    assert one.join(1.0)
