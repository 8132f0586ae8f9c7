"""``chimera-identity init``: a new CA folder with root, intermediate, provisioner and TLS keys.

Everything is made in a hidden sibling folder and renamed into place at the end, so an interrupted
init leaves nothing half-made, and an existing CA is never overwritten.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psutil

from chimera_tk.errors import UserError
from chimera_tk.fsutil import PRIVATE_DIR_MODE, atomic_write_bytes
from chimera_tk.identity import issuing
from chimera_tk.identity.authority import PUBLIC_FILE_MODE, Authority
from chimera_tk.identity.layout import AuthorityFiles, AuthoritySettings, save_settings
from chimera_tk.identity.state import AuthorityState
from chimera_tk.identity.tokens import public_jwk
from chimera_tk.pki.certs import certificate_pem
from chimera_tk.pki.keys import generate_private_key, write_private_key

DEFAULT_PORT = 8443
DEFAULT_PROVISIONER = "chimera"
DEFAULT_TEAM_NAME = "Chimera team"


def default_lan_address() -> str | None:
    """The IPv4 address of the first up, non-loopback interface, as the LAN will see it."""
    stats = psutil.net_if_stats()
    for interface, addresses in psutil.net_if_addrs().items():
        if interface not in stats or not stats[interface].isup:
            continue
        for address in addresses:
            if address.family != socket.AF_INET:
                continue
            ip = ipaddress.IPv4Address(address.address)
            if not ip.is_loopback and not ip.is_link_local:
                return str(ip)
    return None


def default_url() -> str:
    address = default_lan_address()
    if address is None:
        raise UserError("this machine has no LAN IPv4 address to offer; give the address "
                        "clients will use with --url https://HOST:PORT")
    return f"https://{address}:{DEFAULT_PORT}"


def create_authority(directory: Path, *, url: str, team_name: str = DEFAULT_TEAM_NAME,
                     provisioner_name: str = DEFAULT_PROVISIONER) -> AuthoritySettings:
    """Create a CA in ``directory`` (which must not exist, or be empty) for clients at ``url``."""
    directory = directory.expanduser().absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"{directory} already exists and is not empty; refusing to overwrite "
                        "it (choose a new folder for the CA)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        settings = _populate(AuthorityFiles(staging), url, team_name, provisioner_name)
        os.chmod(staging, PRIVATE_DIR_MODE)
        try:
            os.rename(staging, directory)
        except OSError:
            raise UserError(f"{directory} appeared while the CA was being made; refusing to "
                            "overwrite it") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return settings


def _populate(files: AuthorityFiles, url: str, team_name: str,
              provisioner_name: str) -> AuthoritySettings:
    now = datetime.now(UTC)
    root_key, intermediate_key, provisioner_key = (generate_private_key() for _ in range(3))
    root = issuing.make_root(root_key, team_name, now)
    intermediate = issuing.make_intermediate(intermediate_key, root, root_key, team_name, now)
    jwk = public_jwk(provisioner_key.public_key())
    for path, key in ((files.root_key, root_key), (files.intermediate_key, intermediate_key),
                      (files.provisioner_key, provisioner_key)):
        write_private_key(path, key)
    for path, cert in ((files.root_certificate, root),
                       (files.intermediate_certificate, intermediate)):
        atomic_write_bytes(path, certificate_pem(cert).encode("ascii"), mode=PUBLIC_FILE_MODE)
    # The public JWK is what a real step-ca's ca.json needs to accept this provisioner's tokens.
    atomic_write_bytes(files.provisioner_public_jwk, (json.dumps(jwk, indent=2) + "\n").encode(),
                       mode=PUBLIC_FILE_MODE)
    settings = AuthoritySettings(url=url, team_name=team_name, provisioner_name=provisioner_name,
                                 provisioner_kid=jwk["kid"])
    save_settings(files, settings)
    authority = Authority(files, settings, AuthorityState(files.state))
    try:
        authority.ensure_server_certificate()
    finally:
        authority.close()
    return settings
