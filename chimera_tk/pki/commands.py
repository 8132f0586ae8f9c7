"""``chimera --new``, ``--renew`` and ``--revoke``: the profile's certificate from the terminal.

Prints a short summary on success; everything a person can fix is a one-line UserError.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TextIO

from chimera_tk.config import Config, TeamSettings, save_config
from chimera_tk.errors import UserError
from chimera_tk.pki.enroll import Enrollment, enroll_with_invite
from chimera_tk.pki.invite import parse_invite
from chimera_tk.pki.lifecycle import current_identity, renew_certificate, revoke_certificate
from chimera_tk.pki.reasons import REASONS, valid_note
from chimera_tk.profiles import ProfilePaths

_DEFAULT_LIFETIME_HOURS = TeamSettings().cert_lifetime_hours
_NEEDS_INVITE = ("--new needs an invite code from your team admin: "
                 "run chimera --new --invite CODE")


def new_certificate(paths: ProfilePaths, config: Config, invite: str | None = None, *,
                    stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Make a key, get a certificate with ``invite`` (asked for on a terminal), save the urls."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    code = invite if invite is not None else _ask_for_invite(stdin, stdout)
    parsed = parse_invite(code)
    lifetime = config.team.cert_lifetime_hours
    # Only an explicit setting is sent: a CA's own default may be shorter than ours (step-ca: 24 h).
    enrollment = enroll_with_invite(
        paths, parsed, lifetime_hours=None if lifetime == _DEFAULT_LIFETIME_HOURS else lifetime)
    save_config(paths.config_file, dataclasses.replace(config, team=dataclasses.replace(
        config.team, identity_url=enrollment.identity_url, ca_url=enrollment.ca_url,
        # the admin's name for this person is what LAN peers see, unless one was chosen
        display_name=config.team.display_name or parsed.name)))
    print(_summary(enrollment, parsed.name, paths), file=stdout)
    return 0


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


def renew(paths: ProfilePaths, config: Config, *, stdout: TextIO | None = None) -> int:
    """``chimera --renew``: a new certificate for the same key, from the team CA."""
    stdout = stdout or sys.stdout
    old = current_identity(paths)
    new = renew_certificate(paths, config)
    print(f"Renewed: serial {old.serial:x} replaced by {new.serial:x}, valid until "
          f"{new.not_after:%Y-%m-%d %H:%M} UTC.", file=stdout)
    return 0


def revoke(paths: ProfilePaths, config: Config, *, reason: int | None = None,
           note: str | None = None, yes: bool = False, stdin: TextIO | None = None,
           stdout: TextIO | None = None) -> int:
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
    revoke_certificate(paths, config, reason, note)
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
