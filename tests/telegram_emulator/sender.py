"""``EmulatedSender``: a stand-in for Telethon's ``MTProtoSender`` that talks to a
``TelegramServer`` in-process instead of to Telegram over TCP.

It is installed as ``client._sender`` before ``connect()``, so Telethon's real ``connect()``,
``_call`` (flood waits, retries), update loop and high-level methods run unchanged. Like the real
sender it answers requests in order through futures, survives a dropped connection by
reconnecting (retries, delay, then ``auto_reconnect_callback``) with pending requests answered
afterwards, turns RPC errors into Telethon's own exception classes with
``rpc_message_to_error``, routes results that carry the caller's own updates through Telethon's
``_store_own_updates`` and puts pushed updates on the client's ``_updates_queue``.

Requests and results cross as bytes: the server reads the request from ``bytes(request)`` and
the result is read back with ``request.read_result``, so the two sides share no objects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from telethon.crypto import AuthKey
from telethon.errors import rpc_message_to_error
from telethon.helpers import get_running_loop, retry_range
from telethon.network.mtprotosender import MTProtoSender
from telethon.tl import TLObject, functions, types

from .model import Link
from .server import TelegramServer
from .tl import RpcFailure, read_object, read_result, serialize_result

log = logging.getLogger(__name__)

_WRAPPERS = (functions.InvokeWithLayerRequest, functions.InvokeAfterMsgRequest,
             functions.InvokeAfterMsgsRequest, functions.InvokeWithMessagesRangeRequest,
             functions.InvokeWithTakeoutRequest)
_Pending = tuple[TLObject, bytes, asyncio.Future]


class _Port:
    """One connection's callbacks, given to the server; they hop onto the client's loop.
    A sender opens a new port on every (re)connect, so late calls for an old one are ignored."""

    def __init__(self, sender: EmulatedSender, loop: asyncio.AbstractEventLoop) -> None:
        self._sender = sender
        self._loop = loop
        self.link: Link | None = None

    def deliver(self, data: bytes) -> None:
        self._call_soon(self._sender._deliver, self, data)

    def dropped(self) -> None:
        self._call_soon(self._sender._on_dropped, self)

    def _call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the client's loop is closed: nobody listens
            self._loop.call_soon_threadsafe(callback, *args)


class EmulatedSender:
    """Offers what ``TelegramClient`` uses of ``MTProtoSender``: ``connect``, ``send``,
    ``is_connected``, ``disconnect``, ``disconnected``, ``auth_key``, ``_transport_connected``,
    ``_keepalive_ping``."""

    # Telethon's own code decides which results are "own updates" and queues them for the
    # MessageBox (applied for pts, not dispatched to handlers) - exactly as the real sender.
    _store_own_updates = MTProtoSender._store_own_updates

    def __init__(self, server: TelegramServer, *, auth_key: AuthKey | None = None,
                 updates_queue: asyncio.Queue | None = None,
                 auth_key_callback: Callable[[AuthKey], Awaitable[None]] | None = None,
                 auto_reconnect_callback: Callable[[], Awaitable[None]] | None = None,
                 retries: int = 5, delay: float = 1, auto_reconnect: bool = True) -> None:
        self._server = server
        self.auth_key = auth_key or AuthKey(None)
        self._updates_queue = updates_queue
        self._auth_key_callback = auth_key_callback
        self._auto_reconnect_callback = auto_reconnect_callback
        self._retries = retries
        self._delay = delay
        self._auto_reconnect = auto_reconnect
        self._connection: Any = None
        self._user_connected = False
        self._reconnecting = False
        self._port: _Port | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._serve_task: asyncio.Task | None = None
        self._reconnect_task: asyncio.Task | None = None
        self._disconnected_future: asyncio.Future | None = None
        self.pings = 0

    @classmethod
    def replacing(cls, sender: MTProtoSender, server: TelegramServer) -> EmulatedSender:
        """A stand-in configured like the real ``sender`` the client built for itself."""
        return cls(server, auth_key=sender.auth_key, updates_queue=sender._updates_queue,
                   auth_key_callback=sender._auth_key_callback,
                   auto_reconnect_callback=sender._auto_reconnect_callback,
                   retries=sender._retries, delay=sender._delay,
                   auto_reconnect=sender._auto_reconnect)

    # -- what TelegramClient calls ---------------------------------------------------------------

    async def connect(self, connection: Any) -> bool:
        if self._user_connected:
            return False
        self._connection = connection  # kept for set_proxy(); no socket is ever opened
        await self._connect()
        self._user_connected = True
        return True

    def is_connected(self) -> bool:
        return self._user_connected

    def _transport_connected(self) -> bool:
        return not self._reconnecting and self._port is not None

    async def disconnect(self) -> None:
        if self._reconnect_task:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        await self._disconnect()

    def send(self, request: Any, ordered: bool = False) -> Any:
        if not self._user_connected:
            raise ConnectionError("Cannot send requests while disconnected")
        if isinstance(request, list | tuple):
            return [self._enqueue(r) for r in request]  # answered in order anyway
        return self._enqueue(request)

    @property
    def disconnected(self) -> asyncio.Future:
        return asyncio.shield(self._disconnected)

    @property
    def _disconnected(self) -> asyncio.Future:
        if self._disconnected_future is None:
            self._disconnected_future = get_running_loop().create_future()
            self._disconnected_future.set_result(None)
        return self._disconnected_future

    def _keepalive_ping(self, rnd_id: int) -> None:
        # The emulated link never goes silent, so a ping only counts.
        self.pings += 1

    # -- connecting ------------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        for attempt in retry_range(self._retries):
            if not self._server.reachable:
                log.warning("Attempt %d at connecting failed: unreachable", attempt)
                await asyncio.sleep(self._delay)
                continue
            if not self.auth_key:
                # The real sender negotiates a key with the DC here; any 256 bytes will do.
                self.auth_key.key = os.urandom(256)
                if self._auth_key_callback:
                    await self._auth_key_callback(self.auth_key)
            try:
                self._open_port()
            except ConnectionError:
                await asyncio.sleep(self._delay)
                continue
            break
        else:
            raise ConnectionError(f"Connection to Telegram failed {self._retries} time(s)")
        self._serve_task = self._loop.create_task(self._serve())
        if self._disconnected.done():
            self._disconnected_future = self._loop.create_future()

    def _open_port(self) -> None:
        assert self._loop is not None
        port = _Port(self, self._loop)
        port.link = self._server.attach(self.auth_key.key_id, port.deliver, port.dropped)
        self._port = port

    async def _disconnect(self, error: BaseException | None = None) -> None:
        if self._port is None and not self._user_connected:
            return
        self._user_connected = False
        if self._port is not None and self._port.link is not None:
            self._server.detach(self._port.link)
        self._port = None
        while self._pending:
            _, _, future = self._pending.popleft()
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.cancel()
        if self._serve_task is not None:
            self._serve_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve_task
            self._serve_task = None
        self._connection = None
        if not self._disconnected.done():
            if error is not None:
                self._disconnected.set_exception(error)
            else:
                self._disconnected.set_result(None)

    def _on_dropped(self, port: _Port) -> None:
        if port is not self._port or not self._user_connected or self._reconnecting:
            return
        log.info("Connection to the emulated Telegram dropped; reconnecting")
        self._reconnecting = True
        assert self._loop is not None
        self._reconnect_task = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """As ``MTProtoSender._reconnect``: retry, then resume or give up with an error."""
        if self._port is not None and self._port.link is not None:
            self._server.detach(self._port.link)
        retries = self._retries if self._auto_reconnect else 0
        last_error: BaseException | None = None
        for attempt in retry_range(retries, force_retry=False):
            if not self._user_connected:
                break
            try:
                self._open_port()
            except ConnectionError as exc:
                last_error = exc
                log.info("Failed reconnection attempt %d", attempt)
                await asyncio.sleep(self._delay)
                continue
            self._reconnecting = False
            assert self._wakeup is not None and self._loop is not None
            self._wakeup.set()  # requests that waited out the drop are answered now
            if self._auto_reconnect_callback:
                self._loop.create_task(self._auto_reconnect_callback())
            return
        log.error("Automatic reconnection failed")
        self._reconnecting = False
        await self._disconnect(error=last_error)

    # -- requests --------------------------------------------------------------------------------

    def _enqueue(self, request: TLObject) -> asyncio.Future:
        data = bytes(request)  # like RequestState: a bad field fails here, in the caller
        future = asyncio.get_running_loop().create_future()
        self._pending.append((request, data, future))
        assert self._wakeup is not None
        self._wakeup.set()
        return future

    async def _serve(self) -> None:
        assert self._wakeup is not None
        while True:
            while not self._pending or self._reconnecting:
                self._wakeup.clear()
                await self._wakeup.wait()
            request, data, future = self._pending.popleft()
            if future.done():
                continue  # the caller gave up (cancelled)
            try:
                self._answer(request, data, future)
            except ConnectionError:
                # The link dropped under us: keep the request for after the reconnect.
                self._pending.appendleft((request, data, future))
                if self._port is not None:
                    self._on_dropped(self._port)
            await asyncio.sleep(0)  # let pushes and other tasks in between, as a network would

    def _answer(self, request: TLObject, data: bytes, future: asyncio.Future) -> None:
        assert self._port is not None and self._port.link is not None
        query = self._unwrap(read_object(data))
        try:
            result = self._server.invoke(self._port.link, query)
            payload = serialize_result(result)
        except RpcFailure as failure:
            future.set_exception(rpc_message_to_error(
                types.RpcError(error_code=failure.code, error_message=failure.message), request))
            return
        except ConnectionError:
            raise
        except Exception as exc:  # NotImplementedError (a gap) or an emulator bug: loud
            future.set_exception(exc)
            return
        try:
            value = read_result(request, payload)
        except Exception as exc:  # the result does not fit the schema Telethon reads
            future.set_exception(exc)
            return
        self._store_own_updates(value)
        future.set_result(value)

    def _unwrap(self, query: TLObject) -> TLObject:
        without_updates = False
        while True:
            if isinstance(query, _WRAPPERS):
                query = query.query
            elif isinstance(query, functions.InvokeWithoutUpdatesRequest):
                without_updates = True
                query = query.query
            elif isinstance(query, functions.InitConnectionRequest):
                assert self._port is not None and self._port.link is not None
                self._server.init_connection(self._port.link, query,
                                             updates=not without_updates)
                query = query.query
            else:
                return query

    # -- pushed updates --------------------------------------------------------------------------

    def _deliver(self, port: _Port, data: bytes) -> None:
        if port is not self._port or self._reconnecting or self._updates_queue is None:
            return  # sent into a connection that has since broken: lost, as on a network
        self._updates_queue.put_nowait(read_object(data))
