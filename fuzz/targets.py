"""One fuzz target per wire codec: bytes in, and an exception only if the codec broke its contract.

The contract (CONVENTIONS.md, section 2): whatever a peer sends either parses or raises
RemoteProtocolError, nothing else; and the stateful layers above the codecs (the discovery node,
the peer session, the pairing session) absorb any input. On top of that each target checks what
a fuzzer alone would not notice:

- discovery: an accepted datagram survives encode -> decode unchanged, and the node's state
  machine never raises and never turns a datagram into a reply;
- peer frames: the same bytes give the same events (or the same refusal) whole and in pieces,
  and every accepted event can be encoded again, so it can also be stored (no lone surrogates);
- pairing: ``receive_data`` never raises, and random bytes never get further than Ended.

A target raises :class:`ContractViolation` (or lets the unexpected exception through) on a bug.
"""

from __future__ import annotations

import functools
import json
import os
import random
import struct

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from chimera_tk.errors import RemoteProtocolError
from chimera_tk.net.discovery.protocol import (
    Announcement,
    DiscoveryState,
    Goodbye,
    decode_datagram,
    encode_announcement,
    encode_goodbye,
)
from chimera_tk.net.pairing.protocol import (
    CodeReady,
    Ended,
    PairingSession,
    RemoteConfirmed,
    State,
)
from chimera_tk.net.peer.protocol import (
    Data,
    FileOffer,
    FrameDecoder,
    Hello,
    PeerSession,
    encode_event,
)
from chimera_tk.pki.pairing import make_personal_certificate

OWN_ID = 1001
PEER_ID = 2002


class ContractViolation(AssertionError):
    """A codec accepted, produced or raised something its contract rules out."""


# -- discovery -------------------------------------------------------------------------------------


@functools.cache
def _discovery_node() -> DiscoveryState:
    # One node for the whole run, so that its peer table fills up and expires as in real life.
    node = DiscoveryState(OWN_ID, instance="fuzz", interval_s=5.0, rng=random.Random(0),
                          max_peers=64)
    node.start(0.0)
    return node


_clock = [0.0]


def discovery_datagram(data: bytes) -> None:
    try:
        message = decode_datagram(data)
    except RemoteProtocolError:
        message = None
    if message is not None:
        encoded = (encode_announcement(message) if isinstance(message, Announcement)
                   else encode_goodbye(message))
        if decode_datagram(encoded) != message or len(encoded) > len(data):
            raise ContractViolation(f"{data!r} -> {message!r} -> {encoded!r} does not round-trip")
    node = _discovery_node()
    _clock[0] += 0.01
    before = node.stats()
    events = node.receive(data, "10.0.0.9", _clock[0])
    node.tick(_clock[0])
    after = node.stats()
    if after.sent != before.sent or (message is None) != (after.malformed == before.malformed + 1):
        raise ContractViolation(f"{data!r}: counters moved wrongly ({before} -> {after})")
    if message is None and events:
        raise ContractViolation(f"malformed {data!r} produced events {events!r}")
    if isinstance(message, Goodbye) and len(events) > 1:
        raise ContractViolation(f"one goodbye produced {events!r}")


# -- peer frames -----------------------------------------------------------------------------------

HELLO_FRAME = encode_event(Hello(name="fuzz", features=("files",)))


def _decode_stream(data: bytes, step: int) -> tuple[list[object], str | None]:
    decoder, events = FrameDecoder(), []
    try:
        for start in range(0, len(data), step):
            decoder.feed(data[start:start + step])
            while (event := decoder.next_event()) is not None:
                events.append(event)
    except RemoteProtocolError as exc:
        return events, str(exc)
    return events, None


def peer_frames(data: bytes) -> None:
    """The first byte picks the split size (low 7 bits) and whether a valid HELLO comes first
    (high bit), so that the session's later states are reachable from random bytes."""
    if not data:
        return
    control, stream = data[0], data[1:]
    step = (control & 0x7F) + 1
    if control & 0x80:
        stream = HELLO_FRAME + stream

    whole = _decode_stream(stream, max(1, len(stream)))
    pieces = _decode_stream(stream, step)
    if whole != pieces:
        raise ContractViolation(f"split at {step} bytes changes the result: {whole} / {pieces}")
    for event in whole[0]:
        try:
            encode_event(event)
        except Exception as exc:
            raise ContractViolation(f"accepted {event!r} cannot be encoded again: {exc!r}") \
                from None

    session = PeerSession()
    session.send(Hello())
    try:
        for start in range(0, len(stream), step):
            session.receive_data(stream[start:start + step])
            while (event := session.next_event()) is not None:
                if isinstance(event, FileOffer) and session.incoming_file is None:
                    session.accept_file(event, event.size // 2)  # as the worker does on resume
                elif isinstance(event, Data) and not event.chunk:
                    raise ContractViolation("an empty DATA frame was accepted")
    except RemoteProtocolError:
        pass


# -- pairing ---------------------------------------------------------------------------------------


@functools.cache
def pairing_parties() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate,
                             ec.EllipticCurvePrivateKey, x509.Certificate]:
    own_key, peer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    return (own_key, make_personal_certificate(own_key, OWN_ID),
            peer_key, make_personal_certificate(peer_key, PEER_ID))


def valid_challenge_frame() -> bytes:
    payload = json.dumps({"type": "challenge", "v": 1, "nonce": "ab" * 32,
                          "name": "fuzz"}).encode()
    return struct.pack(">I", len(payload)) + payload


def pairing_frames(data: bytes) -> None:
    """The first byte picks the side (bit 0: caller or callee), whether the caller first gets a
    valid challenge (bit 1) and the split size (bits 2-7)."""
    if not data:
        return
    control, stream = data[0], data[1:]
    own_key, own_cert, _peer_key, peer_cert = pairing_parties()
    step = (control >> 2) + 1
    if control & 1:
        session = PairingSession.caller(own_cert, OWN_ID, "own", own_key, peer_cert)
        if control & 2:
            stream = valid_challenge_frame() + stream
    else:
        session = PairingSession.callee(own_cert, OWN_ID, "own", os.urandom(32))
    events = []
    for start in range(0, len(stream), step):
        events += session.receive_data(stream[start:start + step])
        session.data_to_send()
    allowed = (Ended, CodeReady, RemoteConfirmed) if control & 1 else (Ended,)
    if not all(isinstance(e, allowed) for e in events):
        raise ContractViolation(f"random bytes produced {events!r}")
    if session.state is State.PAIRED:
        raise ContractViolation("random bytes paired without the local user's confirmation")
    if any(isinstance(e, Ended) and not e.by_remote for e in events):
        raise ContractViolation(f"a remote failure was reported as ours: {events!r}")
    shown = [session.peer_name] + [e.reason for e in events if isinstance(e, Ended)]
    for text in shown:
        text.encode("utf-8")  # shown and logged: a lone surrogate here would fail there


TARGETS = {"discovery": discovery_datagram, "peer": peer_frames, "pairing": pairing_frames}
