"""Joining a team with an invite: from the code the admin gave to a key and certificate on disk.

Steps: pin the team root from the invite's fingerprint; make a key and a CSR; spend the invite for
a one-time token; have the CSR signed; check that what came back certifies our key for our id and
chains to the pinned root. Only then are the files written, so a failure anywhere leaves the
profile as it was.
"""

from __future__ import annotations

import tempfile
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
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url
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
                       timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> Enrollment:
    """Get a certificate for ``invite.user_id`` and store key, chain and root in the profile.

    ``lifetime_hours`` asks the CA for that validity; None takes the CA's default.
    """
    root = fetch_pinned_root(invite.url, invite.root_fingerprint, timeout=timeout)
    key = generate_private_key()
    csr = build_csr(key, invite.user_id)
    with tempfile.TemporaryDirectory(prefix="chimera-enroll-") as scratch:
        root_bundle = Path(scratch) / "root.pem"
        root_bundle.write_text(certificate_pem(root), encoding="ascii")
        with IdentityProviderClient(invite.url, root_bundle, timeout=timeout) as provider:
            try:
                token = provider.redeem_invite(invite.secret, invite.user_id)
            except RequestRefused as refused:
                raise UserError(f"the identity provider at {invite.url} refused the invite: "
                                f"{refused.reason}") from None
        ca_url = ca_url_from_token(token, invite)
        with StepCAClient(ca_url, root_bundle, timeout=timeout) as ca:
            signed = ca.sign(csr_to_pem(csr), token,
                             not_after=f"{lifetime_hours}h" if lifetime_hours else None)
    _check_issued(signed, key, invite.user_id, root)
    identity = write_identity_files(paths, invite.user_id, private_key_to_pem(key), signed, root)
    return Enrollment(identity=identity, identity_url=invite.url, ca_url=ca_url)


def ca_url_from_token(token: str, invite: Invite) -> str:
    """Where to redeem ``token``: its audience names the CA's /1.0/sign URL (step-ca's rule).

    The token is not verified here (the CA does that); it only tells us where to go, and that
    CA must still prove itself with the root the invite pinned.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        audience = claims.get("aud")
        audience = audience[0] if isinstance(audience, list) and audience else audience
        if not isinstance(audience, str) or not audience.endswith(SIGN_PATH):
            raise ValueError("no /1.0/sign audience")
        ca_url = normalize_base_url(audience.removesuffix(SIGN_PATH))
    except (jwt.InvalidTokenError, InvalidBaseUrl, ValueError):
        raise UserError(f"the identity provider at {invite.url} sent a token Chimera does not "
                        "understand") from None
    if claims.get("sha", invite.root_fingerprint) != invite.root_fingerprint:
        raise UserError(f"the identity provider at {invite.url} sent a token for a CA with "
                        "another root certificate than the invite's; nothing was saved")
    return ca_url


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
