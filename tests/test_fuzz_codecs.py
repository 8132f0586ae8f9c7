"""Property fuzzing of the three wire codecs with structure-aware inputs (hypothesis).

tests/test_discovery_protocol.py, test_peer_protocol.py and test_pairing.py already throw random
bytes at the codecs. Random bytes rarely get past a length prefix and a JSON parser, so the
strategies here build *nearly valid* input instead: real frame headers around JSON objects whose
fields have the right names and the wrong types, escaped lone surrogates, deep nesting, huge
numbers; announcements assembled from valid and invalid fields. Every input goes through the
targets in fuzz/targets.py, the same ones atheris runs (see test_fuzz_atheris.py), which check
the contract (parses or RemoteProtocolError) and the extra invariants named there.
``CHIMERA_FUZZ_SCALE=N`` multiplies the number of examples for a longer run (with
``--timeout 0``); the million-input runs are atheris's (test_fuzz_atheris.py).
"""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_tk.errors import RemoteProtocolError
from chimera_tk.net.pairing.protocol import CodeReady, Ended, PairingSession, State
from chimera_tk.net.peer.files import MAX_NAME_BYTES, PARTIAL_DIR, safe_file_name
from chimera_tk.net.peer.protocol import (
    HEADER,
    FrameDecoder,
    FrameType,
    PeerSession,
)
from fuzz.targets import (
    HELLO_FRAME,
    OWN_ID,
    discovery_datagram,
    pairing_frames,
    pairing_parties,
    peer_frames,
    valid_challenge_frame,
)

SCALE = float(os.environ.get("CHIMERA_FUZZ_SCALE", "1"))


def _scaled(examples: int) -> int:
    return max(1, int(examples * SCALE))


# -- discovery -------------------------------------------------------------------------------------

_good_fields = st.sampled_from(["1", "0", "2002", "50052", "65535", "abc_-9", "x" * 32])
_bad_fields = st.sampled_from(["", "00", "-1", "+1", "65536", "9" * 20, "9223372036854775808",
                               "x" * 33, "a b", "a.b", "\u0663", "1\n", " 1", "0x1", "1e3"])
_fields = st.one_of(_good_fields, _bad_fields, st.text(max_size=12))


@given(st.lists(_fields, min_size=1, max_size=6), st.sampled_from([":", "::", ";", ": "]))
@settings(max_examples=_scaled(1500), deadline=None)
def test_assembled_datagrams_parse_round_trip_or_are_counted_as_malformed(
        fields: list[str], separator: str) -> None:
    discovery_datagram(separator.join(fields).encode("utf-8", "surrogatepass"))


# -- peer frames -----------------------------------------------------------------------------------

_FIELD_NAMES = ["uid", "text", "sent_at", "reply_to", "name", "size", "sha256", "mime",
                "caption", "offset", "reason", "edited_at", "token", "versions", "features"]
_lone_surrogates = st.sampled_from(["\ud800", "a\udfff", "\udbff\udbff", "x\ud834y"])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=20) | _lone_surrogates | st.just("u-1") | st.just("a" * 64),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12)
_objects = st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), _json_values,
                           max_size=8)


def _frame(frame_type: int, payload: bytes, length_delta: int = 0) -> bytes:
    return HEADER.pack(max(0, len(payload) + length_delta), frame_type) + payload


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    frame_type = draw(st.integers(0, 14) | st.sampled_from(list(FrameType)))
    kind = draw(st.sampled_from(["object", "nested", "raw", "text"]))
    if kind == "object":
        payload = json.dumps(draw(_objects)).encode()
    elif kind == "nested":
        depth = draw(st.integers(1, 5000))
        payload = b"[" * depth + b"]" * draw(st.integers(0, depth))
    elif kind == "text":
        payload = json.dumps({"uid": "u1", "sent_at": 1, "text": draw(st.text(max_size=30)
                                                                    | _lone_surrogates)}).encode()
    else:
        payload = draw(st.binary(max_size=64))
    return _frame(frame_type, payload, draw(st.sampled_from([0, 0, 0, -1, 1, 10**6])))


@given(st.lists(_frames(), max_size=6), st.integers(0, 255))
@settings(max_examples=_scaled(700), deadline=None)
def test_nearly_valid_frame_streams_parse_or_are_the_peers_fault(frames: list[bytes],
                                                                 control: int) -> None:
    peer_frames(bytes([control]) + b"".join(frames))


@pytest.mark.parametrize("frame", [
    _frame(FrameType.TEXT, b'{"uid":"u1","sent_at":1,"text":"half \\ud800 a pair"}'),
    _frame(FrameType.EDIT, b'{"uid":"u1","edited_at":1,"text":"\\udfff"}'),
    _frame(FrameType.HELLO, b'{"name":"\\ud83d","versions":[1]}'),
    _frame(FrameType.HELLO, b'{"versions":[1],"features":["files","\\udc00"]}'),
    _frame(FrameType.FILE_OFFER, b'{"uid":"f","name":"a\\ud800.txt","size":1,"sha256":"'
           + b"0" * 64 + b'","mime":"x","sent_at":1}'),
    _frame(FrameType.FILE_REJECT, b'{"uid":"f","reason":"\\ud800"}'),
])
def test_lone_surrogate_in_any_string_is_the_peers_fault(frame: bytes) -> None:
    # Found by fuzzing: json.loads accepts "\ud800", and such a text then failed at the SQLite
    # insert (UnicodeEncodeError) inside the connection thread: logged as an internal error.
    decoder = FrameDecoder()
    decoder.feed(frame)
    with pytest.raises(RemoteProtocolError, match="surrogate"):
        decoder.next_event()


def test_a_valid_surrogate_pair_is_still_an_emoji() -> None:
    decoder = FrameDecoder()
    decoder.feed(_frame(FrameType.TEXT, b'{"uid":"u1","sent_at":1,"text":"\\ud83d\\ude42"}'))
    assert decoder.next_event().text == "🙂"


def test_deeply_nested_json_in_a_frame_is_the_peers_fault() -> None:
    session = PeerSession()
    session.receive_data(HELLO_FRAME + _frame(FrameType.TEXT, b"[" * 60_000))
    session.next_event()
    with pytest.raises(RemoteProtocolError):
        session.next_event()


# -- pairing ---------------------------------------------------------------------------------------


def _pairing_frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


_pairing_messages = st.dictionaries(
    st.sampled_from(["type", "v", "nonce", "name", "certificate", "signature", "reason"]),
    st.sampled_from(["challenge", "identify", "confirm", "cancel", 1, "ab" * 32, "\ud800"])
    | _json_values, max_size=6)


@given(st.lists(_pairing_messages.map(lambda m: _pairing_frame(json.dumps(m).encode()))
                | st.just(_pairing_frame(b"[" * 16_000)), max_size=4).map(b"".join)
       | st.binary(max_size=200), st.integers(0, 255))
@settings(max_examples=_scaled(600), deadline=None)
def test_nearly_valid_pairing_frames_never_escape_the_session(stream: bytes, control: int) -> None:
    pairing_frames(bytes([control]) + stream)


def _caller_after_a_valid_challenge() -> PairingSession:
    own_key, own_cert, _peer_key, peer_cert = pairing_parties()
    session = PairingSession.caller(own_cert, OWN_ID, "own", own_key, peer_cert)
    [code] = session.receive_data(valid_challenge_frame())
    assert isinstance(code, CodeReady)
    return session


def test_deeply_nested_pairing_frame_ends_the_session_instead_of_raising() -> None:
    # Found by fuzzing: RecursionError escaped PairingSession.receive_data (and so the worker).
    session = _caller_after_a_valid_challenge()
    [ended] = session.receive_data(_pairing_frame(b"[" * 16_000))
    assert isinstance(ended, Ended) and ended.by_remote and "not UTF-8 JSON" in ended.reason
    assert session.state is State.FAILED


def test_cancel_reason_from_the_peer_is_printable_text() -> None:
    # Found by fuzzing: the peer's cancel reason reached the UI and the log as it came, lone
    # surrogates (which the UTF-8 log file cannot take) and terminal escapes included.
    session = _caller_after_a_valid_challenge()
    reason = json.dumps({"type": "cancel", "reason": "bye\ud800\x1b[31m"}).encode()
    [ended] = session.receive_data(_pairing_frame(reason))
    assert isinstance(ended, Ended) and ended.by_remote
    assert ended.reason == "the other side cancelled: bye[31m"
    ended.reason.encode("utf-8")


# -- received file names ---------------------------------------------------------------------------


@given(st.text(max_size=300) | _lone_surrogates
       | st.sampled_from(["..", ".", "../../x", "a/..", "CON", "nul.txt", ".partial", " . ",
                          "\u202egnp.exe", "a\x00b", "é" * 300 + ".txt", "x." + "y" * 300]))
@settings(max_examples=_scaled(2000), deadline=None)
def test_any_offered_name_becomes_one_safe_storable_base_name(offered: str) -> None:
    name = safe_file_name(offered)
    assert name and name not in (".", "..", PARTIAL_DIR)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES  # also proves it is encodable
    assert not name.startswith(".")
