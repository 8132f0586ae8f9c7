"""Edits and deletions through Telegram: ours reach the server, theirs reach our store and window.

The emulator stands in for Telegram's servers only (unreachable here); the app, its worker,
store, router, editor, window and Telethon itself are the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, TelegramSettings, UiSettings
from chimera_tk.events import MessageChanged, StatusChanged
from chimera_tk.profiles import ProfilePaths
from tests.conftest import pump_until
from tests.telegram_emulator import TEST_API_HASH, TEST_API_ID, TelegramServer
from tests.test_telegram_worker import ALICE_PHONE, BOB_PHONE, _events, _factory, _sign_in


@pytest.fixture
def server() -> TelegramServer:
    return TelegramServer(seed=11)


@pytest.fixture
def headless(paths: ProfilePaths, server: TelegramServer) -> Iterator[App]:
    config = Config(telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
                    lan=LanSettings(enabled=False))
    app = build_app(paths, config, window=False, telegram_client_factory=_factory(server))
    app.start()
    yield app
    app.shutdown()


def _until(app: App, condition, timeout: float = 10.0) -> bool:
    """Dispatch the app's events on this thread until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = app.events.get(timeout=0.05)
        if event is not None:
            app.dispatcher.dispatch(event)
        if condition():
            return True
    return condition()


def _texts(server: TelegramServer, viewer, peer) -> list[str]:
    return [m.text for m in server.messages_of(viewer, peer) if not m.deleted]


def test_our_edit_and_delete_reach_telegram_for_both_sides(
        headless: App, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    first = headless.router.send_text(bob.id, "lunch at 12?")
    second = headless.router.send_text(bob.id, "wrong chat, sorry")
    _events(headless, MessageChanged, count=2, where=lambda e: e.message.state == "sent")
    headless.editor.edit(first.id, "lunch at 13?")
    assert _until(headless, lambda: "lunch at 13?" in _texts(server, bob, alice))
    assert "lunch at 12?" not in _texts(server, bob, alice)
    assert _until(headless, lambda: headless.store.changes.pending() == [])
    headless.editor.delete(second.id, for_everyone=True)
    assert _until(headless, lambda: "wrong chat, sorry" not in _texts(server, bob, alice))
    assert "wrong chat, sorry" not in _texts(server, alice, bob)  # revoked: gone for both
    assert _until(headless, lambda: headless.store.changes.pending() == [])
    stored = headless.store.messages.get(first.id)
    assert (stored.text, stored.state) == ("lunch at 13?", "sent")
    assert headless.store.messages.get(second.id).deleted


def test_an_edit_telegram_refuses_is_dropped_and_the_user_is_told(
        headless: App, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    sent = headless.router.send_text(bob.id, "soon gone")
    _events(headless, MessageChanged, where=lambda e: e.message.state == "sent")
    handle = server.find_message(alice, bob, headless.store.messages.get(sent.id).tg_msg_id)
    server.delete_as(handle, deliver=False)  # gone on the server; we have not heard yet
    headless.editor.edit(sent.id, "edited too late")
    [status] = _events(headless, StatusChanged, where=lambda e: "refused" in e.text)
    assert status.level == "error" and "edit" in status.text
    assert headless.store.changes.pending() == []


def test_their_edit_and_delete_update_our_store(headless: App, server: TelegramServer) -> None:
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hello")
    _sign_in(headless, server)
    headless.telegram.wait_synced().result(30)
    typo = server.send_as(bob, alice, "teh plan")
    regret = server.send_as(bob, alice, "something I regret")
    assert _until(headless, lambda: headless.store.messages.count(bob.id) == 3)
    server.edit_as(typo, "the plan")
    server.delete_as(regret)
    assert _until(headless, lambda: [m.text for m in headless.store.messages.latest_page(
        bob.id) if not m.deleted] == ["hello", "the plan"])
    edited = headless.store.messages.search("plan")
    assert [(m.text, m.edited_at is not None) for m in edited] == [("the plan", True)]
    assert headless.store.messages.search("regret") == []
    gone = [m for m in headless.store.messages.latest_page(bob.id) if m.deleted]
    assert len(gone) == 1 and not gone[0].deleted_here


@pytest.mark.gui
@pytest.mark.parametrize("mode", ["mark", "remove"])
def test_their_edit_and_delete_show_in_the_open_chat(
        x_display: str, paths: ProfilePaths, server: TelegramServer, mode: str) -> None:
    config = Config(telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
                    lan=LanSettings(enabled=False), ui=UiSettings(received_deletes=mode))
    app = build_app(paths, config, theme="light", telegram_client_factory=_factory(server))
    try:
        app.start()
        assert pump_until(app, lambda: app.telegram is not None)
        alice = server.add_user("Alice", phone=ALICE_PHONE)
        bob = server.add_user("Bob", phone=BOB_PHONE)
        typo = server.send_as(bob, alice, "see you tomorow")
        regret = server.send_as(bob, alice, "forget what I said")
        _sign_in(app, server)
        app.telegram.wait_synced().result(30)
        assert pump_until(app, lambda: app.store.dialogs.find(bob.id) is not None)
        app.window.dialogs.select(bob.id)
        view = app.window.chat.messages
        assert pump_until(app, lambda: "forget what I said" in view.visible_text())
        server.edit_as(typo, "see you tomorrow")
        server.delete_as(regret)
        assert pump_until(app, lambda: "see you tomorrow\n" in view.visible_text(), 10)
        shown = _shown_text(view)
        assert "edited" in shown
        assert "forget what I said" not in shown
        if mode == "mark":
            assert "This message was deleted." in shown
        else:
            assert pump_until(app, lambda: "This message was deleted." not in _shown_text(view))
    finally:
        app.shutdown()


def _shown_text(view) -> str:
    """What the reader sees: the text without elided (hidden) ranges."""
    return view.text.tk.call(view.text._w, "get", "-displaychars", "1.0", "end-1c")
