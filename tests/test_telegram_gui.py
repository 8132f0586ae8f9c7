"""Telegram in the real window on Xvfb: the Connect Telegram wizard, flood waits in the status
bar, older history fetched on scrolling up, sponsored messages in channels, New chat by phone.

The emulator stands in for Telegram's servers only; the app, its worker, store and window are
the real ones. With CHIMERA_SCREENSHOT_DIR set, the wizard's pages and a chat carrying both
routes are saved as screenshots.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon.tl import functions

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, TelegramSettings
from chimera_tk.events import MessageStored
from chimera_tk.profiles import ProfilePaths
from chimera_tk.store.records import IncomingMessage, utc_now_ms
from tests.conftest import pump_until
from tests.telegram_emulator import TEST_API_HASH, TEST_API_ID, TelegramServer
from tests.test_telegram_worker import ALICE_PHONE, BOB_PHONE, _factory, _sign_in

pytestmark = pytest.mark.gui

SCREENSHOTS = os.environ.get("CHIMERA_SCREENSHOT_DIR")


@pytest.fixture
def server() -> TelegramServer:
    return TelegramServer(seed=5)


def _window_app(paths: ProfilePaths, server: TelegramServer, *, credentials: bool) -> App:
    telegram = (TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH) if credentials
                else TelegramSettings())
    app = build_app(paths, Config(telegram=telegram, lan=LanSettings(enabled=False)),
                    theme="light", telegram_client_factory=_factory(server))
    app.start()
    app.root.update()
    return app


@pytest.fixture
def fresh_app(x_display: str, paths: ProfilePaths, server: TelegramServer) -> Iterator[App]:
    """The window of a profile that has never connected Telegram."""
    app = _window_app(paths, server, credentials=False)
    yield app
    app.shutdown()


@pytest.fixture
def online_app(x_display: str, paths: ProfilePaths, server: TelegramServer) -> Iterator[App]:
    """The window with Telegram credentials; the test signs in (``_online``)."""
    app = _window_app(paths, server, credentials=True)
    assert pump_until(app, lambda: app.telegram is not None)
    yield app
    app.shutdown()


def _online(app: App, server: TelegramServer) -> None:
    _sign_in(app, server)
    app.telegram.wait_synced().result(30)
    assert pump_until(app, lambda: app.window.status_bar.text("telegram") == "Telegram: online",
                      timeout=10)
    assert pump_until(app, lambda: len(app.window.dialogs.rows())
                      == len(app.store.dialogs.list()))


def _screenshot(app: App, name: str) -> None:
    if SCREENSHOTS and shutil.which("import"):
        for _ in range(5):
            app.root.update()
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-window", "root", str(Path(SCREENSHOTS) / f"{name}.png")],
                       env={**os.environ}, check=False, timeout=30)


def _replace(entry, text: str) -> None:
    entry.delete(0, "end")
    entry.insert(0, text)


def _open(app: App, dialog_id: int) -> None:
    app.window.dialogs.select(dialog_id)
    assert pump_until(app, lambda: app.window.chat.dialog_id == dialog_id)


def _wizard_to_code_page(app: App) -> object:
    app.open_telegram_wizard()
    wizard = app.telegram_dialog
    assert pump_until(app, lambda: wizard.winfo_ismapped())
    assert wizard.step == "credentials"
    _screenshot(app, "wizard-1-credentials")
    _replace(wizard.api_id, str(TEST_API_ID))
    _replace(wizard.api_hash, TEST_API_HASH)
    wizard.action.invoke()
    assert pump_until(app, lambda: wizard.step == "phone", timeout=15), wizard.error.cget("text")
    _replace(wizard.phone, ALICE_PHONE)
    _screenshot(app, "wizard-2-phone")
    wizard.action.invoke()
    assert pump_until(app, lambda: wizard.step == "code", timeout=10), wizard.error.cget("text")
    return wizard


def _wrong_code(server: TelegramServer) -> str:
    return "11111" if server.last_code(ALICE_PHONE) == "00000" else "00000"


def test_connect_wizard_signs_in_retries_a_wrong_code_and_shows_the_synced_dialogs(
        fresh_app: App, server: TelegramServer) -> None:
    app = fresh_app
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", "Builder", phone=BOB_PHONE)
    server.create_channel("News", bob, [alice])
    server.send_as(bob, alice, "hello over the cloud")
    assert app.telegram is None  # no credentials yet: nothing talks to Telegram
    wizard = _wizard_to_code_page(app)
    wizard.code.insert(0, _wrong_code(server))
    wizard.action.invoke()
    assert pump_until(app, lambda: "code is not right" in wizard.error.cget("text"), timeout=10)
    assert wizard.error.winfo_rooty() > wizard.code.winfo_rooty()  # under its field
    _screenshot(app, "wizard-3-wrong-code")
    assert wizard.step == "code" and not wizard.action.instate(["disabled"])  # may retry
    _replace(wizard.code, server.last_code(ALICE_PHONE))
    wizard.action.invoke()
    assert pump_until(app, lambda: wizard.step == "done", timeout=10), wizard.error.cget("text")
    _screenshot(app, "wizard-4-done")
    assert pump_until(app, lambda: app.window.status_bar.text("telegram") == "Telegram: online",
                      timeout=20)
    assert pump_until(app, lambda: {t for _, t, _ in app.window.dialogs.rows()}
                      == {"Bob Builder", "News"})
    assert app.config.telegram.api_id == TEST_API_ID  # kept for the next start
    wizard.action.invoke()  # Close
    assert pump_until(app, lambda: not wizard.winfo_exists())

    # the same conversation carries a LAN message next to the Telegram one
    lan, _ = app.store.messages.receive(IncomingMessage(
        bob.id, "lan-hello", bob.id, "Bob Builder", "hello over the LAN", utc_now_ms(), "lan"))
    app.events.post(MessageStored(lan))
    _open(app, bob.id)
    view = app.window.chat.messages
    assert pump_until(app, lambda: "hello over the LAN" in view.visible_text())
    shown = view.visible_text()
    assert shown.index("hello over the cloud") < shown.index("via Telegram") \
        < shown.index("hello over the LAN") < shown.index("via LAN")
    _screenshot(app, "chat-both-routes")


def test_connect_wizard_asks_for_the_two_step_password_and_retries_a_wrong_one(
        fresh_app: App, server: TelegramServer) -> None:
    app = fresh_app
    alice = server.add_user("Alice", phone=ALICE_PHONE, password="correct horse")
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    wizard = _wizard_to_code_page(app)
    wizard.code.insert(0, server.last_code(ALICE_PHONE))
    wizard.action.invoke()
    assert pump_until(app, lambda: wizard.step == "password", timeout=10)
    assert str(wizard.password.cget("show"))  # typed characters are hidden
    wizard.password.insert(0, "wrong")
    wizard.action.invoke()
    assert pump_until(app, lambda: "password is not right" in wizard.error.cget("text"),
                      timeout=10)
    _screenshot(app, "wizard-5-password-wrong")
    assert wizard.step == "password"
    _replace(wizard.password, "correct horse")
    wizard.action.invoke()
    assert pump_until(app, lambda: wizard.step == "done", timeout=10), wizard.error.cget("text")
    assert pump_until(app, lambda: app.window.status_bar.text("telegram") == "Telegram: online",
                      timeout=20)
    assert pump_until(app, lambda: [t for _, t, _ in app.window.dialogs.rows()] == ["Bob"])


def test_flood_wait_is_shown_in_the_status_bar_and_the_message_goes_after_it(
        online_app: App, server: TelegramServer) -> None:
    app = online_app
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi")
    _online(app, server)
    _open(app, bob.id)
    server.flood_wait(functions.messages.SendMessageRequest, 3)  # above the threshold of 2
    started = time.monotonic()
    message = app.router.send_text(bob.id, "after the wait")
    status = app.window.status_bar
    assert pump_until(app, lambda: status.text("telegram") == "Telegram: flood wait 3 s")
    assert app.store.messages.get(message.id).state == "queued"
    assert pump_until(app, lambda: app.store.messages.get(message.id).state == "sent",
                      timeout=15)
    assert time.monotonic() - started >= 2.5  # not before Telegram allowed it
    assert [m.text for m in server.messages_of(bob, alice)].count("after the wait") == 1
    assert pump_until(app, lambda: status.text("telegram") == "Telegram: online")
    assert pump_until(app, lambda: "sent ✓ · via Telegram"
                      in app.window.chat.messages.visible_text())


def test_scrolling_to_the_top_fetches_older_messages_from_telegram_in_order_once(
        online_app: App, server: TelegramServer) -> None:
    app = online_app
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    for i in range(120):  # all in the same second or two: order must come from Telegram's ids
        server.send_as(bob, alice, f"old {i}")
    _online(app, server)
    assert app.store.messages.count(bob.id) == 10  # the first sync took the newest ten
    _open(app, bob.id)
    view = app.window.chat.messages

    def scrolled_to_the_top() -> bool:
        view.text.yview_moveto(0.0)
        return len(view.loaded) == 120 and not view.remote_older

    assert pump_until(app, scrolled_to_the_top, timeout=30), len(view.loaded)
    assert [m.text for m in view.loaded] == [f"old {i}" for i in range(120)]
    tg_ids = [m.tg_msg_id for m in view.loaded]
    assert tg_ids == sorted(tg_ids) and len(set(tg_ids)) == 120
    assert app.store.messages.count(bob.id) == 120  # stored once each
    assert app.window.chat.composer.error.cget("text") == ""
    assert pump_until(app, lambda: app.store.dialogs.get(bob.id).unread_count == 0)
    history_calls = server.calls[functions.messages.GetHistoryRequest]
    for _ in range(20):  # at the top with nothing older: no more requests
        view.text.yview_moveto(0.0)
        app.root.update()
    assert server.calls[functions.messages.GetHistoryRequest] == history_calls


def test_a_broadcast_channel_shows_its_sponsored_message_marked_unstored_and_reported(
        online_app: App, server: TelegramServer, paths: ProfilePaths) -> None:
    app = online_app
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    channel = server.create_channel("News", bob, [alice])
    server.send_as(bob, channel, "first post")
    _online(app, server)
    channel_id = next(d.id for d in app.store.dialogs.list() if d.kind == "channel")
    _open(app, channel_id)
    view = app.window.chat.messages
    assert pump_until(app, lambda: view.sponsored, timeout=10)
    assert view.sponsored_text().startswith("Sponsored\n")
    start = view.text.search("An advertisement shown in News", "1.0")
    assert start and "sponsored" in view.text.tag_names(start)  # its own tag and colour
    assert view.text.tag_cget("sponsored", "background") == app.window.chat._palette.sponsored
    assert pump_until(app, lambda: len(server.sponsored_views) == 1, timeout=10)
    assert server.sponsored_views == [channel.sponsored.random_id]
    _screenshot(app, "channel-sponsored")
    server.send_as(bob, channel, "second post")
    assert pump_until(app, lambda: "second post" in view.visible_text(), timeout=10)
    shown = view.visible_text()
    assert shown.index("second post") < shown.index("Sponsored")  # the ad stays last
    with sqlite3.connect(paths.database) as conn:
        texts = [row[0] for row in conn.execute(
            "SELECT text FROM messages WHERE dialog_id = ?", (channel_id,))]
    assert texts == ["first post", "second post"]  # never stored


def test_ctrl_n_finds_a_person_by_phone_and_opens_the_chat(
        online_app: App, server: TelegramServer) -> None:
    app = online_app
    server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", "Builder", phone=BOB_PHONE)
    _online(app, server)
    assert app.window.dialogs.rows() == []
    search = app.window.dialogs.search
    search.focus_force()
    search.event_generate("<Control-n>")
    assert pump_until(app, lambda: app.window.new_chat_dialog is not None)
    dialog = app.window.new_chat_dialog
    _replace(dialog.phone, "+1 555 9999")
    dialog.action.invoke()
    assert pump_until(app, lambda: "+15559999 is not on Telegram" in dialog.error.cget("text"),
                      timeout=10)
    _screenshot(app, "new-chat-not-found")
    _replace(dialog.phone, BOB_PHONE)
    dialog.name.insert(0, "Bob from work")
    dialog.action.invoke()
    assert pump_until(app, lambda: app.window.chat.dialog_id == bob.id, timeout=10)
    assert not dialog.winfo_exists()
    assert app.window.chat.title.cget("text") == "Bob from work"
    assert pump_until(app, lambda: [(i, t) for i, t, _ in app.window.dialogs.rows()]
                      == [(bob.id, "Bob from work")])


def test_new_chat_without_telegram_says_to_connect_first(fresh_app: App) -> None:
    fresh_app.window.open_new_chat()
    dialog = fresh_app.window.new_chat_dialog
    _replace(dialog.phone, BOB_PHONE)
    dialog.action.invoke()
    assert "Telegram is not connected" in dialog.error.cget("text")
    _replace(dialog.phone, "12")
    dialog.action.invoke()
    assert "international form" in dialog.error.cget("text")
