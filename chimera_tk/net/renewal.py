"""Automatic certificate renewal: at start, then periodically, on a thread of its own.

:func:`renew_if_due` decides (a third of the lifetime left); this worker only schedules it,
reports the outcome as ``certificate`` status lines, and hands a renewed identity to whoever
presents it (the LAN's peer worker rebuilds its TLS contexts).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from chimera_tk.config import Config
from chimera_tk.errors import ChimeraError
from chimera_tk.events import StatusChanged
from chimera_tk.pki.identity import Identity, load_identity
from chimera_tk.pki.lifecycle import renew_if_due
from chimera_tk.profiles import ProfilePaths

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 3600.0
RETRY_AFTER_S = 300.0
FAILURES_BEFORE_WARNING = 2  # one failure may be a CA restart; two in a row is worth a warning


class RenewalWorker:
    """A Worker: calls ``on_renewed(identity)`` (from its own thread) after each renewal."""

    name = "certificate-renewal"

    def __init__(self, paths: ProfilePaths, config: Config, emit: Callable[[object], None],
                 on_renewed: Callable[[Identity], None], *,
                 interval_s: float = CHECK_INTERVAL_S, retry_s: float = RETRY_AFTER_S,
                 passphrase: Callable[[], bytes | None] | None = None) -> None:
        self._paths = paths
        self._passphrase = passphrase  # of a protected key: the renewal presents it to the CA
        self._config = config
        self._emit = emit
        self._on_renewed = on_renewed
        self._interval_s = interval_s
        self._retry_s = retry_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._stopping.wait(self.check_once())

    def check_once(self) -> float:
        """One attempt if due; returns how long to wait before the next check."""
        try:
            renewed = renew_if_due(self._paths, self._config, passphrase=(
                self._passphrase() if self._passphrase is not None else None))
        except ChimeraError as exc:
            return self._failed(str(exc))
        except Exception as exc:  # a bug must not end the schedule; the log has the trace
            log.exception("certificate renewal crashed")
            return self._failed(type(exc).__name__)
        self.failures = 0
        identity = load_identity(self._paths)
        if renewed and identity is not None:
            log.info("certificate renewed automatically: serial %x, until %s", identity.serial,
                     identity.not_after)
            self._on_renewed(identity)
            from chimera_tk.net.lan import certificate_status

            self._emit(StatusChanged("certificate", certificate_status(identity)))
        return self._until_due(identity)

    def _failed(self, reason: str) -> float:
        self.failures += 1
        identity = load_identity(self._paths)
        log.warning("certificate renewal failed (%d in a row): %s", self.failures, reason)
        if identity is not None and not identity.is_valid_at(datetime.now(UTC)):
            # Expired while running: no retry can help, so say that, not "renewal failing".
            from chimera_tk.net.lan import certificate_status

            self._emit(StatusChanged("certificate", certificate_status(identity), "error"))
        elif identity is not None and self.failures >= FAILURES_BEFORE_WARNING:
            expires = identity.not_after.astimezone()
            self._emit(StatusChanged(
                "certificate", f"Certificate: renewal failing — expires {expires:%d %b %H:%M}",
                "warning"))
        return self._retry_s

    def _until_due(self, identity: Identity | None) -> float:
        """Check hourly, but no later than the moment renewal becomes due."""
        if identity is None:
            return self._interval_s
        lifetime = identity.not_after - identity.not_before
        due_in = (identity.not_after - lifetime / 3 - datetime.now(UTC)).total_seconds()
        return max(1.0, min(self._interval_s, due_in))
