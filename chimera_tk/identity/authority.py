"""The rules of the team CA, apart from HTTP: invites, one-time tokens, and signing CSRs.

Each public method takes already-typed values and either returns its result or raises
:class:`ApiError` with the HTTP status and a message for the client. The server module only
parses requests and writes answers, so ``/1.0/renew``, ``/1.0/revoke`` and ``/crl`` can be added
here as methods and there as routes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from chimera_tk.errors import ChimeraError
from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.identity import issuing
from chimera_tk.identity.layout import AuthorityFiles, AuthoritySettings, load_settings
from chimera_tk.identity.state import AuthorityState, InviteOutcome, TokenAlreadyUsed
from chimera_tk.identity.tokens import TokenRejected, issue_token, verify_token
from chimera_tk.pki.certs import certificate_pem, fingerprint_sha256, load_pem_chain
from chimera_tk.pki.invite import Invite, b64url_decode, encode_invite, new_invite_secret
from chimera_tk.pki.keys import generate_private_key, load_private_key, write_private_key
from chimera_tk.pki.urls import url_host
from chimera_tk.pki.userid import InvalidUserId, parse_user_id

log = logging.getLogger(__name__)

SIGN_PATH = "/1.0/sign"
SERVER_RENEW_BEFORE = timedelta(days=30)
PUBLIC_FILE_MODE = 0o644
_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:h|m|s))+")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_INVITE_REFUSALS = {
    InviteOutcome.UNKNOWN: (401, "this invite is not known here; check that you copied all of it"),
    InviteOutcome.USED: (403, "this invite has already been used; ask your team admin for a "
                              "new one"),
    InviteOutcome.EXPIRED: (403, "this invite has expired; ask your team admin for a new one"),
    InviteOutcome.OTHER_USER: (403, "this invite was made for another user id"),
}


class ApiError(ChimeraError):
    """A request the CA refuses: ``status`` is the HTTP status, ``message`` goes to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class IssuedChain:
    leaf: x509.Certificate
    intermediate: x509.Certificate


def utc_now() -> datetime:
    return datetime.now(UTC)


def secret_digest(secret: str) -> str:
    """What the state file keeps of an invite secret: SHA-256 of its 32 random bytes.

    The secret has 256 bits of entropy, so a fast hash is enough to make the stored value useless
    for enrolling; a slow password hash would only add latency.
    """
    return hashlib.sha256(b64url_decode(secret)).hexdigest()


class Authority:
    """The team CA and identity provider of one CA folder."""

    def __init__(self, files: AuthorityFiles, settings: AuthoritySettings,
                 state: AuthorityState, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.files = files
        self.settings = settings
        self.state = state
        self._clock = clock
        self.root = load_pem_chain(files.root_certificate.read_bytes())[0]
        self.intermediate = load_pem_chain(files.intermediate_certificate.read_bytes())[0]
        self._intermediate_key = _ec_key(files.intermediate_key)
        self._provisioner_key = _ec_key(files.provisioner_key)
        self.root_fingerprint = fingerprint_sha256(self.root)

    @classmethod
    def open(cls, directory: Path, *, clock: Callable[[], datetime] = utc_now) -> Authority:
        files = AuthorityFiles(directory)
        settings = load_settings(files)
        return cls(files, settings, AuthorityState(files.state), clock=clock)

    def close(self) -> None:
        self.state.close()

    @property
    def sign_audience(self) -> str:
        return self.settings.url + SIGN_PATH

    def create_invite(self, user_id: int, name: str, valid_for: timedelta) -> str:
        """A new invite code for ``user_id``; only a digest of its secret is stored."""
        now = self._clock()
        secret = new_invite_secret()
        self.state.add_invite(secret_digest(secret), user_id, name, now, now + valid_for)
        log.info("invite created for id %s, valid until %s", user_id, now + valid_for)
        return encode_invite(Invite(url=self.settings.url, root_fingerprint=self.root_fingerprint,
                                    secret=secret, user_id=user_id, name=name))

    def redeem_invite(self, secret: str, user_id: int) -> str:
        """Spend an invite for a one-time token that lets ``user_id`` have one CSR signed."""
        try:
            digest = secret_digest(secret)
        except ValueError:
            raise ApiError(401, _INVITE_REFUSALS[InviteOutcome.UNKNOWN][1]) from None
        now = self._clock()
        outcome = self.state.consume_invite(digest, user_id, now)
        if outcome is not InviteOutcome.ACCEPTED:
            log.info("invite refused for id %s: %s", user_id, outcome.value)
            raise ApiError(*_INVITE_REFUSALS[outcome])
        log.info("invite redeemed for id %s", user_id)
        return issue_token(
            self._provisioner_key, kid=self.settings.provisioner_kid,
            issuer=self.settings.provisioner_name, audience=self.sign_audience,
            subject=str(user_id), sans=[str(user_id)], root_fingerprint=self.root_fingerprint,
            now=now)

    def sign(self, csr_pem: str, ott: str, not_after: str | None = None) -> IssuedChain:
        """Sign a CSR authorised by a one-time token, as step-ca's JWK provisioner would."""
        now = self._clock()
        try:
            claims = verify_token(
                ott, self._provisioner_key.public_key(), kid=self.settings.provisioner_kid,
                issuer=self.settings.provisioner_name, audience=self.sign_audience, now=now)
        except TokenRejected as exc:
            raise ApiError(401, str(exc)) from None
        csr = _parse_csr(csr_pem)
        user_id = _csr_user_id(csr, claims.subject, claims.sans)
        lifetime = self._lifetime(not_after, now)
        leaf = issuing.issue_user_certificate(
            csr.public_key(), user_id, self.intermediate, self._intermediate_key,
            not_before=now - issuing.BACKDATE, not_after=now + lifetime)
        try:
            self.state.record_issued(
                jti=claims.jti, token_expires_at=claims.expires_at, serial=leaf.serial_number,
                user_id=user_id, not_before=leaf.not_valid_before_utc,
                not_after=leaf.not_valid_after_utc, now=now)
        except TokenAlreadyUsed:
            raise ApiError(401, "this token has already been used") from None
        log.info("issued certificate serial %x for id %s until %s", leaf.serial_number, user_id,
                 leaf.not_valid_after_utc)
        return IssuedChain(leaf=leaf, intermediate=self.intermediate)

    def ensure_server_certificate(self) -> bool:
        """Give the provider a TLS certificate for its URL's host if it lacks a fresh one.

        Reissued when missing, for another host, or within 30 days of expiry; True if it was.
        """
        now, host = self._clock(), url_host(self.settings.url)
        if self._server_certificate_fresh(host, now + SERVER_RENEW_BEFORE):
            return False
        key = generate_private_key()
        cert = issuing.issue_server_certificate(key.public_key(), host, self.intermediate,
                                                self._intermediate_key, now)
        write_private_key(self.files.server_key, key)
        atomic_write_bytes(self.files.server_certificate,
                           (certificate_pem(cert) + certificate_pem(self.intermediate)).encode(),
                           mode=PUBLIC_FILE_MODE)
        log.info("new TLS certificate for %s, valid until %s", host, cert.not_valid_after_utc)
        return True

    def _server_certificate_fresh(self, host: str, until: datetime) -> bool:
        try:
            cert = load_pem_chain(self.files.server_certificate.read_bytes())[0]
            load_private_key(self.files.server_key)
            alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        names = {str(value) for value in alt_names.value.get_values_for_type(x509.IPAddress)}
        names |= set(alt_names.value.get_values_for_type(x509.DNSName))
        return (host in names and cert.not_valid_after_utc > until
                and cert.issuer == self.intermediate.subject)

    def _lifetime(self, not_after: str | None, now: datetime) -> timedelta:
        settings = self.settings
        if not not_after:
            return timedelta(hours=settings.default_lifetime_hours)
        lifetime = _requested_lifetime(not_after, now)
        shortest = timedelta(minutes=settings.min_lifetime_minutes)
        longest = timedelta(hours=settings.max_lifetime_hours)
        if not shortest <= lifetime <= longest:
            raise ApiError(400, f"the requested lifetime must be between "
                                f"{settings.min_lifetime_minutes:g} minutes and "
                                f"{settings.max_lifetime_hours:g} hours")
        return lifetime


def _parse_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        signature_ok = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise ApiError(400, "csr must be a PEM certificate signing request") from None
    if not signature_ok:
        raise ApiError(400, "the certificate request's signature is not valid")
    if not _acceptable_key(public_key):
        raise ApiError(400, "the certificate request's key must be ECDSA P-256/P-384, "
                            "Ed25519 or RSA of 2048 bits or more")
    return csr


def _csr_user_id(csr: x509.CertificateSigningRequest, subject: str,
                 sans: tuple[str, ...]) -> int:
    """The id to certify: the CSR's CN must equal the token's sub, its SANs the token's sans."""
    names = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != subject:
        raise ApiError(403, "the certificate request's common name does not match the token")
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        csr_sans = sorted(str(getattr(entry, "value", entry)) for entry in requested)
    except x509.ExtensionNotFound:
        csr_sans = []
    except ValueError:
        raise ApiError(400, "the certificate request's extensions are malformed") from None
    if csr_sans != sorted(sans):
        raise ApiError(403, "the certificate request's alternative names do not match the token")
    try:
        return parse_user_id(subject)
    except InvalidUserId:
        raise ApiError(403, "the token does not name a user id") from None


def _requested_lifetime(not_after: str, now: datetime) -> timedelta:
    """step-ca's notAfter: a Go duration such as "240h" or "1h30m", or an RFC 3339 time."""
    if len(not_after) <= 40 and _GO_DURATION.fullmatch(not_after):
        seconds = sum(float(number) * _UNITS[unit]
                      for number, unit in _GO_DURATION_PART.findall(not_after))
        return timedelta(seconds=min(seconds, 1e9))
    try:
        moment = datetime.fromisoformat(not_after)
    except ValueError:
        raise ApiError(400, "notAfter must be a duration like \"240h\" or an RFC 3339 time") \
            from None
    if moment.tzinfo is None:
        raise ApiError(400, "notAfter must include a time zone")
    return moment - now


def _acceptable_key(key: object) -> bool:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1)
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size >= 2048
    return isinstance(key, ed25519.Ed25519PublicKey)


def _ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_private_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ChimeraError(f"{path.name} is not an EC private key")
    return key

