"""The composition root: the one place that builds every component and tears them down in order.

Nothing else constructs services or reaches for globals; tests build the same graph on a temporary
profile. Shutdown (window close, Ctrl+Q, Ctrl+C, SIGTERM) always runs the same ordered path:
stop the event pump, stop and join every worker, destroy the window, close the database, release
the profile lock.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Protocol

from chimera_tk.config import Config
from chimera_tk.events import EventDispatcher, EventPump, EventQueue, QuitRequested
from chimera_tk.profiles import ProfileLock, ProfilePaths
from chimera_tk.router import Router
from chimera_tk.store import Store

log = logging.getLogger(__name__)
WORKER_JOIN_TIMEOUT_S = 5.0


class Worker(Protocol):
    """A background component with its own thread(s); it talks to the UI only through events."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None:
        """Ask the worker to finish; must return promptly."""

    def join(self, timeout: float) -> bool:
        """Wait for the worker's threads; True when they all ended."""


class App:
    def __init__(self, paths: ProfilePaths, config: Config, *, theme: str | None = None) -> None:
        self.paths = paths
        self.config = config
        self.events = EventQueue()
        self.dispatcher = EventDispatcher()
        self.workers: list[Worker] = []
        self._theme = theme or config.ui.theme
        self._lock = ProfileLock(paths)
        self._closed = False
        self._running = False
        self.store: Store | None = None
        self.root = None
        self.window = None
        self.pump: EventPump | None = None
        self.router: Router | None = None

    # -- building --------------------------------------------------------------------------------

    def build(self) -> App:
        """Build every component; on any failure, whatever was built is torn down again."""
        try:
            self.paths.ensure()
            self._lock.acquire()
            self.store = Store.open(self.paths.database)
            self.router = Router(self.store, self.events.post)
            self.router.recover()
            self.dispatcher.subscribe(QuitRequested, lambda e: self.request_quit(e.reason))
            self._build_window()
        except BaseException:
            self.shutdown()
            raise
        return self

    def _build_window(self) -> None:
        import tkinter as tk

        from chimera_tk.errors import UserError
        from chimera_tk.views.main_window import MainWindow, create_root

        try:
            self.root, palette = create_root(self._theme, profile_name=self.paths.name)
        except tk.TclError as exc:
            raise UserError(
                f"cannot open a window ({exc}). Run Chimera inside a desktop session "
                "or set DISPLAY.") from None
        self.pump = EventPump(self.root, self.events, self.dispatcher)
        self.window = MainWindow(self.root, self.store, self.router, self.dispatcher, palette,
                                 on_quit=lambda: self.request_quit("window closed"))

    def add_worker(self, worker: Worker) -> None:
        self.workers.append(worker)
        if self._running:
            worker.start()

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Show the window and start the pump and workers (without entering the main loop)."""
        self._running = True
        assert self.pump is not None and self.window is not None
        self.pump.start()
        for worker in self.workers:
            worker.start()
        self.window.show()
        log.info("window shown for profile %s", self.paths.name)

    def run(self) -> None:
        """Run until the user quits or a signal arrives; always ends with :meth:`shutdown`."""
        previous = self._install_signal_handlers()
        try:
            self.start()
            self.root.mainloop()
        finally:
            self._restore_signal_handlers(previous)
            self.shutdown()

    def request_quit(self, reason: str = "") -> None:
        """Safe from the Tk thread; other threads and signal handlers post QuitRequested."""
        log.info("quitting: %s", reason or "requested")
        if self.root is not None and self._running:
            self._running = False
            self.root.quit()

    def shutdown(self) -> None:
        """Tear everything down in order. Idempotent; never leaves a thread or a lock behind."""
        if self._closed:
            return
        self._closed = True
        self._running = False
        if self.pump is not None:
            self.pump.stop()
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

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, object]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def build_app(paths: ProfilePaths, config: Config, *, theme: str | None = None) -> App:
    return App(paths, config, theme=theme).build()
