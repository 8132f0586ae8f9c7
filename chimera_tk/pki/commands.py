"""``chimera --new``: join the team's PKI from the terminal with an invite code.

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
