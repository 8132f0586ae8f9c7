"""The pairing worker: a listener that exists only while a pairing window is open, and the
caller side; each exchange runs on its own thread and reports through events.

Only one exchange runs at a time; a second caller during one is refused. The session thread is the
only one that touches its TLS socket: the user's Confirm / Cancel arrive through a queue. The
pairing connection never reaches the message store: all it can do is exchange certificates and
confirmations, and write a pin after both people confirmed.
"""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from chimera_tk.errors import ChimeraError
from chimera_tk.net.pairing.events import (
    PairingClosed,
    PairingCode,
    PairingFinished,
    PairingOpened,
    PairingRemoteConfirmed,
)
from chimera_tk.net.pairing.protocol import (
    NONCE_BYTES,
    CodeReady,
    Ended,
    Event,
    Paired,
    PairingSession,
    RemoteConfirmed,
)
from chimera_tk.net.peer.tls import refuse_key_prompt
from chimera_tk.pki.certs import load_pem_chain
from chimera_tk.pki.keys import load_private_key
from chimera_tk.pki.pairing import PairingError, PinStore

log = logging.getLogger(__name__)

POLL_S = 0.1
CONNECT_TIMEOUT_S = 5.0


class PairingWorker:
    """``open()`` a window to be called, or ``pair_with(address)``; then ``confirm``/``cancel``."""

    name = "pairing"

    def __init__(self, user_id: int, my_name: str, key_path: Path, cert_path: Path,
                 pins: PinStore, emit: Callable[[object], None], *, port: int = 50053,
                 window_s: float = 120.0, host: str = "0.0.0.0",
                 key_password: Callable[[], bytes] | None = None,
                 on_paired: Callable[[int], None] | None = None) -> None:
        self.user_id = user_id
        self.my_name = my_name
        self._key_path = key_path
        self._cert_path = cert_path
        self._key_password = key_password
        self.pins = pins
        self._emit = emit
        self._on_paired = on_paired
        self.port = port
        self.window_s = window_s
        self._host = host
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._busy = False
        self._listener: socket.socket | None = None
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- Worker ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Nothing listens until :meth:`open`."""

    def stop(self) -> None:
        self.close()
        self._commands.put("cancel")

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    # -- what the UI / CLI calls -----------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        """Listen on the pairing port for ``window_s`` seconds; ChimeraError if it is taken."""
        if self._listener is not None:
            return
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((self._host, self.port))
        except OSError as exc:
            server.close()
            raise ChimeraError(f"cannot listen for pairing on port {self.port}: "
                               f"{exc.strerror}") from None
        server.listen(4)
        server.settimeout(POLL_S)
        self.port = server.getsockname()[1]
        self._closing.clear()
        self._listener = server
        self._spawn(self._accept_loop, "pairing-listen")
        self._emit(PairingOpened(self.port, self.window_s))
        log.info("pairing window open on port %s for %.0f s", self.port, self.window_s)

    def close(self) -> None:
        """End the window (an exchange in progress goes on until it ends)."""
        self._closing.set()

    def pair_with(self, address: str, port: int | None = None) -> None:
        """Call the person at ``address`` (their pairing window must be open)."""
        self._spawn(self._call, "pairing-call", address, port or self.port)

    def confirm(self) -> None:
        self._commands.put("confirm")

    def cancel(self) -> None:
        self._commands.put("cancel")

    # -- threads ---------------------------------------------------------------------------------

    def _spawn(self, target: Callable, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self) -> None:
        server = self._listener
        assert server is not None
        deadline = time.monotonic() + self.window_s
        reason = "time is up"
        try:
            while time.monotonic() < deadline:
                if self._closing.is_set():
                    reason = "closed"
                    break
                try:
                    raw, (address, _port) = server.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    reason = f"listening failed: {exc}"
                    break
                if not self._claim():
                    log.info("pairing: refused %s, an exchange is already running", address)
                    raw.close()
                    continue
                self._spawn(self._answer, f"pairing-{address}", raw, address,
                            deadline - time.monotonic())
        finally:
            server.close()
            self._listener = None
            self._emit(PairingClosed(reason))
            log.info("pairing window closed: %s", reason)

    def _claim(self) -> bool:
        with self._lock:
            if self._busy:
                return False
            self._busy = True
        while True:  # commands meant for an earlier exchange must not reach this one
            try:
                self._commands.get_nowait()
            except queue.Empty:
                return True

    def _release(self) -> None:
        with self._lock:
            self._busy = False

    def _answer(self, raw: socket.socket, address: str, seconds: float) -> None:
        try:
            raw.settimeout(CONNECT_TIMEOUT_S)
            tls = _server_context(self._cert_path, self._key_path, self._key_password) \
                .wrap_socket(raw, server_side=True)
            session = PairingSession.callee(self._own_cert(), self.user_id, self.my_name,
                                            secrets.token_bytes(NONCE_BYTES))
        except (OSError, ssl.SSLError, ValueError) as exc:
            raw.close()
            self._release()
            log.info("pairing: handshake with %s failed: %s", address, exc)
            return
        self._run(tls, session, address, outgoing=False, seconds=seconds)

    def _call(self, address: str, port: int) -> None:
        if not self._claim():
            self._emit(PairingFinished(None, "", False, "another pairing is in progress"))
            return
        try:
            raw = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            self._release()
            self._emit(PairingFinished(None, "", False,
                                       f"cannot reach {address}:{port} ({exc.strerror or exc});"
                                       " is their pairing window open?"))
            return
        try:
            tls = _client_context(self._cert_path, self._key_path, self._key_password) \
                .wrap_socket(raw, server_side=False)
            callee = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            session = PairingSession.caller(self._own_cert(), self.user_id, self.my_name,
                                            self._own_key(), callee)
        except (OSError, ssl.SSLError, ValueError, PairingError) as exc:
            raw.close()
            self._release()
            self._emit(PairingFinished(None, "", False, f"pairing with {address} failed: {exc}"))
            return
        self._run(tls, session, address, outgoing=True, seconds=self.window_s)

    def _run(self, tls: ssl.SSLSocket, session: PairingSession, address: str, *,
             outgoing: bool, seconds: float) -> None:
        """Drive one exchange to its end: bytes from the peer, commands from the user, time."""
        deadline = time.monotonic() + max(seconds, 1.0)
        try:
            tls.settimeout(POLL_S)
            self._flush(tls, session)
            while not session.ended:
                if time.monotonic() >= deadline:
                    self._handle(session.cancel("time is up"), session, address, outgoing)
                    self._flush(tls, session)
                    break
                self._take_commands(tls, session, address, outgoing)
                if session.ended:
                    break
                try:
                    data = tls.recv(16384)
                except TimeoutError:
                    continue
                except (OSError, ssl.SSLError):
                    data = b""
                events = session.receive_data(data) if data else session.connection_lost()
                self._handle(events, session, address, outgoing)
                self._flush(tls, session)
        except (OSError, ssl.SSLError) as exc:
            self._handle(session.connection_lost(), session, address, outgoing)
            log.info("pairing with %s: %s", address, exc)
        finally:
            try:
                tls.close()
            finally:
                self._release()

    def _take_commands(self, tls: ssl.SSLSocket, session: PairingSession, address: str,
                       outgoing: bool) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "confirm" and session.code is not None:
                events = session.confirm()
            elif command == "cancel":
                events = session.cancel("the code was rejected or pairing was cancelled")
            else:
                continue  # a confirm before any code was shown means nothing
            self._flush(tls, session)
            self._handle(events, session, address, outgoing)

    @staticmethod
    def _flush(tls: ssl.SSLSocket, session: PairingSession) -> None:
        data = session.data_to_send()
        if data:
            tls.settimeout(CONNECT_TIMEOUT_S)
            tls.sendall(data)
            tls.settimeout(POLL_S)

    def _handle(self, events: list[Event], session: PairingSession, address: str,
                outgoing: bool) -> None:
        for event in events:
            if isinstance(event, CodeReady):
                log.info("pairing with user %s at %s: code shown", event.peer_id, address)
                self._emit(PairingCode(event.peer_id, event.peer_name, event.code, address,
                                       outgoing))
            elif isinstance(event, RemoteConfirmed):
                self._emit(PairingRemoteConfirmed(session.peer_id or 0))
            elif isinstance(event, Paired):
                self._pin(event)
            elif isinstance(event, Ended):
                log.info("pairing with %s ended, nothing pinned: %s", address, event.reason)
                self._emit(PairingFinished(session.peer_id, session.peer_name, False,
                                           event.reason))

    def _pin(self, paired: Paired) -> None:
        try:
            self.pins.add(paired.certificate, paired.peer_name)
        except (PairingError, OSError) as exc:
            self._emit(PairingFinished(paired.peer_id, paired.peer_name, False,
                                       f"the pin could not be saved: {exc}"))
            return
        log.info("paired with user %s (%s)", paired.peer_id, paired.peer_name)
        if self._on_paired is not None:
            self._on_paired(paired.peer_id)
        self._emit(PairingFinished(paired.peer_id, paired.peer_name, True, "paired"))

    def _own_cert(self) -> x509.Certificate:
        return load_pem_chain(self._cert_path.read_bytes())[0]

    def _own_key(self) -> ec.EllipticCurvePrivateKey:
        password = self._key_password() if self._key_password is not None else None
        key = load_private_key(self._key_path, password)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PairingError("pairing needs an ECDSA key (chimera --new --self-signed makes one)")
        return key


def _base_context(purpose: int, cert: Path, key: Path,
                  password: Callable[[], bytes] | None) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key, password=password or refuse_key_prompt)
    return context


def _server_context(cert: Path, key: Path,
                    password: Callable[[], bytes] | None) -> ssl.SSLContext:
    # No client certificate is asked for: nobody can verify it yet; the caller sends it signed.
    return _base_context(ssl.PROTOCOL_TLS_SERVER, cert, key, password)


def _client_context(cert: Path, key: Path,
                    password: Callable[[], bytes] | None) -> ssl.SSLContext:
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, cert, key, password)
    # Deliberately unverified: the callee's certificate is what the codes compare.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
