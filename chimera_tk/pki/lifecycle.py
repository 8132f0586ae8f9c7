"""Renewing and revoking the profile's certificate with the team CA (step-ca's API).

Both authenticate with the certificate itself over mutual TLS, so they need no token: renewal
keeps the key and atomically replaces ``<id>_crt.pem`` once the new certificate is checked;
revocation puts the serial on the team's CRL and leaves the files alone (the user then runs
``chimera --new`` with a new invite).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from chimera_tk.config import Config
from chimera_tk.errors import UserError
from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.pki.ca_client import DEFAULT_TIMEOUT, RequestRefused, StepCAClient
from chimera_tk.pki.certs import (
    UntrustedCertificate,
    certificate_pem,
    load_pem_chain,
    verify_client_chain,
)
from chimera_tk.pki.identity import (
    CertificateIdentityError,
    Identity,
    certificate_user_id,
    identity_from_certificate,
    load_identity,
)
from chimera_tk.pki.keys import KeyLockedError, load_private_key, same_public_key
from chimera_tk.pki.team_ca import external_ca, report_to_provider, revocation_url
from chimera_tk.profiles import ProfilePaths

log = logging.getLogger(__name__)

_GET_A_NEW_ONE = "get a new one with: chimera --new --invite CODE"


def current_identity(paths: ProfilePaths) -> Identity:
    identity = load_identity(paths)
    if identity is None:
        raise UserError(f"this profile has no certificate yet; {_GET_A_NEW_ONE}")
    return identity


def renew_certificate(paths: ProfilePaths, config: Config, *,
                      timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                      now: datetime | None = None,
                      passphrase: bytes | None = None) -> Identity:
    """Renew the profile's certificate; returns the new identity (same key and id).

    ``passphrase`` opens a protected key; the key file itself is never rewritten, so its
    protection stays as it is.
    """
    identity = current_identity(paths)
    if not identity.is_valid_at(now or datetime.now(UTC)):
        raise UserError(f"the certificate expired on {identity.not_after:%Y-%m-%d %H:%M} UTC and "
                        f"cannot be renewed; {_GET_A_NEW_ONE}")
    with _client(paths, config, identity, timeout, passphrase) as ca:
        try:
            signed = ca.renew()
        except RequestRefused as refused:
            raise _refusal("renew", identity, refused) from None
    root = load_pem_chain(paths.ca_bundle.read_bytes())[0]
    leaf = signed.chain[0]
    try:
        key = load_private_key(identity.key_path, passphrase)
        if certificate_user_id(leaf) != identity.user_id or not same_public_key(key, leaf):
            raise UntrustedCertificate("not our key or not our id")
        verify_client_chain(leaf, [c for c in signed.chain[1:] if c != root], root)
    except (CertificateIdentityError, UntrustedCertificate):
        raise UserError("the team CA sent back a certificate that is not for this key and id or "
                        "does not lead to the team root; the old one was kept") from None
    chain_pem = "".join(certificate_pem(cert) for cert in signed.chain).encode("ascii")
    atomic_write_bytes(identity.cert_path, chain_pem)
    log.info("certificate renewed: serial %x, valid until %s", leaf.serial_number,
             leaf.not_valid_after_utc)
    renewed = identity_from_certificate(leaf, paths, identity.user_id)
    if external_ca(config.team.ca_url, config.team.identity_url):
        report_to_provider(config.team.identity_url, paths.ca_bundle, renewed,
                           passphrase=passphrase, timeout=timeout)
    return renewed


def renew_if_due(paths: ProfilePaths, config: Config, *, now: datetime | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 passphrase: bytes | None = None) -> bool:
    """Renew when :meth:`Identity.renewal_due` says so; True if a new certificate was saved.

    False when there is nothing to do (no identity, no CA configured, not due yet). A failed
    attempt raises UserError with a one-line reason, for the app to show and retry later.
    """
    identity = load_identity(paths)
    if identity is None or not config.team.ca_url or not identity.renewal_due(now):
        return False
    renew_certificate(paths, config, timeout=timeout, now=now, passphrase=passphrase)
    return True


def revoke_certificate(paths: ProfilePaths, config: Config, reason_code: int, note: str, *,
                       timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                       passphrase: bytes | None = None) -> Identity:
    """Revoke the profile's certificate over mutual TLS with it; returns what was revoked.

    A team whose CA is a real step-ca revokes at its identity provider, which tells step-ca
    and publishes the CRL (see :mod:`chimera_tk.pki.team_ca`)."""
    identity = current_identity(paths)
    url = revocation_url(config.team.ca_url, config.team.identity_url)
    with _client(paths, config, identity, timeout, passphrase, base_url=url) as ca:
        try:
            ca.revoke(identity.serial, reason_code, note)
        except RequestRefused as refused:
            raise _refusal("revoke", identity, refused) from None
    log.info("certificate serial %x revoked", identity.serial)
    return identity


def _client(paths: ProfilePaths, config: Config, identity: Identity,
            timeout: tuple[float, float], passphrase: bytes | None = None, *,
            base_url: str | None = None) -> StepCAClient:
    if identity.key_encrypted and passphrase is None:
        raise KeyLockedError(f"the private key {identity.key_path.name} is protected by a "
                             "passphrase and it was not unlocked")
    if not config.team.ca_url:
        raise UserError("no team CA address is set (team.ca_url in config.toml); "
                        "set it with chimera --variables")
    bundle: Path = paths.ca_bundle
    return StepCAClient(base_url or config.team.ca_url, bundle, timeout=timeout,
                        client_identity=(identity.cert_path, identity.key_path),
                        key_password=passphrase)


def _refusal(action: str, identity: Identity, refused: RequestRefused) -> UserError:
    if refused.status == 401:
        return UserError(f"the team CA refused to {action} certificate serial "
                         f"{identity.serial:x}: {refused.reason}")
    if refused.status == 502:  # the provider could not reach the team's step-ca
        return UserError(f"could not {action} certificate serial {identity.serial:x}: "
                         f"{refused.reason}")
    return refused
