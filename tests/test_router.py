"""The router: durable send, route choice, recovery after a crash."""

import pytest

from chimera_tk.errors import UserError
from chimera_tk.events import MessageChanged, MessageStored
from chimera_tk.router import MAX_TEXT_CHARS, Router, choose_route
from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message, OutboxEntry


class RecordingTransport:
    """A transport that records what it is handed (the real LAN/Telegram ones come later)."""

    def __init__(self, name: str, reachable: bool) -> None:
        self.name = name
        self.reachable = reachable
        self.submitted: list[tuple[OutboxEntry, Message]] = []

    def can_reach(self, dialog: Dialog) -> bool:
        return self.reachable

    def submit(self, entry: OutboxEntry, message: Message) -> None:
        self.submitted.append((entry, message))


@pytest.fixture
def events() -> list[object]:
    return []


@pytest.fixture
def router(store: Store, events: list[object]) -> Router:
    store.dialogs.upsert(1, "user", "Ana")
    return Router(store, events.append)


@pytest.mark.parametrize(("lan", "telegram", "lan_only", "expected"), [
    (True, True, False, "lan"),
    (True, False, True, "lan"),
    (False, True, False, "telegram"),
    (False, True, True, None),
    (False, False, False, None),
])
def test_route_choice(lan: bool, telegram: bool, lan_only: bool, expected: str | None) -> None:
    dialog = Dialog(1, "user", "Ana", lan_only=lan_only)
    assert choose_route(dialog, {"lan": lan, "telegram": telegram}) == expected


def test_send_writes_message_and_outbox_row_together(store: Store, router: Router,
                                                     events: list[object]) -> None:
    message = router.send_text(1, "hello\n")
    assert message.state == "queued" and message.text == "hello"
    assert [e.message_id for e in store.outbox.due()] == [message.id]
    assert events == [MessageStored(message)]


def test_send_that_fails_leaves_neither_message_nor_outbox_row(store: Store, router: Router,
                                                               monkeypatch) -> None:
    def broken_enqueue(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store.outbox, "enqueue", broken_enqueue)
    with pytest.raises(RuntimeError):
        router.send_text(1, "lost?")
    assert store.messages.count(1) == 0
    assert store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "x" * (MAX_TEXT_CHARS + 1)])
def test_unsendable_text_is_refused_with_a_user_error(router: Router, text: str) -> None:
    with pytest.raises(UserError):
        router.send_text(1, text)


def test_one_mebibyte_text_is_stored_whole(store: Store, router: Router) -> None:
    text = ("0123456789abcdef" * 65536)[:MAX_TEXT_CHARS]
    message = router.send_text(1, text)
    assert store.messages.get(message.id).text == text


def test_queued_message_is_handed_to_the_reachable_transport(store: Store, router: Router,
                                                             events: list[object]) -> None:
    lan = RecordingTransport("lan", reachable=False)
    cloud = RecordingTransport("telegram", reachable=True)
    router.register(lan)
    router.register(cloud)
    message = router.send_text(1, "via the cloud")
    assert [m.id for _, m in cloud.submitted] == [message.id] and lan.submitted == []
    entry, handed = cloud.submitted[0]
    assert (entry.route, handed.state) == ("telegram", "sending")
    assert isinstance(events[-1], MessageChanged) and events[-1].message.state == "sending"
    assert router.dispatch_due() == 0  # claimed once, never handed out twice


def test_lan_only_dialog_waits_for_the_peer(store: Store, router: Router) -> None:
    store.dialogs.set_lan_only(1, True)
    lan = RecordingTransport("lan", reachable=False)
    router.register(lan)
    router.register(RecordingTransport("telegram", reachable=True))
    message = router.send_text(1, "only over the LAN")
    assert store.messages.get(message.id).state == "queued"
    lan.reachable = True
    assert router.dispatch_due() == 1
    assert lan.submitted[0][1].id == message.id


def test_restart_returns_sending_messages_to_the_queue(paths, store: Store,
                                                       router: Router) -> None:
    message = router.send_text(1, "caught mid-send")
    store.outbox.claim(message.id, "lan")
    store.close()
    reopened = Store.open(paths.database)
    assert Router(reopened, lambda _e: None).recover() == 1
    assert reopened.messages.get(message.id).state == "queued"
    assert reopened.outbox.get(message.id).attempts == 1
    reopened.close()


@pytest.mark.parametrize("reachable", [True, False])
def test_a_message_queued_by_another_process_is_announced_once(
        router: Router, events: list[object], paths, tmp_path, reachable: bool) -> None:
    other_process = Store.open(paths.database)  # what `chimera send` does while the app runs
    try:
        queued = Router(other_process, lambda _e: None).send_file(
            1, _a_file(tmp_path), caption="from the shell")
    finally:
        other_process.close()
    router.register(RecordingTransport("lan", reachable))
    router.dispatch_due()
    router.dispatch_due()
    stored = [e.message.id for e in events if isinstance(e, MessageStored)]
    assert stored == [queued.id]  # the open chat draws it, file messages included


def test_our_own_messages_are_not_announced_twice(router: Router, events: list[object]) -> None:
    router.register(RecordingTransport("lan", False))
    sent = router.send_text(1, "hello")
    router.dispatch_due()
    assert [e.message.id for e in events if isinstance(e, MessageStored)] == [sent.id]


def _a_file(folder):
    path = folder / "report.txt"
    path.write_bytes(b"quarterly numbers")
    return path
