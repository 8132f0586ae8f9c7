"""Pairing without a team CA: personal certificates, verification codes, and the pin store.

Two people with no team CA each make a personal self-signed certificate for their user id. They
pair once, face to face: each screen shows a six-digit code derived from both certificates, and
after both confirm each side *pins* the other's certificate. TLS then trusts the team roots (if
any) plus the pinned certificates. A pin can only ever vouch for itself: pinnable certificates
must be end-entity certificates (basicConstraints CA:FALSE), which OpenSSL refuses as issuers, and
the pin's user id is the one the certificate itself names.

The code: SHA-256 over a label and both DER certificates (length-prefixed, sorted bytewise so both
sides hash the same input), read as a big integer modulo 10**6. A man in the middle has to present
its own certificate to each side, so the two screens show different codes (a 1 in 10**6 chance of
a collision per attempt; the attacker gets one attempt per pairing the users start).

Pins live in ``pins.json`` in the profile (mode 0600, replaced atomically), not in the database:
the TLS contexts load it without opening SQLite, and ``chimera unpair`` works while the app runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chimera_tk.errors import UserError
from chimera_tk.fsutil import PRIVATE_FILE_MODE, atomic_write_bytes
from chimera_tk.pki.identity import CertificateIdentityError, certificate_user_id
from chimera_tk.pki.userid import check_user_id
from chimera_tk.profiles import ProfilePaths

log = logging.getLogger(__name__)

# A pin is the whole certificate, so renewing it would mean pairing again: personal certificates
# last two years. Losing the laptop is handled by the other side removing the pin (unpair).
PERSONAL_CERT_DAYS = 730
CODE_DIGITS = 6
_CODE_LABEL = b"chimera pairing code v1"
_PINS_VERSION = 1


class PairingError(UserError):
    """A certificate cannot be paired with, or the pin store cannot be used; said in plain words."""


# -- certificates ------------------------------------------------------------------------------


def make_personal_certificate(key: ec.EllipticCurvePrivateKey, user_id: int, *,
                              days: int = PERSONAL_CERT_DAYS,
                              now: datetime | None = None) -> x509.Certificate:
    """A self-signed end-entity certificate for ``user_id`` (CN = SAN DNS = the decimal id).

    CA:FALSE, digitalSignature only, serverAuth + clientAuth: usable on both ends of the peer
    link, and never as an issuer of anything else.
    """
    name = str(check_user_id(user_id))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)  # tolerate a little clock skew
    public = key.public_key()
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex (as ``pki.certs.fingerprint_sha256``)."""
    return hashlib.sha256(der(cert)).hexdigest()


def verification_code(own: x509.Certificate, other: x509.Certificate) -> str:
    """The code both screens show, e.g. ``"042 917"``; the same on both sides."""
    first, second = sorted((der(own), der(other)))
    digest = hashlib.sha256(_CODE_LABEL + struct.pack(">I", len(first)) + first
                            + struct.pack(">I", len(second)) + second).digest()
    number = int.from_bytes(digest, "big") % 10**CODE_DIGITS
    text = f"{number:0{CODE_DIGITS}d}"
    return f"{text[:3]} {text[3:]}"


def pinnable_user_id(cert: x509.Certificate, *, now: datetime | None = None) -> int:
    """The user id ``cert`` may be pinned for; PairingError if it must never be a trust anchor.

    Refused: CA certificates or ones without basicConstraints (OpenSSL treats an old-style
    self-signed certificate without extensions as a CA, which could then issue certificates for
    any id), certificates that name no single user id, and ones outside their validity period.
    """
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise PairingError("the other side's certificate does not say it is not a CA; "
                           "it cannot be paired with") from None
    if constraints.ca:
        raise PairingError("the other side's certificate is a CA certificate; it cannot be "
                           "paired with")
    # Only a self-signed certificate is a complete chain by itself; a team-issued one would need
    # OpenSSL's partial-chain mode, which this version does not turn on.
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PairingError("the other side has a team certificate; only personal certificates "
                           "(chimera --new --self-signed) can be paired") from None
    try:
        user_id = certificate_user_id(cert)
    except CertificateIdentityError as exc:
        raise PairingError(f"the other side's certificate is not a Chimera one: {exc}") from None
    moment = now or datetime.now(UTC)
    if not cert.not_valid_before_utc <= moment < cert.not_valid_after_utc:
        raise PairingError("the other side's certificate is expired or not valid yet")
    return user_id


# -- proof that the caller holds the key of the certificate it sends ---------------------------


def possession_message(nonce: bytes, callee: x509.Certificate, caller: x509.Certificate) -> bytes:
    """What the caller signs: the callee's challenge bound to both certificates as it sees them.

    A relay cannot reuse a signature made for another callee, so a man in the middle must send
    its own certificate, and the codes differ.
    """
    return (b"chimera pairing possession v1" + nonce + hashlib.sha256(der(callee)).digest()
            + hashlib.sha256(der(caller)).digest())


def sign_possession(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def possession_is_proven(cert: x509.Certificate, message: bytes, signature: bytes) -> bool:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    try:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# -- pin store ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pin:
    user_id: int
    fingerprint: str
    certificate_pem: str
    name: str
    paired_at: str  # ISO 8601, UTC

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode("ascii"))


def pins_path(paths: ProfilePaths) -> Path:
    return paths.root / "pins.json"


class PinStore:
    """The profile's pinned certificates: one per user id, written atomically with mode 0600.

    Every method reads the file anew, so several processes (the app, ``chimera unpair``) can share
    it; a lock serialises the read-modify-write of this process's threads.
    """

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Pin]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise PairingError(f"cannot read the paired devices in {self.path}: "
                               f"{exc.strerror}") from None
        try:
            data = json.loads(raw)
            pins = [Pin(int(entry["user_id"]), str(entry["fingerprint"]),
                        str(entry["certificate"]), str(entry.get("name", "")),
                        str(entry.get("paired_at", "")))
                    for entry in data["pins"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise PairingError(f"the paired devices file {self.path} is damaged ({exc}); "
                               "move it away and pair again") from None
        return pins

    def get(self, user_id: int) -> Pin | None:
        return next((pin for pin in self.all() if pin.user_id == user_id), None)

    def add(self, cert: x509.Certificate, name: str = "", *,
            now: datetime | None = None) -> Pin:
        """Pin ``cert`` for the id it names, replacing an older pin of that id."""
        user_id = pinnable_user_id(cert, now=now)
        pin = Pin(user_id, fingerprint(cert),
                  cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), name[:128],
                  (now or datetime.now(UTC)).isoformat(timespec="seconds"))
        with self._lock:
            pins = [p for p in self.all() if p.user_id != user_id]
            self._write([*pins, pin])
        log.info("pinned the certificate %s… of user %s", pin.fingerprint[:16], user_id)
        return pin

    def remove(self, user_id: int) -> bool:
        with self._lock:
            pins = self.all()
            kept = [p for p in pins if p.user_id != user_id]
            if len(kept) == len(pins):
                return False
            self._write(kept)
        log.info("removed the pin of user %s", user_id)
        return True

    def trust_pem(self, *, now: datetime | None = None) -> str:
        """The pinned certificates that may be trust anchors, as one PEM text (for
        ``load_verify_locations(cadata=)``).

        Each is checked again here, the one place anchors are made: a pin whose certificate is
        not a valid self-signed CA:FALSE one, names another id than the pin, or has another
        fingerprint (an edited file) is left out with a warning. So after a handshake, a peer
        whose certificate is a pinned one is exactly the pinned user.
        """
        trusted = []
        for pin in self.all():
            try:
                cert = pin.certificate()
                named = pinnable_user_id(cert, now=now)
            except (ValueError, PairingError) as exc:
                log.warning("not trusting the pin of user %s: %s", pin.user_id, exc)
                continue
            if named != pin.user_id or fingerprint(cert) != pin.fingerprint:
                log.warning("not trusting the pin of user %s: its certificate names user %s or "
                            "has another fingerprint", pin.user_id, named)
                continue
            trusted.append(pin.certificate_pem)
        return "".join(trusted)

    def _write(self, pins: list[Pin]) -> None:
        data = {"version": _PINS_VERSION, "pins": [
            {"user_id": p.user_id, "fingerprint": p.fingerprint, "certificate": p.certificate_pem,
             "name": p.name, "paired_at": p.paired_at} for p in pins]}
        atomic_write_bytes(self.path, json.dumps(data, indent=1).encode(), mode=PRIVATE_FILE_MODE)
