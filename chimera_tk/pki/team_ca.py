"""Which of the team's two addresses does what when the team's CA is a real step-ca.

A profile knows the identity provider (``team.identity_url``) and the CA (``team.ca_url``). For
Chimera's built-in CA they are one address. When they differ the CA is an external step-ca: it
signs and renews, while revocation goes to the provider, which revokes at step-ca as well and
publishes the team CRL (see :mod:`chimera_tk.identity.step_ca`). Each certificate step-ca issues
is reported to the provider, so that the admin can list it and revoke it by user id.
"""

from __future__ import annotations

import logging
from pathlib import Path

from chimera_tk.errors import UserError
from chimera_tk.pki.ca_client import DEFAULT_TIMEOUT, IdentityProviderClient
from chimera_tk.pki.identity import Identity

log = logging.getLogger(__name__)


def external_ca(ca_url: str, identity_url: str) -> bool:
    """True when the team's CA is not its identity provider (a real step-ca)."""
    return bool(ca_url and identity_url and ca_url.rstrip("/") != identity_url.rstrip("/"))


def revocation_url(ca_url: str, identity_url: str) -> str:
    """Where ``/1.0/revoke`` goes: the provider when the CA is external, else the CA."""
    return identity_url if external_ca(ca_url, identity_url) else ca_url


def report_to_provider(identity_url: str, ca_bundle: Path, identity: Identity, *,
                       passphrase: bytes | None = None,
                       timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> bool:
    """Tell the provider about a certificate from step-ca; False (logged) if that failed.

    Failure is not fatal: the certificate works, and the provider still learns its serial when
    it is revoked with it or reported after the next renewal; only the admin's ``list`` and
    ``revoke --id`` miss it meanwhile (``revoke --serial`` still works).
    """
    try:
        with IdentityProviderClient(identity_url, ca_bundle, timeout=timeout,
                                    client_identity=(identity.cert_path, identity.key_path),
                                    key_password=passphrase) as provider:
            provider.report_certificate()
    except UserError as exc:
        log.warning("could not report certificate serial %x to the identity provider "
                    "(its admin will not see it in list until it is reported): %s",
                    identity.serial, exc)
        return False
    log.info("certificate serial %x reported to the identity provider", identity.serial)
    return True
