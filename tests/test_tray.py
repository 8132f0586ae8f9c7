"""The tray icon: badge drawing (pure), the worker without a display, and on Xvfb with a real
tray host (trayer): docking, the badge on screen, clicks and the menu, close-to-tray, quitting."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, UiSettings
from chimera_tk.desktop.badge import badge_label, base_icon, render_badge
from chimera_tk.events import DialogChanged, TransferProgress
from chimera_tk.profiles import ProfilePaths
from chimera_tk.store.records import IncomingMessage
from tests.conftest import pump_until
from tests.desktop_session import grab, require, screenshot, tray_host, wait_for

SHOTS = Path(os.environ.get("CHIMERA_SHOTS", "/tmp/task-e"))


# -- the badge, without a display ----------------------------------------------------------------


@pytest.mark.parametrize(("count", "label"), [(-1, ""), (0, ""), (1, "1"), (9, "9"), (42, "42"),
                                              (99, "99"), (100, "99+"), (123456, "99+")])
def test_badge_label_counts_to_99_then_says_99_plus(count: int, label: str) -> None:
    assert badge_label(count) == label


def _red_pixels(image: Image.Image) -> int:
    data = image.convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3)
               if data[i] > 180 and data[i + 1] < 90 and data[i + 2] < 90)


def test_no_unread_draws_the_plain_icon() -> None:
    assert render_badge(0).tobytes() == base_icon().tobytes()
    assert _red_pixels(render_badge(0)) == 0


def test_unread_draws_a_red_badge_in_the_top_right_corner() -> None:
    image = render_badge(7)
    assert image.size == base_icon().size
    width, height = image.size
    top_right = image.crop((width // 2, 0, width, height // 2))
    bottom_left = image.crop((0, height // 2, width // 2, height))
    assert _red_pixels(top_right) > 100
    assert _red_pixels(bottom_left) == 0


def test_wider_numbers_draw_a_wider_badge_within_the_icon() -> None:
    one, many = render_badge(3), render_badge(100)
    assert _red_pixels(many) > _red_pixels(one)
    assert many.size == one.size
    assert render_badge(100).tobytes() == render_badge(5000).tobytes()  # both "99+"


def test_badge_total_skips_muted_dialogs_and_reads_only_the_partial_index(store) -> None:
    for dialog_id, unread, muted in ((1, 2, False), (2, 5, True), (3, 0, False), (4, 1, False)):
        store.dialogs.upsert(dialog_id, "user", f"d{dialog_id}")
        store.conn.execute("UPDATE dialogs SET unread_count = ? WHERE id = ?", (unread, dialog_id))
        store.dialogs.set_muted(dialog_id, muted)
    assert store.dialogs.total_unread() == 3
    plan = " ".join(row[3] for row in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT coalesce(sum(unread_count), 0) FROM dialogs "
        "WHERE unread_count > 0 AND muted = 0"))
    assert "dialogs_unread_unmuted" in plan  # migration 0006


def test_tray_without_a_display_reports_no_tray_and_does_not_crash(tmp_path: Path) -> None:
    """A fresh process with no DISPLAY: pystray's import fails inside the tray thread."""
    script = """
import queue
from chimera_tk.desktop.tray import TrayIcon
events = queue.SimpleQueue()
tray = TrayIcon(events.put)
tray.start()
event = events.get(timeout=30)
tray.stop()
print(type(event).__name__, event.running, tray.join(5))
"""
    env = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TrayStatus", "False", "True"]


# -- on Xvfb with a tray host --------------------------------------------------------------------

@pytest.fixture
def tray(x_display: str) -> Iterator[object]:
    with tray_host(x_display) as process:
        yield process


def _app(paths: ProfilePaths, ui: UiSettings | None = None) -> App:
    config = Config(lan=LanSettings(enabled=False), ui=ui or UiSettings())
    app = build_app(paths, config, theme="light")
    app.start()
    app.root.update()
    return app


@pytest.fixture
def tray_app(tray: object, paths: ProfilePaths) -> Iterator[App]:
    app = _app(paths)
    assert pump_until(app, lambda: app.desktop.tray_running, timeout=20), "no TrayStatus"
    yield app
    app.shutdown()


def _icon_window() -> tuple[int, int, int, int, int]:
    """(window id, x, y, width, height) of Chimera's icon once the tray host embedded it."""
    found = None

    def look() -> bool:
        nonlocal found
        found = _docked_icon()
        return found is not None

    assert wait_for(look), "Chimera's icon is not embedded in the tray host"
    return found


def _docked_icon() -> tuple[int, int, int, int, int] | None:
    import Xlib.display

    display = Xlib.display.Display()
    try:
        found: list = []

        def walk(window) -> None:
            for child in window.query_tree().children:
                wm_class = child.get_wm_class()
                if wm_class and wm_class[0] == "chimeraSystemTrayIcon":
                    found.append(child)
                walk(child)

        walk(display.screen().root)
        docked = [w for w in found if w.query_tree().parent != display.screen().root]
        if not docked or docked[0].get_geometry().width < 16:
            return None
        window = docked[0]
        geometry = window.get_geometry()
        origin = window.translate_coords(display.screen().root, 0, 0)
        return window.id, -origin.x, -origin.y, geometry.width, geometry.height
    finally:
        display.close()


def _icon_red_pixels(app: App) -> int:
    window_id, *_ = _icon_window()
    return _red_pixels(grab(window_id))


def _seed_unread(app: App, dialog_id: int, title: str, count: int) -> None:
    app.store.dialogs.upsert(dialog_id, "user", title)
    for index in range(count):
        app.store.messages.receive(IncomingMessage(
            dialog_id, f"{dialog_id}-{index}", dialog_id, title, f"hello {index}",
            1_700_000_000_000 + index, "lan"))
    app.events.post(DialogChanged(app.store.dialogs.get(dialog_id)))


def _click(x: int, y: int, button: int) -> None:
    require("xdotool")
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", str(button)], check=True,
                   timeout=10)


def _screenshot(name: str) -> None:
    screenshot(SHOTS, name)


@pytest.mark.gui
def test_icon_docks_in_the_tray_and_its_badge_follows_the_unread_count(tray_app: App) -> None:
    app = tray_app
    assert app.desktop.tray_available()
    assert _icon_red_pixels(app) == 0
    _seed_unread(app, 1, "Ana", 3)
    assert pump_until(app, lambda: _icon_red_pixels(app) > 20, timeout=10)
    _screenshot("tray-badge.png")
    app.mark_read(1)
    assert pump_until(app, lambda: _icon_red_pixels(app) == 0, timeout=10)


@pytest.mark.gui
def test_muted_dialogs_do_not_count_on_the_badge(tray_app: App) -> None:
    app = tray_app
    _seed_unread(app, 1, "Ana", 2)
    _seed_unread(app, 2, "Loud group", 5)
    assert pump_until(app, lambda: app.desktop.refresh_badge() == 7)
    app.set_muted(2, True)
    assert pump_until(app, lambda: app.store.dialogs.get(2).muted)
    assert app.desktop.refresh_badge() == 2


@pytest.mark.gui
def test_closing_the_window_hides_it_in_the_tray_and_says_so_once(tray_app: App) -> None:
    app = tray_app
    answered: list[str] = []

    def answer_note() -> None:
        box = ".__tk__messagebox"
        if app.root.tk.call("winfo", "exists", box):
            answered.append(app.root.tk.call(f"{box}.msg", "cget", "-text"))
            app.root.tk.call(f"{box}.ok", "invoke")
        else:
            app.root.after(50, answer_note)

    app.root.after(50, answer_note)
    app.root.tk.eval(app.root.protocol("WM_DELETE_WINDOW"))  # the window manager's close
    assert app.root.state() == "withdrawn"
    assert len(answered) == 1 and "keeps running in the tray" in answered[0]
    saved = tomllib.loads(app.paths.config_file.read_text())
    assert saved["ui"]["close_to_tray_explained"] is True
    assert app._running, "closing to the tray must not quit"

    _, x, y, width, height = _icon_window()
    _click(x + width // 2, y + height // 2, 1)  # a left click is Open
    assert pump_until(app, lambda: app.root.state() == "normal")

    app.root.tk.eval(app.root.protocol("WM_DELETE_WINDOW"))
    assert app.root.state() == "withdrawn"
    assert not app.root.tk.call("winfo", "exists", ".__tk__messagebox")
    assert len(answered) == 1


@pytest.mark.gui
def test_right_click_shows_the_menu_and_its_entries_act(tray_app: App) -> None:
    app = tray_app
    _, x, y, width, height = _icon_window()
    _click(x + width // 2, y + height // 2, 3)
    menu = app.desktop.tray_menu
    assert pump_until(app, lambda: menu.winfo_ismapped())
    labels = [menu.entrycget(i, "label") for i in range(menu.index("end") + 1)
              if menu.type(i) != "separator"]
    assert labels == ["Open", "Mute notifications", "Quit"]
    _screenshot("tray-menu.png")
    menu.unpost()
    menu.invoke(1)  # Mute notifications
    assert app.config.ui.do_not_disturb is True
    assert tomllib.loads(app.paths.config_file.read_text())["ui"]["do_not_disturb"] is True
    menu.invoke(1)
    assert app.config.ui.do_not_disturb is False

    app.root.withdraw()
    menu.invoke(0)  # Open
    assert app.root.state() == "normal"
    menu.invoke(3)  # Quit, nothing running: no question
    assert not app._running


@pytest.mark.gui
def test_quit_asks_while_a_transfer_runs_and_no_keeps_chimera_running(tray_app: App) -> None:
    app = tray_app
    app.store.dialogs.upsert(1, "user", "Ana")
    file = app.store.files.create("video.mp4", 1000, state="transferring")
    app.events.post(TransferProgress(1, file.id, 100, 1000, True))
    app.pump.drain_now()
    questions: list[str] = []

    def answer(button: str):
        def run() -> None:
            box = ".__tk__messagebox"
            if app.root.tk.call("winfo", "exists", box):
                questions.append(app.root.tk.call(f"{box}.msg", "cget", "-text"))
                app.root.tk.call(f"{box}.{button}", "invoke")
            else:
                app.root.after(50, run)
        return run

    app.root.after(50, answer("no"))
    search = app.window.dialogs.search
    search.focus_force()
    app.root.update()
    search.event_generate("<Control-q>")
    assert questions == ["1 transfer is running. Quit anyway?"]
    assert app._running

    app.root.after(50, answer("yes"))
    app.desktop.tray_menu.invoke(3)
    assert len(questions) == 2
    assert not app._running


@pytest.mark.gui
def test_a_finished_or_failed_transfer_does_not_hold_up_quitting(tray_app: App) -> None:
    app = tray_app
    done = app.store.files.create("a.bin", 10, state="transferring")
    failed = app.store.files.create("b.bin", 10, state="transferring")
    app.events.post(TransferProgress(1, done.id, 5, 10, False))
    app.events.post(TransferProgress(2, failed.id, 5, 10, False))
    app.events.post(TransferProgress(1, done.id, 10, 10, False))
    app.pump.drain_now()
    assert app.desktop.running_transfers() == 1
    app.store.files.set_state(failed.id, "failed")
    assert app.desktop.running_transfers() == 0


@pytest.mark.gui
def test_without_a_tray_host_closing_the_window_quits(x_display: str, paths: ProfilePaths
                                                      ) -> None:
    from chimera_tk.desktop.tray_host import xembed_tray_owner

    assert xembed_tray_owner() is None
    app = _app(paths)
    try:
        assert pump_until(app, lambda: app.desktop.tray_status is not None, timeout=20)
        assert not app.desktop.tray_running
        app.root.tk.eval(app.root.protocol("WM_DELETE_WINDOW"))
        assert not app._running
    finally:
        app.shutdown()


@pytest.mark.gui
def test_start_minimised_starts_hidden_in_the_tray(tray: object, paths: ProfilePaths) -> None:
    app = _app(paths, UiSettings(start_minimised=True))
    try:
        assert pump_until(app, lambda: app.desktop.tray_running, timeout=20)
        assert app.root.state() == "withdrawn"
        _, x, y, width, height = _icon_window()
        _click(x + width // 2, y + height // 2, 1)
        assert pump_until(app, lambda: app.root.state() == "normal")
    finally:
        app.shutdown()


@pytest.mark.gui
def test_start_minimised_without_a_tray_shows_the_window(x_display: str,
                                                         paths: ProfilePaths) -> None:
    app = _app(paths, UiSettings(start_minimised=True))
    try:
        assert pump_until(app, lambda: app.desktop.tray_status is not None, timeout=20)
        app.root.update()
        assert app.root.state() == "normal"
    finally:
        app.shutdown()


@pytest.mark.gui
def test_when_the_tray_host_goes_away_the_hidden_window_comes_back(tray: subprocess.Popen,
                                                                   tray_app: App) -> None:
    app = tray_app
    app.update_ui_settings(close_to_tray_explained=True)  # no note this time
    app.root.tk.eval(app.root.protocol("WM_DELETE_WINDOW"))
    assert app.root.state() == "withdrawn"
    tray.terminate()
    tray.wait(timeout=10)
    assert pump_until(app, lambda: app.root.state() == "normal", timeout=15)
    assert not app.desktop.tray_running
    app.root.tk.eval(app.root.protocol("WM_DELETE_WINDOW"))  # no tray now: closing quits
    assert not app._running


@pytest.mark.gui
def test_dialog_list_right_click_menu_mutes_and_unmutes_a_dialog(tray_app: App) -> None:
    app = tray_app
    _seed_unread(app, 1, "Ana", 1)
    app.window.dialogs.refresh()
    tree = app.window.dialogs.tree
    app.root.update()
    x, y, _width, height = tree.bbox("1")
    tree.event_generate("<Button-3>", x=x + 10, y=y + height // 2,
                        rootx=tree.winfo_rootx() + x + 10, rooty=tree.winfo_rooty() + y + 5)
    menu = app.dialog_menu.menu
    assert pump_until(app, lambda: menu.winfo_ismapped())
    assert menu.entrycget(0, "label") == "Mute notifications"
    assert app.dialog_menu.muted.get() is False
    assert app.window.chat.dialog_id is None  # a right click does not open the chat
    _screenshot("dialog-menu.png")
    menu.unpost()
    menu.invoke(0)
    assert pump_until(app, lambda: app.store.dialogs.get(1).muted)
    assert app.dialog_menu.open_for(1) and app.dialog_menu.muted.get() is True
    menu.invoke(0)
    assert pump_until(app, lambda: not app.store.dialogs.get(1).muted)


@pytest.mark.gui
def test_a_tray_host_that_starts_later_gets_the_icon_but_does_not_hide_the_window(
        x_display: str, paths: ProfilePaths) -> None:
    app = _app(paths, UiSettings(start_minimised=True))
    try:
        assert pump_until(app, lambda: app.desktop.tray_status is not None, timeout=20)
        assert not app.desktop.tray_running and app.root.state() == "normal"
        with tray_host(x_display):
            assert pump_until(app, lambda: app.desktop.tray_running, timeout=20)
            assert app.root.state() == "normal"  # start_minimised applies at start only
            assert _icon_window()  # docked by the later host
    finally:
        app.shutdown()
