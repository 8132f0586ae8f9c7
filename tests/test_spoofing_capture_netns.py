"""An impostor announcing Bob's id gets 0 bytes of application data: proved by a packet capture.

Carol (host c) holds a valid team certificate for her own id and announces Bob's. The real Bob
(the real headless app) comes up in host b after Alice (host a) queued a message for him. tcpdump in
Carol's namespace records every TCP segment that reaches her TLS port. The impostor writes its TLS
secrets to a key log (everything *she* could decrypt), and the test decrypts each TLS 1.3 record
Alice sent her: the records protected with Alice's handshake keys (her Certificate, Finished) are
there, and not one record under the application traffic keys, which is where any message byte
would have to travel. Meanwhile Bob has the message.

tcpdump comes from the apt package ``tcpdump`` (in .ci/run). The test fails in CI when it is
missing and skips elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from tests.lan_nodes import AppNode
from tests.netns import Host, Network, require_netns
from tests.pki_factory import TeamCA

pytestmark = pytest.mark.netns

ALICE, BOB, CAROL = 1001, 2002, 3003
TLS_PORT = 50052
SECRET = "for Bob's eyes only: " + "the launch code is 0000 " * 200


def require_tcpdump() -> str:
    path = shutil.which("tcpdump")
    if path is None:
        message = "this test needs tcpdump (apt-get install tcpdump; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


# -- reading the capture ---------------------------------------------------------------------------


def tcp_streams(pcap: bytes) -> dict[tuple[str, int, str, int], bytes]:
    """Payload bytes of every TCP direction in a classic Ethernet pcap, in sequence order
    (retransmitted bytes once)."""
    magic, = struct.unpack_from("<I", pcap)
    assert magic == 0xA1B2C3D4, f"not a little-endian pcap: {magic:#x}"
    assert struct.unpack_from("<I", pcap, 20)[0] == 1, "not Ethernet"
    segments: dict[tuple[str, int, str, int], list[tuple[int, bytes]]] = {}
    offset = 24
    while offset + 16 <= len(pcap):
        _sec, _usec, captured, _original = struct.unpack_from("<IIII", pcap, offset)
        frame = pcap[offset + 16:offset + 16 + captured]
        offset += 16 + captured
        if frame[12:14] != b"\x08\x00" or frame[23] != socket.IPPROTO_TCP:
            continue
        ip = frame[14:]
        ip_header, total = (ip[0] & 0x0F) * 4, struct.unpack_from(">H", ip, 2)[0]
        tcp = ip[ip_header:total]
        sport, dport, seq = struct.unpack_from(">HHI", tcp)
        payload = tcp[(tcp[12] >> 4) * 4:]
        key = (socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport)
        segments.setdefault(key, [])
        if payload:
            segments[key].append((seq, payload))
    streams = {}
    for key, parts in segments.items():
        data, end = bytearray(), None
        for seq, payload in sorted(parts):
            if end is None:
                end = seq
            if seq + len(payload) > end:
                data += payload[end - seq:] if seq <= end else payload  # no gaps on a veth
                end = seq + len(payload)
        streams[key] = bytes(data)
    return streams


def tls_records(stream: bytes) -> list[tuple[int, bytes, bytes]]:
    """(content type, 5-byte header, body) of each whole record."""
    records, offset = [], 0
    while offset + 5 <= len(stream):
        length = struct.unpack_from(">H", stream, offset + 3)[0]
        header, body = stream[offset:offset + 5], stream[offset + 5:offset + 5 + length]
        if len(body) < length:
            break
        records.append((header[0], header, body))
        offset += 5 + length
    assert offset == len(stream), "the stream ends inside a TLS record"
    return records


def read_keylog(path: Path) -> dict[tuple[str, bytes], bytes]:
    """(label, client random) -> secret, from an NSS key log file."""
    secrets: dict[tuple[str, bytes], bytes] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            secrets[(parts[0], bytes.fromhex(parts[1]))] = bytes.fromhex(parts[2])
    return secrets


class RecordKey:
    """One direction's TLS 1.3 traffic key (RFC 8446, 7.3), with its record counter."""

    def __init__(self, secret: bytes, aead: type, key_length: int,
                 hash_algorithm: hashes.HashAlgorithm) -> None:
        self.aead = aead(_expand_label(secret, b"key", key_length, hash_algorithm))
        self.iv = _expand_label(secret, b"iv", 12, hash_algorithm)
        self.sequence = 0

    def open(self, header: bytes, body: bytes) -> tuple[int, bytes] | None:
        """(inner content type, content) if this key sealed the record, else None."""
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.sequence.to_bytes(12, "big"),
                                            strict=True))
        try:
            plain = self.aead.decrypt(nonce, body, header).rstrip(b"\0")
        except InvalidTag:
            return None
        self.sequence += 1
        return plain[-1], plain[:-1]


def _expand_label(secret: bytes, label: bytes, length: int,
                  hash_algorithm: hashes.HashAlgorithm) -> bytes:
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\0"
    return HKDFExpand(hash_algorithm, length, info).derive(secret)


def _suites(secret: bytes) -> list[tuple[type, int, hashes.HashAlgorithm]]:
    if len(secret) == 48:
        return [(AESGCM, 32, hashes.SHA384())]  # TLS_AES_256_GCM_SHA384
    return [(AESGCM, 16, hashes.SHA256()), (ChaCha20Poly1305, 32, hashes.SHA256())]


@dataclass
class ClientFlight:
    """What one client connection sent, by the key that protects each record."""

    plain_records: list[int] = field(default_factory=list)  # ClientHello, ChangeCipherSpec
    handshake_records: list[int] = field(default_factory=list)  # inner content types
    application_records: list[int] = field(default_factory=list)
    application_bytes: bytes = b""
    unreadable_records: int = 0


def analyse_client_stream(stream: bytes, keylog: dict[tuple[str, bytes], bytes]) -> ClientFlight:
    flight = ClientFlight()
    records = tls_records(stream)
    assert records and records[0][0] == 22, "the client did not open with a ClientHello"
    client_random = records[0][2][6:38]
    handshake_secret = keylog[("CLIENT_HANDSHAKE_TRAFFIC_SECRET", client_random)]
    application_secret = keylog[("CLIENT_TRAFFIC_SECRET_0", client_random)]
    for aead, key_length, hash_algorithm in _suites(handshake_secret):
        handshake = RecordKey(handshake_secret, aead, key_length, hash_algorithm)
        application = RecordKey(application_secret, aead, key_length, hash_algorithm)
        encrypted = [(header, body) for kind, header, body in records if kind == 23]
        if encrypted and handshake.open(*encrypted[0]) is None:
            continue  # not this cipher suite
        handshake.sequence = 0
        break
    for kind, header, body in records:
        if kind != 23:
            flight.plain_records.append(kind)
        elif (opened := handshake.open(header, body)) is not None:
            flight.handshake_records.append(opened[0])
        elif (opened := application.open(header, body)) is not None:
            flight.application_records.append(opened[0])
            flight.application_bytes += opened[1]
        else:
            flight.unreadable_records += 1
    return flight


# -- the test --------------------------------------------------------------------------------------


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as net:
        yield net


def _start_capture(host: Host, tcpdump: str, pcap: Path) -> subprocess.Popen:
    capture = host.popen([tcpdump, "-i", host.interface, "-s", "0", "-U", "-n", "-Z", "root",
                          "-w", str(pcap), "tcp", "port", str(TLS_PORT)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert capture.stderr is not None
    line = capture.stderr.readline()
    assert "listening on" in line, f"tcpdump did not start: {line!r}"
    return capture


def test_impostor_gets_no_application_data_while_bob_gets_the_message(network: Network,
                                                                      tmp_path: Path) -> None:
    tcpdump = require_tcpdump()
    ca = TeamCA.create()
    alice = AppNode(network["a"], tmp_path / "a", "alice", ALICE, ca)
    bob = AppNode(network["b"], tmp_path / "b", "bob", BOB, ca)
    carol_host, carol_dir = network["c"], tmp_path / "carol"
    ca.write_identity(carol_dir, CAROL)  # a valid team certificate, but for another id
    keylog, pcap = tmp_path / "impostor-keys.log", tmp_path / "impostor.pcap"
    capture = _start_capture(carol_host, tcpdump, pcap)
    impostor = carol_host.python("-m", "tests.impostor_node", "--profile-dir", str(carol_dir),
                                 "--cert-id", str(CAROL), "--announce-id", str(BOB),
                                 "--keylog", str(keylog))
    assert json.loads(impostor.stdout.readline())["event"] == "started"

    # Alice's running app hears "Bob" from Carol's address, calls her, and refuses her.
    alice.start_headless()
    alice.wait_for_log("identity mismatch")
    result = alice.send(BOB, SECRET, wait=3)
    assert result.returncode == 1  # queued: nobody proved to be Bob yet
    # The real Bob comes; Alice's outbox delivers to him while the impostor keeps announcing.
    bob.start_headless()
    deadline = time.monotonic() + 60
    while [m["state"] for m in alice.export() if m["direction"] == "out"] != ["delivered"]:
        assert time.monotonic() < deadline, alice.log()[-3000:]
        time.sleep(0.5)
    assert [m["text"] for m in bob.export() if m["direction"] == "in"] == [SECRET]

    impostor.stdin.write("report\n")
    impostor.stdin.flush()
    report = next(line for line in map(json.loads, impostor.stdout)
                  if line["event"] == "report")
    assert report["messages"] == 0
    capture.send_signal(signal.SIGINT)
    capture.wait(timeout=10)
    alice.stop()
    bob.stop()

    streams = tcp_streams(pcap.read_bytes())
    alice_address, carol_address = network["a"].address, carol_host.address
    to_impostor = {key: data for key, data in streams.items()
                   if key[0] == alice_address and key[2:] == (carol_address, TLS_PORT)}
    assert to_impostor, f"Alice never called the impostor: {list(streams)}"
    secrets = read_keylog(keylog)
    flights = [analyse_client_stream(data, secrets) for data in to_impostor.values()]
    for flight in flights:
        assert flight.unreadable_records == 0, flight
        assert flight.handshake_records, flight  # the decryption works: Certificate, Finished
        assert set(flight.handshake_records) == {22}, flight
        assert flight.application_records == [], flight
    sent_bytes = sum(len(data) for data in to_impostor.values())
    assert SECRET[:40].encode() not in b"".join(to_impostor.values())
    print(f"\nimpostor capture: {len(flights)} connection(s) from Alice, {sent_bytes} TCP "
          f"payload bytes, {sum(len(f.handshake_records) for f in flights)} handshake records, "
          f"0 application-data records / 0 application bytes; Bob got the {len(SECRET)}-"
          f"character message")


@pytest.mark.parametrize("payload", [b"", b"a TEXT frame would be here"])
def test_capture_analysis_finds_application_data_exactly_when_there_is_some(
        tmp_path: Path, payload: bytes) -> None:
    # The same analysis on a TLS 1.3 connection run through memory buffers (exact wire bytes):
    # proof that the assertion above can fail, and that it reads the handshake right.
    from chimera_tk.net.peer.tls import client_context, server_context

    ca = TeamCA.create()
    server_side = server_context(ca.write_identity(tmp_path / "s", CAROL))
    server_side.keylog_filename = str(tmp_path / "keys.log")
    client_side = client_context(ca.write_identity(tmp_path / "c", ALICE))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_side.wrap_bio(to_client, to_server, server_side=False)
    server = server_side.wrap_bio(server_in, server_out, server_side=True)
    wire = bytearray()
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        chunk = to_server.read()
        wire += chunk
        server_in.write(chunk)
        to_client.write(server_out.read())
    if payload:
        client.write(payload)
        wire += to_server.read()
    flight = analyse_client_stream(bytes(wire), read_keylog(tmp_path / "keys.log"))
    assert flight.unreadable_records == 0 and set(flight.handshake_records) == {22}
    assert flight.application_records == ([23] if payload else [])
    assert flight.application_bytes == payload
