"""A personal identity for a profile with no team: a new key and a self-signed certificate.

``chimera --new --self-signed --telegram-id N`` and the pairing dialog use it. Peers trust such a
certificate only after pairing (see pki/pairing.py). Nobody vouches that the person owns Telegram
account N: the two people who pair vouch for each other by comparing codes face to face.
"""

from __future__ import annotations

from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.pki.certs import certificate_pem
from chimera_tk.pki.identity import Identity, identity_from_certificate, load_identity
from chimera_tk.pki.keys import generate_private_key, private_key_to_pem
from chimera_tk.pki.pairing import PERSONAL_CERT_DAYS, PairingError, make_personal_certificate
from chimera_tk.pki.userid import check_user_id
from chimera_tk.profiles import ProfilePaths


def create_personal_identity(paths: ProfilePaths, user_id: int, *,
                             days: int = PERSONAL_CERT_DAYS) -> Identity:
    """Write ``<id>.pem`` and then ``<id>_crt.pem`` (each atomic, 0600) and return the identity.

    Refused when the profile already has an identity (a team one must not be shadowed, and a
    personal one would invalidate every pairing): remove its files first to start over.
    """
    check_user_id(user_id)
    existing = load_identity(paths)
    if existing is not None:
        kind = "a personal" if existing.self_signed else "a team"
        raise PairingError(f"this profile already has {kind} certificate for id "
                           f"{existing.user_id}; use another profile (--profile NAME)")
    key = generate_private_key()
    cert = make_personal_certificate(key, user_id, days=days)
    # key first: a crash in between leaves a key without a certificate, which load_identity skips
    atomic_write_bytes(paths.private_key(user_id), private_key_to_pem(key))
    atomic_write_bytes(paths.certificate(user_id), certificate_pem(cert).encode("ascii"))
    return identity_from_certificate(cert, paths, user_id)
