"""The peer worker: accepts and makes verified TLS connections, and moves messages and files.

Threads: one accept loop; one short-lived thread per incoming handshake (bounded); one I/O thread
per connection (see channel.py); one sender thread per peer that works through that peer's queue
in order. Every thread that touches the database opens its own connection. Results reach the UI
only as events.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import sqlite3
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chimera_tk.errors import ChimeraError, RemoteProtocolError
from chimera_tk.events import (
    DialogChanged,
    MessageChanged,
    MessageStored,
    PeerUnavailable,
    PeerVerified,
    TransferProgress,
)
from chimera_tk.net.peer.admission import Admission, PendingHandshake
from chimera_tk.net.peer.changes import apply_peer_change, send_change
from chimera_tk.net.peer.channel import Channel, ChannelClosed
from chimera_tk.net.peer.chunks import ChunkReader
from chimera_tk.net.peer.files import (
    DISK_RESERVE_BYTES,
    IncomingFile,
    TransferError,
    finished_copy,
    free_bytes,
    move_into_place,
    safe_file_name,
)
from chimera_tk.net.peer.protocol import (
    Ack,
    Data,
    Delete,
    Edit,
    Event,
    FileAccept,
    FileDone,
    FileOffer,
    FileReject,
    Hello,
    Text,
)
from chimera_tk.net.peer.refusals import describe_refusal
from chimera_tk.net.peer.tls import (
    PeerIdentityError,
    TlsFiles,
    client_context,
    peer_user_id,
    require_identity,
    server_context,
)
from chimera_tk.net.peer.tls_stream import TlsStream
from chimera_tk.store import Store
from chimera_tk.store.records import IncomingMessage, Message, utc_now_ms

log = logging.getLogger(__name__)

FILE_CHUNK = 1024 * 1024
PROGRESS_INTERVAL_S = 0.1
CHECKPOINT_DELAY_S = 0.2  # a burst of writes is copied from the WAL in one checkpoint
FILE_RESENDS = 2  # whole-file resends after the receiver discarded a finished file
# How long a new connection waits for an older one receiving the same file to let go of it
# (the older one's writer flushes what it has queued first: 16 MiB at most).
SUPERSEDE_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class PeerLimits:
    connect_timeout_s: float = 5.0
    handshake_timeout_s: float = 5.0
    idle_timeout_s: float = 60.0
    ack_timeout_s: float = 15.0
    max_connections_per_address: int = 8
    max_pending_handshakes: int = 32
    retry_after_s: float = 10.0
    max_handshakes_per_address: int = 4  # unauthenticated connections at once (admission.py)
    # A peer's sender thread ends after this long with nothing to do (forged announcements for
    # made-up ids must not leave one thread each behind); the next message starts a new one.
    sender_idle_s: float = 30.0


class _Waiter:
    """What a sender thread waits for after a frame: an ACK, or a FILE_ACCEPT / FILE_REJECT."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Event | None = None
        self.error: str | None = None

    def resolve(self, result: Event | None = None, error: str | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def wait(self, timeout: float) -> Event:
        if not self.done.wait(timeout):
            raise ChannelClosed(f"no answer within {timeout:.0f} s")
        if self.error is not None:
            raise ChannelClosed(self.error)
        assert self.result is not None
        return self.result


class _Incoming:
    """Per-connection state of the file being received."""

    def __init__(self, offer: FileOffer, file: IncomingFile, message_id: int,
                 file_id: int) -> None:
        self.offer = offer
        self.file = file
        self.message_id = message_id
        self.file_id = file_id
        self.last_progress = 0.0


class PeerWorker:
    name = "lan-peers"

    def __init__(self, my_id: int, my_name: str, tls: TlsFiles, database: Path, downloads: Path,
                 emit: Callable[[object], None], *, host: str = "0.0.0.0", port: int = 50052,
                 limits: PeerLimits | None = None) -> None:
        self.my_id = my_id
        self.my_name = my_name
        self._database = database
        self._downloads = downloads
        self._emit = emit
        self._host = host
        self._port = port
        self.limits = limits or PeerLimits()
        self._server_ctx = server_context(tls)
        self._client_ctx = client_context(tls)
        self._lock = threading.Lock()
        self._revoked: frozenset[int] = frozenset()  # serials on the team CRL
        self._serials: dict[Channel, int] = {}  # the peer certificate serial of each connection
        self._channels: dict[int, Channel] = {}
        self._all_channels: set[Channel] = set()
        self._addresses: dict[int, tuple[str, int]] = {}
        self._per_address: dict[str, int] = defaultdict(int)
        self.admission = Admission(per_address=self.limits.max_handshakes_per_address,
                                   total=self.limits.max_pending_handshakes,
                                   timeout_s=self.limits.handshake_timeout_s)
        self._handshake_threads: list[threading.Thread] = []
        self._waiters: dict[tuple[int, str], _Waiter] = {}
        self._incoming: dict[Channel, _Incoming] = {}
        self._stores: dict[Channel, Store] = {}
        self._senders: dict[int, _PeerSender] = {}
        self._stopping = threading.Event()
        self._written = threading.Event()
        self._cancelled: set[int] = set()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.refused_handshakes = 0
        self.refused_changes = 0  # EDIT/DELETE for messages the sending peer did not write

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((self._host, self._port))
        except OSError as exc:
            server.close()
            raise ChimeraError(f"cannot listen for LAN peers on port {self._port}: "
                               f"{exc.strerror}") from None
        server.listen(64)
        server.settimeout(0.5)
        self._server = server
        self._port = server.getsockname()[1]
        for target, name in ((self._accept_loop, "lan-accept"),
                             (self._checkpoint_loop, "lan-checkpoint")):
            thread = threading.Thread(target=target, name=name)
            thread.start()
            self._threads.append(thread)

    @property
    def port(self) -> int:
        return self._port

    def stop(self) -> None:
        self._stopping.set()
        self._written.set()  # wakes the checkpoint thread
        if self._server is not None:
            self._server.close()
        self.admission.close_all()  # handshakes under way end now, not at their deadline
        for sender in list(self._senders.values()):
            sender.stop()
        with self._lock:
            channels = list(self._all_channels)
        for channel in channels:
            channel.close("shutting down")

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads + [s.thread for s in self._senders.values()]:
            thread.join(max(0.0, deadline - time.monotonic()))
        for thread in list(self._handshake_threads):  # the accept loop no longer adds any
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            channels = list(self._all_channels)
        for channel in channels:
            channel.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads + self._handshake_threads if t.is_alive()]
        alive += [s.thread for s in self._senders.values() if s.thread.is_alive()]
        return not alive and all(not c._thread.is_alive() for c in channels)

    # -- what the LAN service calls ----------------------------------------------------------------

    def learn_address(self, user_id: int, address: str, port: int) -> None:
        """Discovery heard ``user_id`` at ``address``: where to call it (only a hint)."""
        with self._lock:
            self._addresses[user_id] = (address, port)

    def forget_address(self, user_id: int) -> None:
        with self._lock:
            self._addresses.pop(user_id, None)

    def is_connected(self, user_id: int) -> bool:
        with self._lock:
            channel = self._channels.get(user_id)
        return channel is not None and not channel.closed

    def verify(self, user_id: int) -> None:
        """Connect to ``user_id`` in the background; PeerVerified or PeerUnavailable follows."""
        self._sender(user_id).enqueue(None)

    def submit(self, user_id: int, message_id: int) -> None:
        """Send a claimed outbox message to ``user_id``; its outcome is written to the store."""
        self._sender(user_id).enqueue(message_id)

    def submit_change(self, user_id: int, message_id: int, version: int) -> None:
        """Send a claimed edit/delete notice (net/peer/changes.py), in order after the messages
        queued before it."""
        self._sender(user_id).enqueue((message_id, version))

    def cancel(self, message_id: int) -> None:
        """Stop sending ``message_id`` (a file in flight stops at the next chunk)."""
        with self._lock:
            self._cancelled.add(message_id)

    def take_cancelled(self, message_id: int) -> bool:
        with self._lock:
            if message_id in self._cancelled:
                self._cancelled.discard(message_id)
                return True
            return False

    def reload_tls(self, tls: TlsFiles) -> None:
        """After a renewal: new connections present the new certificate (open ones go on)."""
        server_ctx, client_ctx = server_context(tls), client_context(tls)
        with self._lock:
            self._server_ctx, self._client_ctx = server_ctx, client_ctx
        log.info("LAN contexts rebuilt with %s", tls.certificate_chain.name)

    def drop_peer(self, user_id: int, reason: str) -> None:
        """Close ``user_id``'s open connection (e.g. after unpairing: it is no longer trusted)."""
        with self._lock:
            doomed = [channel for channel in self._all_channels
                      if channel.peer_id == user_id and not channel.closed]
        for channel in doomed:
            channel.abort(reason)

    def set_revoked(self, serials: frozenset[int]) -> None:
        """A new team CRL: refuse these serials from now on and drop their open connections."""
        with self._lock:
            self._revoked = serials
            doomed = [(channel, serial) for channel, serial in self._serials.items()
                      if serial in serials and not channel.closed]
        for channel, serial in doomed:
            log.warning("dropping user %s at %s: certificate serial %x is revoked",
                        channel.peer_id, channel.address, serial)
            channel.abort(f"certificate serial {serial:x} revoked")

    def _check_not_revoked(self, tls: TlsStream, peer_id: int) -> int:
        """The peer certificate's serial, unless the team CRL lists it."""
        serial = int(tls.getpeercert()["serialNumber"], 16)
        with self._lock:
            revoked = serial in self._revoked
        if revoked:
            raise PeerIdentityError(f"user {peer_id}'s certificate serial {serial:x} is revoked")
        return serial

    def _sender(self, user_id: int) -> _PeerSender:
        with self._lock:
            sender = self._senders.get(user_id)
            if sender is None or not sender.thread.is_alive():
                sender = _PeerSender(self, user_id)
                self._senders[user_id] = sender
                sender.thread.start()
            return sender

    # -- accepting -------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._server is not None
        last_summary = 0.0
        while not self._stopping.is_set():
            self.admission.reap()  # handshakes past their deadline end here (every <= 0.5 s)
            try:
                raw, (address, _port) = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                too_many = self._per_address[address] >= self.limits.max_connections_per_address
                if not too_many:
                    self._per_address[address] += 1
            ticket = None if too_many else self.admission.admit(raw, address)
            if ticket is None:
                if not too_many:
                    self._release_address(address)
                self.refused_handshakes += 1
                # a flood would fill the log: one line per refusal at debug, a summary at info
                log.debug("refused a connection from %s: too many at once", address)
                if time.monotonic() - last_summary > 10:
                    last_summary = time.monotonic()
                    log.info("refusing connections (too many at once from one address or in "
                             "all): %s", self.admission.counters())
                raw.close()
                continue
            thread = threading.Thread(target=self._handshake_incoming, args=(raw, address, ticket),
                                      name=f"lan-handshake-{address}", daemon=True)
            self._handshake_threads = [t for t in self._handshake_threads if t.is_alive()]
            self._handshake_threads.append(thread)
            thread.start()

    def _handshake_incoming(self, raw: socket.socket, address: str,
                            ticket: PendingHandshake) -> None:
        try:
            _no_delay(raw)
            # TlsStream applies this to the whole do_handshake call; the admission's deadline
            # (reaped by the accept loop) is the backstop
            raw.settimeout(self.admission.remaining(ticket))
            with self._lock:
                context = self._server_ctx
            tls = TlsStream(raw, context, server_side=True)
            if not self.admission.update_socket(ticket, raw):
                raise TimeoutError(ticket.ended)
            tls.do_handshake()
            peer_id = peer_user_id(tls)
            serial = self._check_not_revoked(tls, peer_id)
        except (OSError, ssl.SSLError, PeerIdentityError, ValueError) as exc:
            ended = self.admission.finish(ticket, verified=False,
                                          timed_out=isinstance(exc, TimeoutError))
            self.refused_handshakes += 1
            log.log(logging.INFO if self.admission.may_log() else logging.DEBUG,
                    "refused a peer at %s: %s", address,
                    f"handshake {ended}" if ended else describe_refusal(exc))
            raw.close()  # the TLS stream works on it and owns nothing else
            self._release_address(address)
            return
        if self.admission.finish(ticket, verified=True):
            # cut at the very moment it succeeded: the socket is shut down, so give up on it
            self.refused_handshakes += 1
            tls.close()
            self._release_address(address)
            return
        channel = self._register(tls, peer_id, address, outgoing=False, serial=serial)
        if channel is not None:
            log.info("peer %s connected from %s", peer_id, address)

    def _release_address(self, address: str) -> None:
        with self._lock:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    # -- connecting ------------------------------------------------------------------------------

    def connect(self, user_id: int) -> Channel:
        """The live connection to ``user_id``, calling it if needed; raises ChannelClosed."""
        with self._lock:
            channel = self._channels.get(user_id)
            target = self._addresses.get(user_id)
        if channel is not None and not channel.closed:
            return channel
        if target is None:
            raise ChannelClosed(f"user {user_id} is not on the LAN now")
        address, port = target
        try:
            raw = socket.create_connection((address, port),
                                           timeout=self.limits.connect_timeout_s)
        except OSError as exc:
            raise ChannelClosed(f"cannot connect to {address}:{port}: {_short(exc)}") from None
        try:
            _no_delay(raw)
            raw.settimeout(self.limits.handshake_timeout_s)
            with self._lock:
                context = self._client_ctx
            tls = TlsStream(raw, context, server_side=False)
            tls.do_handshake()
            require_identity(tls, user_id)
            serial = self._check_not_revoked(tls, user_id)
        except PeerIdentityError as exc:
            raw.close()
            log.warning("refused the peer at %s announced as user %s: %s", address, user_id,
                        exc)
            raise ChannelClosed(str(exc)) from None
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            reason = describe_refusal(exc)
            log.warning("refused the peer at %s announced as user %s: %s", address, user_id,
                        reason)
            raise ChannelClosed(f"TLS handshake with {address} failed: {reason}") from None
        with self._lock:
            self._per_address[address] += 1
        channel = self._register(tls, user_id, address, outgoing=True, serial=serial)
        if channel is None:
            raise ChannelClosed("shutting down")
        return channel

    def _register(self, tls: TlsStream, peer_id: int, address: str, *,
                  outgoing: bool, serial: int) -> Channel | None:
        channel = Channel(tls, peer_id, address, outgoing=outgoing, on_event=self._on_event,
                          on_closed=self._on_closed, idle_timeout=self.limits.idle_timeout_s)
        with self._lock:
            if self._stopping.is_set():
                tls.close()
                return None
            if serial in self._revoked:  # a CRL arrived during the handshake
                tls.close()
                self._per_address[address] -= 1
                if self._per_address[address] <= 0:
                    del self._per_address[address]
                log.warning("refused user %s at %s: certificate serial %x is revoked",
                            peer_id, address, serial)
                return None
            self._channels[peer_id] = channel
            self._all_channels.add(channel)
            self._serials[channel] = serial
        channel.send(Hello(name=self.my_name, features=("files", "edit", "delete")))
        channel.start()
        return channel

    # -- events from connections (each on its channel's I/O thread) -------------------------------

    def _store(self, channel: Channel) -> Store:
        store = self._stores.get(channel)
        if store is None:
            store = self.open_store()
            self._stores[channel] = store
        return store

    def open_store(self) -> Store:
        """A connection for one of this worker's threads; its commits never checkpoint the WAL.

        SQLite's automatic checkpoint runs in whichever connection commits when the WAL passes
        1000 pages, about every 90 received texts, and costs that commit the checkpoint's fsyncs
        (4-5 ms here): on a receiving channel that delayed the ACK, the whole p99 of send->ACK.
        The worker's checkpoint thread does it instead (:meth:`_checkpoint_loop`).
        """
        return Store.open(self._database).leave_checkpoints_to_others()

    def wrote(self) -> None:
        """A worker connection committed: the checkpoint thread copies the WAL soon."""
        self._written.set()

    def _checkpoint_loop(self) -> None:
        store: Store | None = None
        try:
            while not self._stopping.is_set():
                if not self._written.wait(0.5):
                    continue
                self._stopping.wait(CHECKPOINT_DELAY_S)
                self._written.clear()
                try:
                    if store is None:
                        store = Store.open(self._database)
                    store.checkpoint()
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            if store is not None:
                store.close()

    def _on_closed(self, channel: Channel, reason: str) -> None:
        incoming = self._incoming.pop(channel, None)
        if incoming is not None:
            incoming.file.abort(keep_partial=True)
        store = self._stores.pop(channel, None)
        if store is not None:
            store.close()
        with self._lock:
            self._all_channels.discard(channel)
            self._serials.pop(channel, None)
            if self._channels.get(channel.peer_id) is channel:
                del self._channels[channel.peer_id]
            waiters = [w for (peer, _), w in self._waiters.items() if peer == channel.peer_id]
        for waiter in waiters:
            waiter.resolve(error=f"connection closed: {reason}")
        self._release_address(channel.address)
        log.info("peer %s at %s disconnected: %s", channel.peer_id, channel.address, reason)

    def _on_event(self, channel: Channel, event: Event) -> None:
        if isinstance(event, Hello):
            channel.peer_name = event.name
            store = self._store(channel)
            placeholder = placeholder_title(channel.peer_id)
            store.dialogs.ensure(channel.peer_id, "user", event.name or placeholder)
            if event.name and store.dialogs.learn_name(channel.peer_id, event.name, placeholder):
                self._emit(DialogChanged(store.dialogs.get(channel.peer_id)))
            self._emit(PeerVerified(channel.peer_id, channel.address, event.name))
        elif isinstance(event, Text):
            self._receive_text(channel, event)
        elif isinstance(event, Ack | FileAccept | FileReject):
            with self._lock:
                waiter = self._waiters.pop((channel.peer_id, event.uid), None)
            if waiter is not None:
                waiter.resolve(event)
        elif isinstance(event, FileOffer):
            self._receive_offer(channel, event)
        elif isinstance(event, Data):
            self._receive_data(channel, event)
        elif isinstance(event, FileDone):
            self._receive_file_done(channel, event)
        elif isinstance(event, Edit | Delete):
            self._receive_change(channel, event)
        if isinstance(event, Hello | Text | FileOffer | FileDone | Edit | Delete):
            self.wrote()

    def _incoming_message(self, channel: Channel, uid: str, text: str, sent_at: int,
                          file_id: int | None = None) -> IncomingMessage:
        return IncomingMessage(
            dialog_id=channel.peer_id, uid=uid, sender_id=channel.peer_id,
            sender_name=channel.peer_name, text=text, sent_at=min(sent_at, utc_now_ms()),
            transport="lan", file_id=file_id)

    def _receive_text(self, channel: Channel, text: Text) -> None:
        store = self._store(channel)
        store.dialogs.ensure(channel.peer_id, "user",
                             channel.peer_name or placeholder_title(channel.peer_id))
        with store.transaction():
            message, new = store.messages.receive(
                self._incoming_message(channel, text.uid, text.text, text.sent_at))
            if new:
                store.lan_meter.count_delivery(message)
        channel.send(Ack(text.uid))  # only after the commit: an ACK means "stored"
        if new:
            self._emit(MessageStored(message))

    def _receive_offer(self, channel: Channel, offer: FileOffer) -> None:
        store = self._store(channel)
        existing = store.messages.find_by_uid(offer.uid)
        if existing is not None and existing.dialog_id != channel.peer_id:
            raise RemoteProtocolError("a file offer reuses another conversation's message uid")
        if existing is not None and existing.file_id is not None \
                and self._have_file_already(store, existing, offer):
            channel.send(Ack(offer.uid))  # we have it already: the sender may stop here
            return
        if not self._supersede_older_transfer(channel, offer.uid):
            return
        incoming_file = IncomingFile(self._downloads, offer.uid, offer.size, offer.sha256)
        free = free_bytes(self._downloads)
        if offer.size - incoming_file.offset > free - DISK_RESERVE_BYTES:
            incoming_file.abort(keep_partial=False)
            log.warning("refused file %s (%d bytes) from %s: not enough free disk space in %s "
                        "(%d bytes free, %d kept in reserve)", offer.uid, offer.size,
                        channel.peer_id, self._downloads, free, DISK_RESERVE_BYTES)
            channel.send(FileReject(offer.uid, "not enough free disk space on the receiver"))
            return
        if existing is None:
            with store.transaction():
                store.dialogs.ensure(channel.peer_id, "user",
                                     channel.peer_name or placeholder_title(channel.peer_id))
                file = store.files.create(safe_file_name(offer.name), offer.size,
                                          sha256=offer.sha256, mime=offer.mime,
                                          state="transferring")
                message, _ = store.messages.receive(self._incoming_message(
                    channel, offer.uid, offer.caption, offer.sent_at, file_id=file.id))
            self._emit(MessageStored(message))
        else:
            message = existing
        assert message.file_id is not None
        self._incoming[channel] = _Incoming(offer, incoming_file, message.id, message.file_id)
        log.info("receiving file %s (%d bytes) from %s, starting at byte %d", offer.uid,
                 offer.size, channel.peer_id, incoming_file.offset)
        channel.send_raw(lambda session: session.accept_file(offer, incoming_file.offset))

    def _supersede_older_transfer(self, channel: Channel, uid: str) -> bool:
        """A sender whose connection broke offers the file again on a new one, sometimes before
        the old connection is seen to close here. Two writers on one partial file corrupt it, so
        the old connection is closed (its partial file kept, to resume from) and its writer
        finished before the new one starts. False: the old one did not let go in time; the new
        connection is closed too and the sender tries again later."""
        for other, incoming in list(self._incoming.items()):
            if other is channel or incoming.offer.uid != uid:
                continue
            log.info("file %s is offered again on a new connection from %s: closing the old one",
                     uid, channel.peer_id)
            other.abort("the sender started this file again on a new connection")
            if not other.join(SUPERSEDE_WAIT_S):
                channel.close(f"still receiving {uid} on an older connection")
                return False
        return True

    def _receive_data(self, channel: Channel, data: Data) -> None:
        incoming = self._incoming[channel]
        try:
            incoming.file.write(data.chunk)
        except TransferError as exc:
            self._fail_incoming(channel, incoming, str(exc))
            raise RemoteProtocolError(f"transfer stopped: {exc}") from None
        now = time.monotonic()
        if now - incoming.last_progress >= PROGRESS_INTERVAL_S:
            incoming.last_progress = now
            self._emit(TransferProgress(incoming.message_id, incoming.file_id,
                                        incoming.file.offset, incoming.offer.size, False))

    def _receive_file_done(self, channel: Channel, done: FileDone) -> None:
        incoming = self._incoming.pop(channel)
        store = self._store(channel)
        try:
            partial = incoming.file.finish()
            final = move_into_place(
                partial, self._downloads, incoming.offer.name,
                before=lambda chosen: store.files.set_state(
                    incoming.file_id, "transferring", path=str(chosen.resolve())))
        except (TransferError, OSError) as exc:
            self._fail_incoming(channel, incoming, str(exc), popped=True)
            channel.send(FileReject(done.uid, str(exc)))
            return
        with store.transaction():
            store.files.set_state(incoming.file_id, "complete", path=str(final.resolve()),
                                  sha256=incoming.offer.sha256, bytes_done=incoming.offer.size)
            store.lan_meter.count_delivery(store.messages.get(incoming.message_id))
        channel.send(Ack(done.uid))
        self._emit(TransferProgress(incoming.message_id, incoming.file_id, incoming.offer.size,
                                    incoming.offer.size, False))
        self._emit(MessageChanged(store.messages.get(incoming.message_id)))

    def _have_file_already(self, store: Store, message: Message, offer: FileOffer) -> bool:
        """Stored complete; or finished under its recorded final name by a process killed
        before it could commit that (the sender then repeats its offer): committed now."""
        file = store.files.get(message.file_id)
        if file.state == "complete":
            return True
        if not file.path or file.sha256 != offer.sha256 or not finished_copy(
                self._downloads, offer.uid, Path(file.path), offer.size, offer.sha256):
            return False
        with store.transaction():
            store.files.set_state(file.id, "complete", bytes_done=offer.size)
            store.lan_meter.count_delivery(message)
        log.info("file %s was already in place as %s (saved before a restart)", offer.uid,
                 Path(file.path).name)
        self._emit(MessageChanged(store.messages.get(message.id)))
        return True

    def _fail_incoming(self, channel: Channel, incoming: _Incoming, reason: str, *,
                       popped: bool = False) -> None:
        if not popped:
            self._incoming.pop(channel, None)
        incoming.file.abort(keep_partial=False)
        store = self._store(channel)
        store.files.set_state(incoming.file_id, "failed")
        log.warning("receiving %s from %s failed: %s", incoming.offer.uid, channel.peer_id, reason)
        self._emit(MessageChanged(store.messages.get(incoming.message_id)))

    def _receive_change(self, channel: Channel, change: Edit | Delete) -> None:
        try:
            message = apply_peer_change(self._store(channel), channel.peer_id, change)
        except RemoteProtocolError as exc:
            self.refused_changes += 1  # the connection is dropped by the channel
            log.warning("refused a change from user %s (%d refused so far): %s",
                        channel.peer_id, self.refused_changes, exc)
            raise
        channel.send(Ack(change.uid))  # only after the commit, as for texts
        if message is not None:
            self._emit(MessageChanged(message))

    # -- what sender threads use -------------------------------------------------------------------

    def expect(self, peer_id: int, uid: str) -> _Waiter:
        waiter = _Waiter()
        with self._lock:
            self._waiters[(peer_id, uid)] = waiter
        return waiter

    def emit(self, event: object) -> None:
        self._emit(event)

    @property
    def database(self) -> Path:
        return self._database


class _Cancelled(Exception):
    """The user cancelled the message being sent."""


@dataclass(frozen=True, slots=True)
class _Discarded:
    """The receiver answered FILE_DONE with FILE_REJECT: it discarded the whole file."""

    uid: str
    reason: str


class _PeerSender:
    """Works through one peer's queue in order: connect, send, wait for the ACK, record it."""

    def __init__(self, worker: PeerWorker, peer_id: int) -> None:
        self._worker = worker
        self.peer_id = peer_id
        # a message id, (message id, version) of an edit/delete notice, or None (just connect)
        self._queue: queue.SimpleQueue[int | tuple[int, int] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lan-send-{peer_id}")
        self._store: Store | None = None
        self._discards: defaultdict[int, int] = defaultdict(int)  # message id -> resends
        self._retired = False  # idle and gone; set under the worker's lock

    def enqueue(self, message_id: int | tuple[int, int] | None) -> None:
        with self._worker._lock:
            if not self._retired:
                self._queue.put(message_id)
                return
        self._worker._sender(self.peer_id).enqueue(message_id)  # a fresh sender takes it

    def _retire_if_idle(self) -> bool:
        """Leave the worker if nothing was queued meanwhile (checked under the worker's lock,
        which enqueue holds too, so no item can slip into a queue nobody reads)."""
        with self._worker._lock:
            if not self._queue.empty():
                return False
            self._retired = True
            if self._worker._senders.get(self.peer_id) is self:
                del self._worker._senders[self.peer_id]
            return True

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)

    def _run(self) -> None:
        self._store = self._worker.open_store()
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    message_id = self._queue.get(timeout=0.5)
                except queue.Empty:
                    if (time.monotonic() - idle_since >= self._worker.limits.sender_idle_s
                            and self._retire_if_idle()):
                        break
                    continue
                if self._stop.is_set():
                    break
                self._handle(message_id)
                idle_since = time.monotonic()
        finally:
            self._store.close()

    def _handle(self, message_id: int | tuple[int, int] | None) -> None:
        worker = self._worker
        if isinstance(message_id, tuple):
            assert self._store is not None
            send_change(worker, self._store, self.peer_id, *message_id)
            return
        try:
            channel = worker.connect(self.peer_id)
        except ChannelClosed as exc:
            worker.emit(PeerUnavailable(self.peer_id, "", str(exc)))
            if message_id is not None:
                self._retry_later(message_id, str(exc))
            return
        if message_id is None:
            return
        try:
            self._send(channel, message_id)
        except _Cancelled:
            channel.close("transfer cancelled")  # the receiver keeps its partial file
            assert self._store is not None
            self._store.outbox.give_up(message_id, "cancelled")
            worker.emit(MessageChanged(self._store.messages.get(message_id)))
        except (ChannelClosed, OSError) as exc:
            # No ACK, or the link broke: the peer is not reachable now. Drop the connection
            # (nothing queued may leak out later), say so, and let the router choose again:
            # Telegram if it can, else this peer when it is verified anew.
            channel.abort(f"gave up: {exc}")
            worker.emit(PeerUnavailable(self.peer_id, channel.address, str(exc)))
            self._retry_later(message_id, str(exc), at_once=True)

    def _send(self, channel: Channel, message_id: int) -> None:
        assert self._store is not None
        message = self._store.messages.get(message_id)
        if message.state != "sending":
            return  # finished meanwhile (e.g. by a repeat in the queue)
        if self._worker.take_cancelled(message_id):
            raise _Cancelled
        if message.file_id is None:
            waiter = self._worker.expect(self.peer_id, message.uid)
            channel.send(Text(message.uid, message.sent_at, message.text))
            result = waiter.wait(self._worker.limits.ack_timeout_s)
        else:
            result = self._send_file(channel, message)
        if isinstance(result, _Discarded) and self._discards[message_id] < FILE_RESENDS:
            # The receiver threw the whole file away after FILE_DONE (damaged, disk full). A
            # fresh copy may well arrive whole; a file changed since it was queued never will.
            self._discards[message_id] += 1
            self._retry_later(message_id, f"the receiver discarded the file: {result.reason}",
                              at_once=True)
            return
        if isinstance(result, FileReject | _Discarded):
            self._discards.pop(message_id, None)
            self._store.outbox.give_up(message_id, f"refused by the receiver: {result.reason}")
        else:
            self._discards.pop(message_id, None)
            with self._store.transaction():
                self._store.outbox.complete(message_id, delivered=True)
                self._store.lan_meter.count_delivery(message)
        self._worker.wrote()
        self._worker.emit(MessageChanged(self._store.messages.get(message_id)))

    def _send_file(self, channel: Channel, message: Message) -> Event | _Discarded:
        assert self._store is not None
        file = self._store.files.get(message.file_id)
        path = Path(file.path or "")
        if not path.is_file() or file.sha256 is None:
            return FileReject(message.uid, f"the file {file.name} is no longer on this computer")
        limits = self._worker.limits
        waiter = self._worker.expect(self.peer_id, message.uid)
        channel.send(FileOffer(message.uid, file.name, file.size, file.sha256,
                               file.mime or "application/octet-stream", message.sent_at,
                               message.text))
        answer = waiter.wait(limits.ack_timeout_s)
        if not isinstance(answer, FileAccept):
            return answer
        channel.begin_file(message.uid, answer.offset, file.size)
        sent, last_progress = answer.offset, 0.0
        with open(path, "rb") as source:
            source.seek(answer.offset)
            reader = ChunkReader(source, file.size - sent, FILE_CHUNK)
            while sent < file.size:
                chunk = reader.next()
                if not chunk:
                    raise ChannelClosed(f"{file.name} shrank while it was being sent")
                if self._worker.take_cancelled(message.id):
                    raise _Cancelled
                channel.send_data(chunk, timeout=limits.idle_timeout_s)
                sent += len(chunk)
                now = time.monotonic()
                if now - last_progress >= PROGRESS_INTERVAL_S:
                    last_progress = now
                    self._worker.emit(TransferProgress(message.id, file.id, sent, file.size,
                                                       True))
        waiter = self._worker.expect(self.peer_id, message.uid)
        channel.send_raw(lambda session: session.finish_sending_file())
        # the receiver flushes, verifies and renames before it answers
        result = waiter.wait(limits.ack_timeout_s + file.size / 20e6)
        self._worker.emit(TransferProgress(message.id, file.id, file.size, file.size, True))
        if isinstance(result, FileReject):
            return _Discarded(result.uid, result.reason)
        return result

    def _retry_later(self, message_id: int, reason: str, *, at_once: bool = False) -> None:
        assert self._store is not None
        with contextlib.suppress(KeyError):
            if self._store.messages.get(message_id).state == "sending":
                delay_ms = 0 if at_once else int(self._worker.limits.retry_after_s * 1000)
                not_before = utc_now_ms() + delay_ms
                self._store.outbox.retry_later(message_id, reason, not_before)
                self._worker.emit(MessageChanged(self._store.messages.get(message_id)))
        log.info("message %s to %s will be retried: %s", message_id, self.peer_id, reason)


def placeholder_title(user_id: int) -> str:
    """The title of a person we know only by id, until their HELLO or Telegram names them."""
    return f"User {user_id}"


def _no_delay(sock: socket.socket) -> None:
    """Frames go out as soon as they are queued (the channel already joins small ones): with
    Nagle's algorithm a frame written right after another (HELLO then an ACK) waited for the
    peer's delayed ACK, some 40 ms."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
