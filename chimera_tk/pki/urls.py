"""The one form of an identity-provider or CA address Chimera accepts: ``https://host[:port]``."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


class InvalidBaseUrl(ValueError):
    """Not an https URL made of a host and an optional port only."""


def normalize_base_url(url: str) -> str:
    """``url`` without a trailing slash, after checking that it is https, a host, maybe a port."""
    if not isinstance(url, str) or len(url) > 300 or not url.isascii() or not url.isprintable():
        raise InvalidBaseUrl("the address must be a short https URL")
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        raise InvalidBaseUrl(f"{url!r} has an invalid port") from None
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidBaseUrl(f"{url!r} is not an https://HOST:PORT address")
    if parts.username or parts.password or parts.query or parts.fragment or \
            parts.path not in ("", "/") or port == 0 or " " in parts.netloc:
        raise InvalidBaseUrl(f"{url!r} must be only https://HOST:PORT, with nothing after it")
    return f"https://{parts.netloc.lower()}"


def url_host(url: str) -> str:
    """The host part of a base URL, without IPv6 brackets."""
    return urlsplit(url).hostname or ""


def url_port(url: str) -> int:
    return urlsplit(url).port or 443


def host_is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
