"""The composition root: the one place that builds every component and tears them down in order.

Nothing else constructs services or reaches for globals; tests build the same graph on a temporary
profile. The same graph runs with a window (``run``) or without one (``run_headless``). Shutdown
(window close, Ctrl+Q, Ctrl+C, SIGTERM) always takes the same ordered path: stop the event pump,
stop and join every worker, destroy the window, close the database, release the profile lock.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from chimera_tk.config import Config
from chimera_tk.errors import ChimeraError, UserError
from chimera_tk.events import (
    DialogChanged,
    EventDispatcher,
    EventPump,
    EventQueue,
    QuitRequested,
    StatusChanged,
)
from chimera_tk.profiles import ProfileLock, ProfilePaths
from chimera_tk.router import Router
from chimera_tk.store import Store
from chimera_tk.store.background import BackgroundWriter

if TYPE_CHECKING:
    from chimera_tk.pki.identity import Identity

log = logging.getLogger(__name__)
WORKER_JOIN_TIMEOUT_S = 5.0
OUTBOX_TICK_S = 1.0


class Worker(Protocol):
    """A background component with its own thread(s); it talks to the UI only through events."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None:
        """Ask the worker to finish; must return promptly."""

    def join(self, timeout: float) -> bool:
        """Wait for the worker's threads; True when they all ended."""


class App:
    def __init__(self, paths: ProfilePaths, config: Config, *, theme: str | None = None,
                 window: bool = True, telegram_client_factory: Callable | None = None) -> None:
        self.paths = paths
        self.config = config
        self.events = EventQueue()
        self.dispatcher = EventDispatcher()
        self.workers: list[Worker] = []
        self._theme = theme or config.ui.theme
        self._with_window = window
        self._lock = ProfileLock(paths)
        self._closed = False
        self._running = False
        self._quit = threading.Event()
        self.store: Store | None = None
        self.root = None
        self.window = None
        self.pump: EventPump | None = None
        self.router: Router | None = None
        self.lan = None
        self.identity = None
        self.telegram = None
        self._telegram_factory = telegram_client_factory
        self._transports_built = False
        self._tick_after: str | None = None

    # -- building --------------------------------------------------------------------------------

    def build(self) -> App:
        """Build every component; on any failure, whatever was built is torn down again."""
        try:
            self.paths.ensure()
            self._lock.acquire()
            self.store = Store.open(self.paths.database)
            self.router = Router(self.store, self.events.post)
            self.router.recover()
            self.writer = BackgroundWriter(self.paths.database, self.events.post)
            self.workers.append(self.writer)
            self.dispatcher.subscribe(QuitRequested, lambda e: self.request_quit(e.reason))
            if self._with_window:
                self._build_window()  # the transports are built after the first paint
            else:
                self._build_transports()
        except BaseException:
            self.shutdown()
            raise
        return self

    def _build_lan(self) -> None:
        from chimera_tk.pki.identity import load_identity

        self.identity = load_identity(self.paths)
        expired = self.identity is not None and not self.identity.is_valid_at(datetime.now(UTC))
        if self.identity is not None and not expired and self.config.team.ca_url:
            from chimera_tk.net.renewal import RenewalWorker

            # renewal runs even with the LAN off: the certificate is the team membership
            self.workers.append(RenewalWorker(self.paths, self.config, self.events.post,
                                              self._certificate_renewed))
        if not self.config.lan.enabled:
            self.events.post(StatusChanged("lan", "LAN: off (lan.enabled = false)"))
            return
        if self.identity is None:
            self.events.post(StatusChanged(
                "lan", "LAN: off — join a team first (chimera --new --invite …)"))
            self.events.post(StatusChanged("certificate", "Certificate: none"))
            return
        from chimera_tk.net.lan import LanService, certificate_status

        if expired:
            # Peers would refuse it anyway; Telegram does not need it and keeps working.
            log.warning("LAN not started: certificate serial %x expired on %s",
                        self.identity.serial, self.identity.not_after)
            self.events.post(StatusChanged(
                "lan", "LAN: off — certificate expired; renew with chimera --renew", "error"))
            self.events.post(StatusChanged("certificate", certificate_status(self.identity),
                                           "error"))
            return
        from chimera_tk.net.revocation import crl_url

        team = self.config.team
        self.lan = LanService(
            self.identity, self.config.lan, self.paths, self.store, self.events.post,
            self.dispatcher, display_name=team.display_name or
            f"User {self.identity.user_id}", on_reachable=self.router.dispatch_due,
            crl_url=crl_url(team.ca_url, team.identity_url))
        self.router.register(self.lan)
        self.workers.append(self.lan)

    def _certificate_renewed(self, identity: Identity) -> None:
        """From the renewal thread: new LAN connections present the renewed certificate."""
        self.identity = identity
        if self.lan is not None:
            self.lan.reload_identity(identity)

    def _build_transports(self) -> None:
        if not self._transports_built:
            self._transports_built = True
            self._build_lan()
            self._build_telegram()

    def _build_telegram(self, client_factory: Callable | None = None) -> None:
        """With a window this runs after the first paint: Telethon is a heavy import."""
        settings = self.config.telegram
        if not (settings.api_id and settings.api_hash):
            self.events.post(StatusChanged(
                "telegram", "Telegram: not connected — click to connect"))
            return
        from chimera_tk.net.telegram.worker import TelegramTransport, TelegramWorker

        self.telegram = TelegramWorker(settings, self.paths, self.events.post,
                                       client_factory=client_factory or self._telegram_factory)
        self.router.register(TelegramTransport(self.telegram))
        self.workers.append(self.telegram)

    def _build_window(self) -> None:
        import sys
        import tkinter as tk

        # Workers hold the GIL for up to the switch interval (5 ms by default) whenever the Tk
        # thread wants it back; a shorter interval keeps the window responsive under load.
        sys.setswitchinterval(0.001)

        from chimera_tk.views.main_window import MainWindow, create_root

        try:
            self.root, palette = create_root(self._theme, profile_name=self.paths.name)
        except tk.TclError as exc:
            raise UserError(
                f"cannot open a window ({exc}). Run Chimera inside a desktop session, set "
                "DISPLAY, or use --headless.") from None
        self.pump = EventPump(self.root, self.events, self.dispatcher)
        self.window = MainWindow(self.root, self.store, self.router, self.dispatcher, palette,
                                 on_quit=lambda: self.request_quit("window closed"),
                                 presence=self.is_on_lan, post=self.events.post,
                                 cancel=self.cancel_message, mark_read=self.mark_read,
                                 connect_telegram=self.open_telegram_wizard,
                                 download_media=self.download_media,
                                 load_older_remote=self.load_older_remote,
                                 fetch_sponsored=self.fetch_sponsored,
                                 sponsored_shown=self.sponsored_shown,
                                 find_by_phone=self.find_by_phone)
        self.window.dialogs.refresh()

    def save_telegram_credentials(self, api_id: int, api_hash: str) -> None:
        """From the Connect Telegram dialog: keep the credentials and (re)start the worker."""
        import dataclasses

        from chimera_tk.config import save_config

        telegram = dataclasses.replace(self.config.telegram, api_id=api_id, api_hash=api_hash)
        unchanged = telegram == self.config.telegram and self.telegram is not None
        self.config = dataclasses.replace(self.config, telegram=telegram)
        save_config(self.paths.config_file, self.config)
        if unchanged:
            return
        if self.telegram is not None:
            self.telegram.stop()
            self.telegram.join(WORKER_JOIN_TIMEOUT_S)
            self.workers.remove(self.telegram)
        self._build_telegram()
        if self.telegram is not None:
            self.telegram.start()

    def download_media(self, message_id: int) -> None:
        if self.telegram is None:
            return

        def report(future: object) -> None:
            error = future.exception()  # type: ignore[attr-defined]
            if error is not None:
                self.events.post(StatusChanged("telegram", f"Telegram: {error}", "error"))

        self.telegram.download_file(message_id).add_done_callback(report)

    def load_older_remote(self, dialog_id: int, before_tg_id: int) -> None:
        """The reader scrolled past the local history of a Telegram chat."""
        from chimera_tk.events import OlderMessagesFetched

        if self.telegram is None or not self.telegram.online:
            self.events.post(OlderMessagesFetched(dialog_id, before_tg_id, 0, True))
            return
        self.telegram.fetch_older(dialog_id, before_tg_id)

    def fetch_sponsored(self, dialog_id: int) -> None:
        if self.telegram is not None and self.telegram.online:
            self.telegram.fetch_sponsored(dialog_id).add_done_callback(_log_failure)

    def sponsored_shown(self, random_id: bytes) -> None:
        if self.telegram is not None:
            self.telegram.report_sponsored_view(random_id).add_done_callback(_log_failure)

    def find_by_phone(self, phone: str, name: str) -> Future | None:
        """From the New chat dialog; None when Telegram is not connected."""
        if self.telegram is None or not self.telegram.online:
            return None
        return self.telegram.find_by_phone(phone, name)

    def open_telegram_wizard(self) -> None:
        from chimera_tk.views.telegram_wizard import ConnectTelegramDialog

        settings = self.config.telegram
        self.telegram_dialog = ConnectTelegramDialog(
            self.root, api_id=settings.api_id, api_hash=settings.api_hash,
            save_credentials=self.save_telegram_credentials, worker=lambda: self.telegram)

    def cancel_message(self, message_id: int) -> None:
        """The user cancelled an outgoing message or file that has not been delivered yet."""
        from chimera_tk.events import MessageChanged

        message = self.store.messages.get(message_id)
        if message.state == "queued":
            self.store.outbox.give_up(message_id, "cancelled")
            self.events.post(MessageChanged(self.store.messages.get(message_id)))
        elif message.state == "sending" and self.lan is not None:
            self.lan.peer.cancel(message_id)

    def mark_read(self, dialog_id: int) -> None:
        """Clear a chat's unread count without the Tk thread waiting for the write lock."""

        def write(store: Store) -> DialogChanged | None:
            dialog = store.dialogs.get(dialog_id)
            if dialog.unread_count == 0:
                return None
            store.dialogs.mark_read(dialog_id)
            return DialogChanged(store.dialogs.get(dialog_id))

        self.writer.submit(write)
        if self.telegram is not None:
            self.telegram.mark_read(dialog_id)

    def is_on_lan(self, user_id: int) -> bool:
        return self.lan is not None and user_id in self.lan.verified

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Show the window (if any) and start the workers, without entering a main loop.

        With a window, the workers (and the LAN with its certificate parsing) start from the
        first idle moment, after Tk has drawn the window: nothing delays the first paint.
        """
        self._running = True
        if self.window is None:
            self._start_workers()
            log.info("headless mode started for profile %s", self.paths.name)
            return
        self.pump.start()
        self._tick_after = self.root.after(int(OUTBOX_TICK_S * 1000), self._tick)
        self.window.show()
        log.info("window shown for profile %s", self.paths.name)
        self.root.after_idle(self._start_workers)

    def _start_workers(self) -> None:
        if not self._running:
            return
        self._build_transports()
        for worker in self.workers:
            try:
                worker.start()
            except ChimeraError as exc:
                log.error("%s did not start: %s", worker.name, exc)
                self.events.post(StatusChanged("lan", f"LAN: off — {exc}", "error"))

    def _tick(self) -> None:
        """Messages whose retry time came, or written by ``chimera send`` in another process."""
        if self._running and self.router is not None:
            try:
                self.router.dispatch_due()
            except Exception:
                log.exception("outbox dispatch failed")
            if self.root is not None:
                self._tick_after = self.root.after(int(OUTBOX_TICK_S * 1000), self._tick)

    def run(self) -> None:
        """Run the window until the user quits or a signal arrives; always ends in shutdown."""
        previous = self._install_signal_handlers()
        try:
            self.start()
            self.root.mainloop()
        finally:
            self._restore_signal_handlers(previous)
            self.shutdown()

    def run_headless(self, until: Callable[[], bool] | None = None) -> None:
        """Run every worker with no window: the main thread dispatches events and the outbox.

        Stops on SIGTERM/Ctrl+C, on QuitRequested, or when ``until()`` becomes true.
        """
        previous = self._install_signal_handlers()
        try:
            self.start()
            next_tick = time.monotonic()
            while not self._quit.is_set() and not (until is not None and until()):
                event = self.events.get(timeout=0.1)
                while event is not None:
                    self.dispatcher.dispatch(event)
                    event = self.events.get_nowait()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + OUTBOX_TICK_S
                    self.router.dispatch_due()
        finally:
            self._restore_signal_handlers(previous)
            self.shutdown()

    def request_quit(self, reason: str = "") -> None:
        """Safe from the main thread; other threads and signal handlers post QuitRequested."""
        log.info("quitting: %s", reason or "requested")
        self._quit.set()
        if self.root is not None and self._running:
            self._running = False
            self.root.quit()
        self._running = False

    def shutdown(self) -> None:
        """Tear everything down in order. Idempotent; never leaves a thread or a lock behind."""
        if self._closed:
            return
        self._closed = True
        self._running = False
        if self.pump is not None:
            self.pump.stop()
        if self.root is not None and self._tick_after is not None:
            self.root.after_cancel(self._tick_after)
        for worker in reversed(self.workers):
            try:
                worker.stop()
            except Exception:
                log.exception("worker %s failed to stop", worker.name)
        for worker in reversed(self.workers):
            if not worker.join(WORKER_JOIN_TIMEOUT_S):
                log.error("worker %s did not stop within %.0f s", worker.name,
                          WORKER_JOIN_TIMEOUT_S)
        if self.root is not None:
            try:
                self.root.destroy()
            except Exception:
                log.debug("window already gone", exc_info=True)
            self.root = None
            self.window = None
        if self.store is not None:
            self.store.close()
            self.store = None
        self._lock.release()

    def _install_signal_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: object) -> None:
            self.events.post(QuitRequested(signal.Signals(signum).name))
            self._quit.set()

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, object]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _log_failure(future: Future) -> None:
    if future.exception() is not None:
        log.warning("Telegram request failed: %s", future.exception())


def build_app(paths: ProfilePaths, config: Config, *, theme: str | None = None,
              window: bool = True, telegram_client_factory: Callable | None = None) -> App:
    """The whole app; ``telegram_client_factory`` lets tests put the Telegram emulator in."""
    return App(paths, config, theme=theme, window=window,
               telegram_client_factory=telegram_client_factory).build()
