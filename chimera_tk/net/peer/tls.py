"""TLS for the peer link: 1.3 only, certificates required both ways, identity = Telegram user id.

Chain validation (team roots, plus the certificates of paired people from pins.json, validity
period) is OpenSSL's job; the identity check is ours: the
certificate's CN, and its DNS SAN when present, must both be the decimal user id. The caller also
requires that id to equal the one it meant to reach; the callee attributes every message to the
caller's certificate identity, never to anything the caller says.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chimera_tk.errors import ChimeraError
from chimera_tk.net.peer.tls_stream import TlsStream


class PeerIdentityError(ChimeraError):
    """The peer's certificate does not name the user we expected, or names no user at all."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The three files of a profile's LAN identity (as the seed names them)."""

    key: Path
    certificate_chain: Path
    ca_bundle: Path
    # For a passphrase-protected key: returns the passphrase (see pki/key_unlock.py).
    password: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    # pins.json of the profile (pki/pairing.py): paired peers' certificates, trusted as themselves.
    pins: Path | None = field(default=None, compare=False)


def refuse_key_prompt() -> bytes:
    # Without a password callable OpenSSL would prompt "Enter PEM pass phrase" on the terminal.
    from chimera_tk.pki.keys import KeyLockedError

    raise KeyLockedError("the private key is protected by a passphrase and is not unlocked")


def _context(purpose: ssl.Purpose, files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH
                             else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = False  # the peer is named by its user id; checked in peer_user_id
    context.load_cert_chain(files.certificate_chain, files.key,
                            password=files.password or refuse_key_prompt)
    if files.pins is None or files.ca_bundle.is_file():  # a personal profile has no team roots
        context.load_verify_locations(cafile=str(files.ca_bundle))
    if files.pins is not None:
        _trust_pins(context, files.pins)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def _trust_pins(context: ssl.SSLContext, pins: Path) -> None:
    """Pinned certificates become trust anchors. They are self-signed and CA:FALSE (checked when
    pinned and again by trust_pem), so OpenSSL 3 accepts each one as a whole chain for itself,
    also with VERIFY_X509_STRICT and without PARTIAL_CHAIN, and refuses it as the issuer of
    anything else ("invalid CA certificate")."""
    from chimera_tk.pki.pairing import PinStore

    pinned = PinStore(pins).trust_pem()
    if pinned:
        context.load_verify_locations(cadata=pinned)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """For accepting peers: they must present a certificate chaining to the team roots."""
    return _context(ssl.Purpose.CLIENT_AUTH, files)


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """For calling peers: the callee must present a certificate chaining to the team roots."""
    return _context(ssl.Purpose.SERVER_AUTH, files)


def peer_user_id(sock: ssl.SSLSocket | TlsStream) -> int:
    """The user id the peer's (already chain-verified) certificate names."""
    cert = sock.getpeercert()
    if not cert:
        raise PeerIdentityError("the peer presented no certificate")
    return user_id_from_certificate_fields(cert)


def user_id_from_certificate_fields(cert: dict) -> int:
    common_names = [value for rdn in cert.get("subject", ()) for key, value in rdn
                    if key == "commonName"]
    if len(common_names) != 1 or not common_names[0].isdigit() or common_names[0].startswith("0"):
        raise PeerIdentityError(f"certificate CN {common_names!r} is not one Telegram user id")
    dns_names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if dns_names and dns_names != [common_names[0]]:
        raise PeerIdentityError(
            f"certificate SAN {dns_names!r} does not match its CN {common_names[0]}")
    user_id = int(common_names[0])
    if not 0 < user_id < 2**63:
        raise PeerIdentityError(f"certificate names an impossible user id {user_id}")
    return user_id


def require_identity(sock: ssl.SSLSocket | TlsStream, expected_user_id: int) -> int:
    """For the caller: the callee must be exactly the user we meant to reach."""
    actual = peer_user_id(sock)
    if actual != expected_user_id:
        raise PeerIdentityError(
            f"identity mismatch: expected user {expected_user_id}, the peer's certificate "
            f"says {actual}")
    return actual
