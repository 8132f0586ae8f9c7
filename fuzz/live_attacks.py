"""Attacks on a live node for the live fuzz, spoofing and amplification tests.

    python -m fuzz.live_attacks frames --target IP --profile-dir DIR --user-id N --count K
    python -m fuzz.live_attacks datagrams --target IP --source IP --kind malformed --count K

``datagrams`` sends K UDP datagrams from a raw socket, so the source address may be anyone's (a
spoofed victim): ``malformed`` ones (random bytes and mutated announcements, each checked to be
refused by our own decoder) or well-formed ``announce`` ones for random user ids and instances.
``--ports`` spreads them over several destination ports. Prints ``{"sent": K, "bytes": B}``.

``frames`` opens K connections one after another. Each completes mutual TLS with the certificate
for ``N`` in ``DIR`` (as tests/pki_factory.py writes it), sends one stream that breaks the peer
protocol somewhere, and waits for the node to close the connection. Every stream is checked first
against our own PeerSession: it must end in RemoteProtocolError, so a node that keeps such a
connection open is the node's fault. Prints one JSON line:
``{"sent": K, "closed_by_node": ..., "left_open": ..., "kinds": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import ssl
import struct
import time
from collections import Counter
from pathlib import Path

from chimera_tk.errors import RemoteProtocolError
from chimera_tk.net.discovery.protocol import decode_datagram
from chimera_tk.net.peer.protocol import (
    HEADER,
    MAX_CONTROL_PAYLOAD,
    MAX_DATA_PAYLOAD,
    FileAccept,
    FileDone,
    FrameType,
    Hello,
    PeerSession,
    Text,
    encode_event,
)
from chimera_tk.net.peer.tls import TlsFiles, client_context

HELLO = encode_event(Hello(name="fuzzer"))


def _frame(frame_type: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), frame_type) + payload


def _json_frame(frame_type: int, fields: dict) -> bytes:
    return _frame(frame_type, json.dumps(fields).encode())


def _random_json_value(rng: random.Random) -> object:
    return rng.choice([None, True, -1, 2**64, 1.5, "", "u1", "\ud800", "x" * 300, [1], {"a": 1}])


_FIELDS = ["uid", "text", "sent_at", "reply_to", "name", "size", "sha256", "mime", "offset",
           "reason", "edited_at", "token", "versions", "features"]


def _make(kind: str, rng: random.Random) -> bytes:
    if kind == "unknown type":
        return _frame(rng.choice([0, *range(13, 256)]), rng.randbytes(rng.randrange(0, 64)))
    if kind == "no hello first":
        return encode_event(Text("u1", 1, "hi"))
    if kind == "oversize control":
        return HELLO + HEADER.pack(MAX_CONTROL_PAYLOAD + 1 + rng.randrange(1000), FrameType.ACK)
    if kind == "oversize data":
        return HELLO + HEADER.pack(MAX_DATA_PAYLOAD + 1, FrameType.DATA)
    if kind == "lone surrogate":
        return HELLO + _frame(FrameType.TEXT, b'{"uid":"s1","sent_at":1,"text":"a\\ud800b"}')
    if kind == "deep nesting":
        return HELLO + _frame(FrameType.TEXT, b"[" * rng.randrange(2000, 60000))
    if kind == "second hello":
        return HELLO + HELLO
    if kind == "unwanted data":
        return HELLO + _frame(FrameType.DATA, rng.randbytes(rng.randrange(1, 100)))
    if kind == "unknown file done":
        return HELLO + encode_event(FileDone("never-offered"))
    if kind == "accept not offered":
        return HELLO + encode_event(FileAccept("never-offered", 0))
    if kind == "not utf-8":
        return HELLO + _frame(FrameType.TEXT, b"\xff\xfe" + rng.randbytes(10))
    if kind == "no common version":
        return _json_frame(FrameType.HELLO, {"versions": [rng.randrange(2, 100)]})
    if kind == "random fields":
        fields = {rng.choice(_FIELDS): _random_json_value(rng) for _ in range(rng.randrange(4))}
        return HELLO + _json_frame(rng.choice(list(FrameType)[1:]), fields)
    if kind == "random bytes":
        return HELLO + _frame(rng.choice(list(FrameType)[1:]), rng.randbytes(rng.randrange(1, 200)))
    raise ValueError(kind)


KINDS = ("unknown type", "no hello first", "oversize control", "oversize data", "lone surrogate",
         "deep nesting", "second hello", "unwanted data", "unknown file done",
         "accept not offered", "not utf-8", "no common version", "random fields", "random bytes")


def is_malformed(stream: bytes) -> bool:
    """True if our own session (after its HELLO) rejects ``stream`` as the peer's fault."""
    session = PeerSession()
    session.send(Hello())
    session.receive_data(stream)
    try:
        while session.next_event() is not None:
            pass
    except RemoteProtocolError:
        return True
    return False


def malformed_streams(seed: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` streams, every kind in turn, each one rejected by :func:`is_malformed`."""
    rng = random.Random(seed)
    streams: list[tuple[str, bytes]] = []
    while len(streams) < count:
        kind = KINDS[len(streams) % len(KINDS)]
        stream = _make(kind, rng)
        if is_malformed(stream):
            streams.append((kind, stream))
    return streams


def _attack_once(context: ssl.SSLContext, target: str, port: int, stream: bytes,
                 timeout: float) -> bool:
    """True when the node closed the connection after ``stream`` (and sent nothing but data
    that a HELLO may explain)."""
    with socket.create_connection((target, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_side=False) as tls:
        tls.sendall(stream)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not tls.recv(65536):
                    return True
            except (ConnectionError, ssl.SSLError):
                return True
            except TimeoutError:
                break
        return False


def _frames_main(args: argparse.Namespace) -> None:
    root: Path = args.profile_dir
    files = TlsFiles(root / f"{args.user_id}.pem", root / f"{args.user_id}_crt.pem",
                     root / "ca_bundle.pem")
    context = client_context(files)
    closed, left_open, kinds = 0, [], Counter()
    for kind, stream in malformed_streams(args.seed, args.count):
        kinds[kind] += 1
        if _attack_once(context, args.target, args.port, stream, args.timeout):
            closed += 1
        else:
            left_open.append(kind)
    print(json.dumps({"sent": args.count, "closed_by_node": closed, "left_open": left_open,
                      "kinds": kinds}), flush=True)


# -- datagrams from anyone ------------------------------------------------------------------------


def malformed_datagram(rng: random.Random) -> bytes:
    """Random bytes or a mutated announcement; always one our decoder refuses."""
    while True:
        if rng.random() < 0.5:
            data = rng.randbytes(rng.randrange(0, 200))
        else:
            data = bytearray(f"1:{rng.randrange(1, 2**63)}:50052:{rng.randbytes(6).hex()}",
                             "ascii")
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        try:
            decode_datagram(data)
        except RemoteProtocolError:
            return data


def announce_datagram(rng: random.Random, user_id: int | None, tls_port: int) -> bytes:
    uid = user_id or rng.randrange(1, 2**63)
    return f"1:{uid}:{tls_port}:{rng.randbytes(8).hex()}".encode()


def _udp_packet(source: str, target: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload  # no UDP checksum
    # version/IHL, TOS, length, id, fragment, TTL, UDP, checksum (the kernel fills it in)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(source), socket.inet_aton(target))
    return ip + udp


def _datagrams_main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    ports = [int(p) for p in args.ports.split(",")]
    started, total = time.monotonic(), 0
    for number in range(args.count):
        payload = (malformed_datagram(rng) if args.kind == "malformed"
                   else announce_datagram(rng, args.user_id, args.tls_port))
        packet = _udp_packet(args.source, args.target, rng.randrange(1024, 65536),
                             ports[number % len(ports)], payload)
        time.sleep(max(0.0, started + number / args.rate - time.monotonic()))
        while True:
            try:
                sock.sendto(packet, (args.target, 0))
                break
            except OSError:  # ENOBUFS: the queue is momentarily full
                time.sleep(0.001)
        total += len(payload)
    print(json.dumps({"sent": args.count, "bytes": total}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz.live_attacks")
    sub = parser.add_subparsers(dest="command", required=True)
    frames = sub.add_parser("frames", help="malformed frames after a valid TLS handshake")
    frames.add_argument("--target", required=True)
    frames.add_argument("--port", type=int, default=50052)
    frames.add_argument("--profile-dir", type=Path, required=True)
    frames.add_argument("--user-id", type=int, required=True)
    frames.add_argument("--count", type=int, default=140)
    frames.add_argument("--seed", type=int, default=0)
    frames.add_argument("--timeout", type=float, default=10.0)
    datagrams = sub.add_parser("datagrams", help="UDP datagrams from any source address")
    datagrams.add_argument("--target", required=True)
    datagrams.add_argument("--source", required=True, help="source address (spoofed or own)")
    datagrams.add_argument("--ports", default="50050,50051")
    datagrams.add_argument("--kind", choices=["malformed", "announce"], default="malformed")
    datagrams.add_argument("--user-id", type=int, help="announce this id (default: random ids)")
    datagrams.add_argument("--tls-port", type=int, default=50052)
    datagrams.add_argument("--count", type=int, default=10_000)
    datagrams.add_argument("--rate", type=float, default=2000.0, help="datagrams per second")
    datagrams.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "frames":
        _frames_main(args)
    else:
        _datagrams_main(args)


if __name__ == "__main__":
    main()
