"""Handing signing to a real step-ca while the provider keeps proving who people are.

``chimera-identity step-ca --dir DIR --ca-url URL`` records the step-ca's address in the CA folder
(the provider's enrollment tokens then name that step-ca as their audience, which is where
``chimera --new`` sends the CSR) and writes ``DIR/step-ca/ca.json``: a step-ca configuration with
this folder's root, intermediate and JWK provisioner, so certificates from step-ca chain to the
root that invites pin, and step-ca accepts exactly the tokens this provider mints. Renewal and
revocation then go to step-ca too (the client's ``team.ca_url``).

The intermediate key is used in place (unencrypted, mode 0600, as the provider itself uses it),
so step-ca needs no ``--password-file``. The ``crl`` section is for step-ca 0.22 and later, which
serve the CRL at ``/crl`` where Chimera's LAN looks for it; older versions ignore it and publish
no revocation list at all.
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
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url, url_host, url_port


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
