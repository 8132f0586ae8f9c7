"""Why a peer's TLS handshake was refused, in words an administrator reading the log understands.

OpenSSL's own texts ("unable to get local issuer certificate", "unsuitable certificate purpose")
name the check, not the situation; the log line should say "not issued by the team CA". The
original text follows in parentheses so nothing is lost for whoever debugs it.
"""

from __future__ import annotations

import ssl

# OpenSSL verify messages (X509_verify_cert_error_string) -> what they mean for the peer link.
_VERIFY_REASONS = {
    "unable to get local issuer certificate": "certificate not issued by the team CA "
                                              "(unknown issuer)",
    "unable to get issuer certificate": "certificate not issued by the team CA (unknown issuer)",
    "self-signed certificate": "self-signed certificate that is not pinned",
    "self signed certificate": "self-signed certificate that is not pinned",
    "self-signed certificate in certificate chain": "certificate chain ends in a root that is "
                                                    "not a team root",
    "self signed certificate in certificate chain": "certificate chain ends in a root that is "
                                                    "not a team root",
    "certificate has expired": "certificate expired",
    "certificate is not yet valid": "certificate not valid yet",
    "unsuitable certificate purpose": "certificate's key usage does not allow TLS peer "
                                      "authentication",
    "certificate revoked": "certificate revoked",
    "invalid CA certificate": "certificate issued by something that is not a CA "
                              "(e.g. a pinned personal certificate)",
    "certificate signature failure": "certificate signature does not verify",
    "Missing Authority Key Identifier": "malformed certificate (no authority key identifier)",
}

# OpenSSL library reasons (SSLError.reason) on either side of the handshake.
_SSL_REASONS = {
    "UNSUPPORTED_PROTOCOL": "TLS version older than 1.3",
    "TLSV1_ALERT_PROTOCOL_VERSION": "TLS version older than 1.3",
    "WRONG_VERSION_NUMBER": "not TLS 1.3 (wrong version number)",
    "NO_PROTOCOLS_AVAILABLE": "TLS version older than 1.3",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no certificate presented",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer wants a certificate we did not send",
    "NO_SHARED_CIPHER": "no TLS 1.3 certificate handshake offered (no shared cipher)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure alert (no certificate-based TLS 1.3 "
                                     "handshake possible)",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate (unknown CA)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer says our certificate expired",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the peer refused our certificate's key usage",
}


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def describe_refusal(exc: BaseException) -> str:
    """A short reason for a refused or failed handshake, followed by the library's own text."""
    detail = _first_line(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        reason = _VERIFY_REASONS.get(exc.verify_message)
        if reason is not None:
            return f"{reason} ({detail})"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        reason = _SSL_REASONS.get(exc.reason)
        if reason is not None:
            return f"{reason} ({detail})"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return f"no TLS handshake within the time limit ({detail})"
    return detail
