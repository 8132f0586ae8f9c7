"""Request handlers of the emulated Telegram, one method per TL request class.

``TelegramServer`` inherits them; ``invoke`` finds the handler for a request's class through
``handler_for`` (an unknown class is a loud ``NotImplementedError``). Each handler gets the
link (connection) that asked, the signed-in user (``None`` before sign-in) and the request,
already read back from its wire bytes, and returns a TL result or raises ``RpcFailure``.
Semantics follow Telegram's documentation where the emulator implements them at all.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from telethon import utils
from telethon.client.telegrambaseclient import DEFAULT_IPV4_IP, DEFAULT_PORT
from telethon.tl import TLObject, functions, types

from .model import (
    DC_ID,
    MAX_PART,
    Link,
    LoggedUpdate,
    LoginCode,
    Peer,
    ServerChannel,
    ServerMessage,
    ServerUser,
    StoredMessage,
    digits,
    image_size,
)
from .srp import Challenge, PasswordVerifier, new_algo
from .tl import RpcFailure, make, to_datetime

if TYPE_CHECKING:
    from .server import TelegramServer

Handler = Callable[["TelegramServer", "Link", "ServerUser | None", Any], Any]
_HANDLERS: dict[type, Handler] = {}
# What a connection may call before it is signed in; anything else is AUTH_KEY_UNREGISTERED.
_UNAUTHORIZED_OK: set[type] = set()
MAX_PAGE = 100  # Telegram's cap for dialogs and history pages
LOGIN_CODE_LENGTH = 5


def _handles(*requests: type, unauthorized: bool = False) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        for request in requests:
            _HANDLERS[request] = function
            if unauthorized:
                _UNAUTHORIZED_OK.add(request)
        return function
    return register


def handled_requests() -> list[type]:
    """Every request class the emulator answers."""
    return sorted(_HANDLERS, key=lambda cls: (cls.__module__, cls.__name__))


class RpcHandlers:
    """Mixed into ``TelegramServer``; uses its state and internals."""

    def handler_for(self, request: TLObject) -> Handler | None:
        return _HANDLERS.get(type(request))

    @staticmethod
    def allowed_unauthorized(request: TLObject) -> bool:
        return type(request) in _UNAUTHORIZED_OK

    # -- connection ------------------------------------------------------------------------------

    @_handles(functions.help.GetConfigRequest, unauthorized=True)
    def _get_config(self: TelegramServer, link: Link, me: ServerUser | None,
                    request: Any) -> TLObject:
        now = self._now()
        # The one DC Telethon connects to by default, so it never wants to switch.
        dc = make(types.DcOption, id=DC_ID, ip_address=DEFAULT_IPV4_IP, port=DEFAULT_PORT)
        return make(types.Config, date=to_datetime(now), expires=to_datetime(now + 3600),
                    this_dc=DC_ID, dc_options=[dc],
                    chat_size_max=200, megagroup_size_max=200000, forwarded_count_max=100,
                    edit_time_limit=172800, revoke_time_limit=172800,
                    revoke_pm_time_limit=2147483647, caption_length_max=1024,
                    message_length_max=4096, webfile_dc_id=DC_ID)

    @_handles(functions.help.GetNearestDcRequest, unauthorized=True)
    def _get_nearest_dc(self: TelegramServer, link: Link, me: ServerUser | None,
                        request: Any) -> TLObject:
        return make(types.NearestDc, country="ZZ", this_dc=DC_ID, nearest_dc=DC_ID)

    @_handles(functions.PingRequest, unauthorized=True)
    def _ping(self: TelegramServer, link: Link, me: ServerUser | None,
              request: Any) -> TLObject:
        return make(types.Pong, msg_id=0, ping_id=request.ping_id)

    @_handles(functions.account.UpdateStatusRequest, functions.messages.SetTypingRequest)
    def _acknowledge(self: TelegramServer, link: Link, me: ServerUser | None,
                     request: Any) -> bool:
        return True

    # -- sign-in ---------------------------------------------------------------------------------

    @_handles(functions.auth.SendCodeRequest, unauthorized=True)
    def _send_code(self: TelegramServer, link: Link, me: ServerUser | None,
                   request: Any) -> TLObject:
        if self._apps is not None and self._apps.get(request.api_id) != request.api_hash:
            raise RpcFailure(400, "API_ID_INVALID")
        phone = self._valid_phone(request.phone_number)
        if phone in self._banned_phones:
            raise RpcFailure(400, "PHONE_NUMBER_BANNED")
        code = self._issue_code(phone, phone_code_hash=self._random.randbytes(9).hex())
        return make(types.auth.SentCode,
                    type=make(types.auth.SentCodeTypeApp, length=LOGIN_CODE_LENGTH),
                    phone_code_hash=code.phone_code_hash, next_type=make(types.auth.CodeTypeSms))

    @_handles(functions.auth.ResendCodeRequest, unauthorized=True)
    def _resend_code(self: TelegramServer, link: Link, me: ServerUser | None,
                     request: Any) -> TLObject:
        phone = self._valid_phone(request.phone_number)
        known = self._codes.get(phone)
        if known is None or known.phone_code_hash != request.phone_code_hash:
            raise RpcFailure(400, "PHONE_CODE_EXPIRED")
        code = self._issue_code(phone, phone_code_hash=known.phone_code_hash)
        return make(types.auth.SentCode,
                    type=make(types.auth.SentCodeTypeSms, length=LOGIN_CODE_LENGTH),
                    phone_code_hash=code.phone_code_hash)

    @_handles(functions.auth.CancelCodeRequest, unauthorized=True)
    def _cancel_code(self: TelegramServer, link: Link, me: ServerUser | None,
                     request: Any) -> bool:
        self._codes.pop(self._valid_phone(request.phone_number), None)
        return True

    @_handles(functions.auth.SignInRequest, unauthorized=True)
    def _sign_in(self: TelegramServer, link: Link, me: ServerUser | None,
                 request: Any) -> TLObject:
        phone = self._valid_phone(request.phone_number)
        code = self._codes.get(phone)
        if not request.phone_code:
            raise RpcFailure(400, "PHONE_CODE_EMPTY")
        if code is None or code.phone_code_hash != request.phone_code_hash or code.expired \
                or time.monotonic() - code.created > self.code_ttl:
            raise RpcFailure(400, "PHONE_CODE_EXPIRED")
        if request.phone_code != code.code:
            raise RpcFailure(400, "PHONE_CODE_INVALID")
        del self._codes[phone]
        user = self._user_by_phone(phone)
        if user is None:
            return make(types.auth.AuthorizationSignUpRequired)
        if user.password is not None:
            link.auth.password_user_id = user.id
            raise RpcFailure(401, "SESSION_PASSWORD_NEEDED")
        return self._authorize(link, user)

    @_handles(functions.account.GetPasswordRequest, unauthorized=True)
    def _get_password(self: TelegramServer, link: Link, me: ServerUser | None,
                      request: Any) -> TLObject:
        user = me or self.users.get(link.auth.password_user_id or 0)
        if user is None:
            raise RpcFailure(401, "AUTH_KEY_UNREGISTERED")
        common = dict(new_algo=new_algo(self._random.randbytes(32), self._random.randbytes(16)),
                      new_secure_algo=make(types.SecurePasswordKdfAlgoPBKDF2HMACSHA512iter100000,
                                           salt=self._random.randbytes(8)),
                      secure_random=self._random.randbytes(32))
        verifier: PasswordVerifier | None = user.password
        if verifier is None:
            return make(types.account.Password, has_password=False, **common)
        challenge = Challenge.create(verifier)
        link.auth.challenge = challenge
        return make(types.account.Password, has_password=True, current_algo=verifier.algo(),
                    srp_B=challenge.b_bytes(), srp_id=challenge.srp_id,
                    hint=verifier.hint or None, **common)

    @_handles(functions.auth.CheckPasswordRequest, unauthorized=True)
    def _check_password(self: TelegramServer, link: Link, me: ServerUser | None,
                        request: Any) -> TLObject:
        user = self.users.get(link.auth.password_user_id or 0)
        if user is None or user.password is None:
            raise RpcFailure(400, "PASSWORD_HASH_INVALID")
        check = request.password
        challenge, link.auth.challenge = link.auth.challenge, None  # one try per challenge
        if not isinstance(check, types.InputCheckPasswordSRP) or challenge is None \
                or check.srp_id != challenge.srp_id:
            raise RpcFailure(400, "SRP_ID_INVALID")
        if not challenge.accepts(user.password, check.A, check.M1):
            raise RpcFailure(400, "PASSWORD_HASH_INVALID")
        return self._authorize(link, user)

    @_handles(functions.auth.LogOutRequest)
    def _log_out(self: TelegramServer, link: Link, me: ServerUser | None,
                 request: Any) -> TLObject:
        link.auth.user_id = None
        return make(types.auth.LoggedOut)

    def _valid_phone(self: TelegramServer, phone: str) -> str:
        number = digits(phone)
        if len(number) < 5 or not str(phone).strip().lstrip("+").replace(" ", "").isdigit():
            raise RpcFailure(400, "PHONE_NUMBER_INVALID")
        return number

    def _issue_code(self: TelegramServer, phone: str, phone_code_hash: str) -> LoginCode:
        login_code = f"{self._random.randrange(10**LOGIN_CODE_LENGTH):0{LOGIN_CODE_LENGTH}d}"
        code = LoginCode(phone=phone, code=login_code, phone_code_hash=phone_code_hash,
                         created=time.monotonic())
        self._codes[phone] = code
        return code

    def _authorize(self: TelegramServer, link: Link, user: ServerUser) -> TLObject:
        if user.banned:
            raise RpcFailure(400, "PHONE_NUMBER_BANNED")
        link.auth.user_id = user.id
        link.auth.password_user_id = None
        return make(types.auth.Authorization, user=self._user_tl(user.id, user))

    # -- updates ---------------------------------------------------------------------------------

    @_handles(functions.updates.GetStateRequest)
    def _get_state(self: TelegramServer, link: Link, me: ServerUser,
                   request: Any) -> TLObject:
        return self._state_tl(me)

    @_handles(functions.updates.GetDifferenceRequest)
    def _get_difference(self: TelegramServer, link: Link, me: ServerUser,
                        request: Any) -> TLObject:
        entries = [e for e in me.log if e.pts > request.pts]
        channels = {channel_id for at_pts, channel_id in me.channel_activity
                    if at_pts >= request.pts}
        channels = {c for c in channels if me.id in self.channels[c].member_ids}
        if not entries and not channels:
            return make(types.updates.DifferenceEmpty, date=to_datetime(self._now()), seq=0)
        limit = min(request.pts_total_limit or self.difference_limit, self.difference_limit)
        sliced = len(entries) > limit
        entries = entries[:limit]
        new_messages: list[TLObject] = []
        other: list[TLObject] = []
        peers: list[int] = []
        for entry in entries:
            peers.extend(entry.peers)
            if entry.message is not None:
                # Telegram lists new messages as they are now; deleted ones are left out.
                if not entry.message.deleted:
                    new_messages.append(self._message_tl(me.id, entry.message))
            else:
                other.append(entry.build(me.id))
        for channel_id in sorted(channels):
            # "This channel moved": the client then asks getChannelDifference from its own pts.
            other.append(make(types.UpdateChannelTooLong, channel_id=channel_id))
            peers.append(self.channels[channel_id].peer_id)
        users, chats = self._entities(me.id, peers)
        if sliced:
            state = make(types.updates.State, pts=entries[-1].pts, qts=0,
                         date=to_datetime(entries[-1].date), seq=0,
                         unread_count=self._unread_total(me))
            return make(types.updates.DifferenceSlice, new_messages=new_messages,
                        new_encrypted_messages=[], other_updates=other, chats=chats, users=users,
                        intermediate_state=state)
        return make(types.updates.Difference, new_messages=new_messages,
                    new_encrypted_messages=[], other_updates=other, chats=chats, users=users,
                    state=self._state_tl(me))

    @_handles(functions.updates.GetChannelDifferenceRequest)
    def _get_channel_difference(self: TelegramServer, link: Link, me: ServerUser,
                                request: Any) -> TLObject:
        channel = self._input_channel(me, request.channel)
        if request.pts <= 0:
            raise RpcFailure(400, "PERSISTENT_TIMESTAMP_EMPTY")
        if request.pts > channel.pts:
            raise RpcFailure(400, "PERSISTENT_TIMESTAMP_INVALID")
        entries = [e for e in channel.log if e.pts > request.pts]
        if not entries:
            return make(types.updates.ChannelDifferenceEmpty, pts=channel.pts, final=True,
                        timeout=30)
        limit = max(1, min(request.limit or MAX_PAGE, MAX_PAGE))
        final = len(entries) <= limit
        entries = entries[:limit]
        new_messages: list[TLObject] = []
        other: list[TLObject] = []
        peers: list[int] = [channel.peer_id]
        for entry in entries:
            peers.extend(entry.peers)
            if entry.message is not None:
                if not entry.message.deleted:
                    new_messages.append(self._message_tl(me.id, entry.message))
            else:
                other.append(entry.build(me.id))
        users, chats = self._entities(me.id, peers)
        return make(types.updates.ChannelDifference, pts=entries[-1].pts,
                    new_messages=new_messages, other_updates=other, chats=chats, users=users,
                    final=final, timeout=30)

    # -- users, chats, channels, contacts --------------------------------------------------------

    @_handles(functions.users.GetUsersRequest)
    def _get_users(self: TelegramServer, link: Link, me: ServerUser,
                   request: Any) -> list[TLObject]:
        found = []
        for wanted in request.id:
            user = self._input_user(me, wanted)
            found.append(self._user_tl(me.id, user) if user else
                         make(types.UserEmpty, id=getattr(wanted, "user_id", 0)))
        return found

    @_handles(functions.messages.GetChatsRequest)
    def _get_chats(self: TelegramServer, link: Link, me: ServerUser,
                   request: Any) -> TLObject:
        chats = [self._chat_tl(me.id, self.chats[i]) for i in request.id if i in self.chats]
        return make(types.messages.Chats, chats=chats)

    @_handles(functions.channels.GetChannelsRequest)
    def _get_channels(self: TelegramServer, link: Link, me: ServerUser,
                      request: Any) -> TLObject:
        channels = [self._input_channel(me, wanted) for wanted in request.id]
        return make(types.messages.Chats, chats=[self._channel_tl(me.id, c) for c in channels])

    @_handles(functions.contacts.ResolveUsernameRequest)
    def _resolve_username(self: TelegramServer, link: Link, me: ServerUser,
                          request: Any) -> TLObject:
        name = request.username.lower()
        targets: list[Peer] = [*self.users.values(), *self.channels.values()]
        target = next((t for t in targets if (t.username or "").lower() == name), None)
        if target is None:
            raise RpcFailure(400, "USERNAME_NOT_OCCUPIED")
        users, chats = self._entities(me.id, [target.peer_id])
        return make(types.contacts.ResolvedPeer, peer=self._peer_tl(target.peer_id), chats=chats,
                    users=users)

    @_handles(functions.contacts.ResolvePhoneRequest)
    def _resolve_phone(self: TelegramServer, link: Link, me: ServerUser,
                       request: Any) -> TLObject:
        user = self._user_by_phone(digits(request.phone))
        if user is None:
            raise RpcFailure(400, "PHONE_NOT_OCCUPIED")
        return make(types.contacts.ResolvedPeer, peer=make(types.PeerUser, user_id=user.id),
                    chats=[], users=[self._user_tl(me.id, user)])

    @_handles(functions.contacts.ImportContactsRequest)
    def _import_contacts(self: TelegramServer, link: Link, me: ServerUser,
                         request: Any) -> TLObject:
        imported, users = [], []
        for contact in request.contacts:
            user = self._user_by_phone(digits(contact.phone))
            if user is None or user is me:
                continue  # not on Telegram: simply not imported
            me.contacts[user.id] = (contact.first_name, contact.last_name)
            imported.append(make(types.ImportedContact, user_id=user.id,
                                 client_id=contact.client_id))
            users.append(self._user_tl(me.id, user))
        return make(types.contacts.ImportedContacts, imported=imported, popular_invites=[],
                    retry_contacts=[], users=users)

    @_handles(functions.contacts.GetContactsRequest)
    def _get_contacts(self: TelegramServer, link: Link, me: ServerUser,
                      request: Any) -> TLObject:
        contacts = [make(types.Contact, user_id=i, mutual=me.id in self.users[i].contacts)
                    for i in me.contacts]
        return make(types.contacts.Contacts, contacts=contacts, saved_count=len(contacts),
                    users=[self._user_tl(me.id, self.users[i]) for i in me.contacts])

    # -- dialogs ---------------------------------------------------------------------------------

    @_handles(functions.messages.GetDialogsRequest)
    def _get_dialogs(self: TelegramServer, link: Link, me: ServerUser,
                     request: Any) -> TLObject:
        def key(marked: int) -> tuple[int, int]:
            top = self._top_message(me, marked)
            return (top.date, top.order) if top else (0, 0)

        if request.folder_id == 1:  # nothing is archived here
            return make(types.messages.Dialogs, dialogs=[], messages=[], chats=[], users=[])
        every = sorted(self._dialog_peers(me), key=key, reverse=True)
        offset_date = _timestamp(request.offset_date)
        offset_given = bool(request.offset_id or offset_date or not isinstance(
            request.offset_peer, types.InputPeerEmpty))
        pinned = [p for p in me.pinned if p in every]
        rows = [p for p in every if p not in pinned]
        if offset_given:
            # Dialogs older than the offset: the offset peer's own top message when we can
            # find it (ties in date are common), else the offset date.
            offset_peer = self._marked_of_input(me, request.offset_peer)
            top = self._top_message(me, offset_peer) if offset_peer is not None else None
            if top is not None and top.id == request.offset_id:
                bound = (top.date, top.order)
            else:
                bound = (offset_date or 2**31, 0)
            rows = [p for p in rows if key(p) < bound]
        elif not request.exclude_pinned:
            rows = pinned + rows
        limit = max(0, min(request.limit or MAX_PAGE, MAX_PAGE))
        page = rows[:limit]
        return self._dialogs_tl(me, page, total=len(every),
                                complete=not offset_given and len(every) <= limit)

    @_handles(functions.messages.GetPeerDialogsRequest)
    def _get_peer_dialogs(self: TelegramServer, link: Link, me: ServerUser,
                          request: Any) -> TLObject:
        peers = [self._input_peer(me, p.peer).peer_id for p in request.peers]
        listing = self._dialogs_tl(me, peers, total=len(peers), complete=True)
        return make(types.messages.PeerDialogs, dialogs=listing.dialogs,
                    messages=listing.messages, chats=listing.chats, users=listing.users,
                    state=self._state_tl(me))

    def _dialogs_tl(self: TelegramServer, me: ServerUser, peers: list[int], *, total: int,
                    complete: bool) -> TLObject:
        dialogs, messages, mentioned = [], [], []
        for marked in peers:
            dialogs.append(self._dialog_tl(me, marked))
            mentioned.append(marked)
            top = self._top_message(me, marked)
            if top is not None:
                messages.append(self._message_tl(me.id, top))
                mentioned.extend(self._message_peers(top))
        users, chats = self._entities(me.id, mentioned)
        if complete:
            return make(types.messages.Dialogs, dialogs=dialogs, messages=messages, chats=chats,
                        users=users)
        return make(types.messages.DialogsSlice, count=total, dialogs=dialogs, messages=messages,
                    chats=chats, users=users)

    # -- history ---------------------------------------------------------------------------------

    @_handles(functions.messages.GetHistoryRequest)
    def _get_history(self: TelegramServer, link: Link, me: ServerUser,
                     request: Any) -> TLObject:
        target = self._input_peer(me, request.peer)
        history = self._history(me, target)
        total = len(history)
        if request.max_id:
            history = [m for m in history if m.id < request.max_id]
        if request.min_id:
            history = [m for m in history if m.id > request.min_id]
        start = 0
        offset_date = _timestamp(request.offset_date)
        if request.offset_id:
            start = next((i for i, m in enumerate(history) if m.id < request.offset_id),
                         len(history))
        elif offset_date:
            start = next((i for i, m in enumerate(history) if m.date < offset_date),
                         len(history))
        low = start + request.add_offset
        high = low + max(0, min(request.limit, MAX_PAGE))
        page = history[max(low, 0):max(high, 0)]
        plain = not (request.offset_id or offset_date or request.add_offset
                     or request.max_id or request.min_id)
        return self._messages_tl(me, target, page, total=total,
                                 complete=plain and total <= len(page))

    @_handles(functions.messages.GetMessagesRequest)
    def _get_messages(self: TelegramServer, link: Link, me: ServerUser,
                      request: Any) -> TLObject:
        found = [self._by_input_id(me.box, wanted) for wanted in request.id]
        return self._listing(me, found, [t.id for t in request.id])

    @_handles(functions.channels.GetMessagesRequest)
    def _get_channel_messages(self: TelegramServer, link: Link, me: ServerUser,
                              request: Any) -> TLObject:
        channel = self._input_channel(me, request.channel)
        if not request.id:
            raise RpcFailure(400, "MESSAGE_IDS_EMPTY")
        found = [self._by_input_id(channel.box, wanted) for wanted in request.id]
        listing = self._listing(me, found, [t.id for t in request.id])
        return make(types.messages.ChannelMessages, pts=channel.pts, count=len(found),
                    messages=listing.messages, topics=[], chats=listing.chats,
                    users=listing.users)

    def _by_input_id(self: TelegramServer, box: dict[int, StoredMessage],
                     wanted: TLObject) -> StoredMessage | None:
        if not isinstance(wanted, types.InputMessageID):
            raise NotImplementedError(f"the Telegram emulator does not resolve {wanted}")
        return box.get(wanted.id)

    def _listing(self: TelegramServer, me: ServerUser, found: list[StoredMessage | None],
                 ids: list[int]) -> TLObject:
        messages, peers = [], []
        for wanted_id, stored in zip(ids, found, strict=True):
            if stored is None:
                messages.append(make(types.MessageEmpty, id=wanted_id, peer_id=None))
            else:
                messages.append(self._message_tl(me.id, stored))
                peers.extend(self._message_peers(stored))
        users, chats = self._entities(me.id, peers)
        return make(types.messages.Messages, messages=messages, topics=[], chats=chats, users=users)

    def _history(self: TelegramServer, me: ServerUser, target: Peer) -> list[StoredMessage]:
        if isinstance(target, ServerChannel):
            return target.history()
        return me.history(target.peer_id)

    def _messages_tl(self: TelegramServer, me: ServerUser, target: Peer,
                     page: list[StoredMessage], *, total: int, complete: bool) -> TLObject:
        peers = [target.peer_id]
        for stored in page:
            peers.extend(self._message_peers(stored))
        users, chats = self._entities(me.id, peers)
        messages = [self._message_tl(me.id, m) for m in page]
        if isinstance(target, ServerChannel):
            return make(types.messages.ChannelMessages, pts=target.pts, count=total,
                        messages=messages, topics=[], chats=chats, users=users)
        if complete:
            return make(types.messages.Messages, messages=messages, topics=[], chats=chats,
                        users=users)
        return make(types.messages.MessagesSlice, count=total, messages=messages, topics=[],
                    chats=chats, users=users)

    # -- sending, editing, deleting --------------------------------------------------------------

    @_handles(functions.messages.SendMessageRequest)
    def _send_message(self: TelegramServer, link: Link, me: ServerUser,
                      request: Any) -> TLObject:
        if not request.message.strip():
            raise RpcFailure(400, "MESSAGE_EMPTY")
        if len(request.message) > 4096:
            raise RpcFailure(400, "MESSAGE_TOO_LONG")
        target = self._writable(me, request)
        handle, own = self._post(me, target, text=request.message,
                                 entities=request.entities or [],
                                 reply_to=self._replied(me, target, request.reply_to),
                                 acting=link)
        me.random_ids.add(request.random_id)
        if isinstance(target, ServerUser):
            # Private chats answer with the short form; Telethon rebuilds the Message from it.
            stored = handle.copies[0]
            return make(types.UpdateShortSentMessage, out=True, id=stored.id, pts=own.pts,
                        pts_count=own.pts_count, date=to_datetime(stored.date),
                        entities=list(stored.entities) or None)
        return self._sent_updates(me, request.random_id, own)

    @_handles(functions.messages.SendMediaRequest)
    def _send_media(self: TelegramServer, link: Link, me: ServerUser,
                    request: Any) -> TLObject:
        target = self._writable(me, request)
        media = self._input_media(me, request.media)
        _, own = self._post(me, target, text=request.message, media=media,
                            entities=request.entities or [],
                            reply_to=self._replied(me, target, request.reply_to), acting=link)
        me.random_ids.add(request.random_id)
        return self._sent_updates(me, request.random_id, own)

    def _writable(self: TelegramServer, me: ServerUser, request: Any) -> Peer:
        if request.schedule_date or request.send_as or request.quick_reply_shortcut:
            raise NotImplementedError("the Telegram emulator does not schedule, send as "
                                      "another peer or use quick replies")
        target = self._input_peer(me, request.peer)
        if isinstance(target, ServerChannel) and not target.can_post(me.id):
            raise RpcFailure(403, "CHAT_WRITE_FORBIDDEN")
        if request.random_id in me.random_ids:
            # A resend of a message that already arrived (e.g. after a reconnect).
            raise RpcFailure(500, "RANDOM_ID_DUPLICATE")
        return target

    def _replied(self: TelegramServer, me: ServerUser, target: Peer,
                 reply_to: TLObject | None) -> ServerMessage | None:
        if reply_to is None:
            return None
        if not isinstance(reply_to, types.InputReplyToMessage) or reply_to.reply_to_peer_id \
                or reply_to.top_msg_id:
            raise NotImplementedError(f"the Telegram emulator does not reply with {reply_to}")
        box = target.box if isinstance(target, ServerChannel) else me.box
        replied = box.get(reply_to.reply_to_msg_id)
        if replied is None or replied.chat != target.peer_id:
            return None  # Telegram drops a reply header that points nowhere
        return replied.handle

    def _sent_updates(self: TelegramServer, me: ServerUser, random_id: int,
                      own: LoggedUpdate) -> TLObject:
        """What sending answers outside private chats: the new message and its random id."""
        update = own.build(me.id)
        users, chats = self._entities(me.id, own.peers)
        mapping = make(types.UpdateMessageID, id=update.message.id, random_id=random_id)
        return make(types.Updates, updates=[mapping, update], users=users, chats=chats,
                    date=to_datetime(self._now()), seq=0)

    def _input_media(self: TelegramServer, me: ServerUser, media: TLObject) -> Any:
        if isinstance(media, types.InputMediaUploadedDocument):
            data = self._take_upload(me, media.file)
            if media.thumb is not None:
                self._take_upload(me, media.thumb)  # accepted, but thumbnails are not served
            name = next((a.file_name for a in media.attributes
                         if isinstance(a, types.DocumentAttributeFilename)), media.file.name)
            return self._new_file(data, "document", name, media.mime_type,
                                  list(media.attributes))
        if isinstance(media, types.InputMediaUploadedPhoto):
            data = self._take_upload(me, media.file)
            width, height = image_size(data)
            if not width:
                raise RpcFailure(400, "IMAGE_PROCESS_FAILED")
            photo = self._new_file(data, "photo", media.file.name, "image/jpeg")
            photo.width, photo.height = width, height
            return photo
        if isinstance(media, types.InputMediaDocument | types.InputMediaPhoto):
            known = self.files.get(media.id.id)
            if known is None or known.access_hash != media.id.access_hash:
                raise RpcFailure(400, "MEDIA_INVALID")
            return known
        raise NotImplementedError(f"the Telegram emulator does not send {type(media).__name__}")

    @_handles(functions.messages.EditMessageRequest)
    def _edit_message(self: TelegramServer, link: Link, me: ServerUser,
                      request: Any) -> TLObject:
        target = self._input_peer(me, request.peer)
        box = target.box if isinstance(target, ServerChannel) else me.box
        stored = box.get(request.id)
        if stored is None or stored.chat != target.peer_id or stored.action is not None:
            raise RpcFailure(400, "MESSAGE_ID_INVALID")
        if stored.sender_id != me.id:
            raise RpcFailure(403, "MESSAGE_AUTHOR_REQUIRED")
        if request.media is not None:
            raise NotImplementedError("the Telegram emulator does not edit media")
        if request.message is None or request.message == stored.text:
            raise RpcFailure(400, "MESSAGE_NOT_MODIFIED")
        assert stored.handle is not None
        entries = self._edit(stored.handle, request.message, acting=link)
        own = entries[None if isinstance(target, ServerChannel) else me.id]
        users, chats = self._entities(me.id, own.peers)
        return make(types.Updates, updates=[own.build(me.id)], users=users, chats=chats,
                    date=to_datetime(self._now()), seq=0)

    @_handles(functions.messages.DeleteMessagesRequest)
    def _delete_messages(self: TelegramServer, link: Link, me: ServerUser,
                         request: Any) -> TLObject:
        doomed: list[StoredMessage] = []
        for message_id in request.id:
            stored = me.box.get(message_id)
            if stored is None:
                continue
            if request.revoke and stored.handle is not None:
                doomed.extend(stored.handle.copies)
            else:
                doomed.append(stored)
        entries = self._delete(doomed, acting=link)
        own = entries.get(me.id)
        return make(types.messages.AffectedMessages, pts=me.pts,
                    pts_count=own.pts_count if own else 0)

    @_handles(functions.channels.DeleteMessagesRequest)
    def _delete_channel_messages(self: TelegramServer, link: Link, me: ServerUser,
                                 request: Any) -> TLObject:
        channel = self._input_channel(me, request.channel)
        doomed = [channel.box[i] for i in request.id if i in channel.box]
        admin = me.id == channel.creator_id or me.id in channel.admin_ids
        if any(m.sender_id != me.id for m in doomed) and not admin:
            raise RpcFailure(403, "MESSAGE_DELETE_FORBIDDEN")
        entries = self._delete(doomed, acting=link)
        own = entries.get(None)
        return make(types.messages.AffectedMessages, pts=channel.pts,
                    pts_count=own.pts_count if own else 0)

    # -- read state ------------------------------------------------------------------------------

    @_handles(functions.messages.ReadHistoryRequest)
    def _read_history(self: TelegramServer, link: Link, me: ServerUser,
                      request: Any) -> TLObject:
        target = self._input_peer(me, request.peer)
        if isinstance(target, ServerChannel):
            raise RpcFailure(400, "PEER_ID_INVALID")  # channels use channels.readHistory
        entry = self._read(me, target, request.max_id, link)
        return make(types.messages.AffectedMessages, pts=me.pts,
                    pts_count=entry.pts_count if entry else 0)

    @_handles(functions.channels.ReadHistoryRequest)
    def _read_channel_history(self: TelegramServer, link: Link, me: ServerUser,
                              request: Any) -> bool:
        channel = self._input_channel(me, request.channel)
        top = max(channel.box, default=0)
        new = min(request.max_id or top, top)
        if new > channel.read_inbox.get(me.id, 0):
            channel.read_inbox[me.id] = new
            # Not a pts-consuming update: it carries the channel's current pts.
            update = make(types.UpdateReadChannelInbox, channel_id=channel.id, max_id=new,
                          still_unread_count=self._unread(me, channel.peer_id),
                          pts=channel.pts)
            self._push_unlogged(me, update, (channel.peer_id,), exclude=link)
        return True

    # -- sponsored messages ----------------------------------------------------------------------

    @_handles(functions.messages.GetSponsoredMessagesRequest)
    def _get_sponsored(self: TelegramServer, link: Link, me: ServerUser,
                       request: Any) -> TLObject:
        target = self._input_peer(me, request.peer)
        if not isinstance(target, ServerChannel) or target.sponsored is None:
            return make(types.messages.SponsoredMessagesEmpty)
        ad = target.sponsored
        # Made fresh on every call and never stored in the channel's history.
        sponsored = make(types.SponsoredMessage, random_id=ad.random_id, url=ad.url,
                         title=ad.title, message=ad.message, button_text=ad.button_text)
        return make(types.messages.SponsoredMessages, messages=[sponsored], chats=[], users=[])

    @_handles(functions.messages.ViewSponsoredMessageRequest)
    def _view_sponsored(self: TelegramServer, link: Link, me: ServerUser,
                        request: Any) -> bool:
        self.sponsored_views.append(request.random_id)
        return True

    @_handles(functions.messages.ClickSponsoredMessageRequest)
    def _click_sponsored(self: TelegramServer, link: Link, me: ServerUser,
                         request: Any) -> bool:
        self.sponsored_clicks.append(request.random_id)
        return True

    # -- files -----------------------------------------------------------------------------------

    @_handles(functions.upload.SaveFilePartRequest)
    def _save_file_part(self: TelegramServer, link: Link, me: ServerUser,
                        request: Any) -> bool:
        if request.file_part < 0:
            raise RpcFailure(400, "FILE_PART_INVALID")
        if len(request.bytes) > MAX_PART:
            raise RpcFailure(400, "FILE_PART_TOO_BIG")
        self._upload(me, request.file_id).parts[request.file_part] = request.bytes
        return True

    @_handles(functions.upload.SaveBigFilePartRequest)
    def _save_big_file_part(self: TelegramServer, link: Link, me: ServerUser,
                            request: Any) -> bool:
        if not 0 <= request.file_part < request.file_total_parts:
            raise RpcFailure(400, "FILE_PART_INVALID")
        if len(request.bytes) > MAX_PART:
            raise RpcFailure(400, "FILE_PART_TOO_BIG")
        upload = self._upload(me, request.file_id)
        if upload.total_parts not in (None, request.file_total_parts):
            raise RpcFailure(400, "FILE_PARTS_INVALID")
        upload.big = True
        upload.total_parts = request.file_total_parts
        upload.parts[request.file_part] = request.bytes
        return True

    @_handles(functions.upload.GetFileRequest)
    def _get_file(self: TelegramServer, link: Link, me: ServerUser,
                  request: Any) -> TLObject:
        location = request.location
        if not isinstance(location, types.InputDocumentFileLocation
                          | types.InputPhotoFileLocation):
            raise NotImplementedError(f"the Telegram emulator does not serve {location}")
        found = self.files.get(location.id)
        if found is None or found.access_hash != location.access_hash:
            raise RpcFailure(400, "FILE_ID_INVALID")
        if location.file_reference != found.file_reference:
            raise RpcFailure(400, "FILE_REFERENCE_EXPIRED")
        wants_thumb = isinstance(location, types.InputDocumentFileLocation) and \
            location.thumb_size
        if wants_thumb or (found.kind == "photo" and location.thumb_size not in ("x", "")):
            raise RpcFailure(400, "LOCATION_INVALID")
        offset, limit = request.offset, request.limit
        # Telegram's rules for non-precise requests (https://core.telegram.org/api/files).
        if limit <= 0 or limit > 1024 * 1024 or limit % 1024 or (
                not request.precise and (1024 * 1024) % limit):
            raise RpcFailure(400, "LIMIT_INVALID")
        if offset < 0 or offset % 1024 or (not request.precise and offset % limit):
            raise RpcFailure(400, "OFFSET_INVALID")
        return make(types.upload.File, type=make(types.storage.FileUnknown), mtime=found.date,
                    bytes=found.data[offset:offset + limit])

    # -- resolving input peers -------------------------------------------------------------------

    def _input_user(self: TelegramServer, me: ServerUser, wanted: TLObject
                    ) -> ServerUser | None:
        if isinstance(wanted, types.InputUserSelf):
            return me
        if isinstance(wanted, types.InputUser | types.InputPeerUser):
            user = self.users.get(wanted.user_id)
            if user is None:
                return None
            # A zero hash works for contacts (Telethon relies on that for bare ids).
            if wanted.access_hash == user.access_hash or (
                    wanted.access_hash == 0 and user.id in me.contacts):
                return user
            return None
        if isinstance(wanted, types.InputUserFromMessage | types.InputPeerUserFromMessage):
            return self.users.get(wanted.user_id)
        return None

    def _input_channel(self: TelegramServer, me: ServerUser, wanted: TLObject
                       ) -> ServerChannel:
        if isinstance(wanted, types.InputChannelFromMessage
                      | types.InputPeerChannelFromMessage):
            channel = self.channels.get(wanted.channel_id)
        elif isinstance(wanted, types.InputChannel | types.InputPeerChannel):
            channel = self.channels.get(wanted.channel_id)
            if channel is not None and channel.access_hash != wanted.access_hash:
                channel = None
        else:
            channel = None
        if channel is None:
            raise RpcFailure(400, "CHANNEL_INVALID")
        if me.id not in channel.member_ids and not channel.username:
            raise RpcFailure(400, "CHANNEL_PRIVATE")
        return channel

    def _input_peer(self: TelegramServer, me: ServerUser, wanted: TLObject) -> Peer:
        if isinstance(wanted, types.InputPeerSelf):
            return me
        if isinstance(wanted, types.InputPeerUser | types.InputPeerUserFromMessage):
            user = self._input_user(me, wanted)
            if user is None:
                raise RpcFailure(400, "PEER_ID_INVALID")
            return user
        if isinstance(wanted, types.InputPeerChat):
            chat = self.chats.get(wanted.chat_id)
            if chat is None or me.id not in chat.member_ids:
                raise RpcFailure(400, "PEER_ID_INVALID")
            return chat
        if isinstance(wanted, types.InputPeerChannel | types.InputPeerChannelFromMessage):
            return self._input_channel(me, wanted)
        raise RpcFailure(400, "PEER_ID_INVALID")

    def _marked_of_input(self: TelegramServer, me: ServerUser, wanted: TLObject) -> int | None:
        """The marked id an input peer names, without access checks (paging offsets)."""
        if isinstance(wanted, types.InputPeerSelf):
            return me.id
        if isinstance(wanted, types.InputPeerEmpty):
            return None
        return utils.get_peer_id(wanted)


def _timestamp(moment: datetime.datetime | None) -> int:
    """A TL date as seconds; an absent date reads back from the wire as the epoch (0)."""
    return int(moment.timestamp()) if moment else 0
