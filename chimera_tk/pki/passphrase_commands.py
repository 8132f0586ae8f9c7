"""The key passphrase on the terminal: ``chimera --set-passphrase``, the question ``--new`` asks,
and unlocking a protected key for ``--renew``, ``--revoke``, ``send`` and ``--headless``.

Passphrases are read with getpass (no echo), asked twice when new, and never printed or logged.
Without a terminal every flow that would have to ask fails with one line instead.
"""

from __future__ import annotations

import getpass
import logging
import sys
from typing import TextIO

from chimera_tk.errors import UserError
from chimera_tk.pki.identity import Identity, load_identity
from chimera_tk.pki.key_unlock import AskSecret, KeyUnlocker, SystemKeyring, keyring_username
from chimera_tk.pki.keys import change_passphrase, is_encrypted
from chimera_tk.profiles import ProfilePaths

log = logging.getLogger(__name__)

_YES = {"y", "yes"}


def unlock_for_terminal(paths: ProfilePaths, identity: Identity, *,
                        stdin: TextIO | None = None, ask: AskSecret | None = None,
                        unlocker: KeyUnlocker | None = None) -> bytes | None:
    """The passphrase of ``identity``'s key (keyring, else asked); None if it is not protected."""
    if not identity.key_encrypted:
        return None
    unlocker = unlocker or KeyUnlocker(paths.name)
    unlocker.unlock_on_terminal(identity, stdin=stdin, ask=ask)
    return unlocker.passphrase(identity.key_path)


def ask_new_passphrase(ask: AskSecret, stdout: TextIO, *, allow_empty: bool) -> str:
    """A new passphrase typed twice; "" (only if ``allow_empty``) means no protection."""
    hint = " (empty: no passphrase)" if allow_empty else ""
    first = ask(f"New passphrase{hint}: ")
    if not first and not allow_empty:
        raise UserError("no passphrase given; nothing was changed")
    if first and ask("Repeat the new passphrase: ") != first:
        raise UserError("the two passphrases differ; nothing was changed")
    return first


def new_key_passphrase(*, explicit: bool, stdin: TextIO, stdout: TextIO,
                       ask: AskSecret | None = None) -> bytes | None:
    """For ``--new``: the passphrase for the new key, or None for an unprotected key.

    ``explicit`` (``--passphrase-prompt``) asks for it straight away and needs a terminal; else a
    terminal user is asked whether to protect the key, and a script is never asked anything.
    """
    ask = ask or getpass.getpass
    if not stdin.isatty():
        if explicit:
            raise UserError("--passphrase-prompt needs a terminal to ask for the passphrase")
        return None
    if not explicit:
        print("Protect the key with a passphrase? [y/N] ", end="", file=stdout, flush=True)
        if stdin.readline().strip().lower() not in _YES:
            return None
    return ask_new_passphrase(ask, stdout, allow_empty=False).encode("utf-8")


def remember_passphrase(paths: ProfilePaths, user_id: int, passphrase: bytes | None, *,
                        keyring: SystemKeyring | None = None, stdout: TextIO | None = None) -> None:
    """``--remember``: keep the passphrase in the OS keyring, saying so, or why not."""
    stdout = stdout or sys.stdout
    keyring = keyring or SystemKeyring()
    if passphrase is None:
        return
    if keyring.set(keyring_username(paths.name, user_id), passphrase.decode("utf-8")):
        print("The passphrase is kept in the system keyring.", file=stdout)
    else:
        print("No system keyring is available: Chimera will ask for the passphrase at start.",
              file=stdout)


def set_passphrase(paths: ProfilePaths, *, remember: bool = False, stdin: TextIO | None = None,
                   stdout: TextIO | None = None, ask: AskSecret | None = None,
                   keyring: SystemKeyring | None = None) -> int:
    """``chimera --set-passphrase``: protect, re-protect or unprotect the profile's key."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    ask = ask or getpass.getpass
    keyring = keyring or SystemKeyring()
    identity = load_identity(paths)
    if identity is None:
        raise UserError("this profile has no key yet; join a team with: chimera --new --invite "
                        "CODE --passphrase-prompt")
    if not stdin.isatty():
        raise UserError("--set-passphrase needs a terminal to ask for the passphrase")
    name = identity.key_path.name
    old: bytes | None = None
    if is_encrypted(identity.key_path):
        unlocker = KeyUnlocker(paths.name, keyring=keyring)
        if not unlocker.unlock_from_keyring(identity):
            unlocker.unlock(identity, ask(f"Current passphrase for {name}: "))
        old = unlocker.passphrase(identity.key_path)
    new = ask_new_passphrase(ask, stdout, allow_empty=True)
    change_passphrase(identity.key_path, old, new)
    username = keyring_username(paths.name, identity.user_id)
    if not new:
        keyring.delete(username)
        log.info("key passphrase of user %s removed", identity.user_id)
        print(f"The private key {name} is no longer protected by a passphrase.", file=stdout)
        return 0
    log.info("key passphrase of user %s changed", identity.user_id)
    print(f"The private key {name} is now protected by the new passphrase.", file=stdout)
    if remember:
        remember_passphrase(paths, identity.user_id, new.encode("utf-8"), keyring=keyring,
                            stdout=stdout)
    else:
        keyring.delete(username)  # an old passphrase there would no longer open the key
    return 0
