"""Writes the Tk thread asks for, done on a thread of their own.

A write may wait up to the busy timeout for a worker's transaction to finish; the Tk thread must
never wait like that. Views hand small writes (mark a chat read) to this writer, which runs them
on its own connection, in order, and posts an event when one needs the UI to refresh.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from chimera_tk.store import Store

log = logging.getLogger(__name__)

Write = Callable[[Store], object | None]


class BackgroundWriter:
    name = "store-writer"

    def __init__(self, database: Path, emit: Callable[[object], None]) -> None:
        self._database = database
        self._emit = emit
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="store-writer")

    def start(self) -> None:
        self._thread.start()

    def submit(self, write: Write) -> None:
        """Run ``write(store)`` soon; an event it returns is posted for the UI."""
        self._queue.put(write)

    def stop(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        store = Store.open(self._database)
        try:
            while (write := self._queue.get()) is not None:
                try:
                    event = write(store)
                except Exception:
                    log.exception("a background write failed")
                    continue
                if event is not None:
                    self._emit(event)
        finally:
            store.close()
