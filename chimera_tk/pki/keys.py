"""Private keys and certificate signing requests for a user's LAN identity.

Keys are ECDSA P-256, stored as PKCS#8 PEM with mode 0600 (the profile folder is 0700 too), and
encrypted with the best scheme ``cryptography`` offers when the user set a passphrase. The CSR names
the user id twice, as CN and as SAN DNS name, which is what the team CA and a real step-ca expect.
Keys and passphrases are never logged or put into exception messages.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from chimera_tk.errors import UserError
from chimera_tk.fsutil import PRIVATE_FILE_MODE, atomic_write_bytes
from chimera_tk.pki.userid import check_user_id

_ENCRYPTED_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


class KeyLockedError(UserError, TypeError):
    """The key file is protected by a passphrase and none was given.

    Also a TypeError, which is what ``cryptography`` raises here, so older callers keep working.
    """


class WrongPassphraseError(UserError, ValueError):
    """The passphrase does not open the key file (a ValueError, like ``cryptography``'s)."""


def passphrase_bytes(passphrase: str | bytes | None) -> bytes | None:
    """The passphrase as UTF-8 bytes; None or empty means no protection."""
    if not passphrase:
        return None
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_to_pem(key: PrivateKeyTypes, passphrase: str | bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``passphrase`` when one is given (empty = not encrypted)."""
    secret = passphrase_bytes(passphrase)
    encryption = (serialization.BestAvailableEncryption(secret) if secret is not None
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def write_private_key(path: Path, key: PrivateKeyTypes,
                      passphrase: str | bytes | None = None) -> None:
    """Write ``key`` to ``path`` as PKCS#8 PEM, atomically, readable by the owner only."""
    atomic_write_bytes(path, private_key_to_pem(key, passphrase), mode=PRIVATE_FILE_MODE)


def is_encrypted(path: Path) -> bool:
    """Whether the PEM key file at ``path`` needs a passphrase (PKCS#8 or legacy OpenSSL)."""
    head = path.read_bytes()[:4096]
    return any(marker in head for marker in _ENCRYPTED_MARKERS)


def load_private_key(path: Path, passphrase: str | bytes | None = None) -> PrivateKeyTypes:
    """Read a PEM private key, decrypting it with ``passphrase`` if it is protected.

    KeyLockedError (a TypeError) if it is protected and no passphrase was given,
    WrongPassphraseError (a ValueError) if the passphrase does not open it, ValueError if the file
    holds no key. None of the messages contain the key or the passphrase.
    """
    data = path.read_bytes()
    secret = passphrase_bytes(passphrase)
    encrypted = any(marker in data[:4096] for marker in _ENCRYPTED_MARKERS)
    if encrypted and secret is None:
        raise KeyLockedError(f"the private key {path.name} is protected by a passphrase")
    try:
        return serialization.load_pem_private_key(data, password=secret if encrypted else None)
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise WrongPassphraseError(
                f"wrong passphrase for the private key {path.name}") from None
        raise ValueError(f"{path.name} holds no usable private key") from exc


def change_passphrase(path: Path, old: str | bytes | None, new: str | bytes | None) -> None:
    """Re-encrypt the key at ``path`` under ``new`` (empty or None removes the protection).

    The file is replaced atomically (0600) only once the old passphrase opened it, so a wrong
    passphrase or a crash leaves the old file exactly as it was.
    """
    key = load_private_key(path, old)
    write_private_key(path, key, new)


def build_csr(key: ec.EllipticCurvePrivateKey, user_id: int) -> x509.CertificateSigningRequest:
    """A CSR for ``user_id``: CN = the decimal id, SAN DNS = the decimal id, signed by ``key``."""
    name = str(check_user_id(user_id))
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))


def csr_to_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def same_public_key(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """Whether ``cert`` certifies the public half of ``key``."""
    der = serialization.Encoding.DER
    info = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, info) == cert.public_key().public_bytes(der, info)
