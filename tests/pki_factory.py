"""Certificates for tests, made with `cryptography`: a team CA and leaves of every kind of wrong.

The real team CA lives in chimera_tk/identity; this factory exists so the LAN tests can also make
the certificates a correct CA would never issue (expired, foreign, wrong id, wrong key usage).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chimera_tk.net.peer.tls import TlsFiles

NOW = dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class TeamCA:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "Test Team") -> TeamCA:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(_name(f"{name} Root")).issuer_name(_name(f"{name} Root"))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - dt.timedelta(days=1))
                .not_valid_after(NOW + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return cls(name, key, cert)

    def issue(self, common_name: str, *, san: str | None = "same", days: float = 10,
              starts_in_days: float = -0.01, client_and_server: bool = True,
              key_usage: x509.KeyUsage | None = None) -> tuple[
                  ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        start = dt.datetime.now(dt.UTC) + dt.timedelta(days=starts_in_days)
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(common_name)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), critical=False))
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(common_name if san == "same" else san)]), critical=False)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        if not client_and_server:
            usages = [ExtendedKeyUsageOID.CODE_SIGNING]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if key_usage is not None:
            builder = builder.add_extension(key_usage, critical=True)
        return key, builder.sign(self.key, hashes.SHA256())

    def write_identity(self, folder: Path, user_id: int | str, *, trust: list[TeamCA] | None =
                       None, **issue_options: object) -> TlsFiles:
        """Key, certificate and CA bundle files for ``user_id`` in ``folder`` (as a profile has)."""
        folder.mkdir(parents=True, exist_ok=True)
        key, cert = self.issue(str(user_id), **issue_options)  # type: ignore[arg-type]
        files = TlsFiles(key=folder / f"{user_id}.pem",
                         certificate_chain=folder / f"{user_id}_crt.pem",
                         ca_bundle=folder / "ca_bundle.pem")
        files.key.write_bytes(_pem_key(key))
        files.key.chmod(0o600)
        files.certificate_chain.write_bytes(_pem(cert))
        files.ca_bundle.write_bytes(b"".join(_pem(ca.cert) for ca in (trust or [self])))
        return files


# A key usage no TLS end may use (no digitalSignature, no keyAgreement): OpenSSL refuses it for
# both the client and the server purpose.
NO_TLS_KEY_USAGE = x509.KeyUsage(digital_signature=False, content_commitment=True,
                                 key_encipherment=False, data_encipherment=True,
                                 key_agreement=False, key_cert_sign=False, crl_sign=False,
                                 encipher_only=False, decipher_only=False)


def write_self_signed_identity(folder: Path, user_id: int | str, *,
                               trust: list[TeamCA] | None = None) -> TlsFiles:
    """A personal (self-signed, CA:FALSE) certificate for ``user_id``, as pairing makes them,
    with ``trust``'s roots (default: none but itself) as the CA bundle."""
    from chimera_tk.pki.pairing import make_personal_certificate

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_personal_certificate(key, int(user_id))
    files = TlsFiles(key=folder / f"{user_id}.pem",
                     certificate_chain=folder / f"{user_id}_crt.pem",
                     ca_bundle=folder / "ca_bundle.pem")
    files.key.write_bytes(_pem_key(key))
    files.key.chmod(0o600)
    files.certificate_chain.write_bytes(_pem(cert))
    files.ca_bundle.write_bytes(b"".join(_pem(ca.cert) for ca in trust) if trust else _pem(cert))
    return files


def write_identity_signed_by(folder: Path, user_id: int | str, issuer: TlsFiles, *,
                             trust: list[TeamCA] | None = None) -> TlsFiles:
    """A leaf for ``user_id`` signed by the key of ``issuer`` (e.g. a pinned personal
    certificate, which must vouch for nothing but itself); the chain file holds both."""
    folder.mkdir(parents=True, exist_ok=True)
    issuer_key = serialization.load_pem_private_key(issuer.key.read_bytes(), password=None)
    issuer_cert = x509.load_pem_x509_certificate(issuer.certificate_chain.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(str(user_id))).issuer_name(issuer_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(str(user_id))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(issuer_key, hashes.SHA256()))  # type: ignore[arg-type]
    files = TlsFiles(key=folder / f"{user_id}.pem",
                     certificate_chain=folder / f"{user_id}_crt.pem",
                     ca_bundle=folder / "ca_bundle.pem")
    files.key.write_bytes(_pem_key(key))
    files.key.chmod(0o600)
    files.certificate_chain.write_bytes(_pem(cert) + _pem(issuer_cert))
    files.ca_bundle.write_bytes(b"".join(_pem(ca.cert) for ca in trust or []))
    return files
