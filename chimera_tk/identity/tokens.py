"""One-time tokens (JWT, ES256) as step-ca's JWK provisioner issues and checks them.

Header ``kid`` = RFC 7638 thumbprint of the provisioner's public key; claims ``iss`` (provisioner
name), ``aud`` (``<ca url>/1.0/sign``), ``sub`` (the CSR's CN), ``sans`` (exactly the CSR's SANs),
``nbf``, ``iat``, ``exp`` (5 minutes), ``jti`` (random, usable once) and ``sha`` (the root's
fingerprint). Time checks use the caller's clock, so tests can move it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from chimera_tk.pki.invite import b64url_encode

ALGORITHM = "ES256"
TOKEN_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(minutes=1)
MAX_JTI_LENGTH = 128
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "nbf", "iat", "exp", "jti"]


class TokenRejected(ValueError):
    """The token is not one this CA accepts; the message says why (for the log and the client)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    sans: tuple[str, ...]
    jti: str
    expires_at: datetime


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The P-256 public key as a JWK, with its RFC 7638 thumbprint as ``kid``."""
    numbers = key.public_numbers()
    jwk = {"kty": "EC", "crv": "P-256",
           "x": b64url_encode(numbers.x.to_bytes(32, "big")),
           "y": b64url_encode(numbers.y.to_bytes(32, "big"))}
    return {**jwk, "use": "sig", "alg": ALGORITHM, "kid": jwk_thumbprint(jwk)}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace; base64url."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b64url_encode(hashlib.sha256(canonical).digest())


def issue_token(key: ec.EllipticCurvePrivateKey, *, kid: str, issuer: str, audience: str,
                subject: str, sans: list[str], root_fingerprint: str, now: datetime) -> str:
    issued = int(now.timestamp())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "sans": sans,
              "nbf": issued, "iat": issued, "exp": issued + int(TOKEN_LIFETIME.total_seconds()),
              "jti": secrets.token_hex(32), "sha": root_fingerprint}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def verify_token(token: str, key: ec.EllipticCurvePublicKey, *, kid: str, issuer: str,
                 audience: str, now: datetime) -> TokenClaims:
    """The token's claims if step-ca's JWK provisioner would accept it at ``now``."""
    try:
        if jwt.get_unverified_header(token).get("kid") != kid:
            raise TokenRejected("the token was not made by this CA's provisioner")
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
            options={"require": _REQUIRED_CLAIMS, "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False})
    except jwt.InvalidAudienceError:
        raise TokenRejected("the token is meant for another CA address") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("the token names another provisioner") from None
    except jwt.InvalidTokenError:
        raise TokenRejected("the token is not a valid token of this CA") from None
    return _checked_claims(claims, now)


def _checked_claims(claims: dict[str, Any], now: datetime) -> TokenClaims:
    times = [claims.get(name) for name in ("nbf", "iat", "exp")]
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        raise TokenRejected("the token's times are not numbers")
    nbf, _, exp = times
    moment, skew = now.timestamp(), CLOCK_SKEW.total_seconds()
    if moment > exp + skew:
        raise TokenRejected("the token has expired")
    if moment < nbf - skew:
        raise TokenRejected("the token is not valid yet")
    subject, jti = claims["sub"], claims["jti"]
    sans = claims.get("sans", [subject])  # step-ca: no sans claim means [sub]
    if not isinstance(subject, str) or not isinstance(jti, str) or \
            not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise TokenRejected("the token's subject or id is malformed")
    if not isinstance(sans, list) or not all(isinstance(san, str) for san in sans):
        raise TokenRejected("the token's sans claim is malformed")
    try:
        expires_at = datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenRejected("the token's expiry is out of range") from None
    return TokenClaims(subject=subject, sans=tuple(sans), jti=jti, expires_at=expires_at)
