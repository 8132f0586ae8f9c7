"""Passphrase-protected private keys: the file, the unlocker and keyring, real mutual TLS with
protected keys on both sides, renewal and revocation against the real CA, the unlock dialog in the
real window, and ``chimera --set-passphrase`` on a real pseudo-terminal.

The keyring is python ``keyring``'s API with a real file backend (keyrings.alt's PlaintextKeyring
in a temporary folder): no OS keyring daemon runs here.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pty
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import keyring
import pytest
from cryptography.hazmat.primitives import serialization
from keyrings.alt.file import PlaintextKeyring

from chimera_tk.config import Config, LanSettings
from chimera_tk.errors import UserError
from chimera_tk.events import StatusChanged
from chimera_tk.logging_setup import setup_logging
from chimera_tk.net.peer.tls import TlsFiles, client_context
from chimera_tk.pki import commands
from chimera_tk.pki.identity import Identity, load_identity
from chimera_tk.pki.key_unlock import KeyUnlocker, SystemKeyring, keyring_username
from chimera_tk.pki.keys import (
    KeyLockedError,
    WrongPassphraseError,
    change_passphrase,
    generate_private_key,
    is_encrypted,
    load_private_key,
    same_public_key,
    write_private_key,
)
from chimera_tk.pki.lifecycle import renew_certificate, revoke_certificate
from chimera_tk.pki.passphrase_commands import set_passphrase
from chimera_tk.profiles import ProfilePaths, profile_paths
from tests.conftest import pump_until
from tests.pki_factory import TeamCA
from tests.test_identity_lifecycle import crl_reason, enrolled
from tests.test_identity_server import RunningCA, run_chimera, running_ca
from tests.test_peer_link import ALICE, BOB, Node

PASSPHRASE = "correct horse battery staple ☃"
OTHER = "Tr0ub4dor&3"
USER_ID = 4242


class ScriptedSecrets:
    """Stands in for getpass in in-process tests (the pty test below uses the real getpass)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def file_keyring(tmp_path: Path) -> SystemKeyring:
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring" / "keyring_pass.cfg")
    return SystemKeyring(backend)


def protected_identity(paths: ProfilePaths, passphrase: str = PASSPHRASE,
                       user_id: int = USER_ID) -> Identity:
    """A complete identity in the profile whose key is encrypted with ``passphrase``."""
    files = TeamCA.create().write_identity(paths.root, user_id)
    change_passphrase(files.key, None, passphrase)
    identity = load_identity(paths)
    assert identity is not None and identity.key_encrypted
    return identity


def log_text(paths: ProfilePaths) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in paths.logs.glob("chimera.log*"))


# --- the key file --------------------------------------------------------------------------------

def test_encrypted_key_has_no_plain_header_and_needs_the_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "1.pem"
    write_private_key(path, generate_private_key(), PASSPHRASE)
    data = path.read_bytes()
    assert b"-----BEGIN PRIVATE KEY-----" not in data
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert path.stat().st_mode & 0o777 == 0o600
    assert is_encrypted(path)
    with pytest.raises(KeyLockedError) as locked:
        load_private_key(path)
    assert isinstance(locked.value, UserError) and "protected by a passphrase" in str(locked.value)
    with pytest.raises(TypeError):  # nor can cryptography itself, without the passphrase
        serialization.load_pem_private_key(data, password=None)


def test_round_trip_gives_the_same_key(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "1.pem"
    write_private_key(path, key, PASSPHRASE)
    loaded = load_private_key(path, PASSPHRASE)
    assert loaded.private_numbers() == key.private_numbers()
    assert load_private_key(path, PASSPHRASE.encode("utf-8")).private_numbers() == \
        key.private_numbers()
    plain = tmp_path / "2.pem"
    write_private_key(plain, key)
    assert not is_encrypted(plain) and b"-----BEGIN PRIVATE KEY-----" in plain.read_bytes()
    assert load_private_key(plain).private_numbers() == key.private_numbers()


def test_wrong_passphrase_is_a_clear_user_error_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "7.pem"
    write_private_key(path, generate_private_key(), PASSPHRASE)
    with pytest.raises(WrongPassphraseError) as wrong:
        load_private_key(path, OTHER)
    message = str(wrong.value)
    assert isinstance(wrong.value, UserError)
    assert message == "wrong passphrase for the private key 7.pem"
    assert OTHER not in message and PASSPHRASE not in message
    assert wrong.value.__cause__ is None and wrong.value.__suppress_context__


def test_change_and_remove_passphrase(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "1.pem"
    write_private_key(path, key, PASSPHRASE)
    change_passphrase(path, PASSPHRASE, OTHER)
    with pytest.raises(WrongPassphraseError):
        load_private_key(path, PASSPHRASE)
    assert load_private_key(path, OTHER).private_numbers() == key.private_numbers()
    change_passphrase(path, OTHER, "")
    assert not is_encrypted(path)
    assert load_private_key(path).private_numbers() == key.private_numbers()
    assert path.stat().st_mode & 0o777 == 0o600
    change_passphrase(path, None, PASSPHRASE)
    assert is_encrypted(path)


def test_change_with_the_wrong_passphrase_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "1.pem"
    write_private_key(path, generate_private_key(), PASSPHRASE)
    before = path.read_bytes()
    with pytest.raises(WrongPassphraseError):
        change_passphrase(path, OTHER, "new one")
    assert path.read_bytes() == before


def test_a_crash_while_rewriting_leaves_the_old_key(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "1.pem"
    write_private_key(path, generate_private_key(), PASSPHRASE)
    before = path.read_bytes()

    def power_cut(*_args: object) -> None:
        # Stands in for a crash at the last step (a real power cut cannot be made in a test).
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError):
        change_passphrase(path, PASSPHRASE, "")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.pem"]  # no temporary file left


# --- identity and unlocker -----------------------------------------------------------------------

def test_a_protected_identity_is_found_and_unlocked_only_by_its_passphrase(
        paths: ProfilePaths, file_keyring: SystemKeyring) -> None:
    identity = protected_identity(paths)
    unlocker = KeyUnlocker(paths.name, keyring=file_keyring)
    assert unlocker.needs_passphrase(identity)
    assert not unlocker.unlock_from_keyring(identity)  # nothing stored yet
    with pytest.raises(WrongPassphraseError):
        unlocker.unlock(identity, OTHER)
    assert unlocker.passphrase(identity.key_path) is None
    with pytest.raises(KeyLockedError):
        unlocker.password_callback(identity.key_path)()
    unlocker.unlock(identity, PASSPHRASE)
    assert not unlocker.needs_passphrase(identity)
    assert unlocker.password_callback(identity.key_path)() == PASSPHRASE.encode("utf-8")
    assert PASSPHRASE not in repr(unlocker)


def test_remember_stores_it_in_the_keyring_for_the_next_start(
        paths: ProfilePaths, file_keyring: SystemKeyring) -> None:
    identity = protected_identity(paths)
    assert KeyUnlocker(paths.name, keyring=file_keyring).unlock(identity, PASSPHRASE,
                                                                 remember=True)
    assert file_keyring.get(keyring_username("test", USER_ID)) == PASSPHRASE
    next_start = KeyUnlocker(paths.name, keyring=file_keyring)
    assert next_start.unlock_from_keyring(identity)
    assert next_start.passphrase(identity.key_path) == PASSPHRASE.encode("utf-8")


def test_a_stale_keyring_entry_is_logged_and_not_used(
        paths: ProfilePaths, file_keyring: SystemKeyring,
        caplog: pytest.LogCaptureFixture) -> None:
    identity = protected_identity(paths)
    file_keyring.set(keyring_username("test", USER_ID), OTHER)
    unlocker = KeyUnlocker(paths.name, keyring=file_keyring)
    with caplog.at_level(logging.WARNING):
        assert not unlocker.unlock_from_keyring(identity)
    assert "does not open the key" in caplog.text and OTHER not in caplog.text
    assert unlocker.needs_passphrase(identity)


def test_without_a_system_keyring_it_degrades_with_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        system = SystemKeyring()
        with caplog.at_level(logging.INFO):
            assert system.get("test:1") is None
            assert not system.set("test:1", PASSPHRASE)
            assert not system.available
    finally:
        keyring.set_keyring(previous)
    lines = [r for r in caplog.records if r.name == "chimera_tk.pki.key_unlock"]
    assert len(lines) == 1 and "no system keyring" in lines[0].getMessage()


def test_a_plain_file_keyring_is_not_taken_for_the_system_one(tmp_path: Path) -> None:
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "plain.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        assert not SystemKeyring().set("test:1", PASSPHRASE)
    finally:
        keyring.set_keyring(previous)
    assert not (tmp_path / "plain.cfg").exists()


def test_a_key_that_does_not_match_the_certificate_is_refused_at_unlock(
        paths: ProfilePaths, file_keyring: SystemKeyring) -> None:
    identity = protected_identity(paths)
    write_private_key(identity.key_path, generate_private_key(), PASSPHRASE)  # a stray new key
    with pytest.raises(UserError) as refused:
        KeyUnlocker(paths.name, keyring=file_keyring).unlock(identity, PASSPHRASE)
    assert "does not belong to the certificate" in str(refused.value)


def test_terminal_unlock_asks_three_times_then_stops(paths: ProfilePaths,
                                                     file_keyring: SystemKeyring) -> None:
    identity = protected_identity(paths)
    unlocker = KeyUnlocker(paths.name, keyring=file_keyring)
    asked = ScriptedSecrets("a", "b", "c")
    with pytest.raises(WrongPassphraseError):
        unlocker.unlock_on_terminal(identity, stdin=FakeTerminal(), ask=asked)
    assert len(asked.prompts) == 3
    right = ScriptedSecrets("a", PASSPHRASE)
    unlocker.unlock_on_terminal(identity, stdin=FakeTerminal(), ask=right)
    assert not unlocker.needs_passphrase(identity) and right.answers == []
    with pytest.raises(UserError) as no_tty:
        KeyUnlocker(paths.name, keyring=file_keyring).unlock_on_terminal(
            identity, stdin=io.StringIO())
    assert "no terminal" in str(no_tty.value) and "\n" not in str(no_tty.value)


# --- mutual TLS with protected keys --------------------------------------------------------------

class ProtectedKeysCA(TeamCA):
    """Writes every identity with its key encrypted, and TlsFiles that know the passphrase."""

    def write_identity(self, folder: Path, user_id: int | str, **options: object) -> TlsFiles:
        files = super().write_identity(folder, user_id, **options)
        secret = f"{PASSPHRASE} {user_id}"
        change_passphrase(files.key, None, secret)
        return dataclasses.replace(files, password=lambda: secret.encode("utf-8"))


def test_mutual_tls_link_between_two_protected_keys(tmp_path: Path) -> None:
    team = ProtectedKeysCA.create()
    alice, bob = Node(tmp_path / "alice", ALICE, team), Node(tmp_path / "bob", BOB, team)
    try:
        assert is_encrypted(alice.tls.key) and is_encrypted(bob.tls.key)
        message_id = alice.send_text(bob, "over a link whose keys are both locked at rest")
        assert alice.finished(message_id).message.state == "delivered"
        assert bob.store.messages.count(ALICE) == 1
    finally:
        alice.close()
        bob.close()
    without = dataclasses.replace(alice.tls, password=None)
    with pytest.raises(KeyLockedError):  # a clear error, never OpenSSL's terminal prompt
        client_context(without)


# --- renewal and revocation keep the protection --------------------------------------------------

@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCA]:
    """The real team CA and identity provider (``chimera-identity serve``) on loopback."""
    with running_ca(tmp_path_factory.mktemp("key-protection")) as running:
        yield running


def test_renewal_keeps_the_protected_key_and_revocation_works_with_it(
        team: RunningCA, tmp_path: Path) -> None:
    paths, config, identity = enrolled(team, tmp_path, issued_ago=timedelta(minutes=8))
    change_passphrase(identity.key_path, None, PASSPHRASE)
    key_before = identity.key_path.read_bytes()
    with pytest.raises(KeyLockedError):
        renew_certificate(paths, config)
    renewed = renew_certificate(paths, config, passphrase=PASSPHRASE.encode("utf-8"))
    assert renewed.serial != identity.serial and renewed.key_encrypted
    assert identity.key_path.read_bytes() == key_before  # the same key, still encrypted
    current = load_identity(paths)
    assert current is not None and current.serial == renewed.serial and current.key_encrypted
    leaf_key = load_private_key(identity.key_path, PASSPHRASE)
    from chimera_tk.pki.certs import load_pem_chain

    assert same_public_key(leaf_key, load_pem_chain(current.cert_path.read_bytes())[0])
    revoke_certificate(paths, config, 1, "laptop lost", passphrase=PASSPHRASE.encode("utf-8"))
    assert crl_reason(team, renewed.serial) is not None


def test_renew_without_a_terminal_is_one_clear_line(team: RunningCA,
                                                   tmp_path: Path) -> None:
    paths, _, identity = enrolled(team, tmp_path, profile="alice")
    change_passphrase(identity.key_path, None, PASSPHRASE)
    result = run_chimera(tmp_path / "data", "--renew")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "protected by a passphrase" in result.stderr and "no terminal" in result.stderr
    assert load_identity(paths).serial == identity.serial


def test_renew_command_asks_for_the_passphrase_on_a_terminal(team: RunningCA,
                                                            tmp_path: Path) -> None:
    paths, config, identity = enrolled(team, tmp_path)
    change_passphrase(identity.key_path, None, PASSPHRASE)
    out = io.StringIO()
    assert commands.renew(paths, config, stdout=out, stdin=FakeTerminal(),
                          ask=ScriptedSecrets(OTHER, PASSPHRASE)) == 0
    assert f"serial {identity.serial:x} replaced by" in out.getvalue()
    assert PASSPHRASE not in out.getvalue()


def test_new_with_passphrase_prompt_writes_a_protected_key(team: RunningCA,
                                                          tmp_path: Path) -> None:
    paths = profile_paths("newkey", tmp_path / "data").ensure()
    code = team.invite(7777, "Newcomer")
    asked = ScriptedSecrets(PASSPHRASE, PASSPHRASE)
    assert commands.new_certificate(paths, Config(), invite=code, passphrase_prompt=True,
                                    stdin=FakeTerminal(), stdout=io.StringIO(), ask=asked) == 0
    identity = load_identity(paths)
    assert identity is not None and identity.key_encrypted
    assert b"BEGIN PRIVATE KEY" not in identity.key_path.read_bytes()
    KeyUnlocker(paths.name).unlock(identity, PASSPHRASE)  # it opens, and matches the certificate


def test_new_from_a_script_is_not_asked_and_stays_unprotected(team: RunningCA,
                                                             tmp_path: Path) -> None:
    paths = profile_paths("script", tmp_path / "data").ensure()
    assert commands.new_certificate(paths, Config(), invite=team.invite(7778, ""),
                                    stdin=io.StringIO(""), stdout=io.StringIO()) == 0
    identity = load_identity(paths)
    assert identity is not None and not identity.key_encrypted
    with pytest.raises(UserError) as refused:
        commands.new_certificate(profile_paths("s2", tmp_path / "data").ensure(), Config(),
                                 invite=team.invite(7779, ""), passphrase_prompt=True,
                                 stdin=io.StringIO(""), stdout=io.StringIO())
    assert "needs a terminal" in str(refused.value)


# --- chimera --set-passphrase --------------------------------------------------------------------

def test_set_passphrase_in_process_change_and_remove(paths: ProfilePaths,
                                                     file_keyring: SystemKeyring) -> None:
    identity = protected_identity(paths)
    out = io.StringIO()
    assert set_passphrase(paths, remember=True, stdin=FakeTerminal(), stdout=out,
                          ask=ScriptedSecrets(PASSPHRASE, OTHER, OTHER),
                          keyring=file_keyring) == 0
    assert load_private_key(identity.key_path, OTHER)
    assert file_keyring.get(keyring_username("test", USER_ID)) == OTHER
    # the old passphrase comes from the keyring now; an empty new one removes the protection
    asked = ScriptedSecrets("")
    assert set_passphrase(paths, stdin=FakeTerminal(), stdout=out, ask=asked,
                          keyring=file_keyring) == 0
    assert asked.prompts == ["New passphrase (empty: no passphrase): "]
    assert not is_encrypted(identity.key_path)
    assert file_keyring.get(keyring_username("test", USER_ID)) is None
    before = identity.key_path.read_bytes()
    with pytest.raises(UserError) as differ:
        set_passphrase(paths, stdin=FakeTerminal(), stdout=out, ask=ScriptedSecrets("a", "b"),
                       keyring=file_keyring)
    assert "differ" in str(differ.value) and identity.key_path.read_bytes() == before
    assert PASSPHRASE not in out.getvalue() and OTHER not in out.getvalue()


def _drive_on_pty(args: list[str], answers: list[str], env: dict[str, str],
                  timeout: float = 60) -> tuple[int, str]:
    """Run chimera with a real pseudo-terminal as its controlling terminal, answering prompts."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: getpass reads /dev/tty, which is this pty
        os.execvpe(sys.executable, [sys.executable, "-m", "chimera_tk", *args], env)
    output = b""
    answered_at = 0  # each prompt is answered once: look only at what came after the last answer
    deadline = time.monotonic() + timeout
    pending = list(answers)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and output[answered_at:].rstrip().endswith(b":"):
                os.write(fd, pending.pop(0).encode("utf-8") + b"\n")
                answered_at = len(output)
    finally:
        if time.monotonic() >= deadline:  # still waiting for input nobody will give
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")


def test_set_passphrase_on_a_real_terminal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths = profile_paths("alice", data).ensure()
    identity = protected_identity(paths, user_id=USER_ID)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON_KEYRING")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    base = ["--data-dir", str(data), "--profile", "alice", "--set-passphrase"]
    code, shown = _drive_on_pty(base, [OTHER, PASSPHRASE, PASSPHRASE, PASSPHRASE], env)
    assert code == 1 and "wrong passphrase" in shown  # the current one was wrong: unchanged
    assert load_private_key(identity.key_path, PASSPHRASE)
    code, shown = _drive_on_pty(base, [PASSPHRASE, OTHER, OTHER], env)
    assert code == 0, shown
    assert "now protected by the new passphrase" in shown
    assert load_private_key(identity.key_path, OTHER)
    assert PASSPHRASE not in shown and OTHER not in shown  # getpass does not echo
    logs = log_text(paths)
    assert "key passphrase of user" in logs and PASSPHRASE not in logs and OTHER not in logs


def test_set_passphrase_without_a_terminal_is_one_line(tmp_path: Path) -> None:
    paths = profile_paths("alice", tmp_path / "data").ensure()
    protected_identity(paths)
    result = run_chimera(tmp_path / "data", "--set-passphrase")
    assert result.returncode == 1
    assert result.stderr.strip() == ("chimera: --set-passphrase needs a terminal to ask for the "
                                     "passphrase")


def test_send_without_a_terminal_is_one_clear_line(tmp_path: Path) -> None:
    paths = profile_paths("alice", tmp_path / "data").ensure()
    protected_identity(paths)
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    result = subprocess.run([sys.executable, "-m", "chimera_tk", "--data-dir",
                             str(tmp_path / "data"), "--profile", "alice", "send", "--to", "5",
                             "--wait", "0", "hello"], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("chimera:")]
    assert len(lines) == 1 and "protected by a passphrase" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# --- the unlock dialog in the real window --------------------------------------------------------

def _free_udp_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def lan_settings() -> LanSettings:
    discovery, announce = _free_udp_ports(2)
    return LanSettings(discovery_port=discovery, announce_port=announce, peer_port=0,
                       broadcast_addresses=("127.255.255.255",))


@pytest.fixture
def locked_app(x_display: str, paths: ProfilePaths, lan_settings: LanSettings,
               file_keyring: SystemKeyring) -> Iterator[object]:
    from chimera_tk.app import build_app

    protected_identity(paths)
    setup_logging(paths.logs)
    built = build_app(paths, Config(lan=lan_settings), theme="light",
                      key_unlocker=KeyUnlocker(paths.name, keyring=file_keyring))
    statuses: list[StatusChanged] = []
    built.dispatcher.subscribe(StatusChanged, statuses.append)
    built.statuses = statuses
    built.start()
    try:
        assert pump_until(built, lambda: built.unlock_dialog is not None)
        yield built
    finally:
        built.shutdown()
        setup_logging(None)


@pytest.mark.gui
def test_unlock_dialog_wrong_then_right_passphrase_starts_the_lan(
        locked_app: object, paths: ProfilePaths, file_keyring: SystemKeyring) -> None:
    app = locked_app
    dialog = app.unlock_dialog
    assert app.lan is None
    assert str(dialog.entry.cget("show")) == "•"
    dialog.entry.insert(0, OTHER)
    dialog.unlock_button.invoke()
    assert "Wrong passphrase" in str(dialog.error.cget("text"))
    assert dialog.winfo_exists() and app.lan is None and dialog.entry.get() == ""
    dialog.entry.insert(0, PASSPHRASE)
    dialog.remember_box.invoke()
    assert dialog.remember_chosen
    dialog.event_generate("<Return>")
    assert pump_until(app, lambda: app.lan is not None and any(
        s.component == "lan" and s.text == "LAN: looking for peers" for s in app.statuses),
        timeout=10)
    assert app.unlock_dialog is None and app.lan.peer.port > 0
    assert app.window.status_bar.text("lan") != "LAN: off — key locked"
    assert file_keyring.get(keyring_username("test", USER_ID)) == PASSPHRASE
    logs = log_text(paths)
    assert "private key unlocked" in logs
    assert PASSPHRASE not in logs and OTHER not in logs


@pytest.mark.gui
def test_skipping_the_unlock_keeps_the_lan_off_and_says_so(locked_app: object) -> None:
    app = locked_app
    app.unlock_dialog.skip_button.invoke()
    assert pump_until(app, lambda: app.window.status_bar.text("lan") == "LAN: off — key locked")
    assert app.lan is None and app.unlock_dialog is None
    assert app.window.status_bar.text("telegram").startswith("Telegram:")


@pytest.mark.gui
def test_a_passphrase_in_the_keyring_needs_no_dialog(
        x_display: str, paths: ProfilePaths, lan_settings: LanSettings,
        file_keyring: SystemKeyring) -> None:
    from chimera_tk.app import build_app

    protected_identity(paths)
    file_keyring.set(keyring_username("test", USER_ID), PASSPHRASE)
    app = build_app(paths, Config(lan=lan_settings), theme="light",
                    key_unlocker=KeyUnlocker(paths.name, keyring=file_keyring))
    try:
        app.start()
        assert pump_until(app, lambda: app.lan is not None, timeout=10)
        assert app.unlock_dialog is None
    finally:
        app.shutdown()
