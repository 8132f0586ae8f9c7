"""Enrollment by Telegram code: proving you own Telegram account N by reading a code sent to it.

``start`` sends a random 8-digit code (from :mod:`secrets`, valid 5 minutes) to account N through
the Telegram account the admin signed in with ``chimera-identity telegram-login``; ``finish``
trades the right code for the same one-time token an invite gives. Each code allows 5 attempts,
then it is locked and only a new code helps; new codes are rate-limited per id and per client
address, so guessing gets at most 15 tries per id per 10 minutes against 10**8 codes.

The state file keeps only an HMAC of each code (per-code random salt): a copy of the file does not
show live codes at a glance. (Eight digits cannot resist an offline search; the 5-minute lifetime
is what limits that, and whoever can read the file can read the CA's keys next to it anyway.)

Telegram is reached through :class:`CodeSender`, so tests can run the real Telethon client against
an emulator; :class:`TelethonCodeSender` is the one ``serve`` uses.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from chimera_tk.errors import UserError
from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.identity.authority import ApiError, Authority
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.identity.state import CodeOutcome

log = logging.getLogger(__name__)

CODE_DIGITS = 8
CODE_LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
START_WINDOW_SECONDS = 600
START_LIMIT_PER_ID = 3
START_LIMIT_PER_ADDRESS = 3
_PHONE = re.compile(r"\+[0-9]{6,15}")
_CODE = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")
_NOT_SET_UP = ("this identity provider does not send Telegram codes; ask your team admin for an "
               "invite")
_REFUSALS = {
    CodeOutcome.NONE: (401, "no code was sent to this id; request one first"),
    CodeOutcome.USED: (403, "this code has already been used; request a new one"),
    CodeOutcome.LOCKED: (403, "too many wrong codes: this code is locked; request a new one"),
    CodeOutcome.EXPIRED: (403, "this code has expired (codes last 5 minutes); request a new one"),
}


class RecipientUnknown(Exception):
    """Telegram has no account by that id or phone, or ours may not write to it."""


class CodeNotSent(Exception):
    """Telegram refused or failed to deliver the message."""


class CodeSender(Protocol):
    """How the provider talks to Telegram; one per running server, used from its event loop."""

    async def send_code(self, user_id: int, text: str) -> None:
        """Send ``text`` to Telegram account ``user_id``; RecipientUnknown or CodeNotSent."""

    async def resolve_phone(self, phone: str) -> int:
        """The id of the Telegram account with ``phone`` ("+" and digits); RecipientUnknown."""


CodeSenderFactory = Callable[[], AbstractAsyncContextManager[CodeSender]]


def valid_phone(value: object) -> bool:
    return isinstance(value, str) and bool(_PHONE.fullmatch(value))


class TelegramCodes:
    """The rules of ``/enroll/telegram/start`` and ``/finish`` over the CA's state file."""

    def __init__(self, authority: Authority, sender: CodeSender, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._authority = authority
        self._sender = sender
        self._clock = clock or authority.now

    async def start(self, address: str, *, user_id: int | None = None,
                    phone: str | None = None) -> None:
        """Send a new code to the account ``user_id`` (or the one with ``phone``)."""
        state, now = self._authority.state, self._clock()
        # The address limit comes first: it also bounds phone look-ups on Telegram.
        if not state.note_code_request(f"addr:{address}", now, START_WINDOW_SECONDS,
                                       START_LIMIT_PER_ADDRESS):
            raise ApiError(429, "too many code requests from this address; wait 10 minutes")
        if user_id is None:
            assert phone is not None
            try:
                user_id = await self._sender.resolve_phone(phone)
            except RecipientUnknown:
                raise ApiError(404, "no Telegram account the provider can write to has this "
                                    "phone number") from None
            except CodeNotSent:
                raise ApiError(503, "Telegram could not be reached; try again later") from None
        if not state.note_code_request(f"id:{user_id}", now, START_WINDOW_SECONDS,
                                       START_LIMIT_PER_ID):
            raise ApiError(429, "too many codes were requested for this account; wait 10 minutes")
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        salt = secrets.token_hex(16)
        state.put_code(user_id, salt, _code_hmac(salt, user_id, code), now + CODE_LIFETIME)
        text = (f"Your Chimera enrollment code is {code}. It is valid for 5 minutes. "
                "If you did not ask for it, ignore this message and tell your team admin.")
        try:
            await self._sender.send_code(user_id, text)
        except (RecipientUnknown, CodeNotSent) as exc:
            state.drop_code(user_id)
            log.info("code for id %s not sent: %s", user_id, exc)
            if isinstance(exc, RecipientUnknown):
                raise ApiError(404, "the provider cannot write to this Telegram account; start a "
                                    "chat with it first, or ask your team admin") from None
            raise ApiError(503, "Telegram did not take the message; try again later") from None
        log.info("code sent to id %s", user_id)

    async def resolve(self, phone: str) -> int:
        try:
            return await self._sender.resolve_phone(phone)
        except (RecipientUnknown, CodeNotSent):
            # Same answer as a wrong code: finish must not tell which phones are on Telegram.
            raise ApiError(401, _REFUSALS[CodeOutcome.NONE][1]) from None

    def finish(self, user_id: int, code: str) -> str:
        """The one-time token for ``user_id`` if ``code`` is its live code."""
        if not _CODE.fullmatch(code):
            raise ApiError(400, f"the code is the {CODE_DIGITS} digits sent on Telegram")

        def matches(salt: str, stored: str) -> bool:
            return hmac.compare_digest(_code_hmac(salt, user_id, code), stored)

        outcome, left = self._authority.state.check_code(user_id, matches, self._clock(),
                                                         MAX_ATTEMPTS)
        if outcome is CodeOutcome.ACCEPTED:
            log.info("telegram code accepted for id %s", user_id)
            return self._authority.enrollment_token(user_id)
        log.info("telegram code refused for id %s: %s", user_id, outcome.value)
        if outcome is CodeOutcome.WRONG:
            raise ApiError(401, f"wrong code; {left} attempt{'' if left == 1 else 's'} left"
                           if left else "wrong code; the code is now locked: request a new one")
        raise ApiError(*_REFUSALS[outcome])


def _code_hmac(salt: str, user_id: int, code: str) -> str:
    # The id is part of the MAC, so a row can never vouch for a code offered for another id.
    return hmac.new(bytes.fromhex(salt), f"{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


# -- Telethon ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelegramLogin:
    """``telegram.json`` in the CA folder: the app credentials of the provider's account."""

    api_id: int
    api_hash: str


def telegram_settings_path(files: AuthorityFiles) -> Path:
    return files.root / "telegram.json"


def telegram_session_path(files: AuthorityFiles) -> Path:
    """Telethon's session file (it appends ``.session``); private like the CA's keys."""
    return files.root / "telegram"


def save_telegram_login(files: AuthorityFiles, login: TelegramLogin) -> None:
    atomic_write_bytes(telegram_settings_path(files),
                       json.dumps({"api_id": login.api_id, "api_hash": login.api_hash}).encode())


def load_telegram_login(files: AuthorityFiles) -> TelegramLogin | None:
    """The saved login, or None when the admin has not run ``telegram-login``."""
    path = telegram_settings_path(files)
    if not path.exists():
        return None
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return TelegramLogin(api_id=int(data["api_id"]), api_hash=str(data["api_hash"]))
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is damaged; run chimera-identity telegram-login again") from None


class TelethonCodeSender:
    """:class:`CodeSender` over a connected, signed-in Telethon client (user or bot account)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def send_code(self, user_id: int, text: str) -> None:
        from telethon.errors import RPCError

        try:
            # Known from the session, or fetched with access hash 0: Telegram allows that for a
            # bot the person has written to, and for a user account's contacts.
            peer = await self._client.get_input_entity(user_id)
        except (ValueError, TypeError, RPCError) as exc:
            raise RecipientUnknown(str(exc)) from None
        try:
            await self._client.send_message(peer, text)
        except RPCError as exc:
            raise CodeNotSent(str(exc)) from None
        except (OSError, ConnectionError) as exc:
            raise CodeNotSent(str(exc)) from None

    async def resolve_phone(self, phone: str) -> int:
        from telethon.errors import RPCError
        from telethon.tl.functions.contacts import ResolvePhoneRequest

        try:
            resolved = await self._client(ResolvePhoneRequest(phone))
        except RPCError as exc:
            raise RecipientUnknown(str(exc)) from None
        except (OSError, ConnectionError) as exc:
            raise CodeNotSent(str(exc)) from None
        user_id = getattr(resolved.peer, "user_id", None)
        if not isinstance(user_id, int):
            raise RecipientUnknown("not a user")
        return user_id


def telethon_sender_factory(files: AuthorityFiles) -> CodeSenderFactory | None:
    """What ``serve`` uses: the account saved by ``telegram-login``, or None if there is none."""
    login = load_telegram_login(files)
    if login is None:
        return None

    @contextlib.asynccontextmanager
    async def open_sender() -> AsyncIterator[CodeSender]:
        from telethon import TelegramClient

        client = TelegramClient(str(telegram_session_path(files)), login.api_id, login.api_hash)
        await client.connect()
        try:
            if not await client.is_user_authorized():
                raise UserError("the provider's Telegram session is signed out; run "
                                f"chimera-identity telegram-login --dir {files.root}")
            yield TelethonCodeSender(client)
        finally:
            await client.disconnect()

    return open_sender


def not_set_up() -> ApiError:
    return ApiError(404, _NOT_SET_UP)
