"""Two and three desktops on a real (namespaced) LAN: UDP broadcast, mutual TLS, files, crashes.

Every process here is the real ``chimera`` command (or, for the impostor, the real workers),
each in its own network namespace joined by a bridge; nothing leaves the test network.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from chimera_tk.config import LanSettings
from chimera_tk.net.peer.files import PARTIAL_DIR
from tests.lan_nodes import AppNode
from tests.netns import Network, require_netns
from tests.pki_factory import TeamCA

pytestmark = pytest.mark.netns

ALICE, BOB, CAROL = 1001, 2002, 3003


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as net:
        yield net


@pytest.fixture
def ca() -> TeamCA:
    return TeamCA.create()


@pytest.fixture
def alice(network: Network, tmp_path: Path, ca: TeamCA) -> AppNode:
    return AppNode(network["a"], tmp_path / "a", "alice", ALICE, ca)


@pytest.fixture
def bob(network: Network, tmp_path: Path, ca: TeamCA) -> AppNode:
    return AppNode(network["b"], tmp_path / "b", "bob", BOB, ca)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _received(node: AppNode, sender: int) -> list[dict]:
    return [m for m in node.export() if m["dialog"] == sender and m["direction"] == "in"]


def test_texts_and_a_file_cross_the_lan_both_ways(alice: AppNode, bob: AppNode,
                                                  tmp_path: Path) -> None:
    bob.start_headless()
    started = time.monotonic()
    result = alice.send(BOB, "olá Bob, straight over the LAN")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "delivered over the LAN" in result.stdout
    print(f"discover + handshake + deliver from a cold `chimera send`: {took:.2f} s")

    big = "".join(chr(0x41 + i % 26) for i in range(1_000_000))  # the seed truncated at 1 KiB
    text_file = tmp_path / "big.txt"
    text_file.write_text(big)
    result = alice.send(BOB, file=text_file)
    assert result.returncode == 0, result.stderr
    result = alice.host.run(alice.chimera("send", "--to", str(BOB), "-"), input=big,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr

    received = _received(bob, ALICE)
    assert [m["text"] for m in received if m["file"] is None] == [
        "olá Bob, straight over the LAN", big]
    files = [m["file"] for m in received if m["file"]]
    assert len(files) == 1 and files[0]["sha256"] == _sha(text_file)
    assert Path(files[0]["path"]).read_text() == big
    assert all(m["route"] == "lan" and m["sender"] == ALICE for m in received)
    sent = [m for m in alice.export() if m["direction"] == "out"]
    assert [m["state"] for m in sent] == ["delivered"] * 3

    # and back: Bob's running app answers through the database, Alice listens headless
    alice.start_headless()
    reply = bob.send(ALICE, "obrigado!")
    assert reply.returncode == 0, reply.stderr
    assert [m["text"] for m in _received(alice, BOB)] == ["obrigado!"]
    assert alice.stop() == 0 and bob.stop() == 0


def test_message_to_an_offline_peer_waits_then_arrives_exactly_once(alice: AppNode,
                                                                    bob: AppNode) -> None:
    alice.start_headless()
    queued = alice.send(BOB, "are you there?", wait=1)
    assert queued.returncode == 1
    assert "stays queued" in queued.stderr
    bob.start_headless()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = [m["state"] for m in alice.export() if m["direction"] == "out"]
        if states == ["delivered"]:
            break
        time.sleep(0.2)
    assert states == ["delivered"]
    assert [m["text"] for m in _received(bob, ALICE)] == ["are you there?"]
    bob.stop()
    alice.stop()
    bob.start_headless()  # a restart must not bring a second copy
    time.sleep(1)
    assert len(_received(bob, ALICE)) == 1
    bob.stop()


def _rss_sampler(pid: int, samples: list[int], stop: threading.Event) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            samples.append(sum(p.memory_info().rss for p in [process, *process.children(True)]))
        except psutil.Error:
            return
        time.sleep(0.02)


def test_200_mib_file_arrives_identical_and_receiver_memory_stays_flat(
        alice: AppNode, bob: AppNode, tmp_path: Path) -> None:
    source = tmp_path / "video.bin"
    with open(source, "wb") as out:
        for _ in range(200):
            out.write(os.urandom(1 << 20))
    bob.start_headless()
    time.sleep(0.5)
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(bob.process.pid, samples, stop))
    sampler.start()
    started = time.monotonic()
    result = alice.send(BOB, file=source, wait=120)
    took = time.monotonic() - started
    stop.set()
    sampler.join()
    assert result.returncode == 0, result.stderr
    [received] = [m["file"] for m in _received(bob, ALICE)]
    assert received["sha256"] == _sha(source) == _sha(Path(received["path"]))
    growth = (max(samples) - samples[0]) / 2**20
    print(f"200 MiB in {took:.2f} s ({200 / took:.0f} MiB/s incl. start-up); "
          f"receiver RSS growth {growth:.1f} MiB over {len(samples)} samples")
    assert growth < 64, f"receiver memory grew by {growth:.0f} MiB"
    bob.stop()


def test_receiver_killed_mid_transfer_resumes_from_its_offset(alice: AppNode, bob: AppNode,
                                                              tmp_path: Path) -> None:
    source = tmp_path / "archive.bin"
    with open(source, "wb") as out:
        for _ in range(300):
            out.write(os.urandom(1 << 20))
    bob.start_headless()
    alice.start_headless()
    queued = alice.send(BOB, file=source, wait=0)  # alice's running app does the sending
    assert queued.returncode in (0, 1)
    partial_dir = bob.paths.downloads / PARTIAL_DIR
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(partial_dir.glob("*.part")) if partial_dir.exists() else []
        if parts and parts[0].stat().st_size > 40 << 20:
            break
        time.sleep(0.005)
    else:
        pytest.fail("the transfer never got going")
    bob.process.send_signal(signal.SIGKILL)
    bob.process.wait()
    bob.process = None
    kept = parts[0].stat().st_size
    assert not [p for p in bob.paths.downloads.iterdir() if p.is_file()]  # nothing final yet
    bob.start_headless()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        sent = [m for m in alice.export() if m["direction"] == "out"]
        if sent and sent[0]["state"] == "delivered":
            break
        time.sleep(0.3)
    assert sent[0]["state"] == "delivered"
    resumed_at = [int(line.rsplit(" ", 1)[1]) for line in bob.log().splitlines()
                  if "receiving file" in line]
    assert resumed_at[0] == 0 and resumed_at[-1] > 0, resumed_at
    assert resumed_at[-1] <= kept + (4 << 20)
    [received] = [m["file"] for m in _received(bob, ALICE)]
    assert _sha(Path(received["path"])) == _sha(source)
    assert not list(partial_dir.glob("*.part"))
    finals = [p.name for p in bob.paths.downloads.iterdir() if p.is_file()]
    assert finals == ["archive.bin"]
    alice.stop()
    bob.stop()


def test_impostor_announcing_bobs_id_receives_nothing(network: Network, alice: AppNode,
                                                      ca: TeamCA, tmp_path: Path) -> None:
    carol_dir = tmp_path / "carol"
    ca.write_identity(carol_dir, CAROL)  # a valid certificate, but for another id
    impostor = network["c"].python("-m", "tests.impostor_node", "--profile-dir", str(carol_dir),
                                   "--cert-id", str(CAROL), "--announce-id", str(BOB))
    assert json.loads(impostor.stdout.readline())["event"] == "started"
    result = alice.send(BOB, "for Bob's eyes only", wait=4)
    assert result.returncode == 1
    assert "identity mismatch" in alice.log()
    impostor.stdin.write("report\n")
    impostor.stdin.flush()
    report = None
    while report is None:
        line = json.loads(impostor.stdout.readline())
        if line["event"] == "report":
            report = line
    assert report["messages"] == 0
    sent = [m for m in alice.export() if m["direction"] == "out"]
    assert [m["state"] for m in sent] == ["queued"]  # kept for the real Bob
    impostor.stdin.close()
    impostor.wait(timeout=20)


def test_peers_command_lists_who_announces(network: Network, alice: AppNode,
                                           bob: AppNode) -> None:
    bob.start_headless()
    result = alice.host.run(alice.chimera("peers", "--wait", "6", "--json"), timeout=60)
    peers = json.loads(result.stdout)
    assert [(p["user_id"], p["address"]) for p in peers] == [(BOB, network["b"].address)]
    bob.stop()


def test_headless_without_a_certificate_says_how_to_join(network: Network,
                                                         tmp_path: Path) -> None:
    node = AppNode(network["c"], tmp_path / "c", "carol", CAROL, ca=None,
                   lan=LanSettings())
    result = node.host.run(node.chimera("--headless"), check=False)
    assert result.returncode == 1
    assert "chimera --new --invite" in result.stderr
    assert "Traceback" not in result.stderr
