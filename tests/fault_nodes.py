"""The in-process side of the network-fault tests: a whole app on a thread in a host's namespace.

:class:`InProcessApp` builds the real app (``build_app``) on a thread that entered ``host``'s
network namespace, so its sockets live on that host, while the test can look at its threads and
its database. With ``window=True`` the thread also runs the Tk window (on the suite's Xvfb) and
measures how late a 50 ms ``after`` ping fires (:attr:`ping_lateness`): the UI stays responsive
when that stays small. Sending goes through the real router, writing to the profile's database
from the test's own connection; the running app's outbox tick picks it up as it would a message
written by ``chimera send``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, TeamSettings
from chimera_tk.net.peer.worker import PeerLimits
from chimera_tk.profiles import profile_paths
from chimera_tk.router import Router
from chimera_tk.store import Store
from chimera_tk.store.records import Message
from tests.netns import Host
from tests.pki_factory import TeamCA

PING_INTERVAL_MS = 50


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class InProcessApp:
    def __init__(self, host: Host, data_dir: Path, name: str, user_id: int, ca: TeamCA, *,
                 limits: PeerLimits, window: bool = False) -> None:
        self.user_id = user_id
        self.paths = profile_paths(name, data_dir).ensure()
        ca.write_identity(self.paths.root, user_id)
        self.config = Config(
            # this process keeps the suite's loopback-only default: name the test LAN's address
            lan=LanSettings(interval_s=1.0, broadcast_addresses=(host.network.broadcast,)),
            team=TeamSettings(display_name=name))
        self.app: App | None = None
        self.ping_lateness: list[float] = []  # seconds each after() ping fired late
        self.threads_before = set(threading.enumerate())
        self.leftover_threads: list[str] = []
        self._host = host
        self._limits = limits
        self._window = window
        self._stop = threading.Event()
        self._built = threading.Event()
        self._error: BaseException | None = None
        self._ui_calls: queue.SimpleQueue[Callable[[App], object]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"app-{name}")
        self._thread.start()
        assert self._built.wait(60), f"{name} did not start"
        if self._error is not None:
            raise self._error

    def _build(self) -> App:
        app = build_app(self.paths, self.config, window=self._window, theme="light")
        if app.lan is not None:  # headless: the transports exist already
            app.lan.peer.limits = self._limits  # before any connection: channels read it then
            return app
        # with a window the transports are built after the first paint: set the limits then,
        # still before the LAN starts
        build_transports = app._build_transports

        def build_then_limit() -> None:
            build_transports()
            assert app.lan is not None
            app.lan.peer.limits = self._limits

        app._build_transports = build_then_limit
        return app

    def _run(self) -> None:
        self._host.enter_this_thread()
        try:
            self.app = self._build()
        except BaseException as exc:
            self._error = exc
            self._built.set()
            raise
        self._built.set()
        if not self._window:
            self.app.run_headless(until=self._stop.is_set)
            return
        try:
            self.app.start()
            root = self.app.root
            expected = [time.monotonic() + PING_INTERVAL_MS / 1000]

            def ping() -> None:
                now = time.monotonic()
                self.ping_lateness.append(now - expected[0])
                expected[0] = now + PING_INTERVAL_MS / 1000
                root.after(PING_INTERVAL_MS, ping)

            root.after(PING_INTERVAL_MS, ping)
            while not self._stop.is_set():
                root.update()
                while not self._ui_calls.empty():
                    self._ui_calls.get()(self.app)
                time.sleep(0.005)
        finally:
            self.app.shutdown()

    def call_in_ui(self, function: Callable[[App], object]) -> None:
        """Run ``function(app)`` on the window's thread (Tk may only be used there)."""
        self._ui_calls.put(function)

    def store(self) -> Store:
        return Store.open(self.paths.database)

    def send_text(self, store: Store, to: int, text: str) -> Message:
        store.dialogs.ensure(to, "user", f"User {to}")
        return Router(store, lambda _event: None).send_text(to, text)

    def send_file(self, store: Store, to: int, path: Path) -> Message:
        store.dialogs.ensure(to, "user", f"User {to}")
        return Router(store, lambda _event: None).send_file(to, path)

    def stop(self, timeout: float = 60) -> None:
        """Shut the app down; :attr:`leftover_threads` names any thread it left running."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the app's thread did not end"
        time.sleep(0.2)  # threads that were told to end a moment ago
        self.leftover_threads = sorted(
            t.name for t in set(threading.enumerate()) - self.threads_before
            if t.is_alive() and t is not threading.current_thread())
