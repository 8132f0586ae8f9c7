"""The emulated Telegram's records: users (every user with a phone is an account), basic groups,
channels, stored messages, files, the per-account / per-channel update logs, and the server's
view of auth keys and live connections.

Peers are named by Telethon-marked ids everywhere (users positive, basic groups ``-id``,
channels ``-100…``), the ids the application and its tests see.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telethon import utils
from telethon.tl import types

from .srp import Challenge, PasswordVerifier

DC_ID = 2  # Telethon's default DC: files must live here or it would open a second connection
MAX_PART = 512 * 1024


@dataclass(eq=False)
class Authorization:
    """What the server knows about one auth key: who (if anyone) signed in with it."""

    key_id: int
    user_id: int | None = None
    password_user_id: int | None = None  # code accepted, 2FA password still to come
    challenge: Challenge | None = None
    api_id: int | None = None
    device_model: str = ""


@dataclass(eq=False)
class Link:
    """The server's end of one live connection of an emulated sender."""

    auth: Authorization
    deliver: Callable[[bytes], None]  # thread-safe: hands wire bytes to the client's loop
    dropped: Callable[[], None]  # thread-safe: tells the sender its transport broke
    connected: bool = True
    receives_updates: bool = True


@dataclass(eq=False)
class LoginCode:
    phone: str
    code: str
    phone_code_hash: str
    created: float
    expired: bool = False


@dataclass(eq=False)
class Upload:
    parts: dict[int, bytes] = field(default_factory=dict)
    big: bool = False
    total_parts: int | None = None


def chat_peer(chat_id: int) -> int:
    return utils.get_peer_id(types.PeerChat(chat_id))


def channel_peer(channel_id: int) -> int:
    return utils.get_peer_id(types.PeerChannel(channel_id))


@dataclass(eq=False)
class ServerFile:
    """An uploaded or server-made document or photo, downloadable with ``upload.getFile``."""

    id: int
    access_hash: int
    file_reference: bytes
    date: int
    data: bytes
    kind: str  # "document" or "photo"
    name: str = ""
    mime_type: str = "application/octet-stream"
    attributes: list[Any] = field(default_factory=list)  # TL DocumentAttribute*
    width: int = 0
    height: int = 0

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(eq=False)
class StoredMessage:
    """One copy of a message: in an account's box (users, basic groups) or in a channel."""

    id: int
    chat: int  # marked peer id of the conversation, seen from ``owner`` (or the channel)
    owner: int | None  # the account whose box holds this copy; None in channels
    sender_id: int
    date: int
    order: int  # server-wide creation order; breaks ties between equal dates
    text: str = ""
    media: ServerFile | None = None
    action: Any = None  # TL MessageAction for service messages
    edit_date: int | None = None
    entities: list[Any] = field(default_factory=list)  # TL MessageEntity* (formatting)
    reply_to: ServerMessage | None = None
    post: bool = False  # a broadcast channel post (no from_id)
    deleted: bool = False
    handle: ServerMessage | None = None


@dataclass(eq=False)
class ServerMessage:
    """A message as a person sent it, with its copy in every box that holds it. Tests get
    these from ``send_as`` and hand them back to ``edit_as`` / ``delete_as``."""

    sender_id: int
    chat: int  # marked peer id as seen by the sender
    copies: list[StoredMessage] = field(default_factory=list)

    def id_for(self, viewer: ServerUser | int) -> int:
        """The message id as ``viewer`` (a user or user id) sees it."""
        viewer_id = viewer if isinstance(viewer, int) else viewer.id
        for copy in self.copies:
            if copy.owner in (None, viewer_id):
                return copy.id
        raise KeyError(f"user {viewer_id} has no copy of this message")

    @property
    def text(self) -> str:
        return self.copies[0].text


@dataclass(eq=False)
class LoggedUpdate:
    """One entry of an account's or a channel's update log (pts after it, and how many)."""

    pts: int
    pts_count: int
    date: int
    build: Callable[[int], Any]  # viewer user id -> the TL Update, with its pts fields
    peers: tuple[int, ...]  # marked ids of the entities the update mentions
    message: StoredMessage | None = None  # set for "new message" updates


@dataclass(eq=False)
class ServerUser:
    id: int
    access_hash: int
    first_name: str
    last_name: str = ""
    username: str | None = None
    phone: str | None = None  # digits only; a user with a phone can sign in
    bot: bool = False
    banned: bool = False
    password: PasswordVerifier | None = None
    # Account state: one message id counter and one pts for private chats and basic groups.
    # A pts of 0 means "unknown" to clients (Telethon then tracks no account state at all), so
    # like on Telegram an account starts above it.
    pts: int = 1
    message_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    log: list[LoggedUpdate] = field(default_factory=list)
    channel_activity: list[tuple[int, int]] = field(default_factory=list)  # (own pts, channel)
    box: dict[int, StoredMessage] = field(default_factory=dict)
    contacts: dict[int, tuple[str, str]] = field(default_factory=dict)  # user id -> saved names
    read_inbox: dict[int, int] = field(default_factory=dict)  # marked peer -> max read id
    read_outbox: dict[int, int] = field(default_factory=dict)
    pinned: list[int] = field(default_factory=list)
    random_ids: set[int] = field(default_factory=set)

    @property
    def peer_id(self) -> int:
        return self.id

    def history(self, chat: int) -> list[StoredMessage]:
        """This account's copies in ``chat``, newest first."""
        return sorted((m for m in self.box.values() if m.chat == chat), key=lambda m: -m.id)


@dataclass(eq=False)
class ServerChat:
    """A basic group: messages live in each member's own box."""

    id: int
    title: str
    creator_id: int
    member_ids: list[int]
    date: int
    version: int = 1

    @property
    def peer_id(self) -> int:
        return chat_peer(self.id)


@dataclass(eq=False)
class SponsoredAd:
    title: str
    message: str
    url: str
    button_text: str = "Open"
    random_id: bytes = b""


@dataclass(eq=False)
class ServerChannel:
    """A broadcast channel or a supergroup (``megagroup``): its own message ids and pts."""

    id: int
    access_hash: int
    title: str
    creator_id: int
    member_ids: list[int]
    megagroup: bool
    date: int
    username: str | None = None
    admin_ids: set[int] = field(default_factory=set)
    pts: int = 0
    message_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    log: list[LoggedUpdate] = field(default_factory=list)
    box: dict[int, StoredMessage] = field(default_factory=dict)
    read_inbox: dict[int, int] = field(default_factory=dict)  # user id -> max read id
    sponsored: SponsoredAd | None = None

    @property
    def peer_id(self) -> int:
        return channel_peer(self.id)

    @property
    def broadcast(self) -> bool:
        return not self.megagroup

    def can_post(self, user_id: int) -> bool:
        if self.megagroup:
            return user_id in self.member_ids
        return user_id == self.creator_id or user_id in self.admin_ids

    def history(self) -> list[StoredMessage]:
        return sorted(self.box.values(), key=lambda m: -m.id)


Peer = ServerUser | ServerChat | ServerChannel


def digits(phone: str) -> str:
    return "".join(ch for ch in str(phone) if ch.isdigit())


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of an image, or (0, 0) when it is not one Pillow can read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        return (0, 0)
