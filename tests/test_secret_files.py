"""Secrets at rest and in logs: the profile's secret files are 0600 and its folders 0700 after a
full run with LAN and Telegram, nothing secret reaches that run's log at DEBUG level, and the
suite's secret scan (tests/secret_scan.py) really fails a session that logs a secret."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from cryptography import x509

from chimera_tk.app import build_app
from chimera_tk.config import Config, LanSettings, TelegramSettings, save_config
from chimera_tk.events import MessageChanged, MessageStored
from chimera_tk.logging_setup import setup_logging
from chimera_tk.net.peer.tls import TlsFiles
from chimera_tk.pki.pairing import PinStore, pins_path
from chimera_tk.pki.personal import create_personal_identity
from chimera_tk.profiles import ProfilePaths
from tests.pki_factory import write_self_signed_identity
from tests.secret_scan import REGISTRY, SecretRegistry, scan_logs, scan_text
from tests.telegram_emulator import TEST_API_HASH, TEST_API_ID, TelegramServer
from tests.test_identity_server import free_port
from tests.test_peer_link import Node
from tests.test_telegram_worker import ALICE_PHONE, BOB_PHONE, _events, _factory, _sign_in

BOB_LAN = 777001


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class _LanPeer(Node):
    """A PeerWorker with Bob's personal identity, who has paired with the app's user."""

    def __init__(self, root: Path, files: TlsFiles, user_id: int) -> None:
        from chimera_tk.net.peer.worker import PeerLimits, PeerWorker
        from chimera_tk.store import Store
        from tests.event_recorder import EventRecorder

        self.user_id, self.root = user_id, root
        self.recorder = EventRecorder()
        self.tls = files
        self.db = root / "chimera.db"
        self.downloads = root / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(self.db)
        self.worker = PeerWorker(user_id, "Bob", files, self.db, self.downloads, self.recorder,
                                 host="127.0.0.1", port=0,
                                 limits=PeerLimits(ack_timeout_s=10, retry_after_s=0))
        self.worker.start()


def test_profile_secrets_are_0600_and_folders_0700_after_a_run_with_lan_and_telegram(
        paths: ProfilePaths, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHIMERA_DEBUG_LOG", "1")  # this run's own log, at DEBUG, is scanned too
    server = TelegramServer(seed=11)
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob_tg = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob_tg, alice, "hello over Telegram")

    # The app's own code makes every secret file: the key, the pins, the config, the session,
    # the database and the log.
    identity = create_personal_identity(paths, alice.id)
    bob_files = write_self_signed_identity(tmp_path / "bob", BOB_LAN)
    bob_cert = x509.load_pem_x509_certificate(bob_files.certificate_chain.read_bytes())
    PinStore(pins_path(paths)).add(bob_cert, "Bob")
    lan = LanSettings(discovery_port=free_port(), announce_port=free_port(),
                      peer_port=free_port(), pairing_port=free_port())
    config = Config(telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
                    lan=lan)
    save_config(paths.config_file, config)
    root_logger = logging.getLogger()
    saved_level, saved_handlers = root_logger.level, list(root_logger.handlers)
    log_file = setup_logging(paths.logs)
    app = build_app(paths, config, window=False, telegram_client_factory=_factory(server))
    bob = None
    try:
        app.start()
        _sign_in(app, server)
        app.telegram.wait_synced().result(30)
        sent = app.router.send_text(bob_tg.id, "and back over Telegram")
        _events(app, MessageChanged, timeout=20,
                where=lambda e: e.message.id == sent.id and e.message.state == "sent")

        # Bob pins the app's certificate and sends a text and a file over the LAN.
        pinned = TlsFiles(bob_files.key, bob_files.certificate_chain, bob_files.ca_bundle,
                          pins=tmp_path / "bob" / "pins.json")
        PinStore(pinned.pins).add(
            x509.load_pem_x509_certificate(identity.cert_path.read_bytes()), "Alice")
        bob = _LanPeer(tmp_path / "bob-node", pinned, BOB_LAN)
        assert app.lan is not None
        bob.worker.learn_address(alice.id, "127.0.0.1", app.lan.peer.port)
        text_id = bob.send_text(_Target(alice.id, app.lan.peer.port), "hello over the LAN")
        attachment = tmp_path / "notes.txt"
        attachment.write_text("a file over the LAN")
        file_id = bob.send_file(_Target(alice.id, app.lan.peer.port), attachment)
        assert bob.finished(text_id).message.state == "delivered"
        assert bob.finished(file_id).message.state == "delivered"
        _events(app, MessageStored, timeout=20, count=1,
                where=lambda e: e.message.sender_id == BOB_LAN)
    finally:
        if bob is not None:
            bob.close()
        app.shutdown()
        for handler in list(root_logger.handlers):
            if handler not in saved_handlers:
                root_logger.removeHandler(handler)
                handler.close()
        root_logger.setLevel(saved_level)

    secret_files = {
        "private key": paths.private_key(alice.id),
        "pins": pins_path(paths),
        "config": paths.config_file,
        "Telegram session": paths.telegram_session,
        "database": paths.database,
        "log": log_file,
    }
    for what, path in secret_files.items():
        assert path is not None and path.is_file(), what
        assert _mode(path) == 0o600, f"{what} {path.name} is {oct(_mode(path))}"
    received = [p for p in paths.downloads.rglob("*") if p.is_file()]
    assert [p.read_text() for p in received] == ["a file over the LAN"]
    loose = {}
    for path in [paths.root, *paths.root.rglob("*")]:
        if path.is_dir():
            assert _mode(path) == 0o700, f"folder {path} is {oct(_mode(path))}"
        elif _mode(path) & 0o077:
            loose[str(path.relative_to(paths.root))] = oct(_mode(path))
    # Everything else in the profile (the database's -wal/-shm, the certificate, received files)
    # is private too: none of it is anyone else's business on a shared computer.
    assert loose == {}
    # The run's own log, written at DEBUG level, holds none of the secrets it handled.
    REGISTRY.add(TEST_API_HASH, "test api_hash")
    assert "DEBUG" in log_file.read_text()
    assert scan_logs(paths.logs) == []


class _Target:
    """What Node.send_text / send_file need to know about the receiver."""

    def __init__(self, user_id: int, port: int) -> None:
        self.user_id = user_id
        self.worker = type("W", (), {"port": port})()


def test_the_scan_recognises_each_kind_of_secret() -> None:
    registry = SecretRegistry()
    registry.add("38291", "Telegram login code")
    registry.add("12345678", "enrollment code")
    registry.add("correct horse battery staple", "passphrase")
    key_header = "-----BEGIN " + "EC PRIVATE KEY-----"  # split: this file is no log, but still
    token = "eyJhbGciOiJFUzI1NiJ9" + "." + "eyJzdWIiOiI0MiJ9" + ".c2lnbmF0dXJl"
    text = "\n".join([
        f"key material: {key_header}",
        f"token {token}",
        "invite chimera-" + "invite:AAECAwQFBgcICQ",
        "api_hash=" + hashlib.md5(b"x").hexdigest(),
        "sent login code 38291 to +1555",
        "connected to 127.0.0.1:38291",  # a port that equals a code: not a finding
        "code for id 7 is 12345678",
        "unlocking with correct horse battery staple",
        "nothing to see here",
    ])
    found = [(f.where.rsplit(":", 1)[1], f.what) for f in scan_text(text, "x.log", registry)]
    assert found == [("1", "PEM private key"), ("2", "JWT-shaped token"), ("3", "invite code"),
                     ("4", "api_hash value"), ("5", "Telegram login code"),
                     ("7", "enrollment code"), ("8", "passphrase")]


def test_the_session_fails_when_a_log_holds_a_secret(tmp_path: Path) -> None:
    """A small session in a subprocess, with the plugin, that logs a token and writes a key
    block into a profile log: it must exit 1 and name both places."""
    outside = Path(tempfile.mkdtemp(prefix="secret-scan-"))  # not under this session's temp
    try:
        planted = outside / "test_planted.py"
        planted.write_text(textwrap.dedent('''
            import logging

            def test_logs_a_secret(tmp_path):
                logging.getLogger("chimera_tk.demo").warning(
                    "token %s", "eyJhbGciOiJFUzI1NiJ9" + ".eyJzdWIiOiI0MiJ9.c2ln")
                logs = tmp_path / "profile" / "logs"
                logs.mkdir(parents=True)
                (logs / "chimera.log").write_text(
                    "ok\\n" + "-----BEGIN " + "PRIVATE KEY-----\\n")
        '''))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests.secret_scan", "-p", "no:cacheprovider",
             "--basetemp", str(outside / "base"), "-q", str(planted)],
            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "SECRET IN LOG log record chimera_tk.demo (WARNING): JWT-shaped token" in result.stdout
    assert "chimera.log:2: PEM private key" in result.stdout
