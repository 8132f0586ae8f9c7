"""The outbox under any sequence of claim / complete / fail / give up / retry / restart.

A real SQLite file is closed and reopened on every "restart", as a killed process would. The model
is what the user was promised: every message written is, at every moment, exactly once either
still to be sent or finished, and a finished message was completed exactly once.
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chimera_tk.errors import InvalidTransition
from chimera_tk.router import Router
from chimera_tk.store import Store


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "chimera.db"
        self.store = Store.open(self.path)
        self.store.dialogs.upsert(1, "user", "Peer")
        self.queued: set[int] = set()
        self.in_flight: set[int] = set()
        self.failed: set[int] = set()
        self.finished: dict[int, str] = {}
        self.now = 1_000

    def teardown(self) -> None:
        self.store.close()
        self._tmp.cleanup()

    @rule(text=st.text(min_size=1, max_size=20).filter(str.strip))
    def send(self, text: str) -> None:
        message = Router(self.store, lambda _e: None).send_text(1, text)
        self.queued.add(message.id)

    @precondition(lambda self: self.queued)
    @rule(data=st.data(), route=st.sampled_from(["lan", "telegram"]))
    def claim(self, data: st.DataObject, route: str) -> None:
        due = [e.message_id for e in self.store.outbox.due(self.now)]
        assert set(due) <= self.queued
        if not due:
            return
        message_id = data.draw(st.sampled_from(due))
        entry = self.store.outbox.claim(message_id, route)
        assert entry.route == route
        self.queued.remove(message_id)
        self.in_flight.add(message_id)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), delivered=st.booleans())
    def complete(self, data: st.DataObject, delivered: bool) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.in_flight)))
        self.store.outbox.complete(message_id, delivered=delivered)
        self.in_flight.remove(message_id)
        self.finished[message_id] = "delivered" if delivered else "sent"

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), delay=st.integers(0, 50))
    def retry_later(self, data: st.DataObject, delay: int) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.in_flight)))
        self.store.outbox.retry_later(message_id, "peer gone", self.now + delay)
        self.in_flight.remove(message_id)
        self.queued.add(message_id)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def give_up(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.in_flight)))
        self.store.outbox.give_up(message_id, "refused")
        self.in_flight.remove(message_id)
        self.failed.add(message_id)

    @precondition(lambda self: self.failed)
    @rule(data=st.data())
    def user_retries(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.failed)))
        self.store.outbox.requeue(message_id)
        self.failed.remove(message_id)
        self.queued.add(message_id)

    @rule()
    def time_passes(self) -> None:
        self.now += 20

    @rule()
    def crash_and_restart(self) -> None:
        self.store.conn.close()  # no clean shutdown of anything in flight
        self.store = Store.open(self.path)
        Router(self.store, lambda _e: None).recover()
        self.queued |= self.in_flight
        self.in_flight.clear()

    @precondition(lambda self: self.finished)
    @rule(data=st.data())
    def finished_messages_cannot_be_sent_again(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.finished)))
        with pytest.raises(KeyError):
            self.store.outbox.claim(message_id, "lan")
        with pytest.raises(KeyError):
            self.store.outbox.complete(message_id, delivered=True)

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def queued_messages_cannot_be_completed(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.queued)))
        with pytest.raises(InvalidTransition):
            self.store.outbox.complete(message_id, delivered=True)

    @invariant()
    def nothing_lost_nothing_doubled(self) -> None:
        rows = self.store.conn.execute(
            "SELECT m.id, m.state, o.id IS NOT NULL FROM messages m "
            "LEFT JOIN outbox o ON o.message_id = m.id").fetchall()
        states = {row[0]: row[1] for row in rows}
        in_outbox = {row[0] for row in rows if row[2]}
        written = self.queued | self.in_flight | self.failed | set(self.finished)
        assert set(states) == written
        assert in_outbox == self.queued | self.in_flight | self.failed
        assert all(states[m] == "queued" for m in self.queued)
        assert all(states[m] == "sending" for m in self.in_flight)
        assert all(states[m] == "failed" for m in self.failed)
        assert all(states[m] == s for m, s in self.finished.items())
        outbox_rows = self.store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        assert outbox_rows == len(in_outbox)


OutboxMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                           deadline=None)
TestOutbox = OutboxMachine.TestCase
