"""Desktop notifications, sent from one asyncio loop thread through desktop-notifier.

desktop-notifier speaks org.freedesktop.Notifications on the Linux session D-Bus (and the native
centres on macOS and Windows); it is asyncio-based, so like the Telegram worker it gets one loop
in its own thread and other threads submit work with ``run_coroutine_threadsafe``. A click on a
notification posts ``TrayOpenRequested(dialog_id)``; the Tk thread opens that chat.

No session bus, no notification service, or a service that fails: Chimera logs one line and the
tray badge stays the only signal; it tries again at most once a minute (a daemon may start later).
"""

from __future__ import annotations

import asyncio
import html
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from importlib import resources
from pathlib import Path
from typing import Any

from chimera_tk import APP_NAME
from chimera_tk.events import TrayOpenRequested

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 5.0
RETRY_AFTER_S = 60.0


class DesktopNotifications:
    """A worker (start/stop/join) that shows one notification per ``notify`` call."""

    name = "notifications"

    def __init__(self, post: Callable[[object], None], *,
                 notifier_factory: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._post = post
        self._factory = notifier_factory or _desktop_notifier
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._notifier: Any = None
        self._failed_at: float | None = None
        self._connecting = asyncio.Lock()  # binds to the loop on first use (3.10+)
        self.sent = 0  # read by tests and logs only; written on the loop thread

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="notifications",
                                        daemon=True)
        self._thread.start()

    def notify(self, dialog_id: int, title: str, body: str) -> Future[bool]:
        """Show a notification; the future says whether the platform took it."""
        if self._loop is None or self._loop.is_closed():
            done: Future[bool] = Future()
            done.set_result(False)
            return done
        return asyncio.run_coroutine_threadsafe(self._send(dialog_id, title, body), self._loop)

    def stop(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)

    def join(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- the loop thread -------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close_notifier())
            loop.close()

    async def _send(self, dialog_id: int, title: str, body: str) -> bool:
        notifier = await self._ready_notifier()
        if notifier is None:
            return False
        dispatched = []
        if sys.platform.startswith("linux"):
            body = html.escape(body, quote=False)  # servers with body-markup would parse it
        try:
            await asyncio.wait_for(notifier.send(
                title=title, message=body,
                on_dispatched=lambda: dispatched.append(True),
                on_clicked=lambda: self._post(TrayOpenRequested(dialog_id)),
                thread=f"chat-{dialog_id}"), CALL_TIMEOUT_S)
        except Exception as exc:  # desktop-notifier logs most failures itself; these are ours
            self._unavailable(f"sending failed ({exc.__class__.__name__}: {exc})")
            return False
        if not dispatched:
            self._unavailable("the notification service did not take the notification")
            return False
        self.sent += 1
        return True

    async def _ready_notifier(self) -> Any:
        async with self._connecting:  # one connection, however many notifications wait for it
            return await self._connect()

    async def _connect(self) -> Any:
        if self._notifier is not None:
            return self._notifier
        if self._failed_at is not None and self._clock() - self._failed_at < RETRY_AFTER_S:
            return None
        notifier = None
        try:
            notifier = self._factory()
            # Asking for capabilities connects to the service: fails fast when there is none.
            await asyncio.wait_for(notifier.get_capabilities(), CALL_TIMEOUT_S)
        except Exception as exc:
            self._unavailable(_describe(exc))
            await _disconnect(notifier)
            return None
        self._notifier = notifier
        self._failed_at = None
        log.info("desktop notifications ready")
        return notifier

    def _unavailable(self, reason: str) -> None:
        if self._failed_at is None:
            log.warning("desktop notifications unavailable: %s; the tray badge still counts "
                        "unread messages", reason)
        self._failed_at = self._clock()
        self._notifier = None

    async def _close_notifier(self) -> None:
        await _disconnect(self._notifier)
        self._notifier = None


def _desktop_notifier() -> Any:
    from desktop_notifier import DesktopNotifier, Icon

    icon_path = Path(str(resources.files("chimera_tk").joinpath("assets", "icon-64.png")))
    return DesktopNotifier(app_name=APP_NAME, app_icon=Icon(path=icon_path))


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    if "org.freedesktop.Notifications" in text or "ServiceUnknown" in text:
        return "no notification service on the session bus"
    if isinstance(exc, TimeoutError):
        return "the notification service did not answer"
    return f"{exc.__class__.__name__}: {text}"


async def _disconnect(notifier: Any) -> None:
    """Close desktop-notifier's D-Bus connection (it has no public close)."""
    bus = getattr(getattr(notifier, "_backend", None), "bus", None)
    if bus is not None:
        try:
            bus.disconnect()
            await asyncio.wait_for(bus.wait_for_disconnect(), 1.0)
        except Exception:
            log.debug("notification bus already closed", exc_info=True)
