"""Notifications: the notify-or-not table and the text (pure), the notifier with no service,
and on Xvfb a real session D-Bus with dunst: a message arriving while the window is unfocused
is notified (seen by dbus-monitor and drawn by dunst), a click opens its chat, a muted dialog,
the open chat in a focused window and *Do not disturb* stay silent."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, UiSettings
from chimera_tk.desktop.notifier import DesktopNotifications
from chimera_tk.desktop.policy import NotifyContext, notification_content, should_notify
from chimera_tk.events import MessageStored
from chimera_tk.profiles import ProfilePaths
from chimera_tk.store.records import Dialog, IncomingMessage, Message
from tests.conftest import pump_until
from tests.desktop_session import (
    BusMonitor,
    notification_daemon,
    require,
    screenshot,
    session_bus,
    wait_for,
)

SHOTS = Path(os.environ.get("CHIMERA_SHOTS", "/tmp/task-e"))

# -- the decision --------------------------------------------------------------------------------

BASE = NotifyContext(outgoing=False, notifications_enabled=True, do_not_disturb=False,
                     dialog_muted=False, window_focused=False, chat_open=False)


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, True),                                                   # window in the background
    ({"window_focused": True}, True),                             # focused, another chat open
    ({"chat_open": True}, True),                                  # chat open, window unfocused
    ({"window_focused": True, "chat_open": True}, False),         # the reader is looking at it
    ({"outgoing": True}, False),                                  # our own message
    ({"notifications_enabled": False}, False),                    # ui.notifications = false
    ({"do_not_disturb": True}, False),                            # DND / tray "Mute"
    ({"dialog_muted": True}, False),                              # muted dialog
    ({"dialog_muted": True, "window_focused": True}, False),
    ({"do_not_disturb": True, "chat_open": True}, False),
])
def test_should_notify_table(changes: dict, expected: bool) -> None:
    assert should_notify(dataclasses.replace(BASE, **changes)) is expected


def _message(text: str = "see you at 3", *, transport: str = "lan", sender: str = "Ana",
             dialog_id: int = 7, file_id: int | None = None) -> Message:
    return Message(id=1, dialog_id=dialog_id, uid="u", tg_msg_id=None, sender_id=7,
                   sender_name=sender, outgoing=False, text=text, sent_at=0, edited_at=None,
                   transport=transport, state="received", deleted=False, reply_to=None,
                   file_id=file_id)


def test_content_names_sender_and_route_and_previews_the_text() -> None:
    dialog = Dialog(7, "user", "Ana")
    assert notification_content(_message(), dialog, preview=True) == (
        "Ana (via LAN)", "see you at 3")
    assert notification_content(_message(transport="telegram"), dialog, preview=True)[0] == \
        "Ana (via Telegram)"


def test_content_without_preview_hides_the_text() -> None:
    title, body = notification_content(_message("the secret plan"), Dialog(7, "user", "Ana"),
                                       preview=False)
    assert "secret" not in title + body
    assert (title, body) == ("Ana (via LAN)", "New message")


def test_content_of_a_group_message_names_the_group() -> None:
    group = Dialog(-100, "group", "Office 3rd floor")
    title, _ = notification_content(_message(dialog_id=-100), group, preview=True)
    assert title == "Ana in Office 3rd floor (via LAN)"


def test_long_texts_are_cut_and_whitespace_folded_and_files_are_named() -> None:
    _, body = notification_content(_message("word\n\n" * 100), None, preview=True)
    assert len(body) <= 120 and body.endswith("…") and "\n" not in body
    _, body = notification_content(_message("", file_id=3), None, preview=True)
    assert body == "Sent a file"
    title, _ = notification_content(_message(sender=""), None, preview=True)
    assert title == "User 7 (via LAN)"


# -- no notification service ---------------------------------------------------------------------


def test_without_a_session_bus_notify_says_no_and_logs_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    notifier = DesktopNotifications(lambda _event: None)
    notifier.start()
    try:
        with caplog.at_level(logging.INFO, logger="chimera_tk.desktop.notifier"):
            assert notifier.notify(1, "Ana", "hi").result(timeout=20) is False
            assert notifier.notify(1, "Ana", "again").result(timeout=20) is False
    finally:
        notifier.stop()
        assert notifier.join(5)
    lines = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(lines) == 1 and "tray badge" in lines[0]
    assert notifier.sent == 0


def test_with_a_bus_but_no_notification_service_notify_says_no(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with session_bus() as bus:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus)
        notifier = DesktopNotifications(lambda _event: None)
        notifier.start()
        try:
            with caplog.at_level(logging.INFO, logger="chimera_tk.desktop.notifier"):
                assert notifier.notify(1, "Ana", "hi").result(timeout=20) is False
        finally:
            notifier.stop()
            assert notifier.join(5)
    assert any("no notification service" in r.getMessage() for r in caplog.records)


# -- on Xvfb with a session bus and dunst --------------------------------------------------------


@pytest.fixture
def desktop(x_display: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[BusMonitor]:
    with session_bus() as bus, notification_daemon(x_display, bus, tmp_path):
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus)
        monitor = BusMonitor(bus, tmp_path)
        try:
            yield monitor
        finally:
            monitor.close()


def _app(paths: ProfilePaths, ui: UiSettings | None = None) -> App:
    app = build_app(paths, Config(lan=LanSettings(enabled=False), ui=ui or UiSettings()),
                    theme="light")
    app.start()
    app.root.update()
    assert pump_until(app, lambda: app.desktop.attached)
    return app


@pytest.fixture
def notify_app(desktop: BusMonitor, paths: ProfilePaths) -> Iterator[App]:
    app = _app(paths)
    for dialog_id, title in ((1001, "Ana Souza"), (1002, "Bruno Lima")):
        app.store.dialogs.upsert(dialog_id, "user", title)
    app.window.dialogs.refresh()
    yield app
    app.shutdown()


_counter = iter(range(1_000_000))


def _arrive(app: App, dialog_id: int, text: str, transport: str = "lan") -> Message:
    """A message stored and announced exactly as a transport worker does it."""
    sender = app.store.dialogs.get(dialog_id).title
    message, _ = app.store.messages.receive(IncomingMessage(
        dialog_id, f"arrive-{next(_counter)}-{time.time_ns()}", dialog_id, sender, text,
        int(time.time() * 1000), transport))
    app.events.post(MessageStored(message))
    return message


def _notified(app: App, monitor: BusMonitor, text: str) -> bool:
    return pump_until(app, lambda: f'"{text}"' in monitor.text(), timeout=15)


def _dunst_window() -> tuple[int, int] | None:
    """Centre of dunst's popup on the screen, found by its window class."""
    result = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", "Dunst"],
                            capture_output=True, text=True, timeout=10)
    for window in result.stdout.split():
        geometry = subprocess.run(["xdotool", "getwindowgeometry", "--shell", window],
                                  capture_output=True, text=True, timeout=10).stdout
        values = dict(line.split("=", 1) for line in geometry.split())
        if int(values["WIDTH"]) > 50:
            return (int(values["X"]) + int(values["WIDTH"]) // 2,
                    int(values["Y"]) + int(values["HEIGHT"]) // 2)
    return None


@pytest.mark.gui
def test_message_while_unfocused_is_notified_and_a_click_opens_its_chat(
        notify_app: App, desktop: BusMonitor) -> None:
    app = notify_app
    require("xdotool")
    app.root.withdraw()  # the window is away: in the tray, or closed to it
    _arrive(app, 1001, "Are you coming to lunch? <b>12:30</b> & bring slides")
    assert _notified(app, desktop, "Ana Souza (via LAN)")
    text = desktop.text()
    assert "&lt;b&gt;12:30&lt;/b&gt; &amp; bring slides" in text  # body markup is escaped
    assert '"Chimera"' in text  # the application name
    position = None

    def popup() -> bool:
        nonlocal position
        position = _dunst_window()
        return position is not None

    assert wait_for(popup), "dunst drew no notification"
    screenshot(SHOTS, "notification.png")
    subprocess.run(["xdotool", "mousemove", str(position[0]), str(position[1]), "click", "1"],
                   check=True, timeout=10)
    assert pump_until(app, lambda: app.window.chat.dialog_id == 1001, timeout=15)
    assert app.root.state() == "normal"


@pytest.mark.gui
def test_muted_dialog_is_not_notified(notify_app: App, desktop: BusMonitor) -> None:
    app = notify_app
    menu = app.dialog_menu
    assert menu.open_for(1002)
    menu.menu.invoke(0)  # the dialog list's context menu: Mute notifications
    assert pump_until(app, lambda: app.store.dialogs.get(1002).muted)
    app.root.withdraw()
    _arrive(app, 1002, "muted chatter", "telegram")
    _arrive(app, 1001, "after the muted one")  # a barrier: notified in order after it
    assert _notified(app, desktop, "after the muted one")
    assert "muted chatter" not in desktop.text()
    assert desktop.notify_calls() == 1


@pytest.mark.gui
def test_open_chat_in_a_focused_window_is_not_notified_but_another_chat_is(
        notify_app: App, desktop: BusMonitor) -> None:
    app = notify_app
    app.window.dialogs.select(1001)
    assert pump_until(app, lambda: app.window.chat.dialog_id == 1001)
    app.window.chat.composer.text.focus_force()
    assert pump_until(app, lambda: app.desktop.window_focused())
    _arrive(app, 1001, "you are reading this")
    _arrive(app, 1002, "from another chat")
    assert _notified(app, desktop, "from another chat")
    assert "you are reading this" not in desktop.text()
    assert desktop.notify_calls() == 1


@pytest.mark.gui
def test_do_not_disturb_from_the_tray_menu_silences_everything(
        notify_app: App, desktop: BusMonitor) -> None:
    app = notify_app
    app.root.withdraw()
    app.desktop.tray_menu.invoke(1)  # Mute notifications
    assert app.config.ui.do_not_disturb
    _arrive(app, 1001, "during do not disturb")
    app.pump.drain_now()
    assert app.desktop.flush_notifications() == 0  # decided while muted
    app.desktop.tray_menu.invoke(1)
    _arrive(app, 1001, "after do not disturb")
    assert _notified(app, desktop, "after do not disturb")
    assert "during do not disturb" not in desktop.text()
    assert desktop.notify_calls() == 1


@pytest.mark.gui
def test_a_burst_from_one_chat_is_one_notification(notify_app: App, desktop: BusMonitor) -> None:
    app = notify_app
    app.root.withdraw()
    for index in range(5):
        _arrive(app, 1001, f"burst {index}")
    _arrive(app, 1002, "single")
    assert _notified(app, desktop, "burst 4 (+4 more)")
    assert _notified(app, desktop, "single")
    assert desktop.notify_calls() == 2


@pytest.mark.gui
def test_a_storm_across_many_chats_shows_a_few_and_a_summary(notify_app: App,
                                                             desktop: BusMonitor) -> None:
    app = notify_app
    app.root.withdraw()
    for dialog_id in range(2001, 2007):
        app.store.dialogs.upsert(dialog_id, "user", f"Person {dialog_id}")
        _arrive(app, dialog_id, f"hello from {dialog_id}")
    assert _notified(app, desktop, "3 new messages in 3 more chats")
    assert desktop.notify_calls() == 4
    assert all(f"hello from {dialog_id}" in desktop.text() for dialog_id in (2004, 2005, 2006))


@pytest.mark.gui
def test_preview_off_sends_no_text(desktop: BusMonitor, paths: ProfilePaths) -> None:
    app = _app(paths, UiSettings(notification_preview=False))
    try:
        app.store.dialogs.upsert(1001, "user", "Ana Souza")
        app.root.withdraw()
        _arrive(app, 1001, "the secret plan")
        assert _notified(app, desktop, "New message")
        assert "secret" not in desktop.text()
    finally:
        app.shutdown()
