"""Unlocking a passphrase-protected private key: from the OS keyring, a terminal, or a dialog.

The composition root (or a terminal command) makes one :class:`KeyUnlocker` per process. It holds
the passphrase of the profile's key in memory only, and hands it to whoever needs the key: TLS
contexts (as a ``password=`` callable), the CA client for renewal and revocation. It never puts the
passphrase into a log line, an event or an exception message, and its repr shows none.

Sources, in order: the OS keyring (python ``keyring``; service ``chimera``, username
``<profile>:<user id>``), then whatever the caller asks with: getpass on a terminal, the unlock
dialog in the window. An environment variable is deliberately not a source (environments leak into
child processes, crash reports and ``/proc``).
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from chimera_tk.errors import UserError
from chimera_tk.pki.certs import load_pem_chain
from chimera_tk.pki.identity import Identity
from chimera_tk.pki.keys import (
    KeyLockedError,
    WrongPassphraseError,
    is_encrypted,
    load_private_key,
    passphrase_bytes,
    same_public_key,
)

log = logging.getLogger(__name__)

KEYRING_SERVICE = "chimera"
TERMINAL_ATTEMPTS = 3
# keyring's stand-ins for "none found", and keyrings.alt's files (plain text or weakly protected),
# which are used only when the user chose them explicitly (PYTHON_KEYRING_BACKEND, keyringrc.cfg).
_NO_KEYRING = ("keyring.backends.fail", "keyring.backends.null")
_FILE_KEYRINGS = ("keyrings.alt",)

AskSecret = Callable[[str], str]


def keyring_username(profile: str, user_id: int) -> str:
    return f"{profile}:{user_id}"


class SystemKeyring:
    """The OS keyring through python ``keyring``; any failure means "not there", logged once.

    ``backend`` is a keyring backend object to use instead of the system's (tests use a file
    backend from keyrings.alt in a temporary folder).
    """

    def __init__(self, backend: object | None = None) -> None:
        self._backend = backend
        self._resolved = backend is not None
        self._warned = False

    def _get_backend(self) -> object | None:
        if not self._resolved:
            self._resolved = True
            self._backend = self._system_backend()
        return self._backend

    def _system_backend(self) -> object | None:
        try:
            import keyring
            import keyring.core

            backend = keyring.get_keyring()
            chosen = bool(os.environ.get("PYTHON_KEYRING_BACKEND")) or \
                keyring.core.load_config() is not None
        except Exception as exc:  # no package, a broken backend, a D-Bus without a session ...
            self._warn(f"the system keyring is not available ({type(exc).__name__})")
            return None
        module = type(backend).__module__
        if module.startswith(_NO_KEYRING) or (not chosen and module.startswith(_FILE_KEYRINGS)):
            # common on servers and minimal desktops: worth one line in the file, not a warning
            self._warn(f"no system keyring found (only {module}.{type(backend).__name__})",
                       level=logging.INFO)
            return None
        return backend

    def _warn(self, message: str, *, level: int = logging.WARNING) -> None:
        if not self._warned:
            self._warned = True
            log.log(level, "%s: the key passphrase cannot be remembered", message)

    @property
    def available(self) -> bool:
        return self._get_backend() is not None

    def get(self, username: str) -> str | None:
        backend = self._get_backend()
        if backend is None:
            return None
        try:
            return backend.get_password(KEYRING_SERVICE, username)  # type: ignore[attr-defined]
        except Exception as exc:
            self._warn(f"reading the system keyring failed ({type(exc).__name__})")
            return None

    def set(self, username: str, secret: str) -> bool:
        backend = self._get_backend()
        if backend is None:
            return False
        try:
            backend.set_password(KEYRING_SERVICE, username, secret)  # type: ignore[attr-defined]
        except Exception as exc:
            self._warn(f"writing to the system keyring failed ({type(exc).__name__})")
            return False
        return True

    def delete(self, username: str) -> None:
        backend = self._get_backend()
        if backend is None or self.get(username) is None:
            return
        try:
            backend.delete_password(KEYRING_SERVICE, username)  # type: ignore[attr-defined]
        except Exception as exc:
            self._warn(f"removing from the system keyring failed ({type(exc).__name__})")


class KeyUnlocker:
    """The passphrases of a profile's protected keys, known to this process after unlocking."""

    def __init__(self, profile: str, *, keyring: SystemKeyring | None = None) -> None:
        self.profile = profile
        self.keyring = keyring if keyring is not None else SystemKeyring()
        self._secrets: dict[Path, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyUnlocker(profile={self.profile!r}, unlocked={len(self._secrets)})"

    def needs_passphrase(self, identity: Identity) -> bool:
        """Whether the identity's key is protected and this process does not know its passphrase."""
        with self._lock:
            if identity.key_path in self._secrets:
                return False
        try:
            return is_encrypted(identity.key_path)
        except OSError:
            return False  # a missing key is reported by whoever loads it

    def passphrase(self, key_path: Path) -> bytes | None:
        """The known passphrase of ``key_path``; None if it is not protected or not unlocked."""
        with self._lock:
            return self._secrets.get(key_path)

    def password_callback(self, key_path: Path) -> Callable[[], bytes]:
        """For ``SSLContext.load_cert_chain(password=...)``: called only for a protected key."""

        def password() -> bytes:
            secret = self.passphrase(key_path)
            if secret is None:
                raise KeyLockedError(f"the private key {key_path.name} is locked")
            return secret

        return password

    def unlock(self, identity: Identity, passphrase: str, *, remember: bool = False) -> bool:
        """Check ``passphrase`` against the key (and the key against the certificate), keep it.

        Raises WrongPassphraseError, or UserError if the key does not belong to the certificate.
        With ``remember`` it is also stored in the OS keyring; returns whether that worked.
        """
        secret = passphrase_bytes(passphrase)
        if secret is None:
            raise WrongPassphraseError(f"enter the passphrase of the private key "
                                       f"{identity.key_path.name}")
        _check_key(identity, secret)
        with self._lock:
            self._secrets[identity.key_path] = secret
        if remember:
            stored = self.keyring.set(keyring_username(self.profile, identity.user_id), passphrase)
            if stored:
                log.info("key passphrase for user %s stored in the system keyring",
                         identity.user_id)
            return stored
        return False

    def unlock_from_keyring(self, identity: Identity) -> bool:
        """Try the passphrase stored in the OS keyring; True if the key is now unlocked."""
        if not self.needs_passphrase(identity):
            return True
        stored = self.keyring.get(keyring_username(self.profile, identity.user_id))
        if not stored:
            return False
        try:
            self.unlock(identity, stored)
        except WrongPassphraseError:
            log.warning("the passphrase in the system keyring does not open the key of user %s",
                        identity.user_id)
            return False
        except UserError as exc:
            log.warning("key of user %s not usable: %s", identity.user_id, exc)
            return False
        return True

    def unlock_on_terminal(self, identity: Identity, *, stdin: TextIO | None = None,
                           ask: AskSecret | None = None, purpose: str = "") -> None:
        """Keyring first, then up to three getpass prompts; one-line UserError without a tty."""
        if self.unlock_from_keyring(identity):
            return
        stdin = stdin or sys.stdin
        name = identity.key_path.name
        if not stdin.isatty():
            raise UserError(
                f"the private key {name} is protected by a passphrase and there is no terminal "
                f"to ask for it{purpose}; run chimera --set-passphrase --remember once to keep "
                "it in the system keyring")
        ask = ask or getpass.getpass
        for attempt in range(1, TERMINAL_ATTEMPTS + 1):
            typed = ask(f"Passphrase for the private key {name}: ")
            try:
                self.unlock(identity, typed)
                return
            except WrongPassphraseError:
                if attempt == TERMINAL_ATTEMPTS:
                    raise
                print("Wrong passphrase, try again.", file=sys.stderr, flush=True)


def _check_key(identity: Identity, secret: bytes) -> None:
    key = load_private_key(identity.key_path, secret)
    try:
        leaf = load_pem_chain(identity.cert_path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        raise UserError(f"the certificate {identity.cert_path.name} cannot be read") from None
    if not same_public_key(key, leaf):
        raise UserError(f"the private key {identity.key_path.name} does not belong to the "
                        f"certificate {identity.cert_path.name}; get a new one with: "
                        "chimera --new --invite CODE")
