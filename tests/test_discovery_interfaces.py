"""Where announcements go: configured addresses, the environment override, auto-detection."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import psutil
import pytest

from chimera_tk.errors import ConfigError
from chimera_tk.net.interfaces import ENV_VAR, broadcast_addresses, detect_broadcast_addresses


def _addr(address: str, broadcast: str | None, family: int = socket.AF_INET) -> SimpleNamespace:
    return SimpleNamespace(family=family, address=address, netmask=None, broadcast=broadcast,
                           ptp=None)


def _stats(up: bool, flags: str) -> SimpleNamespace:
    return SimpleNamespace(isup=up, flags=flags)


@pytest.fixture
def fake_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    addrs = {
        "lo": [_addr("127.0.0.1", "127.255.255.255")],
        "eth0": [_addr("192.168.1.20", "192.168.1.255"),
                 _addr("fe80::1", None, socket.AF_INET6)],
        "eth1": [_addr("10.9.0.5", "10.9.0.255")],
        "wlan0": [_addr("172.16.0.9", "172.16.0.255")],
        "tun0": [_addr("10.8.0.2", None)],
        "br0": [_addr("192.168.1.21", "192.168.1.255")],
        "odd0": [_addr("10.7.0.1", "0.0.0.0")],
    }
    stats = {
        "lo": _stats(True, "up,loopback,running"),
        "eth0": _stats(True, "up,broadcast,running,multicast"),
        "eth1": _stats(True, "up,broadcast,running,multicast"),
        "wlan0": _stats(False, "broadcast,multicast"),
        "tun0": _stats(True, "up,pointopoint,running"),
        "br0": _stats(True, "up,broadcast,running"),
        "odd0": _stats(True, "up,broadcast,running"),
    }
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: addrs)
    monkeypatch.setattr(psutil, "net_if_stats", lambda: stats)


def test_test_session_announces_on_loopback_only() -> None:
    # The conftest fixture: nothing a test starts may broadcast on a real network.
    assert os.environ[ENV_VAR] == "127.255.255.255"
    assert broadcast_addresses(()) == ["127.255.255.255"]


def test_configured_addresses_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "127.255.255.255")
    assert broadcast_addresses(("10.1.2.255", "10.1.2.255", " 10.3.255.255")) == [
        "10.1.2.255", "10.3.255.255"]


def test_environment_wins_over_detection(monkeypatch: pytest.MonkeyPatch,
                                         fake_interfaces: None) -> None:
    monkeypatch.setenv(ENV_VAR, " 127.255.255.255 , 127.0.0.255,,127.255.255.255")
    assert broadcast_addresses(()) == ["127.255.255.255", "127.0.0.255"]


def test_detection_takes_up_non_loopback_ipv4_interfaces_with_a_broadcast_address(
        monkeypatch: pytest.MonkeyPatch, fake_interfaces: None) -> None:
    monkeypatch.setenv(ENV_VAR, "  ")  # blank counts as unset
    assert broadcast_addresses(()) == ["192.168.1.255", "10.9.0.255"]
    assert detect_broadcast_addresses() == ["192.168.1.255", "10.9.0.255"]


@pytest.mark.parametrize("bad", ["example.lan", "10.0.0.256", "fe80::1", ""])
def test_invalid_configured_address_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"lan\.broadcast_addresses"):
        broadcast_addresses((bad,))


def test_invalid_environment_address_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "127.255.255.255,nope")
    with pytest.raises(ConfigError, match=ENV_VAR):
        broadcast_addresses(())
