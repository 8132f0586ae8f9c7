"""The peer wire protocol, pure: bytes in, events out; events in, bytes out. No sockets, no clock.

A frame is a 4-byte big-endian payload length, a 1-byte type, and the payload. Control payloads are
UTF-8 JSON objects; DATA payloads are raw file bytes. Both sides open with HELLO; after that either
side may send texts and offer files at any time over the same connection. One file streams at a
time in each direction: FILE_OFFER -> FILE_ACCEPT(offset) -> DATA... -> FILE_DONE -> ACK (or
FILE_REJECT, or an immediate ACK when the receiver already has the file).

Whatever the peer sends either parses or raises RemoteProtocolError; a move that *we* are not
allowed to make raises LocalProtocolError. See docs/protocol.md for the reference.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import re
import struct
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from chimera_tk.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">IB")
MAX_CONTROL_PAYLOAD = 64 * 1024
MAX_TEXT_PAYLOAD = 8 * 1024 * 1024  # a 1,000,000-character text, JSON-escaped at worst
MAX_DATA_PAYLOAD = 1024 * 1024
MAX_FILE_SIZE = 1 << 50
MAX_TEXT_CHARS = 1_000_000
_UID = re.compile(r"[A-Za-z0-9:_.-]{1,100}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FrameType(IntEnum):
    HELLO = 1
    TEXT = 2
    ACK = 3
    FILE_OFFER = 4
    FILE_ACCEPT = 5
    FILE_REJECT = 6
    DATA = 7
    FILE_DONE = 8
    EDIT = 9
    DELETE = 10
    PING = 11
    PONG = 12


_PAYLOAD_CAP = {t: MAX_CONTROL_PAYLOAD for t in FrameType}
_PAYLOAD_CAP.update({FrameType.TEXT: MAX_TEXT_PAYLOAD, FrameType.EDIT: MAX_TEXT_PAYLOAD,
                     FrameType.DATA: MAX_DATA_PAYLOAD})


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    name: str = ""
    versions: tuple[int, ...] = (PROTOCOL_VERSION,)
    features: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Text:
    uid: str
    sent_at: int
    text: str
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    uid: str


@dataclass(frozen=True, slots=True)
class FileOffer:
    uid: str
    name: str
    size: int
    sha256: str
    mime: str
    sent_at: int
    caption: str = ""


@dataclass(frozen=True, slots=True)
class FileAccept:
    uid: str
    offset: int


@dataclass(frozen=True, slots=True)
class FileReject:
    uid: str
    reason: str


@dataclass(frozen=True, slots=True)
class Data:
    chunk: bytes | bytearray | mmap.mmap  # received: the buffer decrypted straight into


@dataclass(frozen=True, slots=True)
class FileDone:
    uid: str


@dataclass(frozen=True, slots=True)
class Edit:
    uid: str
    text: str
    edited_at: int


@dataclass(frozen=True, slots=True)
class Delete:
    uid: str


@dataclass(frozen=True, slots=True)
class Ping:
    token: int = 0


@dataclass(frozen=True, slots=True)
class Pong:
    token: int = 0


Event = Hello | Text | Ack | FileOffer | FileAccept | FileReject | Data | FileDone | Edit | \
    Delete | Ping | Pong

_TYPE_OF: dict[type, FrameType] = {
    Hello: FrameType.HELLO, Text: FrameType.TEXT, Ack: FrameType.ACK,
    FileOffer: FrameType.FILE_OFFER, FileAccept: FrameType.FILE_ACCEPT,
    FileReject: FrameType.FILE_REJECT, Data: FrameType.DATA, FileDone: FrameType.FILE_DONE,
    Edit: FrameType.EDIT, Delete: FrameType.DELETE, Ping: FrameType.PING, Pong: FrameType.PONG,
}


# -- encoding --------------------------------------------------------------------------------------


def encode_event(event: Event) -> bytes:
    """One frame for ``event``; checks our own output against the same limits as the peer's."""
    frame_type = _TYPE_OF[type(event)]
    if isinstance(event, Data):
        payload = bytes(event.chunk)
    else:
        fields = {name: getattr(event, name) for name in event.__dataclass_fields__}
        payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            _decode_control(frame_type, payload)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"refusing to send an invalid {frame_type.name}: {exc}") \
                from None
    if len(payload) > _PAYLOAD_CAP[frame_type]:
        raise LocalProtocolError(f"{frame_type.name} payload of {len(payload)} bytes is too big")
    return HEADER.pack(len(payload), frame_type) + payload


def data_frame_header(length: int) -> bytes:
    """Header of a DATA frame, so a sender can write file bytes without copying them."""
    if not 0 < length <= MAX_DATA_PAYLOAD:
        raise LocalProtocolError(f"DATA chunk of {length} bytes")
    return HEADER.pack(length, FrameType.DATA)


# -- decoding --------------------------------------------------------------------------------------


class PayloadPool:
    """Full-size DATA payload buffers, handed back by the file writer once they are written and
    hashed: a fresh 1 MiB buffer per frame was zeroed and faulted in page by page, some 4% of a
    receiver's CPU. They are anonymous maps, page-aligned, so the writer can hand them to the
    disk directly (``direct_io``). Keeps a few at most, and none once a file is done (``clear``).
    """

    def __init__(self, keep: int) -> None:
        self._free: deque[mmap.mmap] = deque()  # append and pop are atomic: no lock needed
        self._keep = keep

    def take(self, size: int) -> mmap.mmap | bytearray:
        if size == MAX_DATA_PAYLOAD:
            with contextlib.suppress(IndexError):
                return self._free.pop()
            return mmap.mmap(-1, size)
        return bytearray(size)

    def give(self, buffer: object) -> None:
        """Only for a buffer nothing else holds any more."""
        if isinstance(buffer, mmap.mmap) and len(buffer) == MAX_DATA_PAYLOAD \
                and len(self._free) < self._keep:
            self._free.append(buffer)

    def clear(self) -> None:
        self._free.clear()


PAYLOADS = PayloadPool(keep=8)


class FrameDecoder:
    """Accumulates bytes and yields events as whole frames arrive, however the bytes are split.

    Received pieces are kept as they came and a payload is copied once, when it is whole: a 1 MiB
    DATA frame arrives as some 64 TLS records, and re-joining a growing buffer per record (and
    re-parsing the header each time) cost more CPU than the decryption itself. A DATA payload
    gets its own buffer as soon as its header is read; ``payload_buffer()`` offers the rest of it
    so that a reader can decrypt straight into it (``recv_into``) and report ``filled(n)``, with
    no intermediate bytes at all.
    """

    def __init__(self) -> None:
        self._pieces: deque[memoryview] = deque()
        self._size = 0  # bytes in _pieces
        self._frame: tuple[FrameType, int] | None = None  # the header being waited on
        self._payload: mmap.mmap | bytearray | None = None  # the DATA payload being filled
        self._payload_filled = 0

    def feed(self, data: bytes) -> None:
        if data:
            # a mutable buffer may be reused by the caller: keep a copy of it
            self._pieces.append(memoryview(data if isinstance(data, bytes) else bytes(data)))
            self._size += len(data)

    def next_event(self) -> Event | None:
        if self._frame is None:
            if self._size < HEADER.size:
                return None
            length, raw_type = HEADER.unpack(self._peek(HEADER.size))
            try:
                frame_type = FrameType(raw_type)
            except ValueError:
                raise RemoteProtocolError(f"unknown frame type {raw_type}") from None
            if length > _PAYLOAD_CAP[frame_type]:
                raise RemoteProtocolError(
                    f"{frame_type.name} frame of {length} bytes exceeds "
                    f"{_PAYLOAD_CAP[frame_type]}")
            self._take(HEADER.size)
            self._frame = (frame_type, length)
            if frame_type is FrameType.DATA:
                if not length:
                    raise RemoteProtocolError("empty DATA frame")
                self._payload, self._payload_filled = PAYLOADS.take(length), 0
        frame_type, length = self._frame
        if self._payload is not None:
            return self._next_data(length)
        if self._size < length:
            return None
        self._frame = None
        return _decode_control(frame_type, self._take(length))

    def payload_buffer(self) -> memoryview | None:
        """The unfilled rest of the DATA payload being received, when nothing is buffered before
        it; write into it and call ``filled`` with the count."""
        if self._payload is None or self._size:
            return None
        return memoryview(self._payload)[self._payload_filled:]

    def filled(self, count: int) -> None:
        """``count`` bytes were written at the start of the last ``payload_buffer()``."""
        assert self._payload is not None and self._payload_filled + count <= len(self._payload)
        self._payload_filled += count

    def _next_data(self, length: int) -> Event | None:
        payload = self._payload
        assert payload is not None
        if self._size:  # bytes that came through feed(): move what belongs to this payload
            want = min(self._size, length - self._payload_filled)
            payload[self._payload_filled:self._payload_filled + want] = self._take(want)
            self._payload_filled += want
        if self._payload_filled < length:
            return None
        self._frame, self._payload = None, None
        return Data(payload)

    def _peek(self, size: int) -> bytes:
        first = self._pieces[0]
        if len(first) >= size:
            return first[:size].tobytes()
        head = bytearray()  # a header split across pieces
        for piece in self._pieces:
            head += piece[:size - len(head)]
            if len(head) == size:
                break
        return bytes(head)

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes, copied once (not at all when one whole piece is exactly it)."""
        self._size -= size
        pieces = self._pieces
        parts = []
        while size:
            first = pieces[0]
            if len(first) <= size:
                parts.append(pieces.popleft())
                size -= len(first)
            else:
                parts.append(first[:size])
                pieces[0] = first[size:]
                size = 0
        if len(parts) == 1:
            whole = parts[0]
            if isinstance(whole.obj, bytes) and whole.nbytes == len(whole.obj):
                return whole.obj
            return whole.tobytes()
        return b"".join(parts)

    @property
    def buffered(self) -> int:
        return (self._size + (HEADER.size if self._frame is not None else 0)
                + self._payload_filled * (self._payload is not None))


def _decode_control(frame_type: FrameType, payload: bytes) -> Event:
    try:
        fields = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RemoteProtocolError(f"{frame_type.name} payload is not UTF-8 JSON") from None
    if not isinstance(fields, dict):
        raise RemoteProtocolError(f"{frame_type.name} payload is not a JSON object")
    read = _Reader(frame_type, fields)
    if frame_type is FrameType.HELLO:
        versions = read.list_of("versions", int, max_items=16)
        features = read.list_of("features", str, max_items=64)
        return Hello(name=read.text("name", 200, optional=True) or "",
                     versions=tuple(versions), features=tuple(features))
    if frame_type is FrameType.TEXT:
        return Text(uid=read.uid(), sent_at=read.integer("sent_at"),
                    text=read.text("text", MAX_TEXT_CHARS),
                    reply_to=read.uid("reply_to", optional=True))
    if frame_type is FrameType.ACK:
        return Ack(uid=read.uid())
    if frame_type is FrameType.FILE_OFFER:
        sha = read.text("sha256", 64)
        if not _SHA256.fullmatch(sha):
            raise RemoteProtocolError("FILE_OFFER sha256 is not 64 lowercase hex digits")
        return FileOffer(uid=read.uid(), name=read.text("name", 4096),
                         size=read.integer("size", maximum=MAX_FILE_SIZE), sha256=sha,
                         mime=read.text("mime", 255), sent_at=read.integer("sent_at"),
                         caption=read.text("caption", 4096, optional=True) or "")
    if frame_type is FrameType.FILE_ACCEPT:
        return FileAccept(uid=read.uid(), offset=read.integer("offset", maximum=MAX_FILE_SIZE))
    if frame_type is FrameType.FILE_REJECT:
        return FileReject(uid=read.uid(), reason=read.text("reason", 1000))
    if frame_type is FrameType.FILE_DONE:
        return FileDone(uid=read.uid())
    if frame_type is FrameType.EDIT:
        return Edit(uid=read.uid(), text=read.text("text", MAX_TEXT_CHARS),
                    edited_at=read.integer("edited_at"))
    if frame_type is FrameType.DELETE:
        return Delete(uid=read.uid())
    if frame_type is FrameType.PING:
        return Ping(token=read.integer("token"))
    if frame_type is FrameType.PONG:
        return Pong(token=read.integer("token"))
    raise RemoteProtocolError(f"unexpected control frame {frame_type.name}")


class _Reader:
    """Typed access to a decoded JSON object; every violation is the peer's fault."""

    def __init__(self, frame_type: FrameType, fields: dict[str, Any]) -> None:
        self._type = frame_type.name
        self._fields = fields

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self._fields or self._fields[key] is None:
            if optional:
                return None
            raise RemoteProtocolError(f"{self._type} lacks {key!r}")
        return self._fields[key]

    def text(self, key: str, max_chars: int, *, optional: bool = False) -> str | None:
        value = self._get(key, optional)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > max_chars:
            raise RemoteProtocolError(f"{self._type} {key!r} must be a string of at most "
                                      f"{max_chars} characters")
        _check_no_lone_surrogates(self._type, key, value)
        return value

    def integer(self, key: str, *, maximum: int = 2**63 - 1) -> int:
        value = self._get(key, False)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
            raise RemoteProtocolError(f"{self._type} {key!r} must be an integer 0..{maximum}")
        return value

    def uid(self, key: str = "uid", *, optional: bool = False) -> str | None:
        value = self._get(key, optional)
        if value is None:
            return None
        if not isinstance(value, str) or not _UID.fullmatch(value):
            raise RemoteProtocolError(f"{self._type} {key!r} is not a valid message uid")
        return value

    def list_of(self, key: str, kind: type, *, max_items: int) -> list[Any]:
        value = self._get(key, True) or []
        if (not isinstance(value, list) or len(value) > max_items
                or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value)):
            raise RemoteProtocolError(f"{self._type} {key!r} must be a list of {kind.__name__}")
        if kind is str and any(len(v) > 64 for v in value):
            raise RemoteProtocolError(f"{self._type} {key!r} has an over-long item")
        if kind is str:
            for item in value:
                _check_no_lone_surrogates(self._type, key, item)
        return value


def _check_no_lone_surrogates(frame: str, key: str, value: str) -> None:
    """JSON may escape half a UTF-16 pair (``"\\ud800"``); such a string cannot be stored in
    SQLite, written to a file name or sent on, so it is the peer's error here, not ours later."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RemoteProtocolError(f"{frame} {key!r} contains a lone surrogate") from None


# -- session rules ---------------------------------------------------------------------------------


class PeerSession:
    """The rules of one connection, for one side: HELLO first, one incoming file at a time.

    ``receive_data`` + ``next_event`` turn the peer's bytes into events after checking they are
    allowed now; ``send`` turns our events into bytes after checking the same for us.
    """

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self.hello_received: Hello | None = None
        self.hello_sent = False
        self.incoming_file: tuple[str, int, int] | None = None  # (uid, next offset, size)
        self.outgoing_file: tuple[str, int, int] | None = None
        self._offered: set[str] = set()
        self._done_sent: set[str] = set()  # FILE_DONE sent, its ACK or FILE_REJECT awaited

    # incoming
    def receive_data(self, data: bytes) -> None:
        self._decoder.feed(data)

    def payload_buffer(self) -> memoryview | None:
        """Where the next bytes can be received directly (see ``FrameDecoder.payload_buffer``)."""
        return self._decoder.payload_buffer()

    def received_into(self, count: int) -> None:
        self._decoder.filled(count)

    def next_event(self) -> Event | None:
        event = self._decoder.next_event()
        if event is None:
            return None
        if self.hello_received is None:
            if not isinstance(event, Hello):
                raise RemoteProtocolError(f"expected HELLO first, got {type(event).__name__}")
            if PROTOCOL_VERSION not in event.versions:
                raise RemoteProtocolError(f"no common protocol version in {event.versions}")
            self.hello_received = event
            return event
        if isinstance(event, Hello):
            raise RemoteProtocolError("a second HELLO")
        if isinstance(event, FileOffer):
            if self.incoming_file is not None:
                raise RemoteProtocolError("FILE_OFFER while another file is streaming")
        elif isinstance(event, Data):
            if self.incoming_file is None:
                raise RemoteProtocolError("DATA with no accepted file")
            uid, offset, size = self.incoming_file
            if offset + len(event.chunk) > size:
                raise RemoteProtocolError("DATA beyond the offered size")
            self.incoming_file = (uid, offset + len(event.chunk), size)
        elif isinstance(event, FileDone):
            if self.incoming_file is None or self.incoming_file[0] != event.uid:
                raise RemoteProtocolError("FILE_DONE for a file that is not streaming")
            uid, offset, size = self.incoming_file
            if offset != size:
                raise RemoteProtocolError(f"FILE_DONE after {offset} of {size} bytes")
            self.incoming_file = None
        elif isinstance(event, FileReject) and event.uid in self._done_sent:
            self._done_sent.discard(event.uid)  # the receiver refused the finished file
        elif isinstance(event, FileAccept | FileReject):
            if event.uid not in self._offered:
                raise RemoteProtocolError(f"{type(event).__name__} for a file we did not offer")
            self._offered.discard(event.uid)
        elif isinstance(event, Ack):
            self._done_sent.discard(event.uid)
        return event

    # outgoing
    def send(self, event: Event) -> bytes:
        if not self.hello_sent:
            if not isinstance(event, Hello):
                raise LocalProtocolError("HELLO must be sent first")
            self.hello_sent = True
        elif isinstance(event, Hello):
            raise LocalProtocolError("HELLO sent twice")
        if isinstance(event, FileOffer):
            self._offered.add(event.uid)
        elif isinstance(event, FileAccept):
            raise LocalProtocolError("use accept_file(offer, offset) to accept a file")
        elif isinstance(event, Data | FileDone):
            raise LocalProtocolError("use start_sending_file/data_header/finish_sending_file")
        return encode_event(event)

    def accept_file(self, offer: FileOffer, offset: int) -> bytes:
        """Accept the peer's offer from ``offset``; DATA frames are then allowed from the peer."""
        if self.incoming_file is not None:
            raise LocalProtocolError("already receiving a file")
        if not 0 <= offset <= offer.size:
            raise LocalProtocolError(f"offset {offset} outside 0..{offer.size}")
        self.incoming_file = (offer.uid, offset, offer.size)
        return encode_event(FileAccept(offer.uid, offset))

    def start_sending_file(self, uid: str, offset: int, size: int) -> None:
        if self.outgoing_file is not None:
            raise LocalProtocolError("already sending a file on this connection")
        self.outgoing_file = (uid, offset, size)

    def data_header(self, length: int) -> bytes:
        if self.outgoing_file is None:
            raise LocalProtocolError("DATA with no accepted file")
        uid, offset, size = self.outgoing_file
        if offset + length > size:
            raise LocalProtocolError("DATA beyond the file's size")
        self.outgoing_file = (uid, offset + length, size)
        return data_frame_header(length)

    def finish_sending_file(self) -> bytes:
        if self.outgoing_file is None:
            raise LocalProtocolError("no file is being sent")
        uid, offset, size = self.outgoing_file
        if offset != size:
            raise LocalProtocolError(f"FILE_DONE after {offset} of {size} bytes")
        self.outgoing_file = None
        self._done_sent.add(uid)
        return encode_event(FileDone(uid))

    def abandon_outgoing_file(self) -> None:
        """The transfer stops (cancel, error); the connection is then closed by the caller."""
        self.outgoing_file = None
