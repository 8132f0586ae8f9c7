"""Which user a certificate names, and the identity (key + certificate + team roots) of a profile.

The LAN code builds its TLS contexts from :class:`Identity`'s paths and checks peers with
:func:`certificate_user_id`; the status bar shows the id and the expiry.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from chimera_tk.pki.certs import load_pem_chain
from chimera_tk.pki.keys import is_encrypted, load_private_key, same_public_key
from chimera_tk.pki.userid import InvalidUserId, parse_user_id
from chimera_tk.profiles import ProfilePaths

log = logging.getLogger(__name__)

_KEY_FILE = re.compile(r"([1-9][0-9]{0,18})\.pem")


class CertificateIdentityError(ValueError):
    """A certificate does not name exactly one user id in the form Chimera issues."""


def certificate_user_id(cert: x509.Certificate) -> int:
    """The user id that ``cert`` certifies.

    The subject must hold exactly one CN, written as canonical decimal digits. If the certificate
    has a subjectAltName, every entry must be a DNS name equal to that CN: a certificate that also
    names something else was not made by Chimera's CA and is refused rather than half-trusted.
    """
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise CertificateIdentityError("the certificate must have exactly one common name")
    common_name = names[0].value
    try:
        user_id = parse_user_id(common_name)
    except InvalidUserId:
        raise CertificateIdentityError(
            f"the certificate's common name {common_name[:40]!r} is not a user id") from None
    try:
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return user_id
    for entry in alt_names:
        if not isinstance(entry, x509.DNSName) or entry.value != common_name:
            raise CertificateIdentityError(
                "the certificate's alternative names do not all equal its common name")
    return user_id


@dataclass(frozen=True, slots=True)
class Identity:
    """A usable LAN identity of a profile; carries paths, never key material."""

    user_id: int
    key_path: Path
    cert_path: Path
    ca_bundle_path: Path
    serial: int
    not_before: datetime
    not_after: datetime
    issuer: str
    # A protected key cannot be matched to the certificate until it is unlocked: see key_unlock.
    key_encrypted: bool = False
    # A personal certificate (pki/personal.py): peers trust it only after pairing.
    self_signed: bool = False

    def is_valid_at(self, when: datetime) -> bool:
        return self.not_before <= when < self.not_after

    def renewal_due(self, now: datetime | None = None) -> bool:
        """Whether a third of the validity or less is left (when the design says to renew)."""
        left = self.not_after - (now or datetime.now(UTC))
        return left <= (self.not_after - self.not_before) / 3


def load_identity(paths: ProfilePaths) -> Identity | None:
    """The profile's identity, or None if it has no complete, consistent one.

    An identity is ``<id>.pem`` + ``<id>_crt.pem`` + ``ca_bundle.pem`` where the certificate names
    ``<id>`` and certifies that key (a passphrase-protected key can only be checked when it is
    unlocked: ``KeyUnlocker.unlock`` does it, and ``key_encrypted`` says so). Damaged or
    mismatched pairs (for instance a crash between writing a new key and its certificate) are
    skipped with a warning. With several ids, the one
    whose certificate expires last wins. A profile without ``ca_bundle.pem`` may still have a
    personal (self-signed) identity for pairing; a team identity is preferred over a personal one.
    """
    team = paths.ca_bundle.is_file()  # without team roots only a personal certificate works
    candidates = []
    for key_path in sorted(paths.root.glob("*.pem")):
        match = _KEY_FILE.fullmatch(key_path.name)
        if match is None:
            continue
        user_id = int(match.group(1))
        identity = _read_identity(paths, user_id)
        if identity is not None and (team or identity.self_signed):
            candidates.append(identity)
    if not candidates:
        return None
    return max(candidates, key=lambda identity: (not identity.self_signed, identity.not_after,
                                                 identity.user_id))


def _read_identity(paths: ProfilePaths, user_id: int) -> Identity | None:
    key_path, cert_path = paths.private_key(user_id), paths.certificate(user_id)
    if not cert_path.is_file():
        return None
    try:
        leaf = load_pem_chain(cert_path.read_bytes())[0]
        named = certificate_user_id(leaf)
        if is_encrypted(key_path):
            if named != user_id:
                raise ValueError("the certificate names another id")
            return identity_from_certificate(leaf, paths, user_id)
        key = load_private_key(key_path)
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring identity %s in %s: %s", user_id, paths.root, _reason(exc))
        return None
    if named != user_id or not same_public_key(key, leaf):
        log.warning("ignoring identity %s in %s: the certificate does not match the key file",
                    user_id, paths.root)
        return None
    return identity_from_certificate(leaf, paths, user_id)


def identity_from_certificate(leaf: x509.Certificate, paths: ProfilePaths,
                              user_id: int) -> Identity:
    """The Identity that ``leaf`` describes, with the profile's file paths for ``user_id``."""
    key_path = paths.private_key(user_id)
    try:
        key_encrypted = is_encrypted(key_path)
    except OSError:
        key_encrypted = False
    return Identity(
        user_id=user_id, key_path=key_path,
        cert_path=paths.certificate(user_id), ca_bundle_path=paths.ca_bundle,
        serial=leaf.serial_number, not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc, issuer=leaf.issuer.rfc4514_string(),
        key_encrypted=key_encrypted, self_signed=leaf.issuer == leaf.subject)


def _reason(exc: Exception) -> str:
    # Key parsing errors never contain key bytes, but keep the message short and generic anyway.
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)[:200] or type(exc).__name__
