"""Private keys and certificate signing requests for a user's LAN identity.

Keys are ECDSA P-256, stored as unencrypted PKCS#8 PEM with mode 0600 (the profile folder is 0700
too). The CSR names the user id twice, as CN and as SAN DNS name, which is what the team CA and a
real step-ca expect. Keys are never logged or put into exception messages.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from chimera_tk.fsutil import PRIVATE_FILE_MODE, atomic_write_bytes
from chimera_tk.pki.userid import check_user_id


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_to_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """Write ``key`` to ``path`` as PKCS#8 PEM, atomically, readable by the owner only."""
    atomic_write_bytes(path, private_key_to_pem(key), mode=PRIVATE_FILE_MODE)


def load_private_key(path: Path) -> PrivateKeyTypes:
    """Read an unencrypted PEM private key; ValueError if the file holds something else."""
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


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
