"""Joining a team with an invite or a Telegram code: from that proof to a key and certificate.

Steps: pin the team root from the invite's fingerprint (or the one the user was given); make a
key; spend the invite, or the code received on Telegram, for a one-time token; make the CSR for
the token's id and have it signed; check that what came back certifies our key for our id and
chains to the pinned root. Only then are the files written, so a failure anywhere leaves the
profile as it was.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from chimera_tk.errors import UserError
from chimera_tk.fsutil import atomic_write_bytes, ensure_private_dir
from chimera_tk.pki.ca_client import (
    DEFAULT_TIMEOUT,
    IdentityProviderClient,
    RequestRefused,
    SignedCertificate,
    StepCAClient,
    fetch_pinned_root,
)
from chimera_tk.pki.certs import UntrustedCertificate, certificate_pem, verify_client_chain
from chimera_tk.pki.identity import (
    CertificateIdentityError,
    Identity,
    certificate_user_id,
    identity_from_certificate,
)
from chimera_tk.pki.invite import Invite
from chimera_tk.pki.keys import (
    build_csr,
    csr_to_pem,
    generate_private_key,
    private_key_to_pem,
    same_public_key,
)
from chimera_tk.pki.team_ca import external_ca, report_to_provider
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url
from chimera_tk.pki.userid import InvalidUserId, parse_user_id
from chimera_tk.profiles import ProfilePaths

SIGN_PATH = "/1.0/sign"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The outcome of a successful enrollment; the addresses go into config.toml."""

    identity: Identity
    identity_url: str
    ca_url: str


def enroll_with_invite(paths: ProfilePaths, invite: Invite, *,
                       lifetime_hours: int | None = None,
                       timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                       passphrase: bytes | None = None) -> Enrollment:
    """Get a certificate for ``invite.user_id`` and store key, chain and root in the profile.

    ``lifetime_hours`` asks the CA for that validity; None takes the CA's default. With a
    ``passphrase`` the new key is written encrypted with it.
    """
    def redeem(provider: IdentityProviderClient) -> str:
        try:
            return provider.redeem_invite(invite.secret, invite.user_id)
        except RequestRefused as refused:
            raise UserError(f"the identity provider at {invite.url} refused the invite: "
                            f"{refused.reason}") from None

    return _enroll(paths, invite.url, invite.root_fingerprint, redeem, invite.user_id,
                   lifetime_hours=lifetime_hours, timeout=timeout, passphrase=passphrase)


def enroll_with_telegram_code(paths: ProfilePaths, url: str, fingerprint: str, *,
                              user_id: int | None = None, phone: str | None = None,
                              code: str | None = None, ask_code: Callable[[], str],
                              lifetime_hours: int | None = None,
                              timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                              passphrase: bytes | None = None) -> Enrollment:
    """Enroll by a code sent to Telegram account ``user_id`` (or the one with ``phone``).

    Without ``code`` the provider is asked to send one and ``ask_code()`` reads it (it may raise
    UserError to stop there, e.g. without a terminal). Then as :func:`enroll_with_invite`.
    """
    def redeem(provider: IdentityProviderClient) -> str:
        typed = code
        try:
            if typed is None:
                provider.start_telegram_code(user_id=user_id, phone=phone)
                typed = ask_code()
            return provider.finish_telegram_code(typed.strip(), user_id=user_id, phone=phone)
        except RequestRefused as refused:
            raise UserError(f"the identity provider at {url} refused: {refused.reason}") \
                from None

    return _enroll(paths, url, fingerprint, redeem, user_id, lifetime_hours=lifetime_hours,
                   timeout=timeout, passphrase=passphrase)


def _enroll(paths: ProfilePaths, url: str, fingerprint: str,
            redeem: Callable[[IdentityProviderClient], str], user_id: int | None, *,
            lifetime_hours: int | None, timeout: tuple[float, float],
            passphrase: bytes | None = None) -> Enrollment:
    """Pin the root, get a token with ``redeem``, have a new key certified, check, then save.

    ``user_id`` None (enrollment by phone) takes the id the token was issued for.
    """
    root = fetch_pinned_root(url, fingerprint, timeout=timeout)
    key = generate_private_key()
    with tempfile.TemporaryDirectory(prefix="chimera-enroll-") as scratch:
        root_bundle = Path(scratch) / "root.pem"
        root_bundle.write_text(certificate_pem(root), encoding="ascii")
        with IdentityProviderClient(url, root_bundle, timeout=timeout) as provider:
            token = redeem(provider)
        ca_url, token_user_id = _read_token(token, url, fingerprint)
        if user_id is not None and token_user_id != user_id:
            raise UserError(f"the identity provider at {url} sent a token for another id; "
                            "nothing was saved")
        user_id = token_user_id
        csr = build_csr(key, user_id)
        with StepCAClient(ca_url, root_bundle, timeout=timeout) as ca:
            signed = ca.sign(csr_to_pem(csr), token,
                             not_after=f"{lifetime_hours}h" if lifetime_hours else None)
    _check_issued(signed, key, user_id, root)
    identity = write_identity_files(paths, user_id, private_key_to_pem(key, passphrase), signed,
                                    root)
    if external_ca(ca_url, url):  # step-ca signed: the provider lists and revokes it by id
        report_to_provider(url, paths.ca_bundle, identity, passphrase=passphrase,
                           timeout=timeout)
    return Enrollment(identity=identity, identity_url=url, ca_url=ca_url)


def ca_url_from_token(token: str, invite: Invite) -> str:
    """Where to redeem ``token``: its audience names the CA's /1.0/sign URL (step-ca's rule)."""
    return _read_token(token, invite.url, invite.root_fingerprint)[0]


def _read_token(token: str, provider_url: str, fingerprint: str) -> tuple[str, int]:
    """The CA URL (from the audience, step-ca's rule) and the user id (``sub``) of ``token``.

    The token is not verified here (the CA does that); it only tells us where to go, and that
    CA must still prove itself with the pinned root.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        audience = claims.get("aud")
        audience = audience[0] if isinstance(audience, list) and audience else audience
        if not isinstance(audience, str) or not audience.endswith(SIGN_PATH):
            raise ValueError("no /1.0/sign audience")
        ca_url = normalize_base_url(audience.removesuffix(SIGN_PATH))
        user_id = parse_user_id(claims.get("sub"))
    except (jwt.InvalidTokenError, InvalidBaseUrl, InvalidUserId, ValueError):
        raise UserError(f"the identity provider at {provider_url} sent a token Chimera does not "
                        "understand") from None
    if claims.get("sha", fingerprint) != fingerprint:
        raise UserError(f"the identity provider at {provider_url} sent a token for a CA with "
                        "another root certificate than the one pinned; nothing was saved")
    return ca_url, user_id


def write_identity_files(paths: ProfilePaths, user_id: int, key_pem: bytes,
                         signed: SignedCertificate, root: x509.Certificate) -> Identity:
    """Write ``<id>.pem``, ``ca_bundle.pem`` and then ``<id>_crt.pem``, each atomically.

    The certificate goes last: until it is in place, :func:`load_identity` sees either the old
    identity or (key and certificate not matching) none, never a broken one.
    """
    ensure_private_dir(paths.root)
    chain_pem = "".join(certificate_pem(cert) for cert in signed.chain).encode("ascii")
    atomic_write_bytes(paths.private_key(user_id), key_pem)
    atomic_write_bytes(paths.ca_bundle, certificate_pem(root).encode("ascii"))
    atomic_write_bytes(paths.certificate(user_id), chain_pem)
    return identity_from_certificate(signed.leaf, paths, user_id)


def _check_issued(signed: SignedCertificate, key: ec.EllipticCurvePrivateKey, user_id: int,
                  root: x509.Certificate) -> None:
    leaf = signed.leaf
    try:
        if certificate_user_id(leaf) != user_id or not same_public_key(key, leaf):
            raise UntrustedCertificate("not our key or not our id")
        verify_client_chain(leaf, [c for c in signed.chain[1:] if c != root], root)
    except (CertificateIdentityError, UntrustedCertificate):
        raise UserError("the team CA sent back a certificate that does not match the request or "
                        "does not lead to the team root; nothing was saved") from None
