"""The tray icon: pystray in its own thread, with the unread count drawn on Chimera's icon.

pystray is imported here, late, in the tray thread: it picks its backend at import time
(appindicator or gtk where PyGObject and their libraries are present, else xorg; the environment
variable PYSTRAY_BACKEND overrides) and the xorg backend connects to the display while importing,
so with no display the import fails. That failure, like any other, only means "no tray": it is
logged and posted as ``TrayStatus(running=False)``; Chimera carries on without one.

Menu callbacks run on pystray's thread and only post events. The xorg backend draws no menu and
ignores clicks (it never asks X for them); the icon here asks for button presses: a left click
is *Open*, a right click posts ``TrayMenuRequested`` and the Tk thread shows the same menu.
Badge updates go through a queue to pystray's setup thread, so the Tk thread never waits on X.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from chimera_tk import APP_NAME
from chimera_tk.desktop.badge import render_badge
from chimera_tk.desktop.tray_host import tray_host_present, xembed_tray_owner
from chimera_tk.events import (
    TrayMenuRequested,
    TrayMuteToggled,
    TrayOpenRequested,
    TrayQuitRequested,
    TrayStatus,
)

log = logging.getLogger(__name__)
_STOP = object()
WAKE_ATTEMPTS = 8  # then the socket is shut: well inside the app's 5 s join
WAKE_INTERVAL_S = 0.2
XEMBED_BACKENDS = ("xorg", "gtk")
DOCK_CHECK_S = 2.0  # docked by an XEMBED tray host on the X screen


class TrayIcon:
    """A worker (start/stop/join). ``set_unread`` and ``set_muted`` are safe from any thread."""

    name = "tray"

    def __init__(self, post: Callable[[object], None], *, muted: bool = False) -> None:
        self._post = post
        self._muted = muted
        self._updates: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._setup_thread: threading.Thread | None = None  # pystray's, ends just after ours
        self._stopping = threading.Event()
        self._backend = ""
        self._host_reported: bool | None = None

    # -- any thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tray", daemon=True)
        self._thread.start()

    def set_unread(self, count: int) -> None:
        self._updates.put(("unread", count))

    def set_muted(self, muted: bool) -> None:
        self._updates.put(("muted", muted))

    def stop(self) -> None:
        """The setup thread ends the icon's loop when it takes this from the queue."""
        self._stopping.set()
        self._updates.put(_STOP)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in (self._thread, self._setup_thread):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread is not None and thread.is_alive()
                       for thread in (self._thread, self._setup_thread))

    # -- the tray thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            icon_class, menu_class, item_class, backend = _load_pystray()
        except Exception as exc:  # ImportError, or Xlib's display errors raised while importing
            log.info("no tray icon: %s", _short(exc))
            self._post(TrayStatus(False, reason=_short(exc)))
            return
        if self._stopping.is_set():
            return
        self._backend = backend
        menu = menu_class(
            item_class("Open", lambda _icon, _item: self._post(TrayOpenRequested()),
                       default=True),
            item_class("Mute notifications", lambda _icon, _item: self._post(TrayMuteToggled()),
                       checked=lambda _item: self._muted),
            menu_class.SEPARATOR,
            item_class("Quit", lambda _icon, _item: self._post(TrayQuitRequested())))
        try:
            icon = icon_class(APP_NAME.lower(), self._picture(0), APP_NAME, menu=menu,
                              on_menu_request=self._post_menu_request)
            icon.run(setup=self._setup)
        except Exception as exc:
            log.warning("tray icon stopped: %s", _short(exc))
            self._post(TrayStatus(False, backend, reason=_short(exc)))
            return
        with contextlib.suppress(Exception):
            icon._display.close()  # xorg: let go of the X connection now, not at collection
        log.debug("tray icon loop ended")

    def _setup(self, icon: Any) -> None:
        """pystray's setup thread: show the icon, apply updates until stopped, end the loop."""
        self._setup_thread = threading.current_thread()
        try:
            if self._show(icon):
                self._apply_updates(icon)
        finally:
            try:
                icon.stop()
            except Exception:
                log.debug("tray icon already gone", exc_info=True)
            self._wake_loop(icon)

    def _wake_loop(self, icon: Any) -> None:
        """python-xlib's reader thread sometimes misses the event that ends pystray's xorg loop
        (it stays in select() with the DestroyNotify already queued); any later reply on the
        connection wakes it, so ask the server for one a few times, and if the loop still runs,
        shut the connection's socket: its read then ends and so does the loop."""
        display = getattr(icon, "_display", None)
        for _ in range(WAKE_ATTEMPTS):
            if self._thread is None or not self._thread.is_alive() or display is None:
                return
            try:
                display.sync()
            except Exception:
                break
            self._thread.join(WAKE_INTERVAL_S)
        if self._thread is not None and self._thread.is_alive() and display is not None:
            log.debug("tray loop missed its end; closing its X connection")
            with contextlib.suppress(Exception):
                display.display.socket.shutdown(socket.SHUT_RDWR)

    def _show(self, icon: Any) -> bool:
        if self._stopping.is_set():
            return False
        try:
            icon.visible = True
        except Exception as exc:
            log.warning("tray icon could not be shown: %s", _short(exc))
            self._post(TrayStatus(False, self._backend, reason=_short(exc)))
            return False
        log.info("tray icon started (pystray backend %s)", self._backend)
        self._report_host()
        return True

    def _report_host(self) -> None:
        """Post TrayStatus whenever a tray host appears or goes (XEMBED backends can tell):
        the window must not stay hidden in a tray nobody shows."""
        present = tray_host_present(self._backend)
        if present != self._host_reported:
            self._host_reported = present
            log.info("tray host %s", "present" if present else "absent")
            self._post(TrayStatus(present, self._backend,
                                  reason="" if present else "no system tray on this desktop"))

    def _apply_updates(self, icon: Any) -> None:
        shown = 0
        while True:
            try:
                update = self._updates.get(timeout=DOCK_CHECK_S)
            except queue.Empty:
                self._report_host()
                self._dock_again_if_needed(icon)
                continue
            if update is _STOP:
                return
            kind, value = update  # type: ignore[misc]
            try:
                if kind == "unread" and value != shown:
                    shown = value
                    icon.icon = self._picture(value)
                    icon.title = f"{APP_NAME}: {value} unread" if value else APP_NAME  # Latin-1
                elif kind == "muted":
                    self._muted = bool(value)
                    icon.update_menu()
            except Exception:
                log.warning("tray icon update failed", exc_info=True)

    def _picture(self, unread: int) -> Any:
        image = render_badge(unread)
        if self._backend == "xorg":
            # pystray's xorg backend drops the alpha channel, which shows the colours hidden
            # in transparent pixels as a fringe; blend onto black (what it fills with) first.
            from PIL import Image

            image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image)
        return image

    def _dock_again_if_needed(self, icon: Any) -> None:
        """pystray's xorg icon asks to be docked once; a tray host that was not ready then, or
        that started (or restarted) later, gets asked again."""
        if self._backend != "xorg":
            return
        try:
            window, display = icon._window, icon._display
            if window.query_tree().parent.id != display.screen().root.id:
                return  # embedded
            if xembed_tray_owner() is not None:
                log.info("asking the tray host to show the icon again")
                icon._dock_window()
        except Exception:
            log.debug("could not dock the tray icon again", exc_info=True)

    def _post_menu_request(self, x: int, y: int) -> None:
        self._post(TrayMenuRequested(x, y))


def _load_pystray() -> tuple[type, type, type, str]:
    if sys.platform == "darwin":
        # pystray's macOS backend must own the main thread's run loop, which Tk already owns.
        raise ImportError("the tray icon is not supported on macOS yet")
    import pystray

    for name in ("pystray", "pystray._base", "pystray._xorg"):  # filters do not propagate
        logging.getLogger(name).addFilter(_quiet_docking_failures)

    backend = pystray.Icon.__module__.rsplit(".", 1)[-1].lstrip("_")
    base = pystray.Icon
    if backend == "xorg":
        base = _clickable_xorg_icon(pystray.Icon)
    return _with_menu_request(base), pystray.Menu, pystray.MenuItem, backend


def _quiet_docking_failures(record: logging.LogRecord) -> bool:
    """pystray logs ERROR with a traceback whenever no tray host takes its icon (a desktop without
    a tray, or one not ready yet). That is an expected state, reported once as TrayStatus and
    retried by _dock_again_if_needed, so it becomes a one-line DEBUG record."""
    if record.getMessage().startswith("Failed to dock icon"):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
    return True


def _with_menu_request(base: type) -> type:
    class ChimeraIcon(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, on_menu_request: Callable[[int, int], None],
                     **kwargs: Any) -> None:
            self._on_menu_request = on_menu_request
            super().__init__(*args, **kwargs)

        def __del__(self) -> None:
            # pystray's xorg icon closes its X connection here, whenever the garbage collector
            # gets to it: by then the X server may be gone, and that must not raise.
            with contextlib.suppress(Exception):
                super().__del__()

    return ChimeraIcon


def _clickable_xorg_icon(base: type) -> type:
    import Xlib.X

    class ClickableXorgIcon(base):  # type: ignore[misc, valid-type]
        def _create_window(self) -> Any:
            window = super()._create_window()
            window.change_attributes(event_mask=Xlib.X.ExposureMask |
                                     Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask)
            return window

        def _on_button_press(self, event: Any) -> None:
            if event.detail == 3:
                self._on_menu_request(event.root_x, event.root_y)
            else:
                super()._on_button_press(event)

    return ClickableXorgIcon


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
