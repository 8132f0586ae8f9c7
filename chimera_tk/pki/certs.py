"""Certificate helpers shared by the client and the team CA: PEM chains, fingerprints, trust.

A root is identified by the SHA-256 of its DER encoding, written as lowercase hex: the ``fp`` of an
invite, the ``sha`` claim of a one-time token, and step-ca's root fingerprint are the same string.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError


class UntrustedCertificate(ValueError):
    """A certificate chain does not lead to the expected root (or is expired, or misused)."""


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order; ValueError if there is none or one is broken."""
    return x509.load_pem_x509_certificates(data)


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fingerprint_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def verify_client_chain(leaf: x509.Certificate, intermediates: list[x509.Certificate],
                        root: x509.Certificate, *, now: datetime | None = None) -> None:
    """Check that ``leaf`` chains to ``root`` and may authenticate a TLS client at ``now``.

    The LAN uses one certificate on both ends of mutual TLS, so a client-auth check is the useful
    one here; the CA issues serverAuth and clientAuth together.
    """
    verifier = (PolicyBuilder().store(Store([root])).time(now or datetime.now(UTC))
                .build_client_verifier())
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise UntrustedCertificate(str(exc)) from None
