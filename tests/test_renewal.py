"""Automatic renewal and the expired state, in a running headless App against a real ``serve``.

The CA is the module-scoped ``serve`` process of tests/test_identity_lifecycle.py on loopback;
certificates live 10 minutes, so "renewal due" and "expired" are real, not mocked clocks.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from chimera_tk.app import build_app
from chimera_tk.config import Config, LanSettings, save_config
from chimera_tk.events import StatusChanged
from chimera_tk.net.peer.tls import TlsFiles, client_context
from chimera_tk.net.renewal import RenewalWorker
from chimera_tk.pki.identity import load_identity
from tests.test_identity_lifecycle import ca, enrolled  # noqa: F401 (``ca`` is a fixture)
from tests.test_identity_server import RunningCA, free_port


def _lan_on_free_ports(config: Config) -> Config:
    return Config(telegram=config.telegram, team=config.team, ui=config.ui,
                  lan=LanSettings(discovery_port=free_port(), announce_port=free_port(),
                                  peer_port=free_port(), broadcast_addresses=("127.0.0.1",)))


def _presented_serial(port: int, client: TlsFiles) -> int:
    """The serial of the certificate the peer port shows a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            client_context(client).wrap_socket(raw) as tls:
        return int(tls.getpeercert()["serialNumber"], 16)


def _run_until(app, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    app.run_headless(until=lambda: condition() or time.monotonic() > deadline)


def test_running_app_renews_a_certificate_that_is_due(ca: RunningCA, tmp_path: Path) -> None:  # noqa: F811
    paths, config, old = enrolled(ca, tmp_path, issued_ago=timedelta(minutes=8))
    assert old.renewal_due() and old.is_valid_at(old.not_before + timedelta(minutes=8))
    config = _lan_on_free_ports(config)
    save_config(paths.config_file, config)
    _other_paths, _, other = enrolled(ca, tmp_path)  # a team peer that calls in afterwards
    app = build_app(paths, config, window=False)
    statuses: list[StatusChanged] = []
    app.dispatcher.subscribe(StatusChanged, statuses.append)
    renewed = [s for s in statuses if s.component == "certificate"]

    def done() -> bool:
        renewed[:] = [s for s in statuses if s.component == "certificate" and "until" in s.text]
        on_disk = load_identity(paths)
        return len(renewed) >= 2 and on_disk is not None and on_disk.serial != old.serial

    presented: list[int] = []

    def probe_after_renewal() -> None:
        # a *new* connection, made from another thread while the app runs
        deadline = time.monotonic() + 25
        while app.lan is None or app.lan.identity.serial == old.serial:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        presented.append(_presented_serial(
            config.lan.peer_port, TlsFiles(other.key_path, other.cert_path,
                                           other.ca_bundle_path)))

    prober = threading.Thread(target=probe_after_renewal, daemon=True)
    prober.start()
    _run_until(app, lambda: done() and bool(presented), 30)
    new = load_identity(paths)
    assert new is not None and new.serial != old.serial
    assert new.not_after > old.not_after and new.user_id == old.user_id
    # the certificate line at start, then the one after renewal, with the new expiry
    assert len(renewed) >= 2 and renewed[-1].text != renewed[0].text, statuses
    assert presented == [new.serial], "new connections must present the renewed certificate"


def test_expired_certificate_keeps_the_lan_off_and_the_app_running(
        ca: RunningCA, tmp_path: Path) -> None:  # noqa: F811
    paths, config, old = enrolled(ca, tmp_path, issued_ago=timedelta(minutes=11))
    config = _lan_on_free_ports(config)
    save_config(paths.config_file, config)
    app = build_app(paths, config, window=False)
    statuses: list[StatusChanged] = []
    app.dispatcher.subscribe(StatusChanged, statuses.append)
    _run_until(app, lambda: False, 2)  # the app runs (and would run Telegram) without a LAN
    assert app.lan is None
    assert not any(isinstance(w, RenewalWorker) for w in app.workers)
    lan = [s.text for s in statuses if s.component == "lan"]
    assert lan == ["LAN: off — certificate expired; get a new one with chimera --new"]
    assert any("expired" in s.text and s.component == "certificate" for s in statuses)
    with pytest.raises(OSError):  # nobody listens on the peer port
        socket.create_connection(("127.0.0.1", config.lan.peer_port), timeout=2).close()
    assert load_identity(paths).serial == old.serial  # an expired one cannot be renewed


def test_failing_renewal_warns_with_the_expiry(ca: RunningCA, tmp_path: Path) -> None:  # noqa: F811
    paths, config, _old = enrolled(ca, tmp_path, issued_ago=timedelta(minutes=8))
    dead = Config(team=type(config.team)(ca_url=f"https://127.0.0.1:{free_port()}"))
    events: list[object] = []
    worker = RenewalWorker(paths, dead, events.append, lambda identity: None, retry_s=0.1)
    assert worker.check_once() == 0.1 and events == []  # one failure: only logged
    worker.check_once()
    assert len(events) == 1 and events[0].level == "warning"
    assert events[0].text.startswith("Certificate: renewal failing — expires ")
