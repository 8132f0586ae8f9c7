"""The files of a CA folder, and its settings (``config.json``).

The names follow step-ca's where there is one, so an admin who moves to a real step-ca recognises
them: the root and intermediate, their keys, and the JWK provisioner whose public key goes into
step-ca's ``ca.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from chimera_tk.errors import UserError
from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.pki.urls import normalize_base_url

SETTINGS_VERSION = 1


@dataclass(frozen=True, slots=True)
class AuthorityFiles:
    """Every path inside one CA folder; nothing else builds these paths by hand."""

    root: Path

    @property
    def settings(self) -> Path:
        return self.root / "config.json"

    @property
    def root_certificate(self) -> Path:
        return self.root / "root_ca.crt"

    @property
    def root_key(self) -> Path:
        return self.root / "root_ca_key.pem"

    @property
    def intermediate_certificate(self) -> Path:
        return self.root / "intermediate_ca.crt"

    @property
    def intermediate_key(self) -> Path:
        return self.root / "intermediate_ca_key.pem"

    @property
    def provisioner_key(self) -> Path:
        return self.root / "provisioner_key.pem"

    @property
    def provisioner_public_jwk(self) -> Path:
        return self.root / "provisioner.pub.jwk"

    @property
    def server_certificate(self) -> Path:
        """The provider's own TLS certificate followed by the intermediate."""
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server_key.pem"

    @property
    def state(self) -> Path:
        return self.root / "state.db"


@dataclass(frozen=True, slots=True)
class AuthoritySettings:
    url: str
    team_name: str
    provisioner_name: str
    provisioner_kid: str
    default_lifetime_hours: float = 240.0
    min_lifetime_minutes: float = 5.0
    max_lifetime_hours: float = 264.0
    version: int = SETTINGS_VERSION
    # A real step-ca that signs, renews and revokes for this team ("" = this folder's own CA);
    # the provider then mints its enrollment tokens for that step-ca's JWK provisioner.
    ca_url: str = ""

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def save_settings(files: AuthorityFiles, settings: AuthoritySettings) -> None:
    atomic_write_bytes(files.settings, settings.to_json())


def load_settings(files: AuthorityFiles) -> AuthoritySettings:
    """The CA folder's settings; UserError if the folder is not a Chimera CA or is damaged."""
    try:
        raw = json.loads(files.settings.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{files.root} is not a Chimera CA folder (no config.json); "
                        "create one with: chimera-identity init --dir FOLDER") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{files.settings} cannot be read: {exc}") from None
    if not isinstance(raw, dict) or raw.get("version") != SETTINGS_VERSION:
        raise UserError(f"{files.settings} is from another version of Chimera")
    try:
        settings = AuthoritySettings(**raw)
        _check(settings)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{files.settings} has unknown, missing or bad settings: {exc}") from None
    return settings


def _check(settings: AuthoritySettings) -> None:
    if normalize_base_url(settings.url) != settings.url:
        raise ValueError(f"url {settings.url!r} is not in the form https://HOST:PORT")
    if settings.ca_url and (not isinstance(settings.ca_url, str)
                            or normalize_base_url(settings.ca_url) != settings.ca_url):
        raise ValueError(f"ca_url {settings.ca_url!r} is not in the form https://HOST:PORT")
    for name in ("team_name", "provisioner_name", "provisioner_kid"):
        if not isinstance(getattr(settings, name), str) or not getattr(settings, name):
            raise ValueError(f"{name} must be a non-empty string")
    hours = (settings.min_lifetime_minutes / 60, settings.default_lifetime_hours,
             settings.max_lifetime_hours)
    if not all(isinstance(h, int | float) for h in hours) or not 0 < hours[0] <= hours[1] <= \
            hours[2]:
        raise ValueError("lifetimes must satisfy min <= default <= max")
