"""One-off slow jobs that the window asks for (renew, revoke, join a team), each on its own thread.

A Worker like the others: shutdown joins the threads that are still running, so a job is never
cut off halfway (the certificate files are written atomically, but a request the CA has already
answered should still be recorded). Every failure reaches the caller's future as a UserError in
plain words; an unexpected one is logged with its traceback first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from chimera_tk.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")


class BackgroundTasks:
    name = "background-tasks"

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        """Nothing to start: each job gets a thread when it is submitted."""

    def stop(self) -> None:
        with self._lock:
            self._stopping = True

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def submit(self, what: str, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` on a new thread; ``what`` names it in messages ("renewing the
        certificate")."""
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(job())
            except UserError as exc:
                future.set_exception(exc)
            except Exception as exc:
                log.exception("%s failed", what)
                future.set_exception(UserError(f"{what} failed: {exc or type(exc).__name__}"))

        with self._lock:
            if self._stopping:
                future.set_exception(UserError("Chimera is closing"))
                return future
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=run, name=f"task: {what}")
            self._threads.append(thread)
            thread.start()
        return future
