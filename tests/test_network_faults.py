"""Network faults between two desktops: a lossy, slow, reordering link; a pulled cable; a frozen
receiver. Transfers resume or wait, nothing is lost or doubled, and no thread is left behind.

Alice is the whole app in this process, on a thread inside host a's namespace (tests/fault_nodes.py:
its threads and database can be inspected); Bob is the real ``chimera --headless`` process on host
b, so it can be frozen with SIGSTOP. This kernel has no sch_netem, so loss/delay/reorder come from
tests/netem_queue.py (NFQUEUE + a userspace scheduler; needs iptables); throttling uses the
kernel's tbf qdisc.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.config import LanSettings
from chimera_tk.net.peer.worker import PeerLimits
from chimera_tk.router import file_sha256
from chimera_tk.store import Store
from tests.fault_nodes import InProcessApp, wait_until
from tests.lan_nodes import AppNode
from tests.netem_queue import Impairment
from tests.netns import Host, Network, require_netns
from tests.pki_factory import TeamCA

pytestmark = pytest.mark.netns

ALICE, BOB = 1001, 2002
# Alice notices a silent peer quickly, so that the frozen-receiver tests stay short.
FAST_LIMITS = PeerLimits(idle_timeout_s=3.0, ack_timeout_s=3.0, retry_after_s=1.0)


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b")) as net:
        yield net


@pytest.fixture
def ca() -> TeamCA:
    return TeamCA.create()


@pytest.fixture
def bob(network: Network, tmp_path: Path, ca: TeamCA) -> Iterator[AppNode]:
    node = AppNode(network["b"], tmp_path / "b", "bob", BOB, ca,
                   lan=LanSettings(interval_s=1.0))
    node.start_headless()
    yield node
    if node.process is not None:
        node.process.send_signal(signal.SIGCONT)
        assert node.stop() == 0  # a clean exit: every worker joined in time
        assert "did not stop within" not in node.log()


def _random_file(path: Path, mebibytes: int) -> Path:
    with open(path, "wb") as out:
        for _ in range(mebibytes):
            out.write(os.urandom(1 << 20))
    return path


def _received(bob: AppNode) -> list:
    store = Store.open(bob.paths.database)
    try:
        return [m for m in store.messages.latest_page(ALICE, 10_000) if not m.outgoing]
    finally:
        store.close()


def _file_of(bob: AppNode, message) -> Path:
    store = Store.open(bob.paths.database)
    try:
        record = store.files.get(message.file_id)
        assert record.state == "complete", record
        return Path(record.path)
    finally:
        store.close()


def _states(store: Store, ids: list[int]) -> list[str]:
    return [store.messages.get(i).state for i in ids]


def _resume_offsets(bob: AppNode) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in bob.log().splitlines()
            if "receiving file" in line]


def _require_tool(name: str, package: str) -> None:
    if shutil.which(name) is None:  # fail, never skip: CI can install it (.ci/run)
        pytest.fail(f"this test needs `{name}` (apt-get install {package})", pytrace=False)


def _stop_alice(alice: InProcessApp) -> None:
    alice.stop()
    assert alice.leftover_threads == [], f"threads left running: {alice.leftover_threads}"


@contextlib.contextmanager
def _alice_verifying_bob(network: Network, tmp_path: Path, ca: TeamCA,
                         limits: PeerLimits) -> Iterator[tuple[InProcessApp, Store]]:
    """Alice's app in host a (in this process) once it has verified Bob; stopped afterwards,
    with no thread left behind."""
    alice = InProcessApp(network["a"], tmp_path / "a", "alice", ALICE, ca, limits=limits)
    store = alice.store()
    try:
        wait_until(lambda: alice.app.lan is not None and BOB in alice.app.lan.verified, 20,
                   "Alice to verify Bob")
        yield alice, store
    finally:
        store.close()
        _stop_alice(alice)


def _lossy_link_delivers_everything_once(network: Network, tmp_path: Path, ca: TeamCA,
                                         bob: AppNode, *, mebibytes: int, texts: int) -> None:
    _require_tool("iptables", "iptables")
    with _alice_verifying_bob(network, tmp_path, ca, PeerLimits()) as (alice, store):
        source = _random_file(tmp_path / "lossy.bin", mebibytes)
        # both directions, like netem on each host's interface: data and its ACKs suffer
        impairments = [Impairment(network[name], loss=0.05, delay_ms=50, reorder=0.25, seed=seed)
                       for name, seed in (("a", 1), ("b", 2))]
        started = time.monotonic()
        try:
            ids = [alice.send_text(store, BOB, f"lossy {i}").id for i in range(texts // 2)]
            ids.append(alice.send_file(store, BOB, source).id)
            ids += [alice.send_text(store, BOB, f"lossy {i}").id
                    for i in range(texts // 2, texts)]
            wait_until(lambda: set(_states(store, ids)) == {"delivered"}, 600,
                       "every message to be delivered over the lossy link", step=0.5)
            took = time.monotonic() - started
        finally:
            counts = [impairment.stop() for impairment in impairments]
        received = _received(bob)
        print(f"\n{mebibytes} MiB + {texts} texts over 5% loss/50 ms/25% reorder each way: "
              f"{took:.1f} s; Alice->Bob {counts[0]}, Bob->Alice {counts[1]}; "
              f"resumes at {_resume_offsets(bob)}")
        # the faults really happened, both ways
        assert all(c["dropped"] > 0 and c["reordered"] > 0 for c in counts), counts
        assert len(received) == texts + 1
        assert len({m.uid for m in received}) == texts + 1
        assert sorted(m.text for m in received if m.file_id is None) == sorted(
            f"lossy {i}" for i in range(texts))
        [file_message] = [m for m in received if m.file_id is not None]
        assert file_sha256(_file_of(bob, file_message)) == file_sha256(source)


def test_lossy_delayed_reordering_link_delivers_texts_and_a_file_once(
        network: Network, tmp_path: Path, ca: TeamCA, bob: AppNode) -> None:
    _lossy_link_delivers_everything_once(network, tmp_path, ca, bob, mebibytes=4, texts=200)


@pytest.mark.stress  # ~3 min; the 4 MiB variant above runs in every suite run
def test_lossy_link_50_mib_and_200_texts(network: Network, tmp_path: Path, ca: TeamCA,
                                        bob: AppNode) -> None:
    _lossy_link_delivers_everything_once(network, tmp_path, ca, bob, mebibytes=50, texts=200)


def _throttle(host: Host, rate: str) -> None:
    host.run(["tc", "qdisc", "add", "dev", host.interface, "root", "tbf", "rate", rate,
              "burst", "64kb", "latency", "200ms"])


def test_link_down_for_10_s_mid_transfer_resumes_from_the_receivers_offset(
        network: Network, tmp_path: Path, ca: TeamCA, bob: AppNode) -> None:
    with _alice_verifying_bob(network, tmp_path, ca, FAST_LIMITS) as (alice, store):
        _throttle(network["a"], "80mbit")  # about 10 MB/s: the transfer lasts a few seconds
        source = _random_file(tmp_path / "cut.bin", 48)
        message = alice.send_file(store, BOB, source)
        partial_dir = bob.paths.downloads / ".partial"
        wait_until(lambda: any(p.stat().st_size > 8 << 20 for p in partial_dir.glob("*.part"))
                   if partial_dir.exists() else False, 30, "the transfer to get going",
                   step=0.02)
        network["a"].cut_link()
        time.sleep(10)
        during = store.messages.get(message.id).state
        network["a"].restore_link()
        wait_until(lambda: store.messages.get(message.id).state == "delivered", 90,
                   "the transfer to finish after the link came back", step=0.2)
        offsets = _resume_offsets(bob)
        print(f"\nlink down 10 s: state during the cut {during!r}; receiver offsets {offsets}")
        assert during in ("queued", "sending")  # waiting, not failed
        assert offsets[0] == 0 and offsets[-1] > 0, offsets  # resumed, not restarted
        [received] = _received(bob)
        assert file_sha256(_file_of(bob, received)) == file_sha256(source)


def test_slow_link_transfer_is_not_taken_for_a_silent_peer(
        network: Network, tmp_path: Path, ca: TeamCA, bob: AppNode) -> None:
    # While a file streams out, the receiver says nothing; the sender's PING waits behind
    # megabytes of queued data. The sender must not call that peer silent while its bytes are
    # still being taken (on a slow link the PONG comes back later than 1.5 x the idle timeout).
    with _alice_verifying_bob(network, tmp_path, ca, FAST_LIMITS) as (alice, store):
        _throttle(network["a"], "16mbit")  # 2 MB/s: queued data takes seconds to drain
        source = _random_file(tmp_path / "slow.bin", 16)
        started = time.monotonic()
        message = alice.send_file(store, BOB, source)
        wait_until(lambda: store.messages.get(message.id).state == "delivered", 90,
                   "the slow transfer to finish", step=0.2)
        took = time.monotonic() - started
        offsets = _resume_offsets(bob)
        print(f"\n16 MiB at 16 Mbit/s with a {FAST_LIMITS.idle_timeout_s:.0f} s idle timeout: "
              f"{took:.1f} s, receiver offsets {offsets}")
        assert offsets == [0]  # one transfer, never cut and resumed
        [received] = _received(bob)
        assert file_sha256(_file_of(bob, received)) == file_sha256(source)


def test_receiver_frozen_mid_file_is_noticed_and_the_file_resumes_after_sigcont(
        network: Network, tmp_path: Path, ca: TeamCA, bob: AppNode) -> None:
    # The sender counts megabytes taken by the kernel as a sign of life (channel.py); a frozen
    # receiver must still be found out once the socket buffers are full.
    with _alice_verifying_bob(network, tmp_path, ca, FAST_LIMITS) as (alice, store):
        _throttle(network["a"], "80mbit")
        source = _random_file(tmp_path / "stream.bin", 48)
        message = alice.send_file(store, BOB, source)
        partial_dir = bob.paths.downloads / ".partial"
        wait_until(lambda: any(p.stat().st_size > 8 << 20 for p in partial_dir.glob("*.part"))
                   if partial_dir.exists() else False, 30, "the transfer to get going",
                   step=0.02)
        bob.process.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        wait_until(lambda: BOB not in alice.app.lan.verified, 30, "Alice to notice the freeze")
        noticed = time.monotonic() - frozen_at
        time.sleep(max(0.0, 10 - noticed))
        during = store.messages.get(message.id).state
        bob.process.send_signal(signal.SIGCONT)
        wait_until(lambda: store.messages.get(message.id).state == "delivered", 90,
                   "the file to be delivered after SIGCONT", step=0.2)
        offsets = _resume_offsets(bob)
        print(f"\nreceiver frozen mid-file: noticed after {noticed:.1f} s (idle timeout "
              f"{FAST_LIMITS.idle_timeout_s:.0f} s); state {during!r}; offsets {offsets}")
        assert during in ("queued", "sending")
        assert offsets[0] == 0 and offsets[-1] > 0, offsets
        [received] = _received(bob)
        assert file_sha256(_file_of(bob, received)) == file_sha256(source)


def _freeze_and_thaw(alice: InProcessApp, bob: AppNode, tmp_path: Path,
                     freeze_s: float) -> dict[str, object]:
    """Freeze Bob, send to him, thaw him; returns what was seen (the messages are checked)."""
    store = alice.store()
    try:
        wait_until(lambda: alice.app.lan is not None and BOB in alice.app.lan.verified, 20,
                   "Alice to verify Bob")
        first = alice.send_text(store, BOB, "before the freeze")
        wait_until(lambda: store.messages.get(first.id).state == "delivered", 20,
                   "a first delivery")
        source = _random_file(tmp_path / "frozen.bin", 24)
        bob.process.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        ids = [alice.send_text(store, BOB, f"while frozen {i}").id for i in range(10)]
        ids.append(alice.send_file(store, BOB, source).id)
        ids += [alice.send_text(store, BOB, f"while frozen {i}").id for i in range(10, 20)]
        # the sender notices (no ACK within its timeout), stops counting Bob as reachable and
        # keeps the messages queued (there is no Telegram account to fall back to here)
        wait_until(lambda: BOB not in alice.app.lan.verified, freeze_s, "Alice to notice")
        noticed = time.monotonic() - frozen_at
        time.sleep(max(0.0, freeze_s - (time.monotonic() - frozen_at)))
        states_while_frozen = _states(store, ids)
        bob.process.send_signal(signal.SIGCONT)
        thawed_at = time.monotonic()
        wait_until(lambda: set(_states(store, ids)) == {"delivered"}, 90,
                   "everything to be delivered after SIGCONT", step=0.2)
        caught_up = time.monotonic() - thawed_at
        received = _received(bob)
        assert "failed" not in states_while_frozen
        assert "delivered" not in states_while_frozen[1:]  # at most the first slipped through
        assert len(received) == 22 and len({m.uid for m in received}) == 22  # no duplicate
        [file_message] = [m for m in received if m.file_id is not None]
        assert file_sha256(_file_of(bob, file_message)) == file_sha256(source)
        return {"noticed_s": noticed, "caught_up_s": caught_up}
    finally:
        store.close()


def test_receiver_frozen_longer_than_the_idle_timeout_gets_everything_once_after_sigcont(
        network: Network, tmp_path: Path, ca: TeamCA, bob: AppNode) -> None:
    alice = InProcessApp(network["a"], tmp_path / "a", "alice", ALICE, ca, limits=FAST_LIMITS)
    try:
        seen = _freeze_and_thaw(alice, bob, tmp_path, freeze_s=3 * FAST_LIMITS.idle_timeout_s)
        print(f"\nfrozen receiver: sender noticed after {seen['noticed_s']:.1f} s; "
              f"caught up {seen['caught_up_s']:.1f} s after SIGCONT")
    finally:
        _stop_alice(alice)


@pytest.mark.gui
def test_window_keeps_answering_while_its_peer_is_frozen(
        x_display: str, network: Network, tmp_path: Path, ca: TeamCA, bob: AppNode) -> None:
    alice = InProcessApp(network["a"], tmp_path / "a", "alice", ALICE, ca, limits=FAST_LIMITS,
                         window=True)
    try:
        wait_until(lambda: len(alice.ping_lateness) > 10, 20, "the window to start pinging")
        pings_before = len(alice.ping_lateness)
        seen = _freeze_and_thaw(alice, bob, tmp_path, freeze_s=3 * FAST_LIMITS.idle_timeout_s)
        lateness = alice.ping_lateness[pings_before:]
        worst = max(lateness)
        print(f"\nwindow during freeze + catch-up: {len(lateness)} pings, worst "
              f"{worst * 1000:.0f} ms late (target < 200 ms); {seen}")
        # one ping every 50 ms: a window that stopped answering would have far fewer
        expected = (seen["caught_up_s"] + 3 * FAST_LIMITS.idle_timeout_s) / 0.05
        assert len(lateness) > expected / 4
        assert worst < 2.0  # generous: the figure above is what counts
    finally:
        _stop_alice(alice)
