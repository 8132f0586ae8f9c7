"""What the Settings dialog edits, as data, and the pure function that checks a filled-in form.

Each :class:`Field` names one config key (``section.key``), its label, a one-line hint and how
its text is read. :func:`validate_form` turns the form's strings and booleans into a new
:class:`Config` built on the current one (so keys the dialog does not show are kept), or into a
list of :class:`FieldError` naming the field and saying what is wrong in plain words. No Tk here:
tests call it without a display.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from chimera_tk.config import AUTO_DOWNLOAD, DELETE_MODES, THEMES, Config
from chimera_tk.errors import ConfigError
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url

FormValue = str | bool


class FieldError(NamedTuple):
    field: str  # "section.key"
    message: str


@dataclass(frozen=True, slots=True)
class Field:
    key: str  # "section.key" in config.toml
    label: str
    hint: str
    kind: str  # text, secret, int, port, seconds, bool, choice, url, addresses, folder, hours
    choices: tuple[tuple[str, str], ...] = ()  # (stored value, what the user reads)
    low: float = 0
    high: float = 0

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


_THEME_NAMES = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
_AUTO_NAMES = {"private": "Private chats and small groups", "always": "Every chat",
               "never": "Never (download on request)"}
_DELETE_NAMES = {"remove": "Remove the message", "mark": "Keep it, marked as deleted"}

PAGES: dict[str, tuple[Field, ...]] = {
    "General": (
        Field("ui.theme", "Theme", "Applied at once; “Follow the system” reads the desktop's "
              "dark mode.", "choice", tuple((t, _THEME_NAMES[t]) for t in THEMES)),
        Field("ui.close_to_tray", "Close to tray",
              "Closing the window keeps Chimera running in the tray.", "bool"),
        Field("ui.start_minimised", "Start minimised",
              "Start in the tray without showing the window.", "bool"),
        Field("ui.received_deletes", "When a sender deletes",
              "What happens to a message its sender deleted.", "choice",
              tuple((m, _DELETE_NAMES[m]) for m in DELETE_MODES)),
    ),
    "Notifications": (
        Field("ui.notifications", "Show notifications",
              "A desktop notification for each new message while the window is not focused.",
              "bool"),
        Field("ui.notification_preview", "Show message text",
              "Off: notifications name the sender only.", "bool"),
        Field("ui.do_not_disturb", "Do not disturb",
              "No notifications at all; unread counts still grow.", "bool"),
    ),
    "Telegram": (
        Field("telegram.api_id", "api_id", "The number shown at my.telegram.org → API "
              "development tools. Empty: no Telegram.", "text"),
        Field("telegram.api_hash", "api_hash", "32 letters and digits from the same page; "
              "kept hidden.", "secret"),
        Field("telegram.seed_messages", "Messages per chat at first sync",
              "How many recent messages of each chat the first sync downloads (0-1000).",
              "int", low=0, high=1000),
    ),
    "Team & Certificate": (
        Field("team.identity_url", "Identity provider", "https://HOST:PORT from your team "
              "admin; proves your Telegram account to the team.", "url"),
        Field("team.ca_url", "Certificate authority", "https://HOST:PORT of the team CA; "
              "empty: the identity provider's.", "url"),
        Field("team.display_name", "Display name", "The name people on the LAN see; empty: "
              "“User <id>”.", "text"),
        Field("team.cert_lifetime_hours", "Certificate lifetime (hours)",
              "Asked for new certificates; 240 h (10 days) by default, 264 at most.", "hours",
              low=1, high=264),
    ),
    "LAN": (
        Field("lan.enabled", "Use the local network",
              "Send directly to people on the same network, over mutual TLS.", "bool"),
        Field("lan.discovery_port", "Discovery port (UDP)",
              "Where announcements are heard; 50050 like the first Chimera.", "port"),
        Field("lan.announce_port", "Announce port (UDP)",
              "The port announcements are sent from; 50051.", "port"),
        Field("lan.peer_port", "Message port (TCP)",
              "Where peers connect with TLS to deliver messages and files; 50052.", "port"),
        Field("lan.interval_s", "Announce every (seconds)",
              "How often this machine says it is here; 5 s by default.", "seconds",
              low=0.2, high=3600),
        Field("lan.broadcast_addresses", "Broadcast addresses",
              "IPv4 addresses separated by commas, e.g. 192.168.1.255; empty: detect them.",
              "addresses"),
        Field("lan.crl_refresh_s", "Revocation list refresh (seconds)",
              "A revoked certificate is refused within this long (1-600).", "seconds",
              low=1, high=600),
    ),
    "Files": (
        Field("files.downloads_dir", "Downloads folder",
              "Where received files are saved; empty: the profile's own downloads folder.",
              "folder"),
        Field("files.auto_download", "Download automatically",
              "Channels and supergroups are never downloaded without asking.", "choice",
              tuple((a, _AUTO_NAMES[a]) for a in AUTO_DOWNLOAD)),
        Field("files.auto_download_max_mb", "Largest automatic download (MB)",
              "Bigger files wait for a click; 0 turns automatic downloads off.", "int",
              low=0, high=4096),
    ),
}
_PAGE_OF_SECTION = {"ui": "General", "telegram": "Telegram", "team": "Team & Certificate",
                    "lan": "LAN", "files": "Files"}


# Keys that config.py may or may not have yet (added by work in progress): shown when present.
_WHEN_PRESENT = {
    "lan.pairing_port": Field("lan.pairing_port", "Pairing port (TCP)",
                              "Open only while you pair a device; 50053.", "port"),
    "lan.pairing_window_s": Field("lan.pairing_window_s", "Pairing window (seconds)",
                                  "How long pairing stays open once started (10-600).",
                                  "seconds", low=10, high=600),
}
_NOT_SETTINGS = {"ui.close_to_tray_explained"}  # remembered state, not a choice


def _generic_field(section: str, name: str, kind: type) -> Field | None:
    """A field for a config key this table does not describe: every value stays editable
    here, and config.py's own rules check it on Save."""
    key = f"{section}.{name}"
    if key in _NOT_SETTINGS:
        return None
    if key in _WHEN_PRESENT:
        return _WHEN_PRESENT[key]
    label = name.replace("_", " ").capitalize()
    hint = f"{section}.{name} in config.toml."
    if kind is bool:
        return Field(f"{section}.{name}", label, hint, "bool")
    if kind is int:
        if name.endswith("_port"):
            return Field(f"{section}.{name}", label, hint, "port")
        return Field(f"{section}.{name}", label, hint, "int", low=-2**31, high=2**31)
    if kind is float:
        return Field(f"{section}.{name}", label, hint, "seconds", low=0, high=10**9)
    if kind is str:
        return Field(f"{section}.{name}", label, hint, "text")
    return None  # lists and the like need a field of their own


def _with_new_config_keys(pages: dict[str, tuple[Field, ...]]) -> None:
    import typing

    known = {f.key for page in pages.values() for f in page}
    for section, page in _PAGE_OF_SECTION.items():
        hints = typing.get_type_hints(typing.get_type_hints(Config)[section])
        extra = [field for name, kind in hints.items() if f"{section}.{name}" not in known
                 and (field := _generic_field(section, name, kind)) is not None]
        pages[page] += tuple(extra)


_with_new_config_keys(PAGES)
FIELDS: dict[str, Field] = {f.key: f for page in PAGES.values() for f in page}
_DISPLAY_NAME_MAX = 64


def config_to_form(config: Config) -> dict[str, FormValue]:
    """The text (or checkbox state) each field shows for ``config``."""
    values: dict[str, FormValue] = {}
    for key, spec in FIELDS.items():
        value = getattr(getattr(config, spec.section), spec.name)
        if spec.kind == "bool":
            values[key] = bool(value)
        elif spec.kind == "addresses":
            values[key] = ", ".join(value)
        elif spec.kind == "seconds":
            values[key] = f"{value:g}"
        elif key == "telegram.api_id":
            values[key] = str(value) if value else ""
        else:
            values[key] = str(value)
    return values


def validate_form(values: Mapping[str, FormValue], base: Config) -> Config | list[FieldError]:
    """The config the form describes (built on ``base``), or every problem, field by field."""
    errors: list[FieldError] = []
    changes: dict[str, dict[str, Any]] = {}
    for key, spec in FIELDS.items():
        if key not in values:
            continue
        try:
            parsed = _parse(spec, values[key])
        except ValueError as exc:
            errors.append(FieldError(key, str(exc)))
            continue
        changes.setdefault(spec.section, {})[spec.name] = parsed
    errors += _cross_checks(values, changes)
    if errors:
        return errors
    sections = {name: dataclasses.replace(getattr(base, name), **fields)
                for name, fields in changes.items()}
    config = dataclasses.replace(base, **sections)
    try:
        return config.validate()
    except ConfigError as exc:  # a rule of config.py this form does not know about
        return [FieldError(_key_named_in(str(exc)), str(exc))]


def _parse(spec: Field, value: FormValue) -> Any:
    if spec.kind == "bool":
        return bool(value)
    text = str(value).strip()
    if spec.kind == "choice":
        for stored, shown in spec.choices:
            if text in (stored, shown):
                return stored
        raise ValueError(f"choose one of: {', '.join(shown for _s, shown in spec.choices)}")
    if spec.kind == "port":
        number = _whole_number(text, "a port")
        if not 1 <= number <= 65535:
            raise ValueError(f"{number} is not a port number: use 1 to 65535")
        return number
    if spec.kind in ("int", "hours"):
        number = _whole_number(text, "this")
        if not spec.low <= number <= spec.high:
            unit = " hours" if spec.kind == "hours" else ""
            raise ValueError(f"{number}{unit} is out of range: use {spec.low:g} to "
                             f"{spec.high:g}{unit}")
        return number
    if spec.kind == "seconds":
        try:
            seconds = float(text.replace(",", "."))
        except ValueError:
            raise ValueError(f"{text[:20]!r} is not a number of seconds, e.g. 5 or 0.5") \
                from None
        if not spec.low <= seconds <= spec.high:
            raise ValueError(f"use {spec.low:g} to {spec.high:g} seconds")
        return seconds
    if spec.kind == "url":
        if not text:
            return ""
        try:
            return normalize_base_url(text)
        except InvalidBaseUrl:
            raise ValueError("write it as https://HOST or https://HOST:PORT, nothing after "
                             "the port") from None
    if spec.kind == "addresses":
        return _broadcast_addresses(text)
    if spec.kind == "folder":
        return _folder(text)
    if spec.key == "telegram.api_id":
        if not text:
            return 0
        if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**31:
            raise ValueError("api_id is the number shown on my.telegram.org (digits only)")
        return int(text)
    if spec.kind == "secret":  # telegram.api_hash
        if text and not re.fullmatch(r"[0-9a-fA-F]{32}", text):
            raise ValueError("api_hash is the 32 letters and digits shown on my.telegram.org")
        return text.lower()
    if spec.key == "team.display_name":
        if len(text) > _DISPLAY_NAME_MAX or not text.isprintable():
            raise ValueError(f"one line of at most {_DISPLAY_NAME_MAX} characters")
        return text
    return text


def _whole_number(text: str, what: str) -> int:
    if not text.isascii() or not re.fullmatch(r"-?[0-9]+", text):
        raise ValueError(f"{text[:20]!r} is not a whole number" if text
                         else f"{what} is needed: write a whole number")
    return int(text)


def _broadcast_addresses(text: str) -> tuple[str, ...]:
    addresses: list[str] = []
    for part in re.split(r"[,\s]+", text):
        if not part:
            continue
        try:
            address = ipaddress.IPv4Address(part)
        except ValueError:
            raise ValueError(f"{part[:40]!r} is not an IPv4 address (like 192.168.1.255)") \
                from None
        if address.is_unspecified or address.is_multicast:
            raise ValueError(f"{part} cannot be a broadcast address")
        if str(address) not in addresses:
            addresses.append(str(address))
    return tuple(addresses)


def _folder(text: str) -> str:
    if not text:
        return ""
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ValueError("give the whole path of the folder (use Browse…)")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    if not path.exists() and not path.parent.is_dir():
        raise ValueError(f"{path.parent} does not exist")
    return str(path)


def _cross_checks(values: Mapping[str, FormValue],
                  changes: dict[str, dict[str, Any]]) -> list[FieldError]:
    errors = []
    lan = changes.get("lan", {})
    if "discovery_port" in lan and lan.get("discovery_port") == lan.get("announce_port"):
        errors.append(FieldError("lan.announce_port",
                                 "must differ from the discovery port"))
    if "pairing_port" in lan and lan.get("pairing_port") == lan.get("peer_port"):
        errors.append(FieldError("lan.pairing_port", "must differ from the message port"))
    telegram = changes.get("telegram", {})
    if "api_id" in telegram and "api_hash" in telegram and \
            bool(telegram["api_id"]) != bool(telegram["api_hash"]):
        missing = "telegram.api_hash" if telegram["api_id"] else "telegram.api_id"
        errors.append(FieldError(missing, "api_id and api_hash go together: fill in both or "
                                          "neither"))
    return errors


def _key_named_in(message: str) -> str:
    for key in FIELDS:
        if key in message:
            return key
    match = re.search(r"\b([a-z]+\.[a-z_]+)\b", message)
    return match.group(1) if match else ""


def changed_sections(old: Config, new: Config) -> set[str]:
    return {f.name for f in dataclasses.fields(Config) if getattr(old, f.name) !=
            getattr(new, f.name)}
