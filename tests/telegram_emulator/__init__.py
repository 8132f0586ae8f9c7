"""An in-process Telegram for tests: Telethon's real client against a fake server.

Only the client's network sender is replaced (``install``); everything else is Telethon's own
code. A test builds a :class:`TelegramServer`, adds people and chats, connects real
``TelegramClient`` objects with :func:`connect_client` (or lets application code build its own
client and calls :func:`install` on it before ``connect()``), then acts as the other people with
``server.send_as`` / ``edit_as`` / ``delete_as``. Test support only; nothing here ships.

    server = TelegramServer()
    alice = server.add_user("Alice", phone="+15550100")
    bob = server.add_user("Bob", phone="+15550200")
    client = await connect_client(server, signed_in_as=alice)
    try:
        dialogs = await client.get_dialogs()
        client.add_event_handler(on_new_message, events.NewMessage())
        server.send_as(bob, alice, "hi")  # pushed through Telethon's own update queue
    finally:
        await client.disconnect()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from telethon import TelegramClient

from .model import (
    ServerChannel,
    ServerChat,
    ServerFile,
    ServerMessage,
    ServerUser,
    SponsoredAd,
    StoredMessage,
)
from .rpc import handled_requests
from .sender import EmulatedSender
from .server import TelegramServer

__all__ = [
    "EmulatedSender",
    "ServerChannel",
    "ServerChat",
    "ServerFile",
    "ServerMessage",
    "ServerUser",
    "SponsoredAd",
    "StoredMessage",
    "TelegramServer",
    "connect_client",
    "handled_requests",
    "install",
    "sign_in_session",
]

TEST_API_ID = 611335
TEST_API_HASH = "d524b414d21f4d37f08684c1df41ac9c"


def install(client: TelegramClient, server: TelegramServer) -> EmulatedSender:
    """Point ``client`` at ``server`` by replacing its sender; call before ``connect()``."""
    if client.is_connected():
        raise RuntimeError("install() must come before the client connects")
    sender = EmulatedSender.replacing(client._sender, server)
    client._sender = sender
    return sender


def sign_in_session(client: TelegramClient, server: TelegramServer, user: ServerUser) -> None:
    """Make ``client``'s session already signed in as ``user`` (as if it had signed in before)."""
    sender = client._sender
    if not isinstance(sender, EmulatedSender):
        raise RuntimeError("install() the emulator first")
    if not sender.auth_key:
        sender.auth_key.key = os.urandom(256)
        client.session.auth_key = sender.auth_key
    server.authorize_key(sender.auth_key.key_id, user)


async def connect_client(server: TelegramServer, session: str | Path | None = None,
                         api_id: int = TEST_API_ID, api_hash: str = TEST_API_HASH, *,
                         signed_in_as: ServerUser | None = None,
                         **client_options: Any) -> TelegramClient:
    """A real, connected ``TelegramClient`` talking to ``server``. ``session`` is a session
    file path (``None``: in memory); ``signed_in_as`` skips the login flow. The caller must
    ``await client.disconnect()`` (an undisconnected client can hang loop shutdown)."""
    client = TelegramClient(str(session) if session is not None else None, api_id, api_hash,
                            **client_options)
    install(client, server)
    if signed_in_as is not None:
        sign_in_session(client, server, signed_in_as)
    await client.connect()
    return client
