"""Events that cross threads, and the one road they travel from workers to the Tk thread.

Workers never touch Tk: they ``post`` frozen events on one queue. The Tk thread drains it with
``after()`` in bounded batches (a time budget per tick), so a storm of events never freezes the
window, and a failing handler is logged while the others still run.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from chimera_tk.store.records import Dialog, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MessageStored:
    """A message row was created (written by the user or received from a transport)."""

    message: Message


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """A stored message changed: state, route, text or deleted flag."""

    message: Message


@dataclass(frozen=True, slots=True)
class DialogChanged:
    dialog: Dialog


@dataclass(frozen=True, slots=True)
class DialogRemoved:
    """The dialog is gone (left, kicked, deleted on Telegram); its row no longer exists."""

    dialog_id: int


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A line for the status bar. ``component`` is ``telegram``, ``lan`` or ``certificate``."""

    component: str
    text: str
    level: str = "info"


@dataclass(frozen=True, slots=True)
class QuitRequested:
    reason: str


# -- LAN ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerAnnounced:
    """A discovery datagram named ``user_id`` at ``address``; only a hint until verified."""

    user_id: int
    address: str
    port: int
    instance: str | None
    new: bool  # first time heard, a new instance (restarted), or a new address or port


@dataclass(frozen=True, slots=True)
class PeerExpired:
    """No announcement from ``user_id`` for three intervals, or it said goodbye."""

    user_id: int
    address: str


@dataclass(frozen=True, slots=True)
class PeerVerified:
    """A TLS handshake proved that ``address`` holds a team certificate for ``user_id``."""

    user_id: int
    address: str
    name: str


@dataclass(frozen=True, slots=True)
class PeerUnavailable:
    """A peer could not be reached or was refused (e.g. identity mismatch); ``reason`` says why."""

    user_id: int
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Telegram's first sync (or catch-up): ``done`` of ``total`` dialogs fetched."""

    done: int
    total: int


@dataclass(frozen=True, slots=True)
class FileHashed:
    """A file the user attached has been read and hashed, off the Tk thread; now it can queue."""

    dialog_id: int
    path: str
    sha256: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TransferProgress:
    message_id: int
    file_id: int
    bytes_done: int
    total: int
    outgoing: bool


@dataclass(frozen=True, slots=True)
class ThumbnailReady:
    """A picture's preview (PNG bytes) is made, or ``error`` says in words why there is none.
    ``made`` is false when it came from the disk cache; ``worker`` names the thread that did it."""

    key: str
    file_id: int
    png: bytes | None
    error: str | None
    made: bool
    worker: str


@dataclass(frozen=True, slots=True)
class OlderMessagesFetched:
    """Telegram's page before ``before_tg_id`` was stored (``stored`` new rows); ``exhausted``
    when Telegram has nothing older, ``error`` in plain words when the fetch failed."""

    dialog_id: int
    before_tg_id: int
    stored: int
    exhausted: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SponsoredAd:
    """One of Telegram's sponsored messages: shown at the end of a channel, never stored."""

    random_id: bytes
    title: str
    text: str
    url: str
    button_text: str


@dataclass(frozen=True, slots=True)
class SponsoredMessagesFetched:
    dialog_id: int
    ads: tuple[SponsoredAd, ...]


@dataclass(frozen=True, slots=True)
class CertificateRevoked:
    """The team CA put this profile's certificate on its CRL (revoked from Settings)."""

    user_id: int
    serial: int


@dataclass(frozen=True, slots=True)
class CertificateIssued:
    """A new key and certificate were saved (joined a team from Settings); the LAN restarts."""

    user_id: int
    serial: int
    identity_url: str
    ca_url: str
    display_name: str = ""  # the admin's name from the invite; used if none was chosen


E = TypeVar("E")
Handler = Callable[[Any], None]


class EventDispatcher:
    """Calls the handlers subscribed to an event's exact type, in subscription order."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)
        self.failures = 0

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Register ``handler``; the returned function unsubscribes it."""
        self._handlers[event_type].append(handler)

        def unsubscribe() -> None:
            handlers = self._handlers.get(event_type, [])
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def dispatch(self, event: object) -> None:
        for handler in tuple(self._handlers.get(type(event), ())):
            try:
                handler(event)
            except Exception:
                self.failures += 1
                log.exception("handler %r failed on %s", handler, type(event).__name__)


class EventQueue:
    """The thread-safe queue every worker posts to."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def post(self, event: object) -> None:
        self._queue.put(event)

    def get_nowait(self) -> object | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def get(self, timeout: float) -> object | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def empty(self) -> bool:
        return self._queue.empty()


class Scheduler(Protocol):
    """What the pump needs from Tk: any widget's ``after`` and ``after_cancel``."""

    def after(self, ms: int, func: Callable[[], object]) -> str: ...

    def after_cancel(self, id: str) -> None: ...


class EventPump:
    """Drains the queue on the Tk thread, at most ``budget_s`` of handler time per tick."""

    def __init__(self, scheduler: Scheduler, events: EventQueue, dispatcher: EventDispatcher, *,
                 budget_s: float = 0.008, idle_ms: int = 15) -> None:
        self._scheduler = scheduler
        self._events = events
        self._dispatcher = dispatcher
        self._budget_s = budget_s
        self._idle_ms = idle_ms
        self._after_id: str | None = None
        self.handled = 0

    def start(self) -> None:
        if self._after_id is None:
            self._after_id = self._scheduler.after(0, self._tick)

    def stop(self) -> None:
        if self._after_id is not None:
            self._scheduler.after_cancel(self._after_id)
            self._after_id = None

    def drain_now(self) -> int:
        """Handle everything queued right now (used at shutdown and by tests)."""
        count = 0
        while (event := self._events.get_nowait()) is not None:
            self._dispatcher.dispatch(event)
            count += 1
        self.handled += count
        return count

    def _tick(self) -> None:
        deadline = time.perf_counter() + self._budget_s
        while (event := self._events.get_nowait()) is not None:
            self._dispatcher.dispatch(event)
            self.handled += 1
            if time.perf_counter() >= deadline:
                break
        # When more is waiting, come back after 1 ms so input and redraws still get their turn.
        delay = 1 if not self._events.empty() else self._idle_ms
        self._after_id = self._scheduler.after(delay, self._tick)


# -- tray icon and desktop notifications (posted from the tray and notifier threads) ------------


@dataclass(frozen=True, slots=True)
class TrayStatus:
    """The tray icon started (``running``, with the pystray ``backend``) or could not start."""

    running: bool
    backend: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TrayOpenRequested:
    """Show the window: from the tray's Open, or a click on a notification (opens that chat)."""

    dialog_id: int | None = None


@dataclass(frozen=True, slots=True)
class TrayMuteToggled:
    """The tray menu's *Mute notifications* was chosen (it flips ``ui.do_not_disturb``)."""


@dataclass(frozen=True, slots=True)
class TrayQuitRequested:
    """The tray menu's Quit: the Tk thread asks first when transfers are running."""


@dataclass(frozen=True, slots=True)
class TrayMenuRequested:
    """A right click on a tray icon whose backend draws no menu (xorg): Tk shows it at x, y."""

    x: int
    y: int
