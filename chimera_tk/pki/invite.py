"""The invite code an admin hands to a new team member: everything needed to enroll, in one line.

Format: ``chimera-invite:`` + base64url (no padding) of compact JSON
``{"v":1,"url":...,"fp":...,"secret":...,"id":N,"name":...}``: the identity provider's address,
the SHA-256 (hex) of the team's root certificate, which pins the first contact, a one-time secret
of 32 random bytes (base64url), and the user id and name it was made for.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from chimera_tk.errors import UserError
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url
from chimera_tk.pki.userid import InvalidUserId, check_user_id

PREFIX = "chimera-invite:"
VERSION = 1
SECRET_BYTES = 32
MAX_NAME_LENGTH = 100
_MAX_CODE_LENGTH = 4096
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
DAMAGED = "this invite code is damaged or incomplete"


@dataclass(frozen=True, slots=True)
class Invite:
    url: str
    root_fingerprint: str
    secret: str
    user_id: int
    name: str = ""

    def __repr__(self) -> str:
        # The secret is what the invite is worth; keep it out of logs and tracebacks.
        return (f"Invite(url={self.url!r}, root_fingerprint={self.root_fingerprint!r}, "
                f"user_id={self.user_id}, name={self.name!r})")


def new_invite_secret() -> str:
    return b64url_encode(secrets.token_bytes(SECRET_BYTES))


def encode_invite(invite: Invite) -> str:
    payload = {"v": VERSION, "url": invite.url, "fp": invite.root_fingerprint,
               "secret": invite.secret, "id": invite.user_id, "name": invite.name}
    compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return PREFIX + b64url_encode(compact.encode("utf-8"))


def parse_invite(code: str) -> Invite:
    """The invite written in ``code``; UserError (one clear line) for anything else.

    Whitespace anywhere is ignored, since codes get wrapped and indented by mail and chat programs.
    """
    text = "".join(code.split()) if isinstance(code, str) else ""
    if not text.startswith(PREFIX) or len(text) > _MAX_CODE_LENGTH:
        raise UserError(DAMAGED)
    try:
        payload = json.loads(b64url_decode(text[len(PREFIX):]).decode("utf-8"))
        return _invite_from_payload(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UserError(DAMAGED) from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url, padding optional; ValueError for any other character."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def _invite_from_payload(payload: Any) -> Invite:
    if not isinstance(payload, dict) or payload.get("v") != VERSION:
        raise ValueError("not an invite of a known version")
    url, fingerprint = payload.get("url"), payload.get("fp")
    secret, name = payload.get("secret"), payload.get("name", "")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise ValueError("bad root fingerprint")
    if not isinstance(secret, str) or len(b64url_decode(secret)) != SECRET_BYTES:
        raise ValueError("bad secret")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise ValueError("bad name")
    try:
        return Invite(url=normalize_base_url(url), root_fingerprint=fingerprint, secret=secret,
                      user_id=check_user_id(payload.get("id")), name=name)
    except (InvalidBaseUrl, InvalidUserId) as exc:
        raise ValueError(str(exc)) from None
