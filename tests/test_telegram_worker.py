"""Chimera's Telegram worker through Telethon's real client against the in-process emulator.

The emulator stands in for Telegram's servers only (unreachable here); the worker, the store,
the router and Telethon itself are the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon import TelegramClient

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, TelegramSettings
from chimera_tk.errors import UserError
from chimera_tk.events import MessageChanged, MessageStored, SyncProgress
from chimera_tk.profiles import ProfilePaths
from chimera_tk.store.records import utc_now_ms
from tests.telegram_emulator import TEST_API_HASH, TEST_API_ID, TelegramServer, install

ALICE_PHONE, BOB_PHONE, CAROL_PHONE = "+15550100", "+15550200", "+15550300"


@pytest.fixture
def server() -> TelegramServer:
    return TelegramServer(seed=3)


def _factory(server: TelegramServer):
    def make(session: str, api_id: int, api_hash: str) -> TelegramClient:
        client = TelegramClient(session, api_id, api_hash, flood_sleep_threshold=2,
                                retry_delay=0)
        install(client, server)
        return client

    return make


@pytest.fixture
def headless(paths: ProfilePaths, server: TelegramServer) -> Iterator[App]:
    """The real app without a window, its Telegram worker talking to the emulator."""
    config = Config(telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
                    lan=LanSettings(enabled=False))
    app = build_app(paths, config, window=False, telegram_client_factory=_factory(server))
    app.start()
    yield app
    app.shutdown()


def _events(app: App, kind: type, timeout: float = 10.0, count: int = 1,
            where=lambda _e: True) -> list:
    """Dispatch the app's events on this thread until ``count`` of ``kind`` matched."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < count:
        event = app.events.get(timeout=0.05)
        if event is None:
            continue
        app.dispatcher.dispatch(event)
        if isinstance(event, kind) and where(event):
            seen.append(event)
    assert len(seen) >= count, f"only {len(seen)} {kind.__name__} events"
    return seen


def _sign_in(app: App, server: TelegramServer, phone: str = ALICE_PHONE) -> None:
    worker = app.telegram
    assert worker.is_signed_in().result(10) is False
    worker.request_code(phone).result(10)
    assert worker.submit_code(server.last_code(phone)).result(10) is True
    assert worker.online


def test_sign_in_with_code_then_first_sync_fills_dialogs_and_ten_messages_each(
        headless: App, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", "Builder", phone=BOB_PHONE)
    carol = server.add_user("Carol", phone=CAROL_PHONE)
    group = server.create_group("Office", alice, [bob, carol])
    channel = server.create_channel("News", carol, [alice])
    for i in range(15):
        server.send_as(bob, alice, f"bob {i}")
    for i in range(3):
        server.send_as(carol, group, f"group {i}")
        server.send_as(carol, channel, f"news {i}")
    _sign_in(headless, server)
    assert headless.telegram.wait_synced().result(30) == 10 + 3 + 3
    progress = _events(headless, SyncProgress, count=3)
    assert [(e.done, e.total) for e in progress] == [(1, 3), (2, 3), (3, 3)]  # 100 %
    store = headless.store
    kinds = {d.title: d.kind for d in store.dialogs.list()}
    assert kinds == {"Bob Builder": "user", "Office": "group", "News": "channel"}
    bob_chat = store.messages.latest_page(bob.id, 50)
    assert [m.text for m in bob_chat] == [f"bob {i}" for i in range(5, 15)]
    assert {m.transport for m in bob_chat} == {"telegram"}
    assert all(m.state == "received" and m.tg_msg_id for m in bob_chat)
    group_id = next(d.id for d in store.dialogs.list() if d.title == "Office")
    assert group_id < 0  # basic groups are marked negative, as Telethon marks them


def test_a_later_start_catches_up_what_was_missed_while_closed(
        paths: ProfilePaths, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "before")
    config = Config(telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
                    lan=LanSettings(enabled=False))
    first = build_app(paths, config, window=False, telegram_client_factory=_factory(server))
    first.start()
    _sign_in(first, server)
    assert first.telegram.wait_synced().result(30) == 1
    first.shutdown()
    for i in range(3):
        server.send_as(bob, alice, f"while closed {i}")
    again = build_app(paths, config, window=False, telegram_client_factory=_factory(server))
    again.start()
    try:
        assert again.telegram.is_signed_in().result(10)  # the session file kept the login
        assert again.telegram.wait_synced().result(30) == 3
        assert [m.text for m in again.store.messages.latest_page(bob.id, 10)] == [
            "before", "while closed 0", "while closed 1", "while closed 2"]
    finally:
        again.shutdown()
    session = paths.telegram_session.with_name("telegram.session")
    assert session.exists() and session.stat().st_mode & 0o777 == 0o600


def test_wrong_code_and_two_step_password(headless: App, server: TelegramServer) -> None:
    server.add_user("Alice", phone=ALICE_PHONE, password="correct horse")
    worker = headless.telegram
    worker.request_code(ALICE_PHONE).result(10)
    with pytest.raises(UserError, match="not right"):
        worker.submit_code("00000").result(10)
    assert worker.submit_code(server.last_code(ALICE_PHONE)).result(10) is False
    with pytest.raises(UserError, match="password is not right"):
        worker.submit_password("wrong").result(10)
    worker.submit_password("correct horse").result(10)
    assert worker.online


def test_banned_number_is_said_in_plain_words(headless: App, server: TelegramServer) -> None:
    server.add_user("Alice", phone=ALICE_PHONE)
    server.ban(ALICE_PHONE)
    with pytest.raises(UserError, match="banned"):
        headless.telegram.request_code(ALICE_PHONE).result(10)


def test_live_new_edited_and_deleted_messages_change_the_database(
        headless: App, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    message = server.send_as(bob, alice, "live hello")
    [stored] = _events(headless, MessageStored)
    assert (stored.message.text, stored.message.dialog_id) == ("live hello", bob.id)
    server.edit_as(message, "live hello (edited)")
    _events(headless, MessageChanged, where=lambda e: e.message.edited_at is not None)
    assert headless.store.messages.get(stored.message.id).text == "live hello (edited)"
    server.delete_as(message)
    _events(headless, MessageChanged, where=lambda e: e.message.deleted)
    assert headless.store.messages.get(stored.message.id).deleted
    server.send_as(bob, alice, "live hello")  # same text, new message: a new row
    _events(headless, MessageStored)
    assert headless.store.messages.count(bob.id) == 2


def test_sending_through_telegram_records_the_id_and_stores_once(
        headless: App, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    message = headless.router.send_text(bob.id, "sent via the cloud")
    [done] = _events(headless, MessageChanged, where=lambda e: e.message.state == "sent")
    assert done.message.transport == "telegram" and done.message.tg_msg_id
    time.sleep(0.5)
    _events(headless, object, timeout=0.5, count=0)
    assert [m.text for m in server.messages_of(bob, alice)][-1] == "sent via the cloud"
    assert headless.store.messages.count(bob.id) == 2  # our own update did not add a copy
    assert headless.store.messages.get(message.id).state == "sent"


def test_files_go_up_and_private_media_come_down_but_channel_media_do_not(
        headless: App, server: TelegramServer, tmp_path: Path) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    channel = server.create_channel("Downloads Inc", bob, [alice])
    payload = bytes(range(256)) * 4000
    server.send_as(bob, alice, "the file", media=server.upload_document(payload, "plan.pdf"))
    server.send_as(bob, channel, "maybe malware",
                   media=server.upload_document(b"MZ" * 1000, "setup.exe"))
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    store = headless.store
    [private] = [m for m in store.messages.latest_page(bob.id, 5) if m.file_id]
    file = store.files.get(private.file_id)
    assert file.state == "complete" and Path(file.path).read_bytes() == payload
    assert Path(file.path).parent == headless.paths.downloads.resolve()
    channel_id = next(d.id for d in store.dialogs.list() if d.kind == "channel")
    [risky] = [m for m in store.messages.latest_page(channel_id, 5) if m.file_id]
    risky_file = store.files.get(risky.file_id)
    assert (risky_file.state, risky_file.path, risky_file.name) == ("pending", None,
                                                                     "setup.exe")
    assert not list(headless.paths.downloads.glob("setup*"))
    headless.telegram.download_file(risky.id).result(30)  # the user chose to, after a warning
    assert Path(store.files.get(risky.file_id).path).read_bytes() == b"MZ" * 1000
    upload = tmp_path / "slides.bin"
    upload.write_bytes(bytes(reversed(payload)))
    sent = headless.router.send_file(bob.id, upload, caption="slides")
    _events(headless, MessageChanged, where=lambda e: e.message.id == sent.id
            and e.message.state == "sent")
    assert server.messages_of(bob, alice)[-1].text == "slides"


def test_finding_people_by_phone(headless: App, server: TelegramServer) -> None:
    server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", "Builder", phone=BOB_PHONE)
    _sign_in(headless, server)
    dialog_id = headless.telegram.find_by_phone(BOB_PHONE, "Bob from work").result(10)
    assert dialog_id == bob.id  # imported as a contact under the name we gave
    assert headless.store.dialogs.get(bob.id).title == "Bob from work"
    with pytest.raises(UserError, match="not on Telegram"):
        headless.telegram.find_by_phone("+15559999").result(10)


def test_install_in_the_terminal_signs_in_syncs_and_says_how_to_join_the_lan(
        paths: ProfilePaths, server: TelegramServer) -> None:
    """The seed's ``--install`` flow, answered as a person would at the prompts."""
    import argparse
    import io

    from chimera_tk.config import load_config
    from chimera_tk.setup_flows import Prompter, install

    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "welcome")
    args = argparse.Namespace(api_id=str(TEST_API_ID), api_hash=TEST_API_HASH, identity_url="",
                              ca_url="", broadcast="", phone=ALICE_PHONE, code=None,
                              invite=None)

    class CodeAnswer(io.StringIO):
        def readline(self, *_a: object) -> str:  # the code exists only once it was sent
            return server.last_code(ALICE_PHONE) + "\n"

    out = io.StringIO()
    assert install(paths, Config(), args, prompter=Prompter(CodeAnswer(), out),
                   client_factory=_factory(server)) == 0
    text = out.getvalue()
    assert "dialogs 1/1" in text and "First sync done: 1 messages stored." in text
    assert "chimera --new --invite" in text
    assert load_config(paths.config_file).telegram.api_id == TEST_API_ID


def test_upload_and_download_progress_arrive_throttled_and_end_at_one_hundred_percent(
        headless: App, server: TelegramServer, tmp_path: Path) -> None:
    from chimera_tk.events import TransferProgress

    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    channel = server.create_channel("Releases", bob, [alice])
    download = bytes(range(251)) * 12_000  # ~3 MB
    server.send_as(bob, channel, "release", media=server.upload_document(download, "r.tar"))
    server.send_as(bob, alice, "hi")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    upload = tmp_path / "big.bin"
    upload.write_bytes(bytes(reversed(download)))
    sent = headless.router.send_file(bob.id, upload)
    up = _events(headless, TransferProgress, timeout=20,
                 where=lambda e: e.message_id == sent.id and e.bytes_done == e.total)
    channel_id = next(d.id for d in headless.store.dialogs.list() if d.kind == "channel")
    [risky] = [m for m in headless.store.messages.latest_page(channel_id, 5) if m.file_id]
    headless.telegram.download_file(risky.id).result(30)
    down = _events(headless, TransferProgress, timeout=20,
                   where=lambda e: e.message_id == risky.id and e.bytes_done == e.total)
    assert up[-1].outgoing and up[-1].total == upload.stat().st_size
    assert not down[-1].outgoing and down[-1].total == len(download)
    assert down[-1].file_id == risky.file_id


def test_progress_events_are_throttled_but_the_last_one_always_comes() -> None:
    from chimera_tk.events import TransferProgress
    from chimera_tk.net.telegram.worker import _Progress

    seen: list[TransferProgress] = []
    progress = _Progress(seen.append, 7, 3, outgoing=True)
    for done in range(0, 1001, 10):  # a hundred callbacks within a few microseconds
        progress(done, 1000)
    assert 2 <= len(seen) <= 3
    assert (seen[-1].bytes_done, seen[-1].total, seen[-1].message_id) == (1000, 1000, 7)


def test_flood_wait_on_send_is_reported_and_the_message_goes_once_after_it(
        headless: App, server: TelegramServer) -> None:
    from telethon.tl import functions

    from chimera_tk.events import StatusChanged

    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    statuses: list[str] = []
    headless.dispatcher.subscribe(StatusChanged, lambda e: statuses.append(e.text))
    server.flood_wait(functions.messages.SendMessageRequest, 3)
    message = headless.router.send_text(bob.id, "patience")
    _events(headless, StatusChanged, where=lambda e: e.text == "Telegram: flood wait 3 s")
    entry = headless.store.outbox.get(message.id)
    assert entry.next_attempt_at >= utc_now_ms() + 2000  # retry_later's not_before
    assert headless.router.dispatch_due() == 0  # not before the wait is over
    time.sleep((entry.next_attempt_at - utc_now_ms()) / 1000 + 0.05)
    assert headless.router.dispatch_due() == 1
    _events(headless, MessageChanged, where=lambda e: e.message.id == message.id
            and e.message.state == "sent")
    assert statuses[-2:] == ["Telegram: flood wait 3 s", "Telegram: online"]
    assert [m.text for m in server.messages_of(bob, alice)].count("patience") == 1


def test_older_pages_from_telegram_are_stored_once_in_telegram_order(
        headless: App, server: TelegramServer) -> None:
    from chimera_tk.events import OlderMessagesFetched

    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    for i in range(70):  # one or two seconds for all: ties in time are the normal case
        server.send_as(bob, alice, f"n{i}")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    store = headless.store
    oldest = store.messages.latest_page(bob.id, 10)[0]
    assert headless.telegram.fetch_older(bob.id, oldest.tg_msg_id).result(10) == 50
    [event] = _events(headless, OlderMessagesFetched)
    assert (event.stored, event.exhausted, event.error) == (50, False, None)
    assert headless.telegram.fetch_older(bob.id, oldest.tg_msg_id).result(10) == 0  # dedupe
    next_oldest = store.messages.latest_page(bob.id, 60)[0]
    assert headless.telegram.fetch_older(bob.id, next_oldest.tg_msg_id).result(10) == 10
    *_, last = _events(headless, OlderMessagesFetched, count=2)
    assert last.exhausted
    chat = store.messages.latest_page(bob.id, 100)
    assert [m.text for m in chat] == [f"n{i}" for i in range(70)]  # (time, id) order = Telegram's
    assert len({m.uid for m in chat}) == 70


def _drain(app: App, seconds: float) -> list:
    """Every event dispatched during ``seconds``."""
    seen: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = app.events.get(timeout=0.05)
        if event is not None:
            app.dispatcher.dispatch(event)
            seen.append(event)
    return seen


def _until(app: App, condition, timeout: float = 10.0) -> None:
    """Dispatch events and tick the outbox (as the window's timer does) until ``condition()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        _drain(app, 0.1)
        app.router.dispatch_due()


def test_groups_and_channels_added_renamed_and_left_show_without_a_restart(
        headless: App, server: TelegramServer) -> None:
    from chimera_tk.events import DialogChanged, DialogRemoved

    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    carol = server.add_user("Carol", phone=CAROL_PHONE)
    group = server.create_group("Office", bob, [alice])
    channel = server.create_channel("News", bob, [alice])
    server.send_as(bob, group, "hello office")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    store = headless.store
    assert store.messages.count(group.peer_id) == 1

    server.rename(group, "Head Office")
    _events(headless, DialogChanged, where=lambda e: e.dialog.title == "Head Office")
    server.rename(channel, "Daily News")
    _events(headless, DialogChanged, where=lambda e: e.dialog.title == "Daily News")
    assert store.dialogs.get(group.peer_id).title == "Head Office"
    assert store.dialogs.get(channel.peer_id).title == "Daily News"
    server.rename(group, "Head Office")  # a second, identical rename: nothing to announce
    assert not [e for e in _drain(headless, 1.0) if isinstance(e, DialogChanged)]

    lunch = server.create_group("Lunch", bob, [carol])
    server.add_member(lunch, alice, by=bob)
    _events(headless, DialogChanged, where=lambda e: e.dialog.id == lunch.peer_id)
    club = server.create_channel("Club", bob, [carol])
    server.send_as(bob, club, "posted before Alice came")
    server.add_member(club, alice)
    [joined] = _events(headless, DialogChanged, where=lambda e: e.dialog.id == club.peer_id)
    assert (joined.dialog.title, joined.dialog.kind) == ("Club", "channel")
    assert [m.text for m in store.messages.latest_page(club.peer_id, 5)] == [
        "posted before Alice came"]  # joining brings the recent history along
    server.send_as(carol, alice, "first words")
    _events(headless, DialogChanged, where=lambda e: e.dialog.id == carol.id)

    server.remove_member(group, alice)
    _events(headless, DialogRemoved, where=lambda e: e.dialog_id == group.peer_id)
    server.remove_member(club, alice)
    _events(headless, DialogRemoved, where=lambda e: e.dialog_id == club.peer_id)
    assert store.dialogs.find(group.peer_id) is None and store.dialogs.find(club.peer_id) is None
    assert store.messages.count(group.peer_id) == 0  # the history went with the dialog
    # Telegram still lists the group Alice was removed from (as forbidden): a sync must not
    # bring it back, nor announce its removal again.
    headless.telegram.sync().result(30)
    assert store.dialogs.find(group.peer_id) is None
    assert not [e for e in _drain(headless, 0.5) if isinstance(e, DialogRemoved)]
    assert {d.title for d in store.dialogs.list()} == {"Daily News", "Lunch", "Carol"}


def test_reading_a_chat_marks_it_read_on_telegram_for_people_groups_and_channels(
        headless: App, server: TelegramServer) -> None:
    from telethon.tl import functions

    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    group = server.create_group("Office", bob, [alice])
    channel = server.create_channel("News", bob, [alice])
    for i in range(3):
        server.send_as(bob, alice, f"private {i}")
        server.send_as(bob, group, f"group {i}")
        server.send_as(bob, channel, f"news {i}")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    for peer, dialog_id in ((bob, bob.id), (group, group.peer_id), (channel, channel.peer_id)):
        assert headless.store.dialogs.get(dialog_id).unread_count == 3
        assert server.read_inbox_max_id(alice, peer) == 0
        # what App.mark_read does (its local write goes through the window's writer thread)
        headless.store.dialogs.mark_read(dialog_id)
        headless.telegram.mark_read(dialog_id).result(10)
        assert server.read_inbox_max_id(alice, peer) == server.messages_of(alice, peer)[-1].id
    assert server.calls[functions.messages.ReadHistoryRequest] == 2
    assert server.calls[functions.channels.ReadHistoryRequest] == 1


def test_a_dropped_connection_recovers_and_nothing_is_lost(
        headless: App, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    server.drop_connections()
    server.send_as(bob, alice, "lost in the drop", deliver=False)
    message = headless.router.send_text(bob.id, "written during the drop")
    _until(headless, lambda: headless.store.messages.get(message.id).state == "sent")
    server.send_as(bob, alice, "after the reconnect")
    texts = lambda: [m.text for m in headless.store.messages.latest_page(bob.id, 10)]  # noqa: E731
    _until(headless, lambda: "after the reconnect" in texts())
    # each once (within one second, local and Telegram times do not order strictly)
    assert sorted(texts()) == sorted(["hi", "lost in the drop", "written during the drop",
                                      "after the reconnect"])
    assert [m.text for m in server.messages_of(bob, alice)].count("written during the drop") == 1
    assert headless.telegram.online and server.signed_in(alice) == 1


def test_telegram_unreachable_for_a_while_shows_offline_then_recovers_on_its_own(
        headless: App, server: TelegramServer) -> None:
    from chimera_tk.events import StatusChanged

    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    _drain(headless, 0.2)
    server.set_reachable(False)
    _events(headless, StatusChanged, where=lambda e: e.text.startswith("Telegram: offline"))
    assert not headless.telegram.online
    message = headless.router.send_text(bob.id, "queued while offline")
    assert headless.store.messages.get(message.id).state == "queued"  # not handed to Telegram
    server.send_as(bob, alice, "missed while offline", deliver=False)
    time.sleep(0.3)
    server.set_reachable(True)
    _events(headless, StatusChanged, where=lambda e: e.text == "Telegram: online")
    _until(headless, lambda: headless.store.messages.get(message.id).state == "sent")
    texts = lambda: [m.text for m in headless.store.messages.latest_page(bob.id, 10)]  # noqa: E731
    # fetched on reconnecting (getDifference), not only once a later update shows the gap
    _until(headless, lambda: "missed while offline" in texts())
    server.send_as(bob, alice, "live again")
    _until(headless, lambda: "live again" in texts())
    assert [m.text for m in server.messages_of(bob, alice)].count("queued while offline") == 1
    assert server.signed_in(alice) == 1
