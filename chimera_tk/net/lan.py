"""The LAN transport: discovery + the verified peer link, presented to the router as one.

An announcement is only a hint: it tells the peer worker where to call; a peer counts as reachable
only after a TLS handshake proved its id (PeerVerified). All presence state here is touched on the
main thread only (through events); the workers own their own threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from chimera_tk.config import LanSettings
from chimera_tk.errors import ChimeraError
from chimera_tk.events import (
    DialogChanged,
    EventDispatcher,
    PeerAnnounced,
    PeerExpired,
    PeerUnavailable,
    PeerVerified,
    StatusChanged,
)
from chimera_tk.net.callback_budget import CallbackBudget
from chimera_tk.net.pairing.events import PinsChanged
from chimera_tk.net.pairing.watch import PinsWatcher
from chimera_tk.net.peer.tls import TlsFiles
from chimera_tk.net.peer.worker import PeerLimits, PeerWorker
from chimera_tk.net.revocation import CrlWatcher
from chimera_tk.pki.identity import Identity
from chimera_tk.pki.pairing import PinStore, pins_path
from chimera_tk.profiles import ProfilePaths
from chimera_tk.store import Store
from chimera_tk.store.changes import ChangeEntry
from chimera_tk.store.records import Dialog, Message, OutboxEntry

log = logging.getLogger(__name__)

# Neither CA renews an expired certificate (nor does the client try), so point at --new.
EXPIRED_LAN_STATUS = "LAN: off — certificate expired; get a new one with chimera --new"


class LanService:
    """A Worker (start/stop/join) and a router Transport named ``lan``."""

    name = "lan"

    def __init__(self, identity: Identity, settings: LanSettings, paths: ProfilePaths,
                 store: Store, emit: Callable[[object], None], dispatcher: EventDispatcher, *,
                 display_name: str, on_reachable: Callable[[], None],
                 limits: PeerLimits | None = None, crl_url: str = "",
                 key_password: Callable[[], bytes] | None = None,
                 downloads: Path | None = None) -> None:
        self.identity = identity
        self._settings = settings
        self._store = store
        self._emit = emit
        self._on_reachable = on_reachable
        self._key_password = key_password  # for a passphrase-protected key (pki/key_unlock.py)
        self._pins = pins_path(paths)  # paired peers' certificates, trusted besides the team
        tls = TlsFiles(identity.key_path, identity.cert_path, identity.ca_bundle_path,
                       password=key_password, pins=self._pins)
        self.peer = PeerWorker(identity.user_id, display_name, tls, paths.database,
                               downloads or paths.downloads, emit, port=settings.peer_port,
                               limits=limits)
        self.discovery = None
        # No CA address means no CRL to fetch; start() logs that revocation is not enforced.
        self.crl = CrlWatcher(crl_url, identity.ca_bundle_path, identity.cert_path,
                              settings.crl_refresh_s, self.peer.set_revoked) if crl_url else None
        self.verified: dict[int, str] = {}  # user id -> address; main thread only
        self.callbacks = CallbackBudget(settings.interval_s)  # forged announcements: bounded
        # everyone announcing now, verified or not (the pairing dialog lists the others)
        self.announced: dict[int, str] = {}  # user id -> address; main thread only
        self.expired = False
        self._stopped = False
        self._expiry: threading.Timer | None = None
        self._unsubscribe = [
            dispatcher.subscribe(PeerAnnounced, self._on_announced),
            dispatcher.subscribe(PeerExpired, self._on_expired),
            dispatcher.subscribe(PeerVerified, self._on_verified),
            dispatcher.subscribe(PeerUnavailable, self._on_unavailable),
            dispatcher.subscribe(PinsChanged, self._on_pins_changed),
        ]
        self.pins_watcher = PinsWatcher(PinStore(self._pins), emit)

    # -- Worker ----------------------------------------------------------------------------------

    def start(self) -> None:
        from chimera_tk.net.discovery.worker import DiscoveryWorker

        self.peer.start()
        self.pins_watcher.start()
        if self.crl is not None:
            self.crl.start()
        else:
            log.warning("no team CA address configured: revoked peers cannot be refused")
        self.discovery = DiscoveryWorker(self.identity.user_id, self.peer.port, self._settings,
                                         self._emit)
        try:
            self.discovery.start()
        except BaseException:
            self.peer.stop()
            self.peer.join(5)
            if self.crl is not None:
                self.crl.stop()
                self.crl.join(5)
            raise
        self._emit(StatusChanged("lan", "LAN: looking for peers"))
        self._emit(StatusChanged("certificate", certificate_status(self.identity)))
        self._watch_expiry()
        log.info("LAN up as user %s, peer port %s", self.identity.user_id, self.peer.port)

    def _watch_expiry(self) -> None:
        """Turn the LAN off the moment the certificate expires (a renewal moves the moment)."""
        if self._expiry is not None:
            self._expiry.cancel()
        seconds = (self.identity.not_after - datetime.now(UTC)).total_seconds()
        self._expiry = threading.Timer(max(0.0, seconds), self._on_expired_certificate)
        self._expiry.daemon = True
        self._expiry.start()

    def _on_expired_certificate(self) -> None:
        if self.identity.is_valid_at(datetime.now(UTC)):
            return  # renewed meanwhile
        log.warning("certificate serial %x expired: the LAN is off until it is renewed",
                    self.identity.serial)
        self.expired = True
        self.stop()
        self._emit(StatusChanged("lan", EXPIRED_LAN_STATUS, "error"))
        self._emit(StatusChanged("certificate", certificate_status(self.identity)))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._expiry is not None:
            self._expiry.cancel()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self.discovery is not None:
            self.discovery.stop()
        if self.crl is not None:
            self.crl.stop()
        self.pins_watcher.stop()
        self.peer.stop()

    def join(self, timeout: float) -> bool:
        done = self.peer.join(timeout) and self.pins_watcher.join(timeout)
        if self.crl is not None:
            done = self.crl.join(timeout) and done
        if self.discovery is not None:
            done = self.discovery.join(timeout) and done
        return done

    def reload_identity(self, identity: Identity) -> None:
        """A renewed certificate (same key and id): new connections present it. Any thread."""
        self.identity = identity
        self.peer.reload_tls(TlsFiles(identity.key_path, identity.cert_path,
                                      identity.ca_bundle_path, password=self._key_password,
                                      pins=self._pins))
        if not self._stopped:
            self._watch_expiry()
        if self.crl is not None:
            self.crl.set_chain(identity.cert_path)
        log.info("LAN now presents certificate serial %x", identity.serial)

    def _on_pins_changed(self, event: PinsChanged) -> None:
        if not self._stopped:
            self.pins_changed(event.removed)

    def pins_changed(self, unpaired: tuple[int, ...] = ()) -> None:
        """pins.json changed (paired or unpaired): new connections trust the new set; unpaired
        users' open connections are dropped. Main thread."""
        try:
            self.peer.reload_tls(TlsFiles(self.identity.key_path, self.identity.cert_path,
                                          self.identity.ca_bundle_path,
                                          password=self._key_password, pins=self._pins))
        except (ChimeraError, OSError, ValueError) as exc:
            log.error("paired certificates not reloaded: %s", exc)
            self._emit(StatusChanged("lan", f"LAN: {exc}", "error"))
            return
        log.info("LAN trusts the current paired certificates%s",
                 f" (unpaired: {', '.join(map(str, unpaired))})" if unpaired else "")
        for user_id in unpaired:
            self.peer.drop_peer(user_id, "unpaired")
            if self.verified.pop(user_id, None) is not None:
                self._presence_changed(user_id)
        for user_id in self.announced:
            if user_id not in self.verified:
                self.peer.verify(user_id)

    # -- Transport -------------------------------------------------------------------------------

    def can_reach(self, dialog: Dialog) -> bool:
        return not self.expired and dialog.id in self.verified

    def submit(self, entry: OutboxEntry, message: Message) -> None:
        self.peer.submit(message.dialog_id, message.id)

    def submit_change(self, change: ChangeEntry, message: Message) -> None:
        self.peer.submit_change(message.dialog_id, message.id, change.version)

    # -- presence (main thread) ------------------------------------------------------------------

    def _on_announced(self, event: PeerAnnounced) -> None:
        self.peer.learn_address(event.user_id, event.address, event.port)
        self.announced[event.user_id] = event.address
        if ((event.new or event.user_id not in self.verified)
                and self.callbacks.allow(event.address, time.monotonic())):
            self.peer.verify(event.user_id)

    def _on_expired(self, event: PeerExpired) -> None:
        if self.verified.get(event.user_id, event.address) != event.address:
            return  # an old address of someone who moved: they are still here
        if self.announced.get(event.user_id) == event.address:
            del self.announced[event.user_id]
        self.peer.forget_address(event.user_id)
        if self.verified.pop(event.user_id, None) is not None:
            self._presence_changed(event.user_id)

    def _on_verified(self, event: PeerVerified) -> None:
        first = event.user_id not in self.verified
        self.verified[event.user_id] = event.address
        if first:
            log.info("user %s verified on the LAN at %s", event.user_id, event.address)
            self._presence_changed(event.user_id)
        self._on_reachable()

    def _on_unavailable(self, event: PeerUnavailable) -> None:
        log.info("peer %s unavailable: %s", event.user_id, event.reason)
        if self.verified.pop(event.user_id, None) is not None:
            self._presence_changed(event.user_id)

    def _presence_changed(self, user_id: int) -> None:
        count = len(self.verified)
        self._emit(StatusChanged("lan", f"LAN: {count} peer{'s' if count != 1 else ''}"))
        dialog = self._store.dialogs.find(user_id)
        if dialog is not None:
            self._emit(DialogChanged(dialog))


def certificate_status(identity: Identity | None, now: datetime | None = None) -> str:
    if identity is None:
        return "Certificate: none (LAN off)"
    moment = now or datetime.now(identity.not_after.tzinfo)
    if moment >= identity.not_after:
        return f"Certificate: {identity.user_id} · expired"
    local = identity.not_after.astimezone()
    return f"Certificate: {identity.user_id} · until {local:%d %b %H:%M}"
