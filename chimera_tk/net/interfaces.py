"""Which IPv4 broadcast addresses LAN discovery sends to.

The choice, in order: the addresses configured in ``lan.broadcast_addresses``; else the
comma-separated ``CHIMERA_BROADCAST_ADDRESSES`` environment variable (the test suite sets it to the
loopback broadcast so that no test ever announces on a real network); else the broadcast address
of every IPv4 interface that is up, skipping loopback and interfaces without one (point-to-point
links, tunnels). An empty variable counts as unset.
"""

from __future__ import annotations

import ipaddress
import os
import socket

from chimera_tk.errors import ConfigError

ENV_VAR = "CHIMERA_BROADCAST_ADDRESSES"


def broadcast_addresses(configured: tuple[str, ...]) -> list[str]:
    """The IPv4 addresses to announce to, without duplicates, in a stable order.

    Raises ConfigError when a configured or environment address is not an IPv4 address.
    """
    if configured:
        return _validated(configured, "lan.broadcast_addresses")
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return _validated(tuple(part.strip() for part in from_env.split(",") if part.strip()),
                          ENV_VAR)
    return detect_broadcast_addresses()


def detect_broadcast_addresses() -> list[str]:
    """The broadcast address of each up, non-loopback IPv4 interface, as the system reports it."""
    import psutil  # imported here: only discovery needs it, and not before the first paint

    stats = psutil.net_if_stats()
    found: list[str] = []
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        status = stats.get(name)
        # ``flags`` exists from psutil 5.9.3 on; older versions still skip 127/8 addresses below.
        flags = getattr(status, "flags", "").split(",") if status is not None else []
        if status is None or not status.isup or "loopback" in flags:
            continue
        for address in addresses:
            if address.family != socket.AF_INET or not address.broadcast:
                continue
            try:
                local = ipaddress.IPv4Address(address.address)
                broadcast = ipaddress.IPv4Address(address.broadcast)
            except ValueError:
                continue
            if local.is_loopback or broadcast.is_unspecified or broadcast == local:
                continue
            if str(broadcast) not in found:
                found.append(str(broadcast))
    return found


def _validated(addresses: tuple[str, ...], source: str) -> list[str]:
    result: list[str] = []
    for text in addresses:
        try:
            address = str(ipaddress.IPv4Address(text.strip()))
        except ValueError:
            raise ConfigError(f"{source}: {text!r} is not an IPv4 address") from None
        if address not in result:
            result.append(address)
    return result
