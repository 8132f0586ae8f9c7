"""The pure peer protocol: frames whole and byte by byte, session rules, and fuzzing."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_tk.errors import LocalProtocolError, RemoteProtocolError
from chimera_tk.net.peer.protocol import (
    HEADER,
    MAX_DATA_PAYLOAD,
    Ack,
    Data,
    Delete,
    Edit,
    FileAccept,
    FileDone,
    FileOffer,
    FileReject,
    FrameDecoder,
    FrameType,
    Hello,
    PeerSession,
    Ping,
    Pong,
    Text,
    encode_event,
)

SHA = hashlib.sha256(b"x").hexdigest()
SAMPLES = [
    Hello(name="Ana", features=("files",)),
    Text("uid-1", 1700000000000, "olá\nmundo \x00 \u2028 🙂", reply_to="uid-0"),
    Ack("uid-1"),
    FileOffer("uid-2", "../../etc/passwd", 12, SHA, "text/plain", 5, "caption"),
    FileAccept("uid-2", 0),
    FileReject("uid-2", "disk full"),
    Data(b"\x00\x01binary"),
    FileDone("uid-2"),
    Edit("uid-1", "edited", 6),
    Delete("uid-1"),
    Ping(3),
    Pong(3),
]


def _decode_all(data: bytes, step: int | None = None) -> list[object]:
    decoder, events = FrameDecoder(), []
    chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        decoder.feed(chunk)
        while (event := decoder.next_event()) is not None:
            events.append(event)
    assert decoder.buffered == 0
    return events


def test_every_frame_type_round_trips_whole_and_byte_by_byte() -> None:
    stream = b"".join(encode_event(event) for event in SAMPLES)
    assert _decode_all(stream) == SAMPLES
    assert _decode_all(stream, step=1) == SAMPLES
    assert _decode_all(stream, step=7) == SAMPLES


def test_one_mebibyte_text_fits_in_one_frame() -> None:
    text = "ação " * 200_000
    assert _decode_all(encode_event(Text("big", 1, text)), step=65536) == [Text("big", 1, text)]


def _decode_reading_into_payloads(data: bytes, steps: list[int]) -> list[object]:
    """As the channel reads: straight into a DATA payload's buffer when the decoder offers one,
    through feed() otherwise; each read takes at most the next step's count of bytes."""
    decoder, events, position, turn = FrameDecoder(), [], 0, 0
    while position < len(data):
        step = steps[turn % len(steps)]
        turn += 1
        target = decoder.payload_buffer()
        if target is not None:
            count = min(step, len(target), len(data) - position)
            target[:count] = data[position:position + count]
            decoder.filled(count)
        else:
            count = min(step, len(data) - position)
            decoder.feed(data[position:position + count])
        position += count
        while (event := decoder.next_event()) is not None:
            events.append(event)
    assert decoder.buffered == 0 and decoder.payload_buffer() is None
    return events


@given(st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_reading_straight_into_payloads_gives_the_same_events(steps: list[int]) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, the largest DATA frame
    events = [SAMPLES[0], Data(big), Text("t", 1, "between"), Data(b"x" * 20_000), *SAMPLES[1:]]
    stream = b"".join(encode_event(event) for event in events)
    decoded = [Data(bytes(event.chunk)) if isinstance(event, Data) else event
               for event in _decode_reading_into_payloads(stream, steps)]
    assert decoded == events


@pytest.mark.parametrize("frame", [
    HEADER.pack(5, 99) + b"hello",                                  # unknown type
    HEADER.pack(MAX_DATA_PAYLOAD + 1, FrameType.DATA),              # oversize data
    HEADER.pack(70_000, FrameType.ACK),                             # oversize control
    HEADER.pack(3, FrameType.ACK) + b"\xff\xfe\x00",                # not UTF-8
    HEADER.pack(2, FrameType.ACK) + b"[]",                          # not an object
    HEADER.pack(2, FrameType.ACK) + b"{}",                          # missing uid
    HEADER.pack(12, FrameType.ACK) + b'{"uid":"a/b"}',              # bad uid
    HEADER.pack(0, FrameType.DATA),                                 # empty data
    encode_event(Text("u", 1, "x")).replace(b'"sent_at":1', b'"sent_at":-1'),
    HEADER.pack(10, FrameType.PING) + b'{"token":1',                # broken JSON
])
def test_malformed_frames_raise_the_remote_protocol_error(frame: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(frame)
    with pytest.raises(RemoteProtocolError):
        decoder.next_event()


@given(st.binary(max_size=2000))
@settings(max_examples=500, deadline=None)
def test_any_bytes_either_parse_or_raise_the_remote_protocol_error(data: bytes) -> None:
    session = PeerSession()
    session.receive_data(data)
    try:
        while session.next_event() is not None:
            pass
    except RemoteProtocolError:
        pass


@given(st.lists(st.sampled_from(SAMPLES), max_size=20), st.integers(1, 50))
@settings(max_examples=200, deadline=None)
def test_session_accepts_valid_streams_or_reports_the_peer(events: list, step: int) -> None:
    data = encode_event(Hello()) + b"".join(encode_event(e) for e in events)
    session = PeerSession()
    try:
        for i in range(0, len(data), step):
            session.receive_data(data[i:i + step])
            while session.next_event() is not None:
                pass
    except RemoteProtocolError:
        pass  # e.g. DATA with no accepted file: the peer's fault, reported as such


def _pair() -> tuple[PeerSession, PeerSession]:
    a, b = PeerSession(), PeerSession()
    for sender, receiver in ((a, b), (b, a)):
        receiver.receive_data(sender.send(Hello()))
        assert isinstance(receiver.next_event(), Hello)
    return a, b


def _deliver(receiver: PeerSession, data: bytes) -> list[object]:
    receiver.receive_data(data)
    events = []
    while (event := receiver.next_event()) is not None:
        events.append(event)
    return events


def test_hello_must_come_first() -> None:
    session = PeerSession()
    session.receive_data(encode_event(Ack("x")))
    with pytest.raises(RemoteProtocolError, match="HELLO first"):
        session.next_event()
    with pytest.raises(LocalProtocolError):
        PeerSession().send(Text("u", 1, "x"))


def test_a_whole_file_exchange_between_two_sessions() -> None:
    sender, receiver = _pair()
    offer = FileOffer("f1", "a.txt", 10, SHA, "text/plain", 1)
    assert _deliver(receiver, sender.send(offer)) == [offer]
    accept = _deliver(sender, receiver.accept_file(offer, 4))
    assert accept == [FileAccept("f1", 4)]
    sender.start_sending_file("f1", 4, 10)
    data = sender.data_header(6) + b"abcdef"
    assert _deliver(receiver, data) == [Data(b"abcdef")]
    assert _deliver(receiver, sender.finish_sending_file()) == [FileDone("f1")]


def test_data_beyond_the_offered_size_is_the_peers_fault() -> None:
    sender, receiver = _pair()
    offer = FileOffer("f1", "a.txt", 3, SHA, "text/plain", 1)
    _deliver(receiver, sender.send(offer))
    receiver.accept_file(offer, 0)
    with pytest.raises(RemoteProtocolError, match="beyond"):
        _deliver(receiver, encode_event(Data(b"toolong")))


def test_unrequested_data_and_early_done_are_the_peers_fault() -> None:
    _, receiver = _pair()
    with pytest.raises(RemoteProtocolError, match="no accepted file"):
        _deliver(receiver, encode_event(Data(b"x")))
    _, receiver = _pair()
    with pytest.raises(RemoteProtocolError):
        _deliver(receiver, encode_event(FileDone("f9")))


def test_accept_for_a_file_never_offered_is_the_peers_fault() -> None:
    sender, _ = _pair()
    with pytest.raises(RemoteProtocolError, match="did not offer"):
        _deliver(sender, encode_event(FileAccept("nope", 0)))


def test_we_cannot_send_more_than_the_file_or_finish_early() -> None:
    sender, _ = _pair()
    sender.start_sending_file("f", 0, 4)
    with pytest.raises(LocalProtocolError):
        sender.data_header(5)
    sender.data_header(2)
    with pytest.raises(LocalProtocolError):
        sender.finish_sending_file()


def test_invalid_outgoing_event_is_our_bug_not_the_peers() -> None:
    _, receiver = _pair()
    with pytest.raises(LocalProtocolError):
        receiver.send(Ack("bad uid with spaces"))
