"""The rules of the team CA, apart from HTTP: invites, one-time tokens, signing CSRs, renewal,
revocation and the CRL.

Each public method takes already-typed values and either returns its result or raises
:class:`ApiError` with the HTTP status and a message for the client. The server module only
parses requests and writes answers.

Renewal and revocation follow step-ca: ``renew`` trusts the certificate the client proved over
mutual TLS (the TLS layer checked its chain, not its dates: expiry is judged here so the client
gets a clear 401), and ``revoke`` is passive (the serial goes on the CRL, which peers fetch).
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
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from chimera_tk.errors import ChimeraError
from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.identity import issuing
from chimera_tk.identity.layout import AuthorityFiles, AuthoritySettings, load_settings
from chimera_tk.identity.state import (
    UNKNOWN_USER_ID,
    AuthorityState,
    CertificateRecord,
    InviteOutcome,
    TokenAlreadyUsed,
)
from chimera_tk.identity.step_ca import (
    StepCaRevocationFailed,
    external_ca_url,
    revoke_at_step_ca,
)
from chimera_tk.identity.tokens import TokenClaims, TokenRejected, issue_token, verify_token
from chimera_tk.pki.certs import certificate_pem, fingerprint_sha256, load_pem_chain
from chimera_tk.pki.identity import CertificateIdentityError, certificate_user_id
from chimera_tk.pki.invite import Invite, b64url_decode, encode_invite, new_invite_secret
from chimera_tk.pki.keys import generate_private_key, load_private_key, write_private_key
from chimera_tk.pki.reasons import REASONS, valid_note, valid_reason_code
from chimera_tk.pki.urls import url_host
from chimera_tk.pki.userid import InvalidUserId, parse_user_id

log = logging.getLogger(__name__)

SIGN_PATH = "/1.0/sign"
REVOKE_PATH = "/1.0/revoke"
CRL_LIFETIME = timedelta(hours=4)  # peers refresh well within this; a stale CRL is refused
_CRL_REASONS = {
    0: x509.ReasonFlags.unspecified, 1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise, 3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded, 5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold, 8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn, 10: x509.ReasonFlags.aa_compromise,
}
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
class PendingRevocation:
    """A revocation request that passed the checks and is not recorded yet."""

    serial: int
    reason_code: int
    note: str
    token: TokenClaims | None
    certificate: x509.Certificate | None  # the one presented over mutual TLS, if any


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

    def now(self) -> datetime:
        """The CA's clock (tests move it)."""
        return self._clock()

    @property
    def sign_audience(self) -> str:
        return self.settings.url + SIGN_PATH

    @property
    def enrollment_audience(self) -> str:
        """Where enrollment tokens are redeemed: the team's step-ca when ``ca_url`` names one,
        else this CA. This CA's own /1.0/sign still takes only its own audience, so a token
        meant for the step-ca cannot be spent twice, once there and once here."""
        return (self.settings.ca_url or self.settings.url) + SIGN_PATH

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
        return self.enrollment_token(user_id)

    def enrollment_token(self, user_id: int) -> str:
        """A one-time token that lets ``user_id`` have one CSR (for that id only) signed.

        Callers give it out only after the person proved they are ``user_id`` (an invite, or a
        code sent to that Telegram account).
        """
        return issue_token(
            self._provisioner_key, kid=self.settings.provisioner_kid,
            issuer=self.settings.provisioner_name, audience=self.enrollment_audience,
            subject=str(user_id), sans=[str(user_id)], root_fingerprint=self.root_fingerprint,
            now=self._clock())

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

    def renew(self, presented: x509.Certificate) -> IssuedChain:
        """A new certificate for the same key and id as ``presented`` (proven over mutual TLS).

        The new one has a new serial and the same lifetime as the old one (what its holder asked
        for at enrollment), bounded by the CA's limits. Refused (401) when ``presented`` is not
        one of ours, is revoked, or has expired.
        """
        now = self._clock()
        record = self._our_certificate(presented, 401)
        if self.state.revocation(presented.serial_number) is not None:
            raise ApiError(401, "this certificate has been revoked; get a new one with an invite")
        if not presented.not_valid_before_utc <= now < presented.not_valid_after_utc:
            raise ApiError(401, "this certificate has expired; get a new one with an invite")
        lifetime = presented.not_valid_after_utc - presented.not_valid_before_utc
        lifetime = max(timedelta(minutes=self.settings.min_lifetime_minutes),
                       min(lifetime - issuing.BACKDATE,
                           timedelta(hours=self.settings.max_lifetime_hours)))
        leaf = issuing.issue_user_certificate(
            presented.public_key(), record.user_id, self.intermediate, self._intermediate_key,
            not_before=now - issuing.BACKDATE, not_after=now + lifetime)
        self.state.record_renewed(serial=leaf.serial_number, user_id=record.user_id,
                                  not_before=leaf.not_valid_before_utc,
                                  not_after=leaf.not_valid_after_utc, now=now)
        log.info("renewed serial %x as %x for id %s until %s", presented.serial_number,
                 leaf.serial_number, record.user_id, leaf.not_valid_after_utc)
        return IssuedChain(leaf=leaf, intermediate=self.intermediate)

    def revoke(self, serial: int, reason_code: int, note: str, *,
               presented: x509.Certificate | None = None, ott: str | None = None) -> None:
        """Revoke ``serial``, authorised by a provisioner token (``sub`` = the decimal serial)
        or by mutual TLS with that very certificate. 403 for someone else's certificate, 400 if
        it is already revoked. In step-ca mode step-ca is told first (502 if it cannot be, and
        then nothing is recorded). The server runs the three steps itself, so that the wait for
        step-ca happens off its event loop."""
        pending = self.prepare_revocation(serial, reason_code, note, presented=presented, ott=ott)
        self.forward_revocation(pending)
        self.record_revocation(pending)

    def prepare_revocation(self, serial: int, reason_code: int, note: str, *,
                           presented: x509.Certificate | None = None,
                           ott: str | None = None) -> PendingRevocation:
        """Check a revocation request (see :meth:`revoke`) without recording anything."""
        if not valid_reason_code(reason_code):
            raise ApiError(400, "reasonCode must be one of " + ", ".join(map(str, REASONS)))
        if not valid_note(note):
            raise ApiError(400, "reason must be one printable line of at most 500 characters")
        now = self._clock()
        external = bool(external_ca_url(self.settings))
        claims = None
        if ott is not None:
            try:
                claims = verify_token(
                    ott, self._provisioner_key.public_key(), kid=self.settings.provisioner_kid,
                    issuer=self.settings.provisioner_name,
                    audience=self.settings.url + REVOKE_PATH, now=now)
            except TokenRejected as exc:
                raise ApiError(401, str(exc)) from None
            if claims.subject != str(serial):
                raise ApiError(403, "the token is for another certificate")
        elif presented is not None:
            if external:  # step-ca issued it: the provider may never have seen it
                self._team_certificate_user(presented, 401)
            else:
                self._our_certificate(presented, 401)
            if presented.serial_number != serial:
                raise ApiError(403, "a certificate can only revoke itself; ask your team admin "
                                    "to revoke another one")
        else:
            raise ApiError(401, "revoking needs mutual TLS with the certificate, or a token")
        if self.state.certificate(serial) is None and not external:
            raise ApiError(404, "this CA has not issued a certificate with that serial")
        if self.state.revocation(serial) is not None:
            raise ApiError(400, "this certificate is already revoked")
        return PendingRevocation(serial, reason_code, note, claims, presented)

    def forward_revocation(self, pending: PendingRevocation) -> None:
        """In step-ca mode, revoke at step-ca too (blocking, touches no state: any thread)."""
        url = external_ca_url(self.settings)
        if not url:
            return
        token = issue_token(
            self._provisioner_key, kid=self.settings.provisioner_kid,
            issuer=self.settings.provisioner_name, audience=url + REVOKE_PATH,
            subject=str(pending.serial), sans=[str(pending.serial)],
            root_fingerprint=self.root_fingerprint, now=self._clock())
        try:
            revoke_at_step_ca(url, self.files.root_certificate, token, pending.serial,
                              pending.reason_code, pending.note)
        except StepCaRevocationFailed as exc:
            raise ApiError(502, f"{exc}; nothing was revoked, try again") from None

    def record_revocation(self, pending: PendingRevocation) -> None:
        """Spend the token and put the serial on this provider's CRL."""
        now, serial = self._clock(), pending.serial
        if pending.token is not None:
            try:
                self.state.spend_token(pending.token.jti, pending.token.expires_at)
            except TokenAlreadyUsed:
                raise ApiError(401, "this token has already been used") from None
        if self.state.certificate(serial) is None:
            cert = pending.certificate
            if cert is not None:
                self.state.note_certificate(
                    serial=serial, user_id=certificate_user_id(cert),
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                    now=now)
            else:  # a step-ca serial nobody reported: revoked by number, holder unknown
                self.state.note_certificate(serial=serial, user_id=UNKNOWN_USER_ID,
                                            not_before=now, not_after=now, now=now)
        if not self.state.revoke(serial, pending.reason_code, pending.note, now):
            raise ApiError(400, "this certificate is already revoked")
        log.info("revoked serial %x (%s)", serial, REASONS[pending.reason_code])

    def note_certificate(self, presented: x509.Certificate) -> CertificateRecord:
        """Record a certificate its holder reports (over mutual TLS) after getting it from the
        team's step-ca, so that ``list`` and ``revoke --id`` know it. 401 if it does not chain
        to the team intermediate, has expired or is revoked."""
        now = self._clock()
        user_id = self._team_certificate_user(presented, 401)
        serial = presented.serial_number
        if self.state.revocation(serial) is not None:
            raise ApiError(401, "this certificate has been revoked")
        if not presented.not_valid_before_utc <= now < presented.not_valid_after_utc:
            raise ApiError(401, "this certificate has expired")
        self.state.note_certificate(serial=serial, user_id=user_id,
                                    not_before=presented.not_valid_before_utc,
                                    not_after=presented.not_valid_after_utc, now=now)
        record = self.state.certificate(serial)
        assert record is not None
        if record.user_id != user_id:
            raise ApiError(409, "another id is on record for this serial")
        return record

    def revoke_token(self, serial: int) -> str:
        """The admin's one-time token for ``/1.0/revoke`` of ``serial`` (step-ca's claims)."""
        return issue_token(
            self._provisioner_key, kid=self.settings.provisioner_kid,
            issuer=self.settings.provisioner_name, audience=self.settings.url + REVOKE_PATH,
            subject=str(serial), sans=[str(serial)], root_fingerprint=self.root_fingerprint,
            now=self._clock())

    def crl(self) -> x509.CertificateRevocationList:
        """Every revoked serial with its reason, signed by the intermediate, valid a few hours."""
        now = self._clock()
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.intermediate.subject)
                   .last_update(now - issuing.BACKDATE).next_update(now + CRL_LIFETIME)
                   .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
                   .add_extension(issuing.authority_key_id(self.intermediate), critical=False))
        for revoked in self.state.revocations():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(revoked.serial)
                .revocation_date(revoked.revoked_at)
                .add_extension(x509.CRLReason(_CRL_REASONS[revoked.reason_code]), critical=False)
                .build())
        return builder.sign(self._intermediate_key, hashes.SHA256())

    def _team_certificate_user(self, cert: x509.Certificate, status: int) -> int:
        """The user id of ``cert`` if the team intermediate signed it (here or at step-ca)."""
        try:
            cert.verify_directly_issued_by(self.intermediate)
            return certificate_user_id(cert)
        except (ValueError, TypeError, InvalidSignature, CertificateIdentityError):
            raise ApiError(status, "this certificate was not issued by this team's CA") from None

    def _our_certificate(self, cert: x509.Certificate, status: int) -> CertificateRecord:
        """The record of ``cert`` if this CA issued it (signature and state both say so)."""
        try:
            cert.verify_directly_issued_by(self.intermediate)
        except (ValueError, TypeError, InvalidSignature):
            raise ApiError(status, "this certificate was not issued by this CA") from None
        record = self.state.certificate(cert.serial_number)
        if record is None:
            raise ApiError(status, "this certificate was not issued by this CA")
        return record

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

