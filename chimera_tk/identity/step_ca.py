"""Handing signing to a real step-ca while the provider keeps proving who people are.

``chimera-identity step-ca --dir DIR --ca-url URL`` records the step-ca's address in the CA folder
(the provider's enrollment tokens then name that step-ca as their audience, which is where
``chimera --new`` sends the CSR) and writes ``DIR/step-ca/ca.json``: a step-ca configuration with
this folder's root, intermediate and JWK provisioner, so certificates from step-ca chain to the
root that invites pin, and step-ca accepts exactly the tokens this provider mints. Renewal then
goes to step-ca too (the client's ``team.ca_url``); revocation goes through the provider (below).

The intermediate key is used in place (unencrypted, mode 0600, as the provider itself uses it),
so step-ca needs no ``--password-file``. The ``crl`` section is for step-ca 0.22 and later; older
versions (Debian 12 ships 0.19) ignore it and publish no revocation list at all.

Revocation in step-ca mode: the identity provider publishes the team CRL. Because step-ca signs
with the same intermediate, the provider's ``/crl`` is a valid CRL for step-ca's certificates,
and the LAN fetches it from ``team.identity_url`` (:func:`chimera_tk.net.revocation.crl_url`).
``chimera --revoke`` goes to the provider (mutual TLS with the certificate, as step-ca would
take it); the provider first revokes the serial at step-ca with a JWK-provisioner token
(:func:`revoke_at_step_ca`, so that step-ca refuses its renewal) and only then records it for
its CRL. If step-ca cannot be told, nothing is recorded and the client gets one clear error, so
a retry starts from a clean state; a serial step-ca already holds as revoked counts as done, so
a retry after a half-finished attempt completes it. step-ca 0.19 has no API that lists what it
issued, so clients report each certificate they get from step-ca to the provider
(``POST /enroll/report``, mutual TLS), which is what ``chimera-identity list`` and ``revoke
--id`` work from. A revocation made at step-ca directly (``step ca revoke``) bypasses the
provider and so misses the LAN's CRL: revoke through Chimera.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from chimera_tk.errors import UserError
from chimera_tk.fsutil import atomic_write_bytes, ensure_private_dir
from chimera_tk.identity.layout import (
    AuthorityFiles,
    AuthoritySettings,
    load_settings,
    save_settings,
)
from chimera_tk.pki.ca_client import RequestRefused, StepCAClient
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url, url_host, url_port

# The provider waits for step-ca inside a client's request: short, so a dead step-ca is reported
# well before the client's own read timeout (20 s).
STEP_CA_TIMEOUT = (3.0, 10.0)


class StepCaRevocationFailed(Exception):
    """step-ca did not confirm the revocation; the message says why, for the admin and client."""


def step_ca_folder(files: AuthorityFiles) -> Path:
    return files.root / "step-ca"


def step_ca_config(files: AuthorityFiles, settings: AuthoritySettings, *, listen: str,
                   db_path: Path) -> dict[str, Any]:
    """step-ca's ``ca.json`` for this CA folder's keys; ``listen`` is step-ca's HOST:PORT."""
    if not settings.ca_url:
        raise UserError("this CA folder does not name a step-ca (ca_url is empty)")
    try:
        jwk = json.loads(files.provisioner_public_jwk.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{files.provisioner_public_jwk} cannot be read: {exc}") from None
    if not isinstance(jwk, dict) or jwk.get("kid") != settings.provisioner_kid:
        raise UserError(f"{files.provisioner_public_jwk} does not hold this CA's provisioner key")
    host = url_host(settings.ca_url)
    return {
        "root": str(files.root_certificate),
        "crt": str(files.intermediate_certificate),
        "key": str(files.intermediate_key),
        "address": listen,
        "dnsNames": sorted({host, "localhost", "127.0.0.1"}),
        "logger": {"format": "text"},
        "db": {"type": "bbolt", "dataSource": str(db_path)},
        "crl": {"enabled": True, "generateOnRevoke": True},
        "authority": {
            "provisioners": [{"type": "JWK", "name": settings.provisioner_name, "key": jwk}],
            "claims": {
                "minTLSCertDuration": f"{settings.min_lifetime_minutes:g}m",
                "maxTLSCertDuration": f"{settings.max_lifetime_hours:g}h",
                "defaultTLSCertDuration": f"{settings.default_lifetime_hours:g}h",
            },
        },
        "tls": {"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": False},
    }


def use_step_ca(directory: Path, ca_url: str, *, listen: str | None = None) -> Path:
    """Point the CA folder at the step-ca at ``ca_url`` and write its ca.json; returns its path.

    ``listen`` defaults to all addresses on the port of ``ca_url``.
    """
    files = AuthorityFiles(directory.expanduser().absolute())
    settings = load_settings(files)
    try:
        ca_url = normalize_base_url(ca_url)
    except InvalidBaseUrl as exc:
        raise UserError(f"the step-ca address {ca_url[:80]!r} is not valid: {exc}") from None
    if ca_url == settings.url:
        raise UserError(f"{ca_url} is the identity provider's own address; step-ca needs "
                        "another port or host")
    settings = dataclasses.replace(settings, ca_url=ca_url)
    folder = step_ca_folder(files)
    ensure_private_dir(folder / "db")
    config = step_ca_config(files, settings, listen=listen or f":{url_port(ca_url)}",
                            db_path=folder / "db" / "step.db")
    config_path = folder / "ca.json"
    atomic_write_bytes(config_path, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    save_settings(files, settings)  # last: tokens name step-ca only once its config exists
    return config_path


def external_ca_url(settings: AuthoritySettings) -> str:
    """The step-ca that signs for this CA folder, or "" when the provider signs itself."""
    return settings.ca_url if settings.ca_url and settings.ca_url != settings.url else ""


def revoke_at_step_ca(ca_url: str, root_bundle: Path, token: str, serial: int, reason_code: int,
                      note: str, *, timeout: tuple[float, float] = STEP_CA_TIMEOUT) -> None:
    """Passive revocation of ``serial`` at the step-ca at ``ca_url``, authorised by ``token``
    (a JWK-provisioner token whose ``aud`` is ``ca_url``/1.0/revoke; step-ca 0.19 checks its
    signature, issuer, audience and one-time ``jti``, but not that ``sub`` is the serial: the
    provisioner key may revoke anything, so only the provider holds it). A serial step-ca
    already lists as revoked counts as done. Raises StepCaRevocationFailed otherwise."""
    try:
        with StepCAClient(ca_url, root_bundle, timeout=timeout) as ca:
            ca.revoke(serial, reason_code, note, ott=token)
    except RequestRefused as refused:
        # step-ca 0.19: 400 "certificate with serial number '...' is already revoked"
        if refused.status == 400 and "already revoked" in refused.reason:
            return
        raise StepCaRevocationFailed(f"the team's step-ca at {ca_url} refused to revoke it "
                                     f"({refused.status}: {refused.reason})") from None
    except UserError as exc:  # unreachable, timed out, or an answer it could not read
        raise StepCaRevocationFailed(str(exc)) from None
