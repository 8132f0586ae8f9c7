"""The certificate matrix: every bad certificate (and TLS 1.2 or older) is refused, with a log line
that names the reason, in both directions of the peer link.

Probes of a real listening PeerWorker (Bob, a team profile that has also paired with Carol):
  * our client: a PeerWorker presenting the bad identity (Python's ssl module for what a
    PeerWorker cannot even offer: no certificate, TLS 1.2 / 1.1);
  * ``openssl s_client`` presenting the same files.
The reverse direction: our PeerWorker (Alice) calls a hostile server that presents each bad
certificate for the id Alice meant to reach (Python's ssl module; ``openssl s_server`` with a
PSK-only, certificate-less TLS 1.3 handshake for "no certificate").
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from chimera_tk.events import PeerUnavailable, PeerVerified
from chimera_tk.net.peer.tls import TlsFiles
from chimera_tk.net.peer.worker import PeerLimits, PeerWorker
from chimera_tk.pki.pairing import PinStore
from tests.event_recorder import EventRecorder
from tests.pki_factory import (
    NO_TLS_KEY_USAGE,
    TeamCA,
    write_identity_signed_by,
    write_self_signed_identity,
)

ALICE, BOB, CAROL = 1001, 2002, 3003
WORKER_LOG = "chimera_tk.net.peer.worker"
OPENSSL = shutil.which("openssl")
# TLS 1.1 is offered on purpose, to see it refused.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1:DeprecationWarning")


def _serial(files: TlsFiles) -> int:
    return x509.load_pem_x509_certificate(files.certificate_chain.read_bytes()).serial_number


def _worker(root: Path, user_id: int, tls: TlsFiles, emit: EventRecorder) -> PeerWorker:
    (root / "downloads").mkdir(parents=True, exist_ok=True)
    worker = PeerWorker(user_id, f"user{user_id}", tls, root / "chimera.db", root / "downloads",
                        emit, host="127.0.0.1", port=0,
                        limits=PeerLimits(ack_timeout_s=5, retry_after_s=0,
                                          handshake_timeout_s=5))
    worker.start()
    return worker


@dataclass
class Team:
    """The team CA, and Carol's personal certificate that the team members have pinned."""

    root: Path
    ca: TeamCA = field(default_factory=TeamCA.create)
    carol: TlsFiles | None = None

    def __post_init__(self) -> None:
        self.carol = write_self_signed_identity(self.root / "carol", CAROL)

    def profile(self, user_id: int) -> TlsFiles:
        """A team member's files, with pins.json holding Carol's pinned certificate."""
        folder = self.root / f"member-{user_id}"
        files = self.ca.write_identity(folder, user_id)
        pins = folder / "pins.json"
        assert self.carol is not None
        PinStore(pins).add(x509.load_pem_x509_certificate(
            self.carol.certificate_chain.read_bytes()), "Carol")
        return TlsFiles(files.key, files.certificate_chain, files.ca_bundle, pins=pins)


@pytest.fixture
def team(tmp_path: Path) -> Team:
    return Team(tmp_path)


def _wait_log(caplog: pytest.LogCaptureFixture, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        # A listener under a flood of refusals logs the rest at DEBUG (its admission control);
        # every refusal still has its line.
        lines = [r.getMessage() for r in caplog.records if r.name == WORKER_LOG]
        for line in lines:
            if line.startswith("refused") and needle in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no refusal log line with {needle!r}; saw {lines}")
        time.sleep(0.05)


# -- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Presented:
    files: TlsFiles | None  # None: no certificate at all
    tls_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    revoke: bool = False


# What a client presents to Bob (it claims nothing: Bob attributes by certificate) and the words
# Bob's log line must contain.
INBOUND: dict[str, str] = {
    "no certificate": "no certificate presented",
    "self-signed, not pinned": "self-signed certificate that is not pinned",
    "foreign CA": "not issued by the team CA",
    "expired": "certificate expired",
    "not yet valid": "certificate not valid yet",
    "revoked": "revoked",
    "CN is not a user id": "is not one Telegram user id",
    "SAN names another id than CN": "does not match its CN",
    "key usage without digitalSignature": "key usage does not allow TLS",
    "EKU without clientAuth/serverAuth": "key usage does not allow TLS",
    "TLS 1.2": "TLS version older than 1.3",
    "TLS 1.1": "TLS version older than 1.3",
    "pinned cert vouching for another id": "not a CA",
}

# What a hostile server presents when Alice calls Bob, and the words of Alice's log line.
OUTBOUND: dict[str, str] = {
    "no certificate": "handshake failure",
    "self-signed, not pinned": "self-signed certificate that is not pinned",
    "foreign CA": "not issued by the team CA",
    "expired": "certificate expired",
    "not yet valid": "certificate not valid yet",
    "revoked": "revoked",
    "wrong id for the announced peer": "identity mismatch",
    "SAN names another id than CN": "does not match its CN",
    "key usage without digitalSignature": "key usage does not allow TLS",
    "EKU without clientAuth/serverAuth": "key usage does not allow TLS",
    "TLS 1.2": "TLS version older than 1.3",
    "TLS 1.1": "TLS version older than 1.3",
    "pinned cert presenting another id": "identity mismatch",
}


def presented(case: str, team: Team, user_id: int, folder: Path) -> Presented:
    """The bad identity for ``case``, naming ``user_id`` where the case lets it."""
    ca, trust = team.ca, [team.ca]
    if case == "no certificate":
        return Presented(None)
    if case == "self-signed, not pinned":
        return Presented(write_self_signed_identity(folder, user_id, trust=trust))
    if case == "foreign CA":
        return Presented(TeamCA.create("Other Team").write_identity(folder, user_id, trust=trust))
    if case == "expired":
        return Presented(ca.write_identity(folder, user_id, days=1, starts_in_days=-3))
    if case == "not yet valid":
        return Presented(ca.write_identity(folder, user_id, starts_in_days=2))
    if case == "revoked":
        return Presented(ca.write_identity(folder, user_id), revoke=True)
    if case == "CN is not a user id":
        return Presented(ca.write_identity(folder, "alice"))
    if case == "wrong id for the announced peer":
        return Presented(ca.write_identity(folder, CAROL))  # a valid team certificate
    if case == "SAN names another id than CN":
        return Presented(ca.write_identity(folder, user_id, san=str(CAROL)))
    if case == "key usage without digitalSignature":
        return Presented(ca.write_identity(folder, user_id, key_usage=NO_TLS_KEY_USAGE))
    if case == "EKU without clientAuth/serverAuth":
        return Presented(ca.write_identity(folder, user_id, client_and_server=False))
    if case == "TLS 1.2":
        return Presented(ca.write_identity(folder, user_id), ssl.TLSVersion.TLSv1_2)
    if case == "TLS 1.1":
        return Presented(ca.write_identity(folder, user_id), ssl.TLSVersion.TLSv1_1)
    if case == "pinned cert vouching for another id":
        assert team.carol is not None
        return Presented(write_identity_signed_by(folder, user_id, team.carol, trust=trust))
    if case == "pinned cert presenting another id":
        assert team.carol is not None
        return Presented(team.carol)  # Carol's own, pinned, certificate; Alice meant Bob
    raise AssertionError(case)


# -- Bob, the listener -------------------------------------------------------------------------


@pytest.fixture
def bob(team: Team) -> Iterator[tuple[PeerWorker, EventRecorder]]:
    events = EventRecorder()
    worker = _worker(team.root / "bob", BOB, team.profile(BOB), events)
    yield worker, events
    worker.stop()
    assert worker.join(10)


def _refusal_on_bob(bob: tuple[PeerWorker, EventRecorder], before: int,
                    caplog: pytest.LogCaptureFixture, reason: str) -> str:
    worker, events = bob
    line = _wait_log(caplog, reason)
    assert worker.refused_handshakes > before
    assert not worker.is_connected(ALICE)
    assert not [e for e in events.events if isinstance(e, PeerVerified)]
    return line


def _python_client(port: int, case: Presented) -> bytes:
    """Our ssl module as the client, for what a PeerWorker cannot offer; returns what it read."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = case.tls_version
    if case.tls_version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT@SECLEVEL=0")  # let the client even offer it
    if case.files is not None:
        context.load_cert_chain(case.files.certificate_chain, case.files.key)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw) as tls:
            tls.settimeout(5)
            return tls.recv(64)
    except (ssl.SSLError, OSError):
        return b""


@pytest.mark.parametrize("case", INBOUND)
def test_listener_refuses_our_client_presenting(case: str, team: Team, bob, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, WORKER_LOG)
    worker, _ = bob
    bad = presented(case, team, ALICE, tmp_path / "alice")
    if bad.revoke:
        worker.set_revoked(frozenset({_serial(bad.files)}))
    before = worker.refused_handshakes
    if bad.files is None or bad.tls_version != ssl.TLSVersion.TLSv1_3:
        assert _python_client(worker.port, bad) == b""
    else:
        events = EventRecorder()
        alice_id = int(bad.files.key.stem) if bad.files.key.stem.isdigit() else ALICE
        alice = _worker(tmp_path / "alice-node", alice_id, bad.files, events)
        try:
            alice.learn_address(BOB, "127.0.0.1", worker.port)
            alice.verify(BOB)
            _refusal_on_bob(bob, before, caplog, INBOUND[case])
        finally:
            alice.stop()
            assert alice.join(10)
    _refusal_on_bob(bob, before, caplog, INBOUND[case])


def _s_client(port: int, bad: Presented, folder: Path) -> subprocess.Popen:
    args = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", "-brief"]
    if bad.files is not None:
        leaf, *rest = bad.files.certificate_chain.read_text().split("-----END CERTIFICATE-----")
        (folder / "leaf.pem").write_text(leaf + "-----END CERTIFICATE-----\n")
        args += ["-cert", str(folder / "leaf.pem"), "-key", str(bad.files.key)]
        if "BEGIN" in "".join(rest):
            (folder / "more.pem").write_text("-----END CERTIFICATE-----".join(rest))
            args += ["-cert_chain", str(folder / "more.pem")]
    if bad.tls_version == ssl.TLSVersion.TLSv1_2:
        args += ["-tls1_2"]
    elif bad.tls_version == ssl.TLSVersion.TLSv1_1:
        args += ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is part of the CI image")
@pytest.mark.parametrize("case", INBOUND)
def test_listener_refuses_openssl_s_client_presenting(case: str, team: Team, bob,
                                                      tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, WORKER_LOG)
    worker, _ = bob
    bad = presented(case, team, ALICE, tmp_path / "alice")
    if bad.revoke:
        worker.set_revoked(frozenset({_serial(bad.files)}))
    before = worker.refused_handshakes
    client = _s_client(worker.port, bad, tmp_path)
    try:
        output, _ = client.communicate(timeout=15)  # Bob hangs up: s_client ends by itself
    finally:
        client.kill()
    assert client.returncode != 0, output
    _refusal_on_bob(bob, before, caplog, INBOUND[case])


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is part of the CI image")
def test_listener_keeps_an_openssl_client_with_a_good_certificate(team: Team, bob,
                                                                   tmp_path: Path) -> None:
    """The control: the same probe with a good team certificate is not refused."""
    worker, _ = bob
    good = Presented(team.ca.write_identity(tmp_path / "alice", ALICE))
    client = _s_client(worker.port, good, tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not worker.is_connected(ALICE) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.is_connected(ALICE)
        assert client.poll() is None  # still talking
    finally:
        client.kill()
        client.wait(10)
    assert worker.refused_handshakes == 0


# -- Alice, the caller, against hostile servers ------------------------------------------------


class HostileServer:
    """Accepts connections and offers ``bad`` (Python's ssl module); records what it read."""

    def __init__(self, bad: Presented) -> None:
        assert bad.files is not None
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = self.context.maximum_version = bad.tls_version
        if bad.tls_version < ssl.TLSVersion.TLSv1_2:
            self.context.set_ciphers("DEFAULT@SECLEVEL=0")
        self.context.load_cert_chain(bad.files.certificate_chain, bad.files.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hostile-server")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.received += tls.recv(64)
            except (ssl.SSLError, OSError):
                pass
            finally:
                raw.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.listener.close()


class PskOnlyServer:
    """``openssl s_server`` that has no certificate at all (TLS 1.3 with a pre-shared key)."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as probe:
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [OPENSSL, "s_server", "-accept", f"127.0.0.1:{self.port}", "-nocert", "-tls1_3",
             "-psk_identity", "chimera-test", "-psk", "00112233445566778899aabbccddeeff",
             "-naccept", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)  # s_server stops at the end of its input: keep it open
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("openssl s_server did not start")

    received = b""

    def close(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=10)


@pytest.mark.parametrize("case", OUTBOUND)
def test_our_client_refuses_a_hostile_server_presenting(case: str, team: Team, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    if case == "no certificate" and OPENSSL is None:
        pytest.skip("the openssl command is part of the CI image")
    caplog.set_level(logging.DEBUG, WORKER_LOG)
    bad = presented(case, team, BOB, tmp_path / "hostile")
    server = PskOnlyServer() if bad.files is None else HostileServer(bad)
    events = EventRecorder()
    alice = _worker(tmp_path / "alice", ALICE, team.profile(ALICE), events)
    try:
        if bad.revoke:
            alice.set_revoked(frozenset({_serial(bad.files)}))
        alice.learn_address(BOB, "127.0.0.1", server.port)
        alice.verify(BOB)
        refusal = events.wait_for(lambda e: isinstance(e, PeerUnavailable))
        assert refusal.user_id == BOB
        line = _wait_log(caplog, OUTBOUND[case])
        assert f"announced as user {BOB}" in line
        assert not alice.is_connected(BOB)
        assert not [e for e in events.events if isinstance(e, PeerVerified)]
        assert server.received == b""  # not even our HELLO reached it
    finally:
        alice.stop()
        assert alice.join(10)
        server.close()


def test_our_client_talks_to_a_good_server(team: Team, tmp_path: Path) -> None:
    """The control for the hostile servers: the same setup with Bob's good certificate."""
    good = Presented(team.profile(BOB))
    server = HostileServer(good)
    events = EventRecorder()
    alice = _worker(tmp_path / "alice", ALICE, team.profile(ALICE), events)
    try:
        alice.learn_address(BOB, "127.0.0.1", server.port)
        alice.verify(BOB)
        deadline = time.monotonic() + 10
        while not server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.received  # Alice's HELLO frame
        assert not [e for e in events.events if isinstance(e, PeerUnavailable)]
    finally:
        alice.stop()
        assert alice.join(10)
        server.close()
