"""What bounds a node's answer to forged announcements: the callback budget and idle senders.

The measured end-to-end figure is in test_amplification_netns.py; these are the parts, run
without namespaces: the budget's arithmetic, and a peer worker whose sender threads for made-up
users end once idle while real messages still go out.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from chimera_tk.net.callback_budget import CallbackBudget
from chimera_tk.net.peer.worker import PeerLimits, PeerWorker
from chimera_tk.store import Store
from tests.pki_factory import TeamCA

ALICE, BOB = 1001, 2002


def test_budget_allows_a_few_calls_per_address_and_interval() -> None:
    budget = CallbackBudget(5.0, per_address=4, total=6)
    assert [budget.allow("10.0.0.2", 0.0) for _ in range(6)] == [True] * 4 + [False] * 2
    assert budget.allow("10.0.0.3", 1.0) and budget.allow("10.0.0.3", 1.0)
    assert not budget.allow("10.0.0.4", 1.0)  # the total for the interval is spent
    assert budget.refused == 3
    assert budget.allow("10.0.0.2", 5.0)  # a new interval


def test_budget_is_independent_of_the_flood_size() -> None:
    budget = CallbackBudget(5.0)
    allowed = sum(budget.allow("10.0.0.2", i / 2000) for i in range(10_000))  # 5 s at 2000/s
    assert allowed == 4
    assert budget.refused == 9_996


def test_budget_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CallbackBudget(0)
    with pytest.raises(ValueError):
        CallbackBudget(5.0, per_address=8, total=4)


class _Node:
    def __init__(self, root: Path, user_id: int, ca: TeamCA, limits: PeerLimits) -> None:
        self.user_id = user_id
        tls = ca.write_identity(root, user_id)
        (root / "downloads").mkdir(parents=True, exist_ok=True)
        self.store = Store.open(root / "chimera.db")
        self.worker = PeerWorker(user_id, f"user{user_id}", tls, root / "chimera.db",
                                 root / "downloads", lambda _event: None, host="127.0.0.1",
                                 port=0, limits=limits)
        self.worker.start()

    def close(self) -> None:
        self.worker.stop()
        self.worker.join(10)
        self.store.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sender_threads(user_ids: range) -> list[str]:
    names = {f"lan-send-{uid}" for uid in user_ids}
    return [t.name for t in threading.enumerate() if t.name in names]


def test_senders_for_made_up_users_end_when_idle_and_real_messages_still_go(
        tmp_path: Path) -> None:
    ca = TeamCA.create()
    alice = _Node(tmp_path / "a", ALICE, ca, PeerLimits(sender_idle_s=0.2, retry_after_s=0))
    bob = _Node(tmp_path / "b", BOB, ca, PeerLimits())
    made_up = range(900_000, 900_050)
    try:
        nowhere = _closed_port()
        for uid in made_up:  # what 50 forged announcements make the LAN service do
            alice.worker.learn_address(uid, "127.0.0.1", nowhere)
            alice.worker.verify(uid)
        deadline = time.monotonic() + 30
        while _sender_threads(made_up):
            assert time.monotonic() < deadline, _sender_threads(made_up)
            time.sleep(0.05)
        assert not set(made_up) & set(alice.worker._senders)

        # Bob's sender retires between messages too; each message still arrives.
        alice.store.dialogs.ensure(BOB, "user", "Bob")
        alice.worker.learn_address(BOB, "127.0.0.1", bob.worker.port)
        for text in ("first", "after the sender retired"):
            with alice.store.transaction():
                message = alice.store.messages.add_outgoing(BOB, text)
                alice.store.outbox.enqueue(message.id)
            alice.store.outbox.claim(message.id, "lan")
            alice.worker.submit(BOB, message.id)
            deadline = time.monotonic() + 30
            while alice.store.messages.get(message.id).state != "delivered":
                assert time.monotonic() < deadline, alice.store.messages.get(message.id)
                time.sleep(0.05)
            deadline = time.monotonic() + 30
            while _sender_threads(range(BOB, BOB + 1)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        received = bob.store.conn.execute(
            "SELECT text FROM messages WHERE outgoing = 0 ORDER BY id").fetchall()
        assert [row[0] for row in received] == ["first", "after the sender retired"]
    finally:
        alice.close()
        bob.close()
