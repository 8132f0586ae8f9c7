"""Events a worker emitted (it calls the recorder from its own threads), waited for from the
test thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class EventRecorder:
    def __init__(self) -> None:
        self.events: list[object] = []
        self._added = threading.Condition()

    def __call__(self, event: object) -> None:
        with self._added:
            self.events.append(event)
            self._added.notify_all()

    def wait_for(self, predicate: Callable[[object], bool], timeout: float = 10.0) -> object:
        """The first event, already seen or still to come, that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        with self._added:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching event; saw {self.events[-10:]}")
                self._added.wait(remaining)
