"""Pairing without a CA between network namespaces: two profiles with personal certificates,
the real ``chimera pair`` on both hosts answered as a person would, then the real peer link."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.pki.pairing import PinStore, pins_path
from tests.lan_nodes import AppNode
from tests.netns import Host, Network, require_netns

pytestmark = pytest.mark.netns

ALICE, BOB, MALLORY = 1001, 2002, 3003


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as net:
        yield net


def _personal(host: Host, data_dir: Path, name: str, user_id: int) -> AppNode:
    node = AppNode(host, data_dir, name, user_id)  # no team CA
    made = host.run(node.chimera("--new", "--self-signed", "--telegram-id", str(user_id)))
    assert "Made a personal certificate" in made.stdout
    return node


@pytest.fixture
def alice(network: Network, tmp_path: Path) -> AppNode:
    return _personal(network["a"], tmp_path / "a", "alice", ALICE)


@pytest.fixture
def bob(network: Network, tmp_path: Path) -> AppNode:
    return _personal(network["b"], tmp_path / "b", "bob", BOB)


class Pairing:
    """``chimera pair`` running on a host, read and answered line by line."""

    def __init__(self, node: AppNode, *args: str) -> None:
        self.node = node
        self.process = node.host.popen(node.chimera("pair", *args), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, bufsize=1)
        self.output: list[str] = []

    def read_until(self, prefix: str) -> str:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"{self.node.name}: no {prefix!r} in {self.output}; stderr: "
                                     f"{self.process.stderr.read() if self.process.stderr else ''}")
            self.output.append(line)
            if line.startswith(prefix):
                return line.strip()

    def code(self) -> str:
        return self.read_until("Code: ").removeprefix("Code: ")

    def answer(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[int, str]:
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, "".join(self.output) + out + err


def _listen_then_call(callee: AppNode, caller: AppNode, address: str) -> tuple[Pairing, Pairing]:
    waiting = Pairing(callee)
    waiting.read_until("Waiting")
    calling = Pairing(caller, "--peer", address)
    return waiting, calling


def _pinned(node: AppNode) -> list[int]:
    return [pin.user_id for pin in PinStore(pins_path(node.paths)).all()]


def test_paired_profiles_without_a_ca_exchange_texts_over_the_lan(alice: AppNode,
                                                                  bob: AppNode) -> None:
    # before pairing, a personal certificate is refused like any unknown one
    bob.start_headless()
    refused = alice.send(BOB, "before pairing", wait=4)
    assert refused.returncode == 1
    bob.stop()

    at_bob, at_alice = _listen_then_call(bob, alice, bob.host.address)
    code_alice, code_bob = at_alice.code(), at_bob.code()
    assert code_alice == code_bob
    at_alice.answer("y")
    at_bob.answer("yes")
    (alice_rc, alice_out), (bob_rc, bob_out) = at_alice.finish(), at_bob.finish()
    assert (alice_rc, bob_rc) == (0, 0), alice_out + bob_out
    assert "Paired with user 2002" in alice_out and "Paired with user 1001" in bob_out
    assert _pinned(alice) == [BOB] and _pinned(bob) == [ALICE]

    bob.start_headless()
    result = alice.send(BOB, "hello Bob, paired face to face")
    assert result.returncode == 0, result.stderr
    assert "delivered over the LAN" in result.stdout
    received = [m for m in bob.export() if m["direction"] == "in"]
    # the message refused before pairing stayed queued, so it may come along now
    assert "hello Bob, paired face to face" in [m["text"] for m in received]
    assert {(m["sender"], m["route"]) for m in received} == {(ALICE, "lan")}

    # and back, while Bob's app runs (it writes through the database)
    alice.start_headless()
    reply = bob.send(ALICE, "hi Alice")
    assert reply.returncode == 0, reply.stderr
    assert [m["text"] for m in alice.export() if m["direction"] == "in"] == ["hi Alice"]

    # unpairing on Bob's side, while both run: Alice's next message is refused
    unpaired = bob.host.run(bob.chimera("unpair", str(ALICE)))
    assert "Unpaired user 1001" in unpaired.stdout
    bob.wait_for_log("unpaired: 1001")
    alice.stop()
    after = alice.send(BOB, "after unpairing", wait=4, extra=("--lan-only",))
    assert after.returncode == 1
    assert "after unpairing" not in [m["text"] for m in bob.export()]
    assert bob.stop() == 0


def test_a_man_in_the_middle_shows_different_codes_and_nothing_is_pinned(
        network: Network, alice: AppNode, bob: AppNode, tmp_path: Path) -> None:
    at_bob = Pairing(bob)
    at_bob.read_until("Waiting")
    mallory = network["c"].python("-m", "tests.pairing_mitm_node", "--dir",
                                  str(tmp_path / "mallory"), "--id", str(MALLORY),
                                  "--target", bob.host.address)
    while json.loads(mallory.stdout.readline())["event"] != "started":
        pass
    # Alice believes Mallory's address is Bob's (a spoofed announcement, a wrong address typed)
    at_alice = Pairing(alice, "--peer", network["c"].address)
    code_alice, code_bob = at_alice.code(), at_bob.code()
    assert code_alice != code_bob
    assert "user 3003" in at_alice.output[-2] and "user 3003" in at_bob.output[-2]
    at_alice.answer("n")  # the people compare screens and see different codes
    at_bob.answer("n")
    (alice_rc, alice_out), (bob_rc, bob_out) = at_alice.finish(), at_bob.finish()
    assert (alice_rc, bob_rc) == (1, 1)
    assert "Nothing was saved" in alice_out and "Nothing was saved" in bob_out
    assert _pinned(alice) == [] and _pinned(bob) == []
    mallory.stdin.close()
    mallory.wait(timeout=20)

    bob.start_headless()
    refused = alice.send(BOB, "for Bob only", wait=4, extra=("--lan-only",))
    assert refused.returncode == 1
    assert [m for m in bob.export() if m["direction"] == "in"] == []
    bob.stop()


def test_one_side_cancelling_pins_nothing_on_either_side(alice: AppNode, bob: AppNode) -> None:
    at_bob, at_alice = _listen_then_call(bob, alice, bob.host.address)
    assert at_alice.code() == at_bob.code()
    at_alice.answer("y")
    at_bob.answer("n")
    (alice_rc, alice_out), (bob_rc, _bob_out) = at_alice.finish(), at_bob.finish()
    assert (alice_rc, bob_rc) == (1, 1)
    assert "the other side cancelled" in alice_out
    assert _pinned(alice) == [] and _pinned(bob) == []
