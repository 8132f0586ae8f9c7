"""The pairing exchange, pure (bytes in, events out; no sockets, clocks or files).

It runs inside a TLS 1.3 connection on the pairing port in which neither side can verify the other
yet. The caller saw the callee's certificate in the handshake; the callee has none from the caller
(Python's TLS server cannot take an unverifiable client certificate), so the caller sends its
certificate in a frame, signed over the callee's random challenge and both certificates as it sees
them (proof that it holds the key, bound to this callee). Then both sides show the code and wait:
pins are written only after the local user confirmed *and* the other side's confirmation arrived.

Frames: 4-byte big-endian length, then UTF-8 JSON (at most 16 KiB)::

    callee -> caller  {"type": "challenge", "v": 1, "nonce": hex, "name": str}
    caller -> callee  {"type": "identify", "certificate": PEM, "name": str, "signature": base64}
    either way        {"type": "confirm"}  |  {"type": "cancel", "reason": str}
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from chimera_tk.errors import InvalidTransition, LocalProtocolError, RemoteProtocolError
from chimera_tk.pki.pairing import (
    PairingError,
    pinnable_user_id,
    possession_is_proven,
    possession_message,
    sign_possession,
    verification_code,
)

VERSION = 1
MAX_FRAME = 16 * 1024
NONCE_BYTES = 32
_HEADER = struct.Struct(">I")


class State(Enum):
    AWAIT_CHALLENGE = "await challenge"  # caller, just connected
    AWAIT_IDENTIFY = "await identify"  # callee, challenge sent
    COMPARING = "comparing"  # both certificates known, the code is on screen
    LOCAL_CONFIRMED = "local confirmed"
    REMOTE_CONFIRMED = "remote confirmed"
    PAIRED = "paired"
    CANCELLED = "cancelled"
    FAILED = "failed"


class _Input(Enum):
    CHALLENGE = "challenge"
    IDENTIFY = "identify"
    LOCAL_CONFIRM = "local confirm"
    REMOTE_CONFIRM = "remote confirm"
    CANCEL = "cancel"
    FAIL = "fail"


_ENDED = (State.PAIRED, State.CANCELLED, State.FAILED)
_TRANSITIONS: dict[tuple[State, _Input], State] = {
    (State.AWAIT_CHALLENGE, _Input.CHALLENGE): State.COMPARING,
    (State.AWAIT_IDENTIFY, _Input.IDENTIFY): State.COMPARING,
    (State.COMPARING, _Input.LOCAL_CONFIRM): State.LOCAL_CONFIRMED,
    (State.COMPARING, _Input.REMOTE_CONFIRM): State.REMOTE_CONFIRMED,
    (State.LOCAL_CONFIRMED, _Input.REMOTE_CONFIRM): State.PAIRED,
    (State.REMOTE_CONFIRMED, _Input.LOCAL_CONFIRM): State.PAIRED,
}
for _state in State:
    if _state not in _ENDED:
        _TRANSITIONS[(_state, _Input.CANCEL)] = State.CANCELLED
        _TRANSITIONS[(_state, _Input.FAIL)] = State.FAILED


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodeReady:
    """Both certificates are known: show ``code`` and ask the user to compare it."""

    code: str
    peer_id: int
    peer_name: str


@dataclass(frozen=True, slots=True)
class RemoteConfirmed:
    """The other person confirmed; we still wait for ours (unless we confirmed first)."""


@dataclass(frozen=True, slots=True)
class Paired:
    """Both confirmed: pin ``certificate`` for ``peer_id``."""

    peer_id: int
    peer_name: str
    certificate: x509.Certificate


@dataclass(frozen=True, slots=True)
class Ended:
    """Nothing is pinned: cancelled by either side, or the exchange failed (``reason`` says)."""

    reason: str
    by_remote: bool


Event = CodeReady | RemoteConfirmed | Paired | Ended


# -- the session -------------------------------------------------------------------------------


class PairingSession:
    """One side of one pairing exchange. Use :meth:`caller` or :meth:`callee` to make one."""

    def __init__(self, own_cert: x509.Certificate, own_id: int, own_name: str, *,
                 state: State) -> None:
        self._own_cert = own_cert
        self._own_id = own_id
        self._own_name = own_name[:128]
        self.state = state
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._nonce = b""
        self._key: ec.EllipticCurvePrivateKey | None = None
        self.peer_cert: x509.Certificate | None = None
        self.peer_id: int | None = None
        self.peer_name = ""
        self.code: str | None = None

    @classmethod
    def callee(cls, own_cert: x509.Certificate, own_id: int, own_name: str,
               nonce: bytes) -> PairingSession:
        """We accepted the connection: the challenge is queued at once."""
        if len(nonce) != NONCE_BYTES:
            raise LocalProtocolError("the challenge must be 32 random bytes")
        session = cls(own_cert, own_id, own_name, state=State.AWAIT_IDENTIFY)
        session._nonce = nonce
        session._queue({"type": "challenge", "v": VERSION, "nonce": nonce.hex(),
                        "name": session._own_name})
        return session

    @classmethod
    def caller(cls, own_cert: x509.Certificate, own_id: int, own_name: str,
               key: ec.EllipticCurvePrivateKey, callee_cert: x509.Certificate) -> PairingSession:
        """We connected and saw ``callee_cert`` in the handshake; PairingError if unusable."""
        session = cls(own_cert, own_id, own_name, state=State.AWAIT_CHALLENGE)
        session._key = key
        session._accept_peer_cert(callee_cert)
        return session

    # -- what the worker calls -------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer since the last call."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer (any split). Never raises for bad input: a peer that breaks
        the rules ends the session with Ended(by_remote=True)."""
        if self.ended:
            return []
        self._buffer += data
        events: list[Event] = []
        try:
            while not self.ended:
                frame = self._next_frame()
                if frame is None:
                    break
                events += self._handle(frame)
        except RemoteProtocolError as exc:
            self._move(_Input.FAIL)
            events.append(Ended(f"the other side broke the pairing protocol: {exc}", True))
        except PairingError as exc:
            self._move(_Input.FAIL)
            self._queue({"type": "cancel", "reason": str(exc)[:200]})
            events.append(Ended(str(exc), True))
        return events

    def confirm(self) -> list[Event]:
        """The local user says the codes match (nothing happens once the session ended)."""
        if self.ended:
            return []
        self._move(_Input.LOCAL_CONFIRM)
        self._queue({"type": "confirm"})
        return self._paired_if_done()

    def cancel(self, reason: str = "cancelled") -> list[Event]:
        """The local user cancelled, rejected the code, or the window timed out."""
        if self.ended:
            return []
        self._move(_Input.CANCEL)
        self._queue({"type": "cancel", "reason": reason[:200]})
        return [Ended(reason, False)]

    def connection_lost(self) -> list[Event]:
        if self.ended:
            return []
        self._move(_Input.FAIL)
        return [Ended("the connection was lost before both sides confirmed", True)]

    # -- internals -------------------------------------------------------------------------------

    def _move(self, what: _Input) -> None:
        new = _TRANSITIONS.get((self.state, what))
        if new is None:
            raise InvalidTransition(f"pairing: {what.value} is not allowed in {self.state.value}")
        self.state = new

    def _queue(self, message: dict) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode()
        if len(payload) > MAX_FRAME:
            raise LocalProtocolError("a pairing frame is too big")
        self._outgoing += _HEADER.pack(len(payload)) + payload

    def _next_frame(self) -> dict | None:
        if len(self._buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > MAX_FRAME:
            raise RemoteProtocolError(f"a frame of {length} bytes is too big")
        if len(self._buffer) < _HEADER.size + length:
            return None
        payload = bytes(self._buffer[_HEADER.size:_HEADER.size + length])
        del self._buffer[:_HEADER.size + length]
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # "[[[[..." nests too deep
            raise RemoteProtocolError("a frame is not UTF-8 JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise RemoteProtocolError("a frame has no type")
        return message

    def _handle(self, message: dict) -> list[Event]:
        kind = message["type"]
        handler: Callable[[dict], list[Event]] | None = {
            "challenge": self._on_challenge, "identify": self._on_identify,
            "confirm": self._on_confirm, "cancel": self._on_cancel}.get(kind)
        if handler is None:
            raise RemoteProtocolError(f"unknown frame type {kind[:20]!r}")
        return handler(message)

    def _expect(self, what: _Input) -> None:
        if (self.state, what) not in _TRANSITIONS:
            raise RemoteProtocolError(f"{what.value} is not expected in {self.state.value}")
        self._move(what)

    def _on_challenge(self, message: dict) -> list[Event]:
        self._expect(_Input.CHALLENGE)
        if message.get("v") != VERSION:
            raise PairingError(f"the other side speaks pairing version {message.get('v')!r}, "
                               f"this Chimera speaks {VERSION}: update one of them")
        nonce = _hex(message.get("nonce"))
        self.peer_name = _name(message.get("name"))
        assert self._key is not None and self.peer_cert is not None
        signature = sign_possession(self._key,
                                    possession_message(nonce, self.peer_cert, self._own_cert))
        self._queue({"type": "identify", "name": self._own_name,
                     "certificate": _pem(self._own_cert),
                     "signature": base64.b64encode(signature).decode("ascii")})
        return [self._code_ready()]

    def _on_identify(self, message: dict) -> list[Event]:
        self._expect(_Input.IDENTIFY)
        pem, signature = message.get("certificate"), message.get("signature")
        if not isinstance(pem, str) or not isinstance(signature, str):
            raise RemoteProtocolError("identify needs a certificate and a signature")
        try:
            cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
            raw_signature = base64.b64decode(signature, validate=True)
        except (ValueError, UnicodeEncodeError, binascii.Error):
            raise RemoteProtocolError("identify carries a broken certificate or signature") \
                from None
        if not possession_is_proven(cert, possession_message(self._nonce, self._own_cert, cert),
                                    raw_signature):
            raise PairingError("the other side does not hold the key of the certificate it sent")
        self._accept_peer_cert(cert)
        self.peer_name = _name(message.get("name"))
        return [self._code_ready()]

    def _on_confirm(self, _message: dict) -> list[Event]:
        self._expect(_Input.REMOTE_CONFIRM)
        if self.state is State.PAIRED:
            return self._paired_if_done()
        return [RemoteConfirmed()]

    def _on_cancel(self, message: dict) -> list[Event]:
        self._expect(_Input.CANCEL)
        reason = _name(message.get("reason"))  # shown to the user: printable text only
        return [Ended(f"the other side cancelled: {reason}".rstrip(": ")[:240], True)]

    def _accept_peer_cert(self, cert: x509.Certificate) -> None:
        peer_id = pinnable_user_id(cert)
        if peer_id == self._own_id:
            raise PairingError(f"the other side uses the same id ({peer_id}) as this profile")
        self.peer_cert, self.peer_id = cert, peer_id

    def _code_ready(self) -> CodeReady:
        assert self.peer_cert is not None and self.peer_id is not None
        self.code = verification_code(self._own_cert, self.peer_cert)
        return CodeReady(self.code, self.peer_id, self.peer_name)

    def _paired_if_done(self) -> list[Event]:
        if self.state is not State.PAIRED:
            return []
        assert self.peer_cert is not None and self.peer_id is not None
        return [Paired(self.peer_id, self.peer_name, self.peer_cert)]


def _hex(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES:
        raise RemoteProtocolError("the challenge is not 32 bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise RemoteProtocolError("the challenge is not hex") from None


def _name(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value[:128] if ch.isprintable())


def _pem(cert: x509.Certificate) -> str:
    from chimera_tk.pki.certs import certificate_pem

    return certificate_pem(cert)
