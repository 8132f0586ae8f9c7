"""Pairing without a CA: codes, pins, the exchange (in memory and over loopback TLS), and the
peer link that trusts pinned certificates and nothing they might sign."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_tk.events import MessageChanged, MessageStored, PeerUnavailable
from chimera_tk.net.pairing.events import PairingCode, PairingFinished
from chimera_tk.net.pairing.protocol import (
    CodeReady,
    Ended,
    Paired,
    PairingSession,
    RemoteConfirmed,
    State,
)
from chimera_tk.net.pairing.worker import PairingWorker
from chimera_tk.net.peer.tls import TlsFiles, client_context
from chimera_tk.net.peer.worker import PeerLimits, PeerWorker
from chimera_tk.pki.certs import certificate_pem
from chimera_tk.pki.identity import load_identity
from chimera_tk.pki.keys import generate_private_key, private_key_to_pem
from chimera_tk.pki.pairing import (
    PERSONAL_CERT_DAYS,
    PairingError,
    PinStore,
    make_personal_certificate,
    pinnable_user_id,
    verification_code,
)
from chimera_tk.pki.personal import create_personal_identity
from chimera_tk.profiles import profile_paths
from chimera_tk.store import Store
from tests.event_recorder import EventRecorder
from tests.pki_factory import TeamCA

ALICE, BOB, MALLORY = 1001, 2002, 3003


def personal(user_id: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = generate_private_key()
    return key, make_personal_certificate(key, user_id)


# -- certificates and codes --------------------------------------------------------------------


def test_personal_certificate_is_a_non_ca_leaf_for_the_id_valid_two_years() -> None:
    _, cert = personal(ALICE)
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "1001"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life == dt.timedelta(days=PERSONAL_CERT_DAYS)
    assert pinnable_user_id(cert) == ALICE


def test_code_is_the_same_on_both_sides_and_looks_like_two_groups_of_three() -> None:
    _, alice = personal(ALICE)
    _, bob = personal(BOB)
    code = verification_code(alice, bob)
    assert code == verification_code(bob, alice)
    assert len(code) == 7 and code[3] == " " and code.replace(" ", "").isdigit()


def test_code_changes_when_either_certificate_changes() -> None:
    key_a, alice = personal(ALICE)
    _, bob = personal(BOB)
    _, other_bob = personal(BOB)
    alice_again = make_personal_certificate(key_a, ALICE)  # same key, new serial
    codes = {verification_code(alice, bob), verification_code(alice, other_bob),
             verification_code(alice_again, bob)}
    assert len(codes) == 3


def test_ca_certificates_team_certificates_and_expired_ones_cannot_be_pinned() -> None:
    team = TeamCA.create()
    with pytest.raises(PairingError, match="CA certificate"):
        pinnable_user_id(team.cert)
    _, team_leaf = team.issue(str(BOB))
    with pytest.raises(PairingError, match="team certificate"):
        pinnable_user_id(team_leaf)
    key = generate_private_key()
    old = make_personal_certificate(key, BOB, days=1,
                                    now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    with pytest.raises(PairingError, match="expired"):
        pinnable_user_id(old)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(BOB))])
    no_constraints = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                      .public_key(key.public_key()).serial_number(1)
                      .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
                      .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
                      .sign(key, hashes.SHA256()))
    with pytest.raises(PairingError, match="not a CA"):
        pinnable_user_id(no_constraints)


# -- pin store ----------------------------------------------------------------------------------


def test_pin_store_keeps_one_pin_per_id_with_mode_0600(tmp_path: Path) -> None:
    store = PinStore(tmp_path / "pins.json")
    assert store.all() == []
    _, bob = personal(BOB)
    _, bob2 = personal(BOB)
    _, carol = personal(MALLORY)
    store.add(bob, "Bob")
    store.add(carol, "Carol")
    store.add(bob2, "Bob's new laptop")
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    again = PinStore(store.path)
    assert sorted((p.user_id, p.name) for p in again.all()) == [
        (BOB, "Bob's new laptop"), (MALLORY, "Carol")]
    assert again.get(BOB).certificate() == bob2
    assert certificate_pem(bob2) in again.trust_pem() and certificate_pem(bob) not in \
        again.trust_pem()
    assert again.remove(MALLORY) and not again.remove(MALLORY)
    assert [p.user_id for p in again.all()] == [BOB]


def test_a_failed_pin_write_leaves_the_old_pins_whole(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = PinStore(tmp_path / "pins.json")
    _, bob = personal(BOB)
    store.add(bob, "Bob")
    before = store.path.read_bytes()

    def disk_full(_fd: int) -> None:
        # stands in for a full disk, which cannot be produced safely on this machine
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    _, carol = personal(MALLORY)
    with pytest.raises(OSError):
        store.add(carol, "Carol")
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pins.json"]  # no temporary file left


def test_a_pin_edited_to_name_another_id_is_not_a_trust_anchor(tmp_path: Path) -> None:
    store = PinStore(tmp_path / "pins.json")
    _, alice = personal(ALICE)
    _, bob = personal(BOB)
    store.add(alice, "Alice")
    store.add(bob, "Bob")
    data = json.loads(store.path.read_text())
    data["pins"][0]["user_id"] = MALLORY  # Alice's certificate, filed under another id
    store.path.write_text(json.dumps(data))
    trusted = store.trust_pem()
    assert certificate_pem(bob) in trusted and certificate_pem(alice) not in trusted


def test_a_damaged_pin_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text("{not json")
    with pytest.raises(PairingError, match="damaged"):
        PinStore(path).all()


def test_a_profile_without_team_roots_loads_its_personal_identity(tmp_path: Path) -> None:
    paths = profile_paths("solo", tmp_path).ensure()
    made = create_personal_identity(paths, ALICE)
    loaded = load_identity(paths)
    assert loaded is not None and loaded.user_id == ALICE and loaded.self_signed
    assert loaded.serial == made.serial
    assert stat.S_IMODE(os.stat(paths.private_key(ALICE)).st_mode) == 0o600
    with pytest.raises(PairingError, match="already has a personal certificate"):
        create_personal_identity(paths, BOB)


# -- the exchange, in memory ---------------------------------------------------------------------


class Side:
    def __init__(self, user_id: int) -> None:
        self.key, self.cert = personal(user_id)
        self.user_id = user_id


def connect(caller: Side, callee: Side, *, seen_callee: x509.Certificate | None = None
            ) -> tuple[PairingSession, PairingSession]:
    a = PairingSession.caller(caller.cert, caller.user_id, "caller", caller.key,
                              seen_callee or callee.cert)
    b = PairingSession.callee(callee.cert, callee.user_id, "callee", os.urandom(32))
    return a, b


def byte_by_byte(session: PairingSession, data: bytes) -> list:
    events = []
    for i in range(len(data)):
        events += session.receive_data(data[i:i + 1])
    return events


def test_both_confirming_pairs_both_sides_with_the_same_code() -> None:
    alice, bob = Side(ALICE), Side(BOB)
    a, b = connect(alice, bob)
    a_events = byte_by_byte(a, b.data_to_send())  # the challenge
    b_events = byte_by_byte(b, a.data_to_send())  # identify
    assert isinstance(a_events[0], CodeReady) and isinstance(b_events[0], CodeReady)
    assert a_events[0].code == b_events[0].code
    assert (a_events[0].peer_id, b_events[0].peer_id) == (BOB, ALICE)
    assert a.confirm() == []  # alice first: nothing pinned until bob confirms
    assert byte_by_byte(b, a.data_to_send()) == [RemoteConfirmed()]
    b_done = b.confirm()
    a_done = byte_by_byte(a, b.data_to_send())
    assert [type(e) for e in a_done] == [Paired] and a_done[0].certificate == bob.cert
    assert [type(e) for e in b_done] == [Paired] and b_done[0].certificate == alice.cert
    assert a.state is b.state is State.PAIRED


def test_a_rejected_code_pins_nothing_on_either_side() -> None:
    alice, bob = Side(ALICE), Side(BOB)
    a, b = connect(alice, bob)
    a.receive_data(b.data_to_send())
    b.receive_data(a.data_to_send())
    a.confirm()
    b.receive_data(a.data_to_send())
    ended = b.cancel("the codes differ")
    assert ended == [Ended("the codes differ", False)]
    remote = a.receive_data(b.data_to_send())
    assert len(remote) == 1 and isinstance(remote[0], Ended) and remote[0].by_remote
    assert "the codes differ" in remote[0].reason
    assert a.state is b.state is State.CANCELLED
    assert a.confirm() == [] and b.confirm() == []  # too late: still nothing


def test_a_man_in_the_middle_makes_the_codes_differ() -> None:
    alice, bob, mallory = Side(ALICE), Side(BOB), Side(MALLORY)
    # Alice reached Mallory (thinking it is Bob); Mallory calls Bob with its own certificate
    a, m_callee = connect(alice, mallory)
    m_caller, b = connect(mallory, bob)
    code_alice = a.receive_data(m_callee.data_to_send())[0].code
    m_callee.receive_data(a.data_to_send())
    m_caller.receive_data(b.data_to_send())
    code_bob = b.receive_data(m_caller.data_to_send())[0].code
    assert code_alice != code_bob


def test_a_relayed_identity_is_refused_because_its_signature_names_another_callee() -> None:
    alice, bob, mallory = Side(ALICE), Side(BOB), Side(MALLORY)
    # Alice signs for the callee she sees (Mallory); Mallory forwards that to Bob as Alice
    a, m_callee = connect(alice, mallory)
    b = PairingSession.callee(bob.cert, BOB, "bob", os.urandom(32))
    bob_challenge = b.data_to_send()
    m_callee_challenge = m_callee.data_to_send()
    # Mallory passes Bob's nonce inside its own challenge to Alice
    relayed = json.loads(bob_challenge[4:])
    mine = json.loads(m_callee_challenge[4:])
    mine["nonce"] = relayed["nonce"]
    payload = json.dumps(mine).encode()
    a.receive_data(len(payload).to_bytes(4, "big") + payload)
    events = b.receive_data(a.data_to_send())
    assert len(events) == 1 and isinstance(events[0], Ended)
    assert "does not hold the key" in events[0].reason
    assert b.state is State.FAILED and b.peer_cert is None


def test_a_peer_using_our_own_id_or_a_ca_certificate_is_refused() -> None:
    alice, alice_twin = Side(ALICE), Side(ALICE)
    with pytest.raises(PairingError, match="same id"):
        connect(alice, alice_twin)
    team = TeamCA.create()
    with pytest.raises(PairingError, match="CA certificate"):
        connect(alice, Side(BOB), seen_callee=team.cert)


CALLEE = Side(BOB)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_from_a_caller_either_parse_or_end_the_session(data: bytes) -> None:
    b = PairingSession.callee(CALLEE.cert, BOB, "bob", b"\x01" * 32)
    b.data_to_send()
    events = b.receive_data(data)
    assert all(isinstance(e, Ended) and e.by_remote for e in events)
    assert b.state in (State.AWAIT_IDENTIFY, State.FAILED)



# -- over loopback: the pairing worker, then the peer link ----------------------------------------


class Profile:
    """A personal identity in a folder, its pins, a pairing worker and (later) a peer worker."""

    def __init__(self, root: Path, user_id: int, name: str) -> None:
        self.root, self.user_id, self.name = root, user_id, name
        root.mkdir(parents=True)
        self.key, self.cert = personal(user_id)
        self.tls = TlsFiles(root / f"{user_id}.pem", root / f"{user_id}_crt.pem",
                            root / "ca_bundle.pem", pins=root / "pins.json")
        self.tls.key.write_bytes(private_key_to_pem(self.key))
        self.tls.certificate_chain.write_bytes(certificate_pem(self.cert).encode())
        self.pins = PinStore(root / "pins.json")
        self.recorder = EventRecorder()
        self.events = self.recorder.events
        self.pairing = PairingWorker(user_id, name, self.tls.key, self.tls.certificate_chain,
                                     self.pins, self.recorder, port=0, window_s=20,
                                     host="127.0.0.1")
        self.peer: PeerWorker | None = None
        self.store: Store | None = None

    def wait_for(self, kind: type, timeout: float = 15.0) -> object:
        return self.recorder.wait_for(lambda event: isinstance(event, kind), timeout)

    def start_link(self) -> PeerWorker:
        self.store = Store.open(self.root / "chimera.db")
        self.peer = PeerWorker(self.user_id, self.name, self.tls, self.root / "chimera.db",
                               self.root / "downloads", self.recorder, host="127.0.0.1", port=0,
                               limits=PeerLimits(ack_timeout_s=5, retry_after_s=0))
        (self.root / "downloads").mkdir()
        self.peer.start()
        return self.peer

    def send_text(self, to: Profile, text: str) -> int:
        assert self.store is not None and self.peer is not None and to.peer is not None
        self.store.dialogs.ensure(to.user_id, "user", to.name)
        with self.store.transaction():
            message = self.store.messages.add_outgoing(to.user_id, text)
            self.store.outbox.enqueue(message.id)
        self.store.outbox.claim(message.id, "lan")
        self.peer.learn_address(to.user_id, "127.0.0.1", to.peer.port)
        self.peer.submit(to.user_id, message.id)
        return message.id

    def outcome(self, message_id: int) -> str:
        changed = self.recorder.wait_for(
            lambda event: isinstance(event, MessageChanged) and event.message.id == message_id
            and event.message.state != "sending", 15)
        return changed.message.state

    def close(self) -> None:
        self.pairing.stop()
        assert self.pairing.join(10)
        if self.peer is not None:
            self.peer.stop()
            assert self.peer.join(10)
        if self.store is not None:
            self.store.close()


@pytest.fixture
def pair(tmp_path: Path):
    alice, bob = Profile(tmp_path / "alice", ALICE, "Alice"), Profile(tmp_path / "bob", BOB, "Bob")
    yield alice, bob
    alice.close()
    bob.close()


def _exchange_codes(alice: Profile, bob: Profile) -> tuple[PairingCode, PairingCode]:
    bob.pairing.open()
    alice.pairing.pair_with("127.0.0.1", bob.pairing.port)
    return alice.wait_for(PairingCode), bob.wait_for(PairingCode)


def test_paired_over_tls_then_a_text_crosses_the_peer_link_both_ways(pair) -> None:
    alice, bob = pair
    code_a, code_b = _exchange_codes(alice, bob)
    assert code_a.code == code_b.code
    assert (code_a.peer_id, code_a.peer_name, code_a.outgoing) == (BOB, "Bob", True)
    assert (code_b.peer_id, code_b.peer_name, code_b.outgoing) == (ALICE, "Alice", False)
    bob.pairing.confirm()
    alice.pairing.confirm()
    assert alice.wait_for(PairingFinished).paired and bob.wait_for(PairingFinished).paired
    assert alice.pins.get(BOB).certificate() == bob.cert
    assert bob.pins.get(ALICE).certificate() == alice.cert

    alice.start_link()
    bob.start_link()
    assert alice.outcome(alice.send_text(bob, "hello Bob, no CA needed")) == "delivered"
    assert bob.outcome(bob.send_text(alice, "hello Alice")) == "delivered"
    assert [m.text for m in bob.store.messages.latest_page(ALICE, limit=10)
            if not m.outgoing] == ["hello Bob, no CA needed"]
    stored = alice.wait_for(MessageStored)
    assert stored.message.text == "hello Alice" and stored.message.sender_id == BOB


def test_a_rejected_code_pins_nothing_and_the_link_is_refused(pair) -> None:
    alice, bob = pair
    _exchange_codes(alice, bob)
    alice.pairing.confirm()
    bob.pairing.cancel()  # Bob's screen showed another code
    assert not alice.wait_for(PairingFinished).paired
    assert not bob.wait_for(PairingFinished).paired
    assert alice.pins.all() == [] and bob.pins.all() == []
    alice.start_link()
    bob.start_link()
    assert alice.outcome(alice.send_text(bob, "should not arrive")) == "queued"
    assert isinstance(alice.wait_for(PeerUnavailable), PeerUnavailable)
    assert bob.store.messages.latest_page(ALICE, limit=10) == []


def test_nothing_is_pinned_when_the_window_times_out_before_both_confirm(tmp_path: Path) -> None:
    alice = Profile(tmp_path / "alice", ALICE, "Alice")
    bob = Profile(tmp_path / "bob", BOB, "Bob")
    bob.pairing.window_s = alice.pairing.window_s = 2
    try:
        _exchange_codes(alice, bob)
        alice.pairing.confirm()  # Bob never answers
        finished = alice.wait_for(PairingFinished)
        assert not finished.paired
        assert not bob.wait_for(PairingFinished).paired
        assert alice.pins.all() == [] and bob.pins.all() == []
    finally:
        alice.close()
        bob.close()


def _forged(issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate, user_id: int,
            key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(user_id))])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(str(user_id))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .sign(issuer_key, hashes.SHA256()))


@pytest.mark.parametrize("presented", ["alice's pinned certificate",
                                       "another id signed by alice's pinned key",
                                       "another id self-signed with alice's key"])
def test_a_pinned_certificate_vouches_for_its_own_id_and_nothing_else(pair,
                                                                      presented: str) -> None:
    alice, bob = pair
    bob.pins.add(alice.cert, "Alice")  # Bob paired with Alice, and nobody else
    bob.start_link()
    if presented == "alice's pinned certificate":
        key, chain = alice.key, certificate_pem(alice.cert)
    elif presented == "another id signed by alice's pinned key":
        key = generate_private_key()
        chain = certificate_pem(_forged(alice.key, alice.cert, MALLORY, key)) + \
            certificate_pem(alice.cert)
    else:
        key, chain = alice.key, certificate_pem(make_personal_certificate(alice.key, MALLORY))
    folder = alice.root / "client"
    folder.mkdir()
    (folder / "key.pem").write_bytes(private_key_to_pem(key))
    (folder / "chain.pem").write_text(chain)
    PinStore(folder / "pins.json").add(bob.cert)  # the caller trusts Bob: only Bob decides
    context = client_context(TlsFiles(folder / "key.pem", folder / "chain.pem",
                                      folder / "ca.pem", pins=folder / "pins.json"))
    refused_before = bob.peer.refused_handshakes
    with socket.create_connection(("127.0.0.1", bob.peer.port), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        try:
            answer = tls.recv(4)  # Bob's HELLO frame, if Bob accepted us
        except (ssl.SSLError, OSError):
            answer = b""
        connected_as_alice = bob.peer.is_connected(ALICE)
    if presented == "alice's pinned certificate":
        assert len(answer) == 4 and connected_as_alice
    else:
        assert answer == b""
        deadline = time.monotonic() + 5
        while bob.peer.refused_handshakes == refused_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bob.peer.refused_handshakes == refused_before + 1
        assert not bob.peer.is_connected(MALLORY)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_from_a_callee_either_parse_or_end_the_session(data: bytes) -> None:
    caller = PairingSession.caller(CALLER.cert, ALICE, "alice", CALLER.key, CALLEE.cert)
    events = caller.receive_data(data)
    assert all(isinstance(e, Ended) and e.by_remote for e in events)
    assert caller.state in (State.AWAIT_CHALLENGE, State.FAILED)


CALLER = Side(ALICE)


# -- the command line ------------------------------------------------------------------------------


def test_command_line_makes_a_personal_certificate_lists_and_unpairs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chimera_tk.cli import main

    base = ["--data-dir", str(tmp_path), "--profile", "solo"]
    with pytest.raises(SystemExit) as bad:
        main([*base, "--new", "--self-signed"])
    assert bad.value.code == 2
    assert "--self-signed goes with --new --telegram-id N" in capsys.readouterr().err
    assert main([*base, "pair", "--peer", "127.0.0.1"]) == 1
    assert "no certificate" in capsys.readouterr().err
    assert main([*base, "--new", "--self-signed", "--telegram-id", str(ALICE)]) == 0
    assert "personal certificate for id 1001" in capsys.readouterr().out
    paths = profile_paths("solo", tmp_path)
    _, bob = personal(BOB)
    PinStore(paths.root / "pins.json").add(bob, "Bob")
    assert main([*base, "pairs"]) == 0
    assert "2002\tBob\tpaired" in capsys.readouterr().out
    assert main([*base, "unpair", str(BOB)]) == 0
    assert main([*base, "unpair", str(BOB)]) == 1
    assert "not paired" in capsys.readouterr().err
    assert PinStore(paths.root / "pins.json").all() == []
