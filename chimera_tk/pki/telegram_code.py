"""The first half of joining a team by Telegram code, for the window: ask the provider to send it.

The terminal flow (``chimera --new --telegram-id N``) asks for the code in the middle of
:func:`enroll_with_telegram_code`; a window cannot block there, so it sends the code first (this
module), lets the person type it, then calls ``enroll_with_telegram_code(code=...)``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from chimera_tk.errors import UserError
from chimera_tk.pki.ca_client import (
    DEFAULT_TIMEOUT,
    IdentityProviderClient,
    RequestRefused,
    fetch_pinned_root,
)
from chimera_tk.pki.certs import certificate_pem, fingerprint_sha256, load_pem_chain
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url
from chimera_tk.profiles import ProfilePaths

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def team_root_fingerprint(paths: ProfilePaths, typed: str = "") -> str:
    """The SHA-256 of the team root: the one typed (64 hex digits, colons allowed), else that of
    the root already in the profile; UserError when neither is known."""
    text = typed.strip().lower().replace(":", "")
    if text:
        if not _FINGERPRINT.fullmatch(text):
            raise UserError("the root fingerprint is the 64 hexadecimal digits that "
                            "chimera-identity init printed for your team admin")
        return text
    if paths.ca_bundle.is_file():
        try:
            return fingerprint_sha256(load_pem_chain(paths.ca_bundle.read_bytes())[0])
        except (ValueError, IndexError):
            pass
    raise UserError("the team's root fingerprint is needed (your team admin has it), or join "
                    "with an invite code instead")


def provider_url(url: str) -> str:
    if not url.strip():
        raise UserError("the identity provider's address is needed (https://HOST:PORT, from "
                        "your team admin)")
    try:
        return normalize_base_url(url.strip())
    except InvalidBaseUrl:
        raise UserError("the identity provider's address must be https://HOST or "
                        "https://HOST:PORT") from None


def send_enrollment_code(url: str, fingerprint: str, *, user_id: int | None = None,
                         phone: str | None = None,
                         timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
    """Have the provider at ``url`` (its root pinned by ``fingerprint``) send a code to the
    Telegram account ``user_id`` (or the one with ``phone``)."""
    root = fetch_pinned_root(url, fingerprint, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="chimera-code-") as scratch:
        bundle = Path(scratch) / "root.pem"
        bundle.write_text(certificate_pem(root), encoding="ascii")
        with IdentityProviderClient(url, bundle, timeout=timeout) as provider:
            try:
                provider.start_telegram_code(user_id=user_id, phone=phone)
            except RequestRefused as refused:
                raise UserError(f"the identity provider at {url} refused: {refused.reason}") \
                    from None
