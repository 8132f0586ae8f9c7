"""The certificates the team CA makes: its root, its intermediate, its own TLS server certificate,
and the users' certificates. Pure functions of keys, names and times; no files, no clock.

Every certificate carries subject and authority key identifiers and sensible key usages, so that
strict verifiers (OpenSSL's X509_STRICT, cryptography's webpki policy) accept the chains.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chimera_tk.pki.urls import host_is_ip_address

ROOT_LIFETIME = timedelta(days=3653)
INTERMEDIATE_LIFETIME = timedelta(days=1827)
SERVER_LIFETIME = timedelta(days=365)
BACKDATE = timedelta(minutes=1)  # as step-ca does, for clocks that run a little behind

_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False)
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False)


def make_root(key: ec.EllipticCurvePrivateKey, team_name: str, now: datetime) -> x509.Certificate:
    name = _ca_name(team_name, "Root CA")
    return (_builder(name, name, key.public_key(), now - BACKDATE, now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .sign(key, hashes.SHA256()))


def make_intermediate(key: ec.EllipticCurvePrivateKey, root: x509.Certificate,
                      root_key: ec.EllipticCurvePrivateKey, team_name: str,
                      now: datetime) -> x509.Certificate:
    not_after = min(now + INTERMEDIATE_LIFETIME, root.not_valid_after_utc)
    return (_builder(_ca_name(team_name, "Intermediate CA"), root.subject, key.public_key(),
                     now - BACKDATE, not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(authority_key_id(root), critical=False)
            .sign(root_key, hashes.SHA256()))


def issue_server_certificate(public_key: CertificatePublicKeyTypes, host: str,
                             issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
                             now: datetime) -> x509.Certificate:
    """The identity provider's own TLS certificate, for ``host`` (an IP address or DNS name)."""
    alt_name: x509.GeneralName = (x509.IPAddress(ipaddress.ip_address(host))
                                  if host_is_ip_address(host) else x509.DNSName(host))
    not_after = min(now + SERVER_LIFETIME, issuer.not_valid_after_utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _fit(host))])
    return (_builder(subject, issuer.subject, public_key, now - BACKDATE, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_USAGE, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
            .add_extension(authority_key_id(issuer), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def issue_user_certificate(public_key: CertificatePublicKeyTypes, user_id: int,
                           issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
                           not_before: datetime, not_after: datetime) -> x509.Certificate:
    """A user's LAN certificate: CN and SAN DNS = the id; usable as TLS server and client."""
    name = str(user_id)
    return (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), issuer.subject,
                     public_key, not_before, min(not_after, issuer.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_USAGE, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(authority_key_id(issuer), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def _builder(subject: x509.Name, issuer: x509.Name, public_key: CertificatePublicKeyTypes,
             not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca_name(team_name: str, role: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _fit(team_name)),
                      x509.NameAttribute(NameOID.COMMON_NAME, _fit(f"{team_name} {role}"))])


def _fit(text: str, limit: int = 64) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes (X.520's upper bound, which cryptography enforces)."""
    while len(text.encode("utf-8")) > limit:
        text = text[:-1]
    return text
