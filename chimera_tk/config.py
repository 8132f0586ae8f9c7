"""Typed settings kept in each profile's ``config.toml``.

Every value has a typed default, so a missing file or key simply means "default". A value of the
wrong type or out of range is refused with a message that names the key; unknown keys are kept out
of the typed config and logged, so a newer Chimera's settings do not break an older one.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from chimera_tk.errors import ConfigError
from chimera_tk.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

THEMES = ("system", "light", "dark")
AUTO_DOWNLOAD = ("private", "always", "never")  # private = private chats and small groups
DELETE_MODES = ("remove", "mark")  # what a received delete does to the message


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    api_id: int = 0
    api_hash: str = ""
    seed_messages: int = 10

    def validate(self) -> None:
        _require(self.api_id >= 0, "telegram.api_id must not be negative")
        _require(0 <= self.seed_messages <= 1000, "telegram.seed_messages must be 0-1000")


@dataclass(frozen=True, slots=True)
class LanSettings:
    enabled: bool = True
    discovery_port: int = 50050
    announce_port: int = 50051
    peer_port: int = 50052
    interval_s: float = 5.0
    broadcast_addresses: tuple[str, ...] = ()
    crl_refresh_s: float = 300.0  # a revoked peer is refused within this long
    pairing_port: int = 50053  # listens only while a pairing window is open
    pairing_window_s: float = 120.0

    def validate(self) -> None:
        _require(10 <= self.pairing_window_s <= 600, "lan.pairing_window_s must be 10-600 seconds")
        for name in ("discovery_port", "announce_port", "peer_port", "pairing_port"):
            port = getattr(self, name)
            _require(1 <= port <= 65535, f"lan.{name} must be a port number 1-65535, not {port}")
        _require(0.2 <= self.interval_s <= 3600, "lan.interval_s must be 0.2-3600 seconds")
        _require(1 <= self.crl_refresh_s <= 600, "lan.crl_refresh_s must be 1-600 seconds")


@dataclass(frozen=True, slots=True)
class TeamSettings:
    identity_url: str = ""
    ca_url: str = ""
    cert_lifetime_hours: int = 240
    display_name: str = ""  # the name LAN peers see in our HELLO

    def validate(self) -> None:
        _require(1 <= self.cert_lifetime_hours <= 264, "team.cert_lifetime_hours must be 1-264")


@dataclass(frozen=True, slots=True)
class UiSettings:
    theme: str = "system"
    close_to_tray: bool = True
    start_minimised: bool = False
    notifications: bool = True
    notification_preview: bool = True  # false: notifications name the sender only
    do_not_disturb: bool = False
    close_to_tray_explained: bool = False  # set once the "still running in the tray" note showed
    received_deletes: str = "remove"

    def validate(self) -> None:
        _require(self.theme in THEMES, f"ui.theme must be one of {', '.join(THEMES)}")
        _require(self.received_deletes in DELETE_MODES,
                 f"ui.received_deletes must be one of {', '.join(DELETE_MODES)}")


@dataclass(frozen=True, slots=True)
class FileSettings:
    downloads_dir: str = ""  # empty: the profile's own downloads folder
    auto_download: str = "private"
    auto_download_max_mb: int = 50

    def validate(self) -> None:
        _require(self.auto_download in AUTO_DOWNLOAD,
                 f"files.auto_download must be one of {', '.join(AUTO_DOWNLOAD)}")
        _require(0 <= self.auto_download_max_mb <= 4096,
                 "files.auto_download_max_mb must be 0-4096")


def downloads_folder(files: FileSettings, profile_downloads: Path) -> Path:
    """Where received files go: ``files.downloads_dir`` if set, else the profile's own folder."""
    return Path(files.downloads_dir).expanduser() if files.downloads_dir else profile_downloads


def downloads_automatically(files: FileSettings, dialog_kind: str, size: int) -> bool:
    """Whether a received Telegram file is fetched without being asked for.

    "private" (the default) fetches in private chats and basic groups only: channels and
    supergroups can carry malware to thousands at once. "always" is the user's explicit choice;
    "never" waits for a click. The size limit applies to every policy (0 = no limit)."""
    if files.auto_download == "never":
        return False
    if files.auto_download_max_mb and size > files.auto_download_max_mb * 2**20:
        return False
    return files.auto_download == "always" or dialog_kind in ("user", "group")


@dataclass(frozen=True, slots=True)
class Config:
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    lan: LanSettings = field(default_factory=LanSettings)
    team: TeamSettings = field(default_factory=TeamSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    files: FileSettings = field(default_factory=FileSettings)

    def validate(self) -> Config:
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        return self

    def to_toml(self) -> bytes:
        return tomli_w.dumps(_to_plain(self)).encode()


def load_config(path: Path) -> Config:
    """Read ``path``; a missing file gives the defaults. Raises ConfigError naming the bad key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return config_from_dict(raw, source=str(path))


def save_config(path: Path, config: Config) -> None:
    atomic_write_bytes(path, config.validate().to_toml())


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for name, value in raw.items():
        if name not in hints:
            log.warning("%s: ignoring unknown section [%s]", source, name)
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _section_from_dict(hints[name], name, value, source)
    return Config(**sections).validate()


def _section_from_dict(cls: type, section: str, raw: dict[str, Any], source: str) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            log.warning("%s: ignoring unknown key %s.%s", source, section, key)
            continue
        values[key] = _coerce(hints[key], value, f"{source}: {section}.{key}")
    return cls(**values)


def _coerce(expected: Any, value: Any, where: str) -> Any:
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(expected) is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of strings")
    raise ConfigError(f"{where} must be {_type_name(expected)}, not {value!r}")


def _type_name(expected: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number",
            str: "a string"}.get(expected, str(expected))


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
