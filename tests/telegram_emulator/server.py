"""``TelegramServer``: the in-process fake Telegram that the emulated senders talk to.

It holds the whole state (users and their accounts, basic groups, channels, every message copy,
files, login codes, 2FA verifiers) and the update machinery: one pts and one update log per
account (private chats and basic groups) and per channel, so ``updates.getState``,
``getDifference`` and ``getChannelDifference`` agree with what was pushed. Request handlers live in
``rpc.py``; the methods without a leading underscore here are the test helpers.

All state is guarded by one lock, because tests drive the server from their own thread while a
client's loop runs in another (the application's Telegram worker). Pushes to a client are handed
to its sender, which moves them onto the client's loop.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import mimetypes
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from telethon import utils
from telethon.tl import TLObject, types

from .model import (
    DC_ID,
    Authorization,
    Link,
    LoggedUpdate,
    LoginCode,
    Peer,
    ServerChannel,
    ServerChat,
    ServerFile,
    ServerMessage,
    ServerUser,
    SponsoredAd,
    StoredMessage,
    Upload,
    digits,
    image_size,
)
from .rpc import RpcHandlers
from .srp import PasswordVerifier
from .tl import RpcFailure, make, to_datetime


class TelegramServer(RpcHandlers):
    """The fake Telegram. Build users, groups and channels with the helpers, connect clients
    with :func:`tests.telegram_emulator.connect_client` (or ``install``), then act as other
    people with ``send_as`` / ``edit_as`` / ``delete_as``."""

    def __init__(self, *, seed: int = 0, apps: dict[int, str] | None = None) -> None:
        self._lock = threading.RLock()
        self._random = random.Random(seed)
        self._apps = apps  # api_id -> api_hash; None accepts any credentials
        self._user_ids = itertools.count(100001)
        self._chat_ids = itertools.count(200001)
        self._channel_ids = itertools.count(1300000001)
        self._order = itertools.count(1)
        self._last_date = 0
        self.users: dict[int, ServerUser] = {}
        self.chats: dict[int, ServerChat] = {}
        self.channels: dict[int, ServerChannel] = {}
        self.files: dict[int, ServerFile] = {}
        self._uploads: dict[tuple[int, int], Upload] = {}
        self._codes: dict[str, LoginCode] = {}
        self._banned_phones: set[str] = set()
        self._auths: dict[int, Authorization] = {}
        self._links: list[Link] = []
        self._injected: dict[type, collections.deque[RpcFailure]] = {}
        self.reachable = True
        self.code_ttl = 300.0  # seconds a login code stays valid
        self.difference_limit = 100  # updates per getDifference answer before it is sliced
        self.calls: collections.Counter[type] = collections.Counter()  # answered, by class
        self.unhandled: list[str] = []  # requests that hit NotImplementedError (should be none)
        self.sponsored_views: list[bytes] = []
        self.sponsored_clicks: list[bytes] = []

    # -- test helpers: people and places ---------------------------------------------------------

    def add_user(self, first_name: str, last_name: str = "", *, username: str | None = None,
                 phone: str | None = None, password: str | None = None,
                 bot: bool = False) -> ServerUser:
        """A Telegram user; one with a ``phone`` is an account that can sign in."""
        with self._lock:
            number = digits(phone) if phone else None
            if number and self._user_by_phone(number):
                raise ValueError(f"phone {phone} is taken")
            user = ServerUser(id=next(self._user_ids), access_hash=self._hash(),
                              first_name=first_name, last_name=last_name, username=username,
                              phone=number, bot=bot)
            if password is not None:
                user.password = PasswordVerifier.create(password)
            self.users[user.id] = user
            return user

    def set_password(self, user: ServerUser, password: str | None, hint: str = "") -> None:
        with self._lock:
            user.password = PasswordVerifier.create(password, hint) if password else None

    def ban(self, phone: str) -> None:
        """The number is banned: ``auth.sendCode`` answers PHONE_NUMBER_BANNED and the
        account's sessions are signed out (their next request is AUTH_KEY_UNREGISTERED)."""
        with self._lock:
            number = digits(phone)
            self._banned_phones.add(number)
            user = self._user_by_phone(number)
            if user is not None:
                user.banned = True
                for auth in self._auths.values():
                    if auth.user_id == user.id:
                        auth.user_id = None

    def create_group(self, title: str, creator: ServerUser,
                     members: Iterable[ServerUser] = ()) -> ServerChat:
        """A basic group; every member gets the "created the group" service message."""
        with self._lock:
            member_list = [creator, *(m for m in members if m is not creator)]
            chat = ServerChat(id=next(self._chat_ids), title=title, creator_id=creator.id,
                              member_ids=[m.id for m in member_list], date=self._now())
            self.chats[chat.id] = chat
            self._post(creator, chat, action=make(types.MessageActionChatCreate,
                title=title, users=chat.member_ids[:]))
            return chat

    def create_channel(self, title: str, creator: ServerUser,
                       members: Iterable[ServerUser] = (), *, megagroup: bool = False,
                       username: str | None = None,
                       admins: Iterable[ServerUser] = ()) -> ServerChannel:
        """A broadcast channel, or a supergroup with ``megagroup=True``. Broadcast channels
        come with one sponsored message (``messages.getSponsoredMessages``)."""
        with self._lock:
            member_ids = [creator.id, *(m.id for m in members if m is not creator)]
            channel = ServerChannel(id=next(self._channel_ids), access_hash=self._hash(),
                                    title=title, creator_id=creator.id, member_ids=member_ids,
                                    megagroup=megagroup, date=self._now(), username=username,
                                    admin_ids={a.id for a in admins})
            if not megagroup:
                channel.sponsored = SponsoredAd(
                    title="Sponsored", message=f"An advertisement shown in {title}",
                    url="https://example.com/ad", random_id=self._random.randbytes(16))
            self.channels[channel.id] = channel
            self._post(creator, channel,
                       action=make(types.MessageActionChannelCreate, title=title))
            return channel

    def pin_dialog(self, user: ServerUser, peer: Peer | int) -> None:
        """Pin ``peer`` in ``user``'s dialog list (pinned dialogs come first, unpaged)."""
        with self._lock:
            marked = self._peer(peer).peer_id
            if marked not in user.pinned:
                user.pinned.append(marked)

    def set_sponsored(self, channel: ServerChannel, ad: SponsoredAd | None) -> None:
        with self._lock:
            channel.sponsored = ad

    def add_member(self, place: ServerChat | ServerChannel, user: ServerUser, *,
                   by: ServerUser | None = None) -> None:
        """``user`` joins (basic groups: ``by`` adds them, a service message says so)."""
        with self._lock:
            if user.id in place.member_ids:
                return
            place.member_ids.append(user.id)
            if isinstance(place, ServerChat):
                place.version += 1
                self._post(by or self.users[place.creator_id], place,
                           action=make(types.MessageActionChatAddUser, users=[user.id]))
            else:
                self._push_unlogged(user, make(types.UpdateChannel, channel_id=place.id),
                                    (place.peer_id,))

    def remove_member(self, place: ServerChat | ServerChannel, user: ServerUser) -> None:
        with self._lock:
            if user.id not in place.member_ids:
                return
            if isinstance(place, ServerChat):
                self._post(self.users[place.creator_id], place,
                           action=make(types.MessageActionChatDeleteUser, user_id=user.id))
                place.member_ids.remove(user.id)
                place.version += 1
            else:
                place.member_ids.remove(user.id)
                self._push_unlogged(user, make(types.UpdateChannel, channel_id=place.id),
                                    (place.peer_id,))

    def rename(self, place: ServerChat | ServerChannel, title: str, *,
               by: ServerUser | None = None) -> None:
        with self._lock:
            place.title = title
            self._post(by or self.users[place.creator_id], place,
                       action=make(types.MessageActionChatEditTitle, title=title))

    def upload_document(self, data: bytes, name: str = "file.bin",
                        mime_type: str | None = None) -> ServerFile:
        """A document already on the server (for ``send_as(..., media=...)``)."""
        with self._lock:
            return self._new_file(data, "document", name, mime_type)

    def upload_photo(self, data: bytes, width: int = 0, height: int = 0) -> ServerFile:
        with self._lock:
            photo = self._new_file(data, "photo", "photo.jpg", "image/jpeg")
            measured = image_size(data)
            photo.width, photo.height = width or measured[0], height or measured[1]
            return photo

    # -- test helpers: acting as other people ----------------------------------------------------

    def send_as(self, sender: ServerUser, peer: Peer | int, text: str = "", *,
                media: ServerFile | bytes | None = None, reply_to: ServerMessage | None = None,
                deliver: bool = True) -> ServerMessage:
        """``sender`` writes to ``peer`` (a user for a private chat, a group or a channel).
        Every signed-in client that should see it gets the update pushed, unless
        ``deliver=False``: then it is only logged, a gap the client must recover itself."""
        with self._lock:
            target = self._peer(peer)
            if isinstance(media, bytes):
                media = self._new_file(media, "document", "file.bin", None)
            if isinstance(target, ServerChannel) and not target.can_post(sender.id):
                raise ValueError(f"{sender.first_name} cannot post in {target.title}")
            handle, _ = self._post(sender, target, text=text, media=media, reply_to=reply_to,
                                   deliver=deliver)
            return handle

    def edit_as(self, message: ServerMessage, text: str, *, deliver: bool = True) -> None:
        with self._lock:
            self._edit(message, text, deliver=deliver)

    def delete_as(self, message: ServerMessage, *, deliver: bool = True) -> None:
        """Deletes the message for everyone (every copy)."""
        with self._lock:
            self._delete(message.copies, deliver=deliver)

    def find_message(self, viewer: ServerUser, peer: Peer | int, message_id: int
                     ) -> ServerMessage:
        """The message that ``viewer`` sees as ``message_id`` in ``peer``."""
        with self._lock:
            target = self._peer(peer)
            box = target.box if isinstance(target, ServerChannel) else viewer.box
            stored = box.get(message_id)
            if stored is None or stored.chat != target.peer_id:
                raise KeyError(message_id)
            assert stored.handle is not None
            return stored.handle

    # -- test helpers: looking at the server -----------------------------------------------------

    def last_code(self, phone: str) -> str:
        """The login code last sent to ``phone`` (what the person would read on their phone)."""
        with self._lock:
            return self._codes[digits(phone)].code

    def expire_code(self, phone: str) -> None:
        with self._lock:
            self._codes[digits(phone)].expired = True

    def messages_of(self, viewer: ServerUser, peer: Peer | int) -> list[StoredMessage]:
        """The messages ``viewer`` has in ``peer``, oldest first (service messages included)."""
        with self._lock:
            target = self._peer(peer)
            if isinstance(target, ServerChannel):
                return target.history()[::-1]
            return viewer.history(target.peer_id)[::-1]

    def read_inbox_max_id(self, viewer: ServerUser, peer: Peer | int) -> int:
        with self._lock:
            target = self._peer(peer)
            if isinstance(target, ServerChannel):
                return target.read_inbox.get(viewer.id, 0)
            return viewer.read_inbox.get(target.peer_id, 0)

    def contacts_of(self, user: ServerUser) -> dict[int, tuple[str, str]]:
        with self._lock:
            return dict(user.contacts)

    def signed_in(self, user: ServerUser) -> int:
        """How many live connections are signed in as ``user``."""
        with self._lock:
            return sum(1 for link in self._links
                       if link.connected and link.auth.user_id == user.id)

    # -- test helpers: trouble -------------------------------------------------------------------

    def flood_wait(self, request: type, seconds: int, times: int = 1) -> None:
        """The next ``times`` calls of ``request`` (a Telethon request class) get FLOOD_WAIT."""
        self.fail(request, 420, f"FLOOD_WAIT_{seconds}", times)

    def fail(self, request: type, code: int, message: str, times: int = 1) -> None:
        """The next ``times`` calls of ``request`` fail with the RPC error ``code message``."""
        with self._lock:
            queue = self._injected.setdefault(request, collections.deque())
            queue.extend(RpcFailure(code, message) for _ in range(times))

    def drop_connections(self, user: ServerUser | None = None) -> None:
        """Break every live connection (or ``user``'s): updates pushed until the client has
        reconnected are lost, as on a real network; pending requests are answered after."""
        with self._lock:
            for link in list(self._links):
                if user is None or link.auth.user_id == user.id:
                    self._break(link)

    def set_reachable(self, reachable: bool) -> None:
        """While unreachable, every connection is dropped and connecting fails."""
        with self._lock:
            self.reachable = reachable
            if not reachable:
                self.drop_connections()

    # -- the sender's side -----------------------------------------------------------------------

    def attach(self, key_id: int, deliver: Callable[[bytes], None],
               dropped: Callable[[], None]) -> Link:
        """A sender connects with auth key ``key_id`` (an unknown key starts unauthorized)."""
        with self._lock:
            if not self.reachable:
                raise ConnectionError("the emulated Telegram is unreachable")
            auth = self._auths.setdefault(key_id, Authorization(key_id))
            link = Link(auth, deliver, dropped)
            self._links.append(link)
            return link

    def authorize_key(self, key_id: int, user: ServerUser) -> None:
        """Treat auth key ``key_id`` as already signed in as ``user`` (skips the code flow)."""
        with self._lock:
            self._auths.setdefault(key_id, Authorization(key_id)).user_id = user.id

    def detach(self, link: Link) -> None:
        with self._lock:
            link.connected = False
            if link in self._links:
                self._links.remove(link)

    def init_connection(self, link: Link, init: types.TLObject, *, updates: bool) -> None:
        with self._lock:
            link.auth.api_id = init.api_id
            link.auth.device_model = init.device_model
            link.receives_updates = updates

    def invoke(self, link: Link, request: TLObject) -> Any:
        """Answer one (unwrapped) request, or raise ``RpcFailure`` / ``NotImplementedError``."""
        with self._lock:
            if not link.connected:
                raise ConnectionError("connection lost")
            injected = self._injected.get(type(request))
            if injected:
                raise injected.popleft()
            handler = self.handler_for(request)
            if handler is None:
                name = type(request).__module__.rsplit(".", 1)[-1] + "." + type(request).__name__
                self.unhandled.append(name)
                raise NotImplementedError(f"the Telegram emulator does not handle {name}")
            me = self.users.get(link.auth.user_id) if link.auth.user_id else None
            if me is None and not self.allowed_unauthorized(request):
                raise RpcFailure(401, "AUTH_KEY_UNREGISTERED")
            self.calls[type(request)] += 1
            return handler(self, link, me, request)

    # -- state internals -------------------------------------------------------------------------

    def _now(self) -> int:
        # Never goes backwards, so dates order like ids.
        self._last_date = max(self._last_date, int(time.time()))
        return self._last_date

    def _hash(self) -> int:
        return self._random.randrange(1, 2**63)

    def _user_by_phone(self, number: str) -> ServerUser | None:
        return next((u for u in self.users.values() if u.phone == number), None)

    def _peer(self, peer: Peer | int) -> Peer:
        if isinstance(peer, ServerUser | ServerChat | ServerChannel):
            return peer
        raw, kind = utils.resolve_id(peer)
        tables: dict[type, dict[int, Any]] = {
            types.PeerUser: self.users, types.PeerChat: self.chats,
            types.PeerChannel: self.channels}
        return tables[kind][raw]

    def _by_marked(self, marked: int) -> Peer | None:
        try:
            return self._peer(marked)
        except KeyError:
            return None

    def _new_file(self, data: bytes, kind: str, name: str, mime_type: str | None,
                  attributes: list[Any] | None = None) -> ServerFile:
        mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        attrs = list(attributes or [])
        if kind == "document" and not any(
                isinstance(a, types.DocumentAttributeFilename) for a in attrs):
            attrs.append(make(types.DocumentAttributeFilename, file_name=name))
        server_file = ServerFile(id=self._hash(), access_hash=self._hash(),
                                 file_reference=self._random.randbytes(16), date=self._now(),
                                 data=bytes(data), kind=kind, name=name, mime_type=mime,
                                 attributes=attrs)
        self.files[server_file.id] = server_file
        return server_file

    def _upload(self, owner: ServerUser, file_id: int) -> Upload:
        return self._uploads.setdefault((owner.id, file_id), Upload())

    def _take_upload(self, owner: ServerUser, input_file: TLObject) -> bytes:
        """Reassemble an uploaded file from its parts, checking what Telegram checks."""
        upload = self._uploads.get((owner.id, input_file.id))
        if upload is None:
            raise RpcFailure(400, "FILE_PART_0_MISSING")
        big = isinstance(input_file, types.InputFileBig)
        if big != upload.big or (big and upload.total_parts != input_file.parts):
            raise RpcFailure(400, "FILE_PARTS_INVALID")
        for index in range(input_file.parts):
            if index not in upload.parts:
                raise RpcFailure(400, f"FILE_PART_{index}_MISSING")
        data = b"".join(upload.parts[i] for i in range(input_file.parts))
        if not big and input_file.md5_checksum and \
                hashlib.md5(data).hexdigest() != input_file.md5_checksum:
            raise RpcFailure(400, "MD5_CHECKSUM_INVALID")
        del self._uploads[(owner.id, input_file.id)]
        return data

    # -- TL views (what one viewer sees) ---------------------------------------------------------

    def _user_tl(self, viewer_id: int, user: ServerUser) -> TLObject:
        viewer = self.users.get(viewer_id)
        saved = viewer.contacts.get(user.id) if viewer else None
        first, last = saved if saved else (user.first_name, user.last_name)
        is_self = viewer_id == user.id
        mutual = bool(saved) and viewer_id in user.contacts
        return make(types.User, id=user.id, access_hash=user.access_hash, is_self=is_self,
                    contact=bool(saved), mutual_contact=mutual, bot=user.bot,
                    first_name=first, last_name=last or None, username=user.username,
                    phone=user.phone if (is_self or saved) else None,
                    status=make(types.UserStatusRecently))

    def _chat_tl(self, viewer_id: int, chat: ServerChat) -> TLObject:
        if viewer_id not in chat.member_ids and viewer_id != chat.creator_id:
            return make(types.ChatForbidden, id=chat.id, title=chat.title)
        return make(types.Chat, id=chat.id, title=chat.title, photo=make(types.ChatPhotoEmpty),
                    participants_count=len(chat.member_ids), date=to_datetime(chat.date),
                    version=chat.version, creator=viewer_id == chat.creator_id,
                    left=viewer_id not in chat.member_ids)

    def _channel_tl(self, viewer_id: int, channel: ServerChannel) -> TLObject:
        return make(types.Channel, id=channel.id, title=channel.title,
                    photo=make(types.ChatPhotoEmpty), date=to_datetime(channel.date),
                    access_hash=channel.access_hash, broadcast=channel.broadcast,
                    megagroup=channel.megagroup, creator=viewer_id == channel.creator_id,
                    left=viewer_id not in channel.member_ids, username=channel.username,
                    participants_count=len(channel.member_ids))

    def _entities(self, viewer_id: int, peers: Iterable[int]
                  ) -> tuple[list[TLObject], list[TLObject]]:
        users: dict[int, TLObject] = {}
        chats: dict[int, TLObject] = {}
        for marked in peers:
            target = self._by_marked(marked)
            if isinstance(target, ServerUser):
                users.setdefault(target.id, self._user_tl(viewer_id, target))
            elif isinstance(target, ServerChat):
                chats.setdefault(marked, self._chat_tl(viewer_id, target))
            elif isinstance(target, ServerChannel):
                chats.setdefault(marked, self._channel_tl(viewer_id, target))
        return list(users.values()), list(chats.values())

    @staticmethod
    def _peer_tl(marked: int) -> TLObject:
        raw, kind = utils.resolve_id(marked)
        field_name = {types.PeerUser: "user_id", types.PeerChat: "chat_id",
                      types.PeerChannel: "channel_id"}[kind]
        return make(kind, **{field_name: raw})

    def _media_tl(self, media: ServerFile) -> TLObject:
        if media.kind == "photo":
            size = make(types.PhotoSize, type="x", w=media.width, h=media.height, size=media.size)
            photo = make(types.Photo, id=media.id, access_hash=media.access_hash,
                         file_reference=media.file_reference, date=to_datetime(media.date),
                         sizes=[size], dc_id=DC_ID)
            return make(types.MessageMediaPhoto, photo=photo)
        document = make(types.Document, id=media.id, access_hash=media.access_hash,
                        file_reference=media.file_reference, date=to_datetime(media.date),
                        mime_type=media.mime_type, size=media.size, dc_id=DC_ID,
                        attributes=list(media.attributes))
        return make(types.MessageMediaDocument, document=document)

    def _message_tl(self, viewer_id: int, message: StoredMessage) -> TLObject:
        if message.deleted:
            return make(types.MessageEmpty, id=message.id, peer_id=self._peer_tl(message.chat))
        if message.owner is None:
            out = message.sender_id == viewer_id
        else:
            out = message.sender_id == message.owner
        private = message.owner is not None and message.chat > 0
        # Layer 119+: incoming private messages carry no from_id; posts are from the channel.
        from_id = None if message.post or (private and not out) else make(
            types.PeerUser, user_id=message.sender_id)
        reply = self._reply_header(message)
        common = dict(id=message.id, peer_id=self._peer_tl(message.chat),
                      date=to_datetime(message.date), out=out, from_id=from_id,
                      post=message.post, reply_to=reply)
        if message.action is not None:
            return make(types.MessageService, action=message.action, **common)
        return make(types.Message, message=message.text, entities=list(message.entities),
                    media=self._media_tl(message.media) if message.media else None,
                    edit_date=to_datetime(message.edit_date) if message.edit_date else None,
                    views=1 if message.post else None,
                    forwards=0 if message.post else None, **common)

    @staticmethod
    def _reply_header(message: StoredMessage) -> TLObject | None:
        """The reply header, naming the replied-to message by its id in this same box."""
        if message.reply_to is None:
            return None
        replied = next((c for c in message.reply_to.copies if c.owner == message.owner), None)
        if replied is None:
            return None
        return make(types.MessageReplyHeader, reply_to_msg_id=replied.id)

    @staticmethod
    def _message_peers(message: StoredMessage) -> tuple[int, ...]:
        """Marked ids of every entity a client needs to show ``message``."""
        peers = [message.chat, message.sender_id]
        action = message.action
        if isinstance(action, types.MessageActionChatCreate | types.MessageActionChatAddUser):
            peers.extend(action.users)
        elif isinstance(action, types.MessageActionChatDeleteUser):
            peers.append(action.user_id)
        return tuple(peers)

    def _state_tl(self, user: ServerUser) -> TLObject:
        return make(types.updates.State, pts=user.pts, qts=0, date=to_datetime(self._now()), seq=0,
                    unread_count=self._unread_total(user))

    # -- dialogs and unread counts ---------------------------------------------------------------

    def _dialog_peers(self, user: ServerUser) -> list[int]:
        peers = {m.chat for m in user.box.values()}
        peers.update(c.peer_id for c in self.chats.values() if user.id in c.member_ids)
        peers.update(c.peer_id for c in self.channels.values() if user.id in c.member_ids)
        return list(peers)

    def _top_message(self, user: ServerUser, marked: int) -> StoredMessage | None:
        target = self._by_marked(marked)
        if isinstance(target, ServerChannel):
            return max(target.box.values(), key=lambda m: m.id, default=None)
        return max((m for m in user.box.values() if m.chat == marked), key=lambda m: m.id,
                   default=None)

    def _unread(self, user: ServerUser, marked: int) -> int:
        target = self._by_marked(marked)
        if isinstance(target, ServerChannel):
            read = target.read_inbox.get(user.id, 0)
            return sum(1 for m in target.box.values()
                       if m.id > read and m.sender_id != user.id)
        read = user.read_inbox.get(marked, 0)
        return sum(1 for m in user.box.values()
                   if m.chat == marked and m.id > read and m.sender_id != user.id)

    def _unread_total(self, user: ServerUser) -> int:
        return sum(self._unread(user, peer) for peer in self._dialog_peers(user))

    def _dialog_tl(self, user: ServerUser, marked: int) -> TLObject:
        target = self._by_marked(marked)
        top = self._top_message(user, marked)
        if isinstance(target, ServerChannel):
            read_in = target.read_inbox.get(user.id, 0)
            read_out = max((m.id for m in target.box.values() if m.sender_id == user.id),
                           default=0)
            pts: int | None = target.pts
        else:
            read_in = user.read_inbox.get(marked, 0)
            read_out = user.read_outbox.get(marked, 0)
            pts = None
        return make(types.Dialog, peer=self._peer_tl(marked), top_message=top.id if top else 0,
                    read_inbox_max_id=read_in, read_outbox_max_id=read_out,
                    unread_count=self._unread(user, marked),
                    notify_settings=make(types.PeerNotifySettings), pts=pts,
                    pinned=marked in user.pinned or None)

    # -- the update machinery --------------------------------------------------------------------

    def _append(self, owner: ServerUser | ServerChannel, update: type, *, count: int = 1,
                peers: Iterable[int] = (), message: StoredMessage | None = None,
                new_message: bool = False, **fields: Any) -> LoggedUpdate:
        """Log one ``update`` (a TL Update class) in an account's or a channel's sequence,
        taking ``count`` pts. A ``message`` is rendered for each viewer when pushed."""
        owner.pts += count
        pts = owner.pts

        def build(viewer: int) -> TLObject:
            shown = {"message": self._message_tl(viewer, message)} if message else {}
            return make(update, pts=pts, pts_count=count, **fields, **shown)

        peers = (*peers, *(self._message_peers(message) if message else ()))
        entry = LoggedUpdate(pts=pts, pts_count=count, date=self._now(), build=build,
                             peers=tuple(peers), message=message if new_message else None)
        owner.log.append(entry)
        if isinstance(owner, ServerChannel):
            # Remembered so that getDifference can tell a client that comes back which channels
            # moved (updateChannelTooLong), as Telegram does.
            for member_id in owner.member_ids:
                member = self.users[member_id]
                member.channel_activity.append((member.pts, owner.id))
        return entry

    def _push(self, user: ServerUser, entry: LoggedUpdate, exclude: Link | None) -> None:
        self._push_updates(user, [entry.build(user.id)], entry.peers, exclude)

    def _push_unlogged(self, user: ServerUser, update: TLObject, peers: Iterable[int],
                       exclude: Link | None = None) -> None:
        self._push_updates(user, [update], tuple(peers), exclude)

    def _push_updates(self, user: ServerUser, updates: list[TLObject], peers: Iterable[int],
                      exclude: Link | None) -> None:
        links = [link for link in self._links
                 if link.auth.user_id == user.id and link.connected and link.receives_updates
                 and link is not exclude]
        if not links:
            return
        users, chats = self._entities(user.id, peers)
        # seq 0: "no sequence", so only pts orders these (as Telegram does for most pushes).
        data = bytes(make(types.Updates, updates=updates, users=users, chats=chats,
                          date=to_datetime(self._now()), seq=0))
        for link in links:
            link.deliver(data)

    def _break(self, link: Link) -> None:
        self.detach(link)
        link.dropped()

    # -- what people do (shared by the test helpers and the request handlers) --------------------

    def _post(self, sender: ServerUser, target: Peer, *, text: str = "",
              media: ServerFile | None = None, action: Any = None,
              entities: list[Any] | None = None, reply_to: ServerMessage | None = None,
              acting: Link | None = None, deliver: bool = True
              ) -> tuple[ServerMessage, LoggedUpdate]:
        """Store a new message in every box that holds it and push it; returns the handle and
        the sender's own log entry (the one the sending client's result reports)."""
        date = self._now()
        order = next(self._order)
        handle = ServerMessage(sender_id=sender.id, chat=target.peer_id)
        own: LoggedUpdate | None = None
        if isinstance(target, ServerChannel):
            stored = StoredMessage(id=next(target.message_ids), chat=target.peer_id, owner=None,
                                   sender_id=sender.id, date=date, order=order, text=text,
                                   media=media, action=action, entities=list(entities or []),
                                   reply_to=reply_to, post=target.broadcast, handle=handle)
            target.box[stored.id] = stored
            handle.copies.append(stored)
            own = self._append(target, types.UpdateNewChannelMessage, message=stored,
                               new_message=True)
            if deliver:
                for member_id in target.member_ids:
                    self._push(self.users[member_id], own, acting)
            return handle, own
        if isinstance(target, ServerUser):
            boxes = [(sender, target.id)]
            if target is not sender:
                boxes.append((target, sender.id))
        else:
            boxes = [(self.users[m], target.peer_id) for m in target.member_ids]
        for owner, chat in boxes:
            stored = StoredMessage(id=next(owner.message_ids), chat=chat, owner=owner.id,
                                   sender_id=sender.id, date=date, order=order, text=text,
                                   media=media, action=action, entities=list(entities or []),
                                   reply_to=reply_to, handle=handle)
            owner.box[stored.id] = stored
            handle.copies.append(stored)
            entry = self._append(owner, types.UpdateNewMessage, message=stored,
                                 new_message=True)
            if owner is sender:
                own = entry
            if deliver:
                self._push(owner, entry, acting)
        assert own is not None  # the sender always keeps a copy
        return handle, own

    def _edit(self, handle: ServerMessage, text: str, *, acting: Link | None = None,
              deliver: bool = True) -> dict[int | None, LoggedUpdate]:
        date = self._now()
        entries: dict[int | None, LoggedUpdate] = {}
        for stored in handle.copies:
            if stored.deleted:
                continue
            stored.text = text
            stored.edit_date = date
            if stored.owner is None:
                channel = self._peer(stored.chat)
                assert isinstance(channel, ServerChannel)
                entry = self._append(channel, types.UpdateEditChannelMessage, message=stored)
                if deliver:
                    for member_id in channel.member_ids:
                        self._push(self.users[member_id], entry, acting)
            else:
                owner = self.users[stored.owner]
                entry = self._append(owner, types.UpdateEditMessage, message=stored)
                if deliver:
                    self._push(owner, entry, acting)
            entries[stored.owner] = entry
        return entries

    def _delete(self, copies: Iterable[StoredMessage], *, acting: Link | None = None,
                deliver: bool = True) -> dict[int | None, LoggedUpdate]:
        """Delete message copies; one update per box (account or channel) that lost some."""
        by_box: dict[tuple[int | None, int], list[StoredMessage]] = {}
        for stored in copies:
            if not stored.deleted:
                key = (stored.owner, stored.chat if stored.owner is None else 0)
                by_box.setdefault(key, []).append(stored)
        entries: dict[int | None, LoggedUpdate] = {}
        for (owner_id, channel_marked), doomed in by_box.items():
            ids = sorted(m.id for m in doomed)
            for stored in doomed:
                stored.deleted = True
            if owner_id is None:
                channel = self._peer(channel_marked)
                assert isinstance(channel, ServerChannel)
                for stored in doomed:
                    del channel.box[stored.id]
                entry = self._append(channel, types.UpdateDeleteChannelMessages, count=len(ids),
                                     peers=(channel.peer_id,), channel_id=channel.id,
                                     messages=ids)
                if deliver:
                    for member_id in channel.member_ids:
                        self._push(self.users[member_id], entry, acting)
            else:
                owner = self.users[owner_id]
                for stored in doomed:
                    del owner.box[stored.id]
                entry = self._append(owner, types.UpdateDeleteMessages, count=len(ids),
                                     messages=ids)
                if deliver:
                    self._push(owner, entry, acting)
            entries[owner_id] = entry
        return entries

    def _read(self, user: ServerUser, target: Peer, max_id: int,
              acting: Link | None) -> LoggedUpdate | None:
        """``user`` read ``target`` up to ``max_id`` (0: everything). Account chats only."""
        marked = target.peer_id
        top = self._top_message(user, marked)
        new = min(max_id or 2**31 - 1, top.id if top else 0)
        if new <= user.read_inbox.get(marked, 0):
            return None
        user.read_inbox[marked] = new
        entry = self._append(user, types.UpdateReadHistoryInbox, peers=(marked,),
                             peer=self._peer_tl(marked), max_id=new,
                             still_unread_count=self._unread(user, marked))
        self._push(user, entry, acting)
        if isinstance(target, ServerUser) and target is not user:
            # The other side learns its messages were read, in its own message ids.
            theirs = [copy.id for m in user.box.values()
                      if m.chat == marked and m.id <= new and m.sender_id == target.id
                      and m.handle is not None
                      for copy in m.handle.copies if copy.owner == target.id]
            outbox = max(theirs, default=0)
            if outbox > target.read_outbox.get(user.id, 0):
                target.read_outbox[user.id] = outbox
                other = self._append(target, types.UpdateReadHistoryOutbox, peers=(user.id,),
                                     peer=self._peer_tl(user.id), max_id=outbox)
                self._push(target, other, None)
        return entry

