"""The composition root: the one place that builds every component and tears them down in order.

Nothing else constructs services or reaches for globals; tests build the same graph on a temporary
profile. The same graph runs with a window (``run``) or without one (``run_headless``). Shutdown
(window close, Ctrl+Q, Ctrl+C, SIGTERM) always takes the same ordered path: stop the event pump,
stop and join every worker, destroy the window, close the database, release the profile lock.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from chimera_tk.background_tasks import BackgroundTasks
from chimera_tk.config import Config, downloads_folder
from chimera_tk.editing import MessageEditor
from chimera_tk.errors import ChimeraError, UserError
from chimera_tk.events import (
    CertificateIssued,
    CertificateRevoked,
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
    from chimera_tk.pki.key_unlock import KeyUnlocker

log = logging.getLogger(__name__)
WORKER_JOIN_TIMEOUT_S = 5.0
OUTBOX_TICK_S = 1.0
WORKERS_AT_THE_LATEST_MS = 400  # start the workers by then even if the window is never drawn


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
                 window: bool = True, telegram_client_factory: Callable | None = None,
                 key_unlocker: KeyUnlocker | None = None) -> None:
        self.paths = paths
        self.config = config
        self.key_unlocker = key_unlocker  # made on first need; holds the key's passphrase
        self.unlock_dialog = None
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
        self._workers_after: str | None = None
        self._gc = None  # TkThreadGarbageCollector while the window exists
        self.desktop = None  # DesktopShell: tray badge, close-to-tray, notifications
        self.settings_dialog = None
        self.message_menu = None  # views/message_menu.py: the chat's context menu, edit mode
        self.revoked_serial: int | None = None  # revoked from Settings while this runs
        self.tasks = BackgroundTasks()  # renew, revoke and join a team, off the Tk thread
        self.workers.append(self.tasks)

    # -- building --------------------------------------------------------------------------------

    def build(self) -> App:
        """Build every component; on any failure, whatever was built is torn down again."""
        try:
            self.paths.ensure()
            self._lock.acquire()
            self.store = Store.open(self.paths.database)
            self.router = Router(self.store, self.events.post)
            self.router.recover()
            self.editor = MessageEditor(self.store, self.events.post, self.router.transport)
            self.editor.recover()
            self.router.after_dispatch.append(self.editor.dispatch_due)
            self.writer = BackgroundWriter(self.paths.database, self.events.post)
            self.workers.append(self.writer)
            self.dispatcher.subscribe(QuitRequested, lambda e: self.request_quit(e.reason))
            self.dispatcher.subscribe(CertificateRevoked, self._on_certificate_revoked)
            self.dispatcher.subscribe(CertificateIssued, self._on_certificate_issued)
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
        if self._key_locked():
            return  # built again once the key is unlocked (see _key_unlocked)
        expired = self.identity is not None and not self.identity.is_valid_at(datetime.now(UTC))
        if self.identity is not None and not expired and self.config.team.ca_url:
            from chimera_tk.net.renewal import RenewalWorker

            # renewal runs even with the LAN off: the certificate is the team membership
            self.workers.append(RenewalWorker(self.paths, self.config, self.events.post,
                                              self._certificate_renewed,
                                              passphrase=self._key_passphrase))
        if not self.config.lan.enabled:
            self.events.post(StatusChanged("lan", "LAN: off (lan.enabled = false)"))
            return
        if self.identity is None:
            self.events.post(StatusChanged(
                "lan", "LAN: off — join a team, or pair (click)"))
            self.events.post(StatusChanged("certificate", "Certificate: none"))
            return
        from chimera_tk.net.lan import EXPIRED_LAN_STATUS, LanService, certificate_status

        if expired:
            # Peers would refuse it anyway; Telegram does not need it and keeps working.
            log.warning("LAN not started: certificate serial %x expired on %s",
                        self.identity.serial, self.identity.not_after)
            self.events.post(StatusChanged(
                "lan", EXPIRED_LAN_STATUS, "error"))
            self.events.post(StatusChanged("certificate", certificate_status(self.identity),
                                           "error"))
            return
        from chimera_tk.net.revocation import crl_url

        team = self.config.team
        self.lan = LanService(
            self.identity, self.config.lan, self.paths, self.store, self.events.post,
            self.dispatcher, display_name=team.display_name or
            f"User {self.identity.user_id}", on_reachable=self.router.dispatch_due,
            crl_url=crl_url(team.ca_url, team.identity_url),
            key_password=self._key_password_callback(),
            downloads=downloads_folder(self.config.files, self.paths.downloads))
        self.router.register(self.lan)
        self.workers.append(self.lan)

    # -- the key's passphrase (pki/key_unlock.py); never in an event or a log line ---------------

    def _unlocker(self) -> KeyUnlocker:
        if self.key_unlocker is None:
            from chimera_tk.pki.key_unlock import KeyUnlocker

            self.key_unlocker = KeyUnlocker(self.paths.name)
        return self.key_unlocker

    def _key_passphrase(self) -> bytes | None:
        """For renewal and revocation: the unlocked key's passphrase, None if unprotected."""
        if self.key_unlocker is None or self.identity is None:
            return None
        return self.key_unlocker.passphrase(self.identity.key_path)

    def _key_password_callback(self) -> Callable[[], bytes] | None:
        if self.identity is None or not self.identity.key_encrypted:
            return None
        return self._unlocker().password_callback(self.identity.key_path)

    def _key_locked(self) -> bool:
        """True when the key has a passphrase this process does not know yet (LAN not built).

        The OS keyring is tried first. With a window the unlock dialog opens and the LAN is built
        when it succeeds; without one the terminal is asked, and with no terminal that is one
        clear UserError.
        """
        identity = self.identity
        if identity is None or not identity.key_encrypted:
            return False
        if not identity.is_valid_at(datetime.now(UTC)):
            return False  # expired: _build_lan says so; the key cannot help
        if not (self.config.lan.enabled or self.config.team.ca_url):
            return False  # nothing here needs the key
        unlocker = self._unlocker()
        if unlocker.unlock_from_keyring(identity):
            return False
        if not self._with_window:
            unlocker.unlock_on_terminal(identity)
            return False
        if self.unlock_dialog is not None:
            return True  # already asking (the LAN was restarted meanwhile)
        from chimera_tk.net.lan import certificate_status
        from chimera_tk.views.unlock_dialog import UnlockKeyDialog

        log.info("asking for the passphrase of the private key of user %s", identity.user_id)
        self.events.post(StatusChanged("lan", "LAN: waiting for the key's passphrase"))
        self.events.post(StatusChanged("certificate", certificate_status(identity)))

        def try_unlock(passphrase: str, remember: bool) -> bool:
            return unlocker.unlock(identity, passphrase, remember=remember)

        self.unlock_dialog = UnlockKeyDialog(
            self.root, key_name=identity.key_path.name, user_id=identity.user_id,
            keyring_available=unlocker.keyring.available, try_unlock=try_unlock,
            on_unlocked=self._key_unlocked, on_skip=self._key_skipped)
        return True

    def _key_unlocked(self) -> None:
        """From the unlock dialog, on the Tk thread: build and start what needed the key."""
        self.unlock_dialog = None
        if not self._running:
            return
        log.info("private key unlocked: starting the LAN")
        first_new = len(self.workers)
        self._build_lan()
        for worker in self.workers[first_new:]:
            try:
                worker.start()
            except ChimeraError as exc:
                log.error("%s did not start: %s", worker.name, exc)
                self.events.post(StatusChanged("lan", f"LAN: off — {exc}", "error"))

    def _key_skipped(self) -> None:
        self.unlock_dialog = None
        log.info("LAN not started: the private key stays locked")
        self.events.post(StatusChanged("lan", "LAN: off — key locked"))

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
                                       client_factory=client_factory or self._telegram_factory,
                                       files=self.config.files)
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
        from chimera_tk.views.tk_gc import TkThreadGarbageCollector

        self._gc = TkThreadGarbageCollector(self.root).start()
        self.pump = EventPump(self.root, self.events, self.dispatcher)
        from chimera_tk.views.thumbnails import ThumbnailCache

        self.thumbnails = ThumbnailCache(self.paths.thumbnails, self.events.post, self.dispatcher)
        self.workers.append(self.thumbnails)
        self.window = MainWindow(self.root, self.store, self.router, self.dispatcher, palette,
                                 on_quit=lambda: self.request_quit("window closed"),
                                 presence=self.is_on_lan, post=self.events.post,
                                 cancel=self.cancel_message, mark_read=self.mark_read,
                                 connect_telegram=self.open_telegram_wizard,
                                 download_media=self.download_media,
                                 load_older_remote=self.load_older_remote,
                                 fetch_sponsored=self.fetch_sponsored,
                                 sponsored_shown=self.sponsored_shown,
                                 find_by_phone=self.find_by_phone,
                                 thumbnails=self.thumbnails,
                                 open_settings=self.open_settings,
                                 open_pairing=self.open_pairing_dialog)
        from chimera_tk.views import message_menu

        self.message_menu = message_menu.install(
            self.window.chat, self.store, self.editor, palette,
            received_deletes=self.config.ui.received_deletes)
        self.window.dialogs.refresh()
        self._build_desktop_shell()

    # -- tray icon and notifications (chimera_tk/desktop) ----------------------------------------

    def _build_desktop_shell(self) -> None:
        """Close-to-tray, Ctrl+Q and the badge now; the tray and notifier threads (pystray and
        PIL are heavy imports) start with the other workers, after the first paint."""
        from chimera_tk.desktop.shell import DesktopShell
        from chimera_tk.views.dialog_menu import DialogContextMenu

        self.desktop = DesktopShell(self.root, self.window, self.store, self.dispatcher,
                                    settings=lambda: self.config.ui,
                                    update_settings=self.update_ui_settings,
                                    quit_app=self.request_quit)
        self.dialog_menu = DialogContextMenu(self.window.dialogs.tree, self.store.dialogs.find,
                                             self.set_muted)

    def _build_desktop_workers(self) -> None:
        from chimera_tk.desktop.notifier import DesktopNotifications
        from chimera_tk.desktop.tray import TrayIcon

        tray = TrayIcon(self.events.post, muted=self.config.ui.do_not_disturb)
        notifications = DesktopNotifications(self.events.post)
        self.workers += [tray, notifications]
        self.desktop.attach(tray, notifications)

    def update_ui_settings(self, **changes: object) -> None:
        """Keep changed [ui] settings (tray mute, the close-to-tray note) in config.toml."""
        import dataclasses

        from chimera_tk.config import save_config

        ui = dataclasses.replace(self.config.ui, **changes)
        self.config = dataclasses.replace(self.config, ui=ui)
        try:
            save_config(self.paths.config_file, self.config)
        except (OSError, ChimeraError) as exc:  # still applies for this session
            log.error("could not save %s: %s", self.paths.config_file, exc)

    def set_muted(self, dialog_id: int, muted: bool) -> None:
        """Mute or unmute a dialog's notifications, off the Tk thread like mark_read."""

        def write(store: Store) -> DialogChanged:
            store.dialogs.set_muted(dialog_id, muted)
            return DialogChanged(store.dialogs.get(dialog_id))

        self.writer.submit(write)

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

    # -- pairing without a team CA (net/pairing, views/pairing_dialog.py) ----------------------

    def open_pairing_dialog(self) -> None:
        """Ctrl+Shift+P: pair with a nearby person; the pairing port is open while it is open."""
        from chimera_tk.net.pairing.worker import PairingWorker
        from chimera_tk.pki.pairing import PinStore, pins_path
        from chimera_tk.views.pairing_dialog import PairingDialog

        dialog = getattr(self, "pairing_dialog", None)
        if dialog is not None and dialog.winfo_exists():
            dialog.lift()
            return
        pins = PinStore(pins_path(self.paths))
        identity, worker = self.identity, getattr(self, "pairing", None)
        if worker is None and identity is not None and identity.is_valid_at(datetime.now(UTC)):
            worker = self.pairing = PairingWorker(
                identity.user_id, self.config.team.display_name or f"User {identity.user_id}",
                identity.key_path, identity.cert_path, pins, self.events.post,
                port=self.config.lan.pairing_port, window_s=self.config.lan.pairing_window_s,
                key_password=self._key_password_callback())
            self.workers.append(worker)

        def unpaired(user_id: int) -> None:
            if self.lan is not None:
                self.lan.pins_changed((user_id,))

        self.pairing_dialog = PairingDialog(
            self.root, self.dispatcher, worker=worker, pins=pins,
            nearby=lambda: dict(self.lan.announced) if self.lan is not None else {},
            verified=lambda: set(self.lan.verified) if self.lan is not None else set(),
            make_identity=self.make_personal_identity, on_unpaired=unpaired)

    def make_personal_identity(self, user_id: int) -> None:
        """From the pairing dialog of a profile with no certificate: make one and start the LAN.
        UserError (shown in the dialog) if the profile has one already."""
        from chimera_tk.pki.personal import create_personal_identity

        create_personal_identity(self.paths, user_id)
        if self.lan is None:
            self._build_lan()
            if self.lan is not None:
                try:
                    self.lan.start()
                except ChimeraError as exc:
                    self.events.post(StatusChanged("lan", f"LAN: off — {exc}", "error"))
        dialog = getattr(self, "pairing_dialog", None)
        if dialog is not None:
            dialog.destroy()
        self.open_pairing_dialog()

    # -- Settings and the certificate (the Settings dialog calls these on the Tk thread) --------

    def open_settings(self, page: str | None = None) -> None:
        """Ctrl+comma, the Settings button, or a click on the certificate in the status bar."""
        from chimera_tk.views.settings import SettingsDialog

        if self.settings_dialog is not None and self.settings_dialog.winfo_exists():
            self.settings_dialog.present(page)
            return
        self.settings_dialog = SettingsDialog(self.root, self, page=page)

    def apply_config(self, new: Config) -> list[str]:
        """Save ``new`` atomically, then apply what can be applied now (theme, Telegram, LAN and
        team); returns the names of settings that take effect at the next start."""
        from chimera_tk.config import save_config

        old = self.config
        try:
            save_config(self.paths.config_file, new)
        except OSError as exc:  # written atomically: the old file is still whole
            raise UserError(f"cannot write {self.paths.config_file}: "
                            f"{exc.strerror or exc}") from None
        self.config = new
        if new.ui.theme != old.ui.theme and self.root is not None:
            from chimera_tk.views.settings.live_theme import switch_theme

            switch_theme(self.root, new.ui.theme)
        if new.ui.received_deletes != old.ui.received_deletes and self.message_menu is not None:
            self.message_menu.set_received_deletes(new.ui.received_deletes)
        if (new.telegram, new.files) != (old.telegram, old.files) and self._transports_built:
            self._restart_telegram()
        if (new.lan, new.team, new.files) != (old.lan, old.team, old.files) and \
                self._transports_built:
            self.restart_lan()
        return []

    def _restart_telegram(self) -> None:
        if self.telegram is not None:
            self.telegram.stop()
            self.telegram.join(WORKER_JOIN_TIMEOUT_S)
            self.workers.remove(self.telegram)
            self.telegram = None
        self._build_telegram()
        if self.telegram is not None:
            self.telegram.start()

    def _stop_lan(self) -> None:
        """Stop the LAN and the certificate renewal; the stopped service reaches no one."""
        from chimera_tk.net.renewal import RenewalWorker

        old = [w for w in self.workers if w is self.lan or isinstance(w, RenewalWorker)]
        for worker in old:
            worker.stop()
        for worker in old:
            worker.join(WORKER_JOIN_TIMEOUT_S)
            self.workers.remove(worker)
        if self.lan is not None:
            self.lan.verified.clear()  # it stays registered with the router until replaced
            self.lan = None

    def restart_lan(self) -> None:
        """Build the LAN and renewal again from the current config and certificate."""
        from chimera_tk.pki.identity import load_identity

        self._stop_lan()
        identity = load_identity(self.paths)
        if identity is not None and identity.serial == self.revoked_serial:
            self.identity = identity
            self._post_revoked(identity.user_id)
            return
        before = len(self.workers)
        self._build_lan()
        for worker in self.workers[before:]:
            try:
                worker.start()
            except ChimeraError as exc:
                log.error("%s did not start: %s", worker.name, exc)
                self.events.post(StatusChanged("lan", f"LAN: off — {exc}", "error"))
        if self.identity is not None and self.lan is not None:
            from chimera_tk.net.lan import certificate_status

            self.events.post(StatusChanged("certificate", certificate_status(self.identity)))

    def _post_revoked(self, user_id: int) -> None:
        self.events.post(StatusChanged(
            "lan", "LAN: off — certificate revoked; get a new one in Settings", "error"))
        self.events.post(StatusChanged("certificate", f"Certificate: {user_id} · revoked",
                                       "error"))

    def _on_certificate_revoked(self, event: CertificateRevoked) -> None:
        self.revoked_serial = event.serial
        self._stop_lan()
        self._post_revoked(event.user_id)

    def _on_certificate_issued(self, event: CertificateIssued) -> None:
        import dataclasses

        from chimera_tk.config import save_config

        team = dataclasses.replace(self.config.team, identity_url=event.identity_url,
                                   ca_url=event.ca_url,
                                   display_name=self.config.team.display_name or
                                   event.display_name)
        self.config = dataclasses.replace(self.config, team=team)
        save_config(self.paths.config_file, self.config)
        if self._transports_built:
            self.restart_lan()

    def renew_certificate(self) -> Future:
        """Renew now, off the Tk thread; the LAN then presents the new certificate."""
        from chimera_tk.net.lan import certificate_status
        from chimera_tk.pki.lifecycle import renew_certificate

        config = self.config

        def renew() -> Identity:
            identity = renew_certificate(self.paths, config,
                                         passphrase=self._key_passphrase())
            self._certificate_renewed(identity)
            self.events.post(StatusChanged("certificate", certificate_status(identity)))
            return identity

        return self.tasks.submit("renewing the certificate", renew)

    def revoke_certificate(self, reason_code: int, note: str) -> Future:
        """Revoke for good, off the Tk thread; the LAN then goes off (CertificateRevoked)."""
        from chimera_tk.pki.lifecycle import revoke_certificate
        from chimera_tk.pki.reasons import valid_note, valid_reason_code

        config = self.config

        def revoke() -> Identity:
            if not valid_reason_code(reason_code) or not valid_note(note):
                raise UserError("choose a reason from the list; the note must be one line of "
                                "at most 500 characters")
            identity = revoke_certificate(self.paths, config, reason_code, note,
                                          passphrase=self._key_passphrase())
            self.events.post(CertificateRevoked(identity.user_id, identity.serial))
            return identity

        return self.tasks.submit("revoking the certificate", revoke)

    def _requested_lifetime(self) -> int | None:
        from chimera_tk.config import TeamSettings

        # Only an explicit setting is sent: a CA's own default may be shorter than ours.
        lifetime = self.config.team.cert_lifetime_hours
        return None if lifetime == TeamSettings().cert_lifetime_hours else lifetime

    def enroll_with_invite(self, code: str) -> Future:
        """New key and certificate from an invite code; then the LAN restarts with them."""
        from chimera_tk.pki.enroll import enroll_with_invite
        from chimera_tk.pki.invite import parse_invite

        lifetime = self._requested_lifetime()

        def enroll() -> object:
            invite = parse_invite(code)
            enrollment = enroll_with_invite(self.paths, invite, lifetime_hours=lifetime)
            self.events.post(CertificateIssued(
                enrollment.identity.user_id, enrollment.identity.serial, enrollment.identity_url,
                enrollment.ca_url, invite.name))
            return enrollment

        return self.tasks.submit("joining the team", enroll)

    def send_enrollment_code(self, url: str, fingerprint: str, user_id: int) -> Future:
        """Ask the identity provider to send a code to Telegram account ``user_id``."""
        from chimera_tk.pki.telegram_code import (
            provider_url,
            send_enrollment_code,
            team_root_fingerprint,
        )

        def send() -> None:
            send_enrollment_code(provider_url(url), team_root_fingerprint(self.paths, fingerprint),
                                 user_id=user_id)

        return self.tasks.submit("asking for a code", send)

    def enroll_with_telegram_code(self, url: str, fingerprint: str, user_id: int,
                                  code: str) -> Future:
        """New key and certificate for the code received on Telegram; then the LAN restarts."""
        from chimera_tk.pki.enroll import enroll_with_telegram_code
        from chimera_tk.pki.telegram_code import provider_url, team_root_fingerprint

        lifetime = self._requested_lifetime()

        def no_code() -> str:
            raise UserError("type the code Telegram sent you first")

        def enroll() -> object:
            enrollment = enroll_with_telegram_code(
                self.paths, provider_url(url), team_root_fingerprint(self.paths, fingerprint),
                user_id=user_id, code=code, ask_code=no_code, lifetime_hours=lifetime)
            self.events.post(CertificateIssued(
                enrollment.identity.user_id, enrollment.identity.serial, enrollment.identity_url,
                enrollment.ca_url))
            return enrollment

        return self.tasks.submit("joining the team", enroll)

    def certificate_details(self) -> object:
        """What the Certificate panel shows: a CertificateSummary of the current certificate."""
        from chimera_tk.net.revocation import crl_url
        from chimera_tk.pki.identity import load_identity
        from chimera_tk.views.settings.certificate_info import CrlState, summarize

        identity = self.identity if self._transports_built else load_identity(self.paths)
        watcher = getattr(self.lan, "crl", None)
        crl = watcher.current if watcher is not None else None
        revoked = identity is not None and (identity.serial == self.revoked_serial or (
            crl is not None and
            crl.get_revoked_certificate_by_serial_number(identity.serial) is not None))
        team = self.config.team
        state = CrlState(crl_url(team.ca_url, team.identity_url),
                         crl.last_update_utc if crl is not None else None,
                         len(crl) if crl is not None else 0)
        return summarize(identity, revoked=revoked, crl=state, auto_renew=bool(team.ca_url))

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
        # Start the workers once the server has asked us to draw (the first Expose) and Tk has
        # drawn: after_idle alone runs before the Expose arrives, so the tray's and transports'
        # imports competed with the first paint. The timer covers a window that is never
        # exposed (started minimised to the tray).
        started = [False]

        def start_after_paint(_event: object = None) -> None:
            if not started[0]:
                started[0] = True
                self.root.after_idle(self._start_workers)

        self.root.bind("<Expose>", start_after_paint, add="+")
        self._workers_after = self.root.after(WORKERS_AT_THE_LATEST_MS, start_after_paint)

    def _start_workers(self) -> None:
        if not self._running:
            return
        self._build_transports()
        if self.desktop is not None and not self.desktop.attached:
            self._build_desktop_workers()
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
        if self.root is not None:
            for pending in (self._tick_after, self._workers_after):
                if pending is not None:
                    with contextlib.suppress(Exception):  # TclError; tkinter loads lazily
                        self.root.after_cancel(pending)
        for worker in reversed(self.workers):
            try:
                worker.stop()
            except Exception:
                log.exception("worker %s failed to stop", worker.name)
        for worker in reversed(self.workers):
            if not worker.join(WORKER_JOIN_TIMEOUT_S):
                log.error("worker %s did not stop within %.0f s", worker.name,
                          WORKER_JOIN_TIMEOUT_S)
        if self.desktop is not None:
            self.desktop.destroy()  # cancels its pending badge refresh
        if self.root is not None:
            try:
                self.root.destroy()
            except Exception:
                log.debug("window already gone", exc_info=True)
            self.root = None
            self.window = None
        if self._gc is not None:
            self._gc.stop()  # what the window left in cycles is freed here, on the Tk thread
            self._gc = None
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
              window: bool = True, telegram_client_factory: Callable | None = None,
              key_unlocker: KeyUnlocker | None = None) -> App:
    """The whole app; ``telegram_client_factory`` lets tests put the Telegram emulator in,
    ``key_unlocker`` a KeyUnlocker with a test keyring."""
    return App(paths, config, theme=theme, window=window,
               telegram_client_factory=telegram_client_factory,
               key_unlocker=key_unlocker).build()
