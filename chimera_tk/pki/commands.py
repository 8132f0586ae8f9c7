"""``chimera --new`` (by invite or Telegram code), ``--renew`` and ``--revoke``: the profile's
certificate from the terminal.

Prints a short summary on success; everything a person can fix is a one-line UserError.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import TextIO

from chimera_tk.config import Config, TeamSettings, save_config
from chimera_tk.errors import UserError
from chimera_tk.pki.certs import fingerprint_sha256, load_pem_chain
from chimera_tk.pki.enroll import Enrollment, enroll_with_invite, enroll_with_telegram_code
from chimera_tk.pki.invite import parse_invite
from chimera_tk.pki.key_unlock import AskSecret
from chimera_tk.pki.lifecycle import current_identity, renew_certificate, revoke_certificate
from chimera_tk.pki.passphrase_commands import (
    new_key_passphrase,
    remember_passphrase,
    unlock_for_terminal,
)
from chimera_tk.pki.reasons import REASONS, valid_note
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url
from chimera_tk.profiles import ProfilePaths

_DEFAULT_LIFETIME_HOURS = TeamSettings().cert_lifetime_hours
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_NEEDS_INVITE = ("--new needs an invite code from your team admin: "
                 "run chimera --new --invite CODE")


def new_certificate(paths: ProfilePaths, config: Config, invite: str | None = None, *,
                    stdin: TextIO | None = None, stdout: TextIO | None = None,
                    passphrase_prompt: bool = False, remember: bool = False,
                    ask: AskSecret | None = None) -> int:
    """Make a key, get a certificate with ``invite`` (asked for on a terminal), save the urls.

    On a terminal the user may protect the new key with a passphrase (asked straight away with
    ``passphrase_prompt``); scripts get an unprotected key, as before.
    """
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    code = invite if invite is not None else _ask_for_invite(stdin, stdout)
    parsed = parse_invite(code)
    passphrase = new_key_passphrase(explicit=passphrase_prompt, stdin=stdin, stdout=stdout,
                                    ask=ask)
    lifetime = config.team.cert_lifetime_hours
    # Only an explicit setting is sent: a CA's own default may be shorter than ours (step-ca: 24 h).
    enrollment = enroll_with_invite(
        paths, parsed, lifetime_hours=None if lifetime == _DEFAULT_LIFETIME_HOURS else lifetime,
        passphrase=passphrase)
    if remember:
        remember_passphrase(paths, enrollment.identity.user_id, passphrase, stdout=stdout)
    save_config(paths.config_file, dataclasses.replace(config, team=dataclasses.replace(
        config.team, identity_url=enrollment.identity_url, ca_url=enrollment.ca_url,
        # the admin's name for this person is what LAN peers see, unless one was chosen
        display_name=config.team.display_name or parsed.name)))
    print(_summary(enrollment, parsed.name, paths), file=stdout)
    return 0


def new_certificate_by_telegram(paths: ProfilePaths, config: Config, *,
                                user_id: int | None = None, phone: str | None = None,
                                code: str | None = None, fingerprint: str | None = None,
                                identity_url: str | None = None, stdin: TextIO | None = None,
                                stdout: TextIO | None = None, passphrase_prompt: bool = False,
                                remember: bool = False, ask: AskSecret | None = None) -> int:
    """``chimera --new --telegram-id N`` (or ``--phone``): enroll with a code sent on Telegram.

    The provider is ``identity_url`` or team.identity_url; its root is pinned by ``fingerprint``
    or by the profile's existing ca_bundle.pem.
    """
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    url = _provider_url(identity_url or config.team.identity_url)
    pin = _root_fingerprint(paths, fingerprint)
    account = f"Telegram account {user_id}" if user_id is not None else f"the account of {phone}"
    again = f"--telegram-id {user_id}" if user_id is not None else f"--phone {phone}"

    def ask_code() -> str:
        if not stdin.isatty():
            raise UserError(f"a code was sent to {account}; finish with: chimera --new {again} "
                            "--code CODE (within 5 minutes)")
        print(f"A code was sent to {account} on Telegram.", file=stdout)
        print("Code: ", end="", file=stdout, flush=True)
        answer = stdin.readline().strip()
        if not answer:
            raise UserError(f"no code given; ask for a new one with: chimera --new {again}")
        return answer

    passphrase = new_key_passphrase(explicit=passphrase_prompt, stdin=stdin, stdout=stdout,
                                    ask=ask)
    lifetime = config.team.cert_lifetime_hours
    enrollment = enroll_with_telegram_code(
        paths, url, pin, user_id=user_id, phone=phone, code=code, ask_code=ask_code,
        lifetime_hours=None if lifetime == _DEFAULT_LIFETIME_HOURS else lifetime,
        passphrase=passphrase)
    if remember:
        remember_passphrase(paths, enrollment.identity.user_id, passphrase, stdout=stdout)
    save_config(paths.config_file, dataclasses.replace(config, team=dataclasses.replace(
        config.team, identity_url=enrollment.identity_url, ca_url=enrollment.ca_url)))
    print(_summary(enrollment, "", paths), file=stdout)
    return 0


def _provider_url(url: str) -> str:
    if not url:
        raise UserError("the identity provider's address is not known: set it with chimera "
                        "--variables --identity-url URL (your team admin has it), or join with "
                        "an invite: chimera --new --invite CODE")
    try:
        return normalize_base_url(url)
    except InvalidBaseUrl as exc:
        raise UserError(f"the identity provider's address {url[:80]!r} is not valid: {exc}") \
            from None


def _root_fingerprint(paths: ProfilePaths, fingerprint: str | None) -> str:
    """The SHA-256 of the team root: given, or that of the root already in the profile."""
    if fingerprint is not None:
        text = fingerprint.lower().replace(":", "")
        if not _FINGERPRINT.fullmatch(text):
            raise UserError("--fingerprint must be the 64 hexadecimal digits of the team's root "
                            "certificate (chimera-identity init prints it)")
        return text
    if paths.ca_bundle.is_file():
        try:
            return fingerprint_sha256(load_pem_chain(paths.ca_bundle.read_bytes())[0])
        except (ValueError, IndexError):
            pass
    raise UserError("the team's root certificate is not known yet: add --fingerprint "
                    "SHA256 (your team admin has it: chimera-identity init prints it), or join "
                    "with an invite: chimera --new --invite CODE")


def _ask_for_invite(stdin: TextIO, stdout: TextIO) -> str:
    if not stdin.isatty():
        raise UserError(_NEEDS_INVITE)
    print("Paste the invite code from your team admin and press Enter.", file=stdout)
    print("Invite code: ", end="", file=stdout, flush=True)
    code = stdin.readline()
    if not code.strip():
        raise UserError(_NEEDS_INVITE)
    return code


def _summary(enrollment: Enrollment, name: str, paths: ProfilePaths) -> str:
    identity = enrollment.identity
    who = f"id {identity.user_id}" + (f" ({name})" if name else "")
    return "\n".join([
        f"Joined the team at {enrollment.identity_url} as {who}.",
        f"Certificate serial {identity.serial:x}, valid until "
        f"{identity.not_after:%Y-%m-%d %H:%M} UTC.",
        f"Saved in {paths.root}: {identity.key_path.name} (private key), "
        f"{identity.cert_path.name}, {identity.ca_bundle_path.name}.",
    ])


def renew(paths: ProfilePaths, config: Config, *, stdout: TextIO | None = None,
          stdin: TextIO | None = None, ask: AskSecret | None = None) -> int:
    """``chimera --renew``: a new certificate for the same key, from the team CA."""
    stdout = stdout or sys.stdout
    old = current_identity(paths)
    passphrase = unlock_for_terminal(paths, old, stdin=stdin, ask=ask)
    new = renew_certificate(paths, config, passphrase=passphrase)
    print(f"Renewed: serial {old.serial:x} replaced by {new.serial:x}, valid until "
          f"{new.not_after:%Y-%m-%d %H:%M} UTC.", file=stdout)
    return 0


def revoke(paths: ProfilePaths, config: Config, *, reason: int | None = None,
           note: str | None = None, yes: bool = False, stdin: TextIO | None = None,
           stdout: TextIO | None = None, ask: AskSecret | None = None) -> int:
    """``chimera --revoke``: asks the reason, a note and a confirmation unless given as flags."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    identity = current_identity(paths)
    interactive = stdin.isatty()
    if not interactive and (reason is None or not yes):
        raise UserError("without a terminal, --revoke needs --reason CODE --note TEXT --yes")
    print(f"Certificate of id {identity.user_id}: serial {identity.serial:x} "
          f"({identity.serial}), valid until {identity.not_after:%Y-%m-%d %H:%M} UTC.",
          file=stdout)
    if reason is None:
        print("Why revoke it?", file=stdout)
        for code, name in REASONS.items():
            print(f"{code:>2} - {name}", file=stdout)
        reason = _ask_reason(stdin, stdout)
    if note is None:
        note = _ask(stdin, stdout, "Note (optional): ") if interactive else ""
        if not valid_note(note):
            raise UserError("the note must be one printable line of at most 500 characters")
    if not yes:
        answer = _ask(stdin, stdout, f"Revoke serial {identity.serial:x} for good? "
                                     "Type yes to confirm: ")
        if answer.lower() != "yes":
            print("Nothing was revoked.", file=stdout)
            return 1
    passphrase = unlock_for_terminal(paths, identity, stdin=stdin, ask=ask)
    revoke_certificate(paths, config, reason, note, passphrase=passphrase)
    print(f"Certificate serial {identity.serial:x} revoked ({REASONS[reason]}). "
          "Get a new one with: chimera --new --invite CODE", file=stdout)
    return 0


def _ask(stdin: TextIO, stdout: TextIO, prompt: str) -> str:
    print(prompt, end="", file=stdout, flush=True)
    line = stdin.readline()
    if not line:
        raise UserError("no answer; nothing was revoked")
    return line.strip()


def _ask_reason(stdin: TextIO, stdout: TextIO) -> int:
    text = _ask(stdin, stdout, "Reason number: ")
    if not text.isascii() or not text.isdigit() or int(text) not in REASONS:
        raise UserError(f"{text[:20]!r} is not one of the reason numbers; nothing was revoked")
    return int(text)
