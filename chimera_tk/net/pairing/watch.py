"""Notices changes to pins.json, whoever made them, so a running LAN trusts the current pins.

A stat() per second is all it costs; the TLS contexts are rebuilt only when the file changed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from chimera_tk.net.pairing.events import PinsChanged
from chimera_tk.pki.pairing import PairingError, PinStore

log = logging.getLogger(__name__)


class PinsWatcher:
    name = "pins-watch"

    def __init__(self, pins: PinStore, emit: Callable[[object], None], *,
                 interval_s: float = 1.0) -> None:
        self._pins = pins
        self._emit = emit
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._seen = self._signature()
        self._ids = self._pinned_ids()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            signature = self._signature()
            if signature == self._seen:
                continue
            self._seen = signature
            ids = self._pinned_ids()
            removed = tuple(sorted(self._ids - ids))
            self._ids = ids
            self._emit(PinsChanged(removed))

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self._pins.path)
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _pinned_ids(self) -> set[int]:
        try:
            return {pin.user_id for pin in self._pins.all()}
        except PairingError as exc:
            log.warning("%s", exc)
            return set()
