"""The Telegram worker: one thread, one asyncio loop, one Telethon client.

Other threads never touch the client: they call the methods here, which schedule coroutines on the
worker's loop (``asyncio.run_coroutine_threadsafe``) and hand back concurrent futures. Everything
that arrives (sync, live updates, sent-message results) is written through the worker's own
database connection and reported as events. It is also the router's ``telegram`` transport.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from chimera_tk.config import (
    FileSettings,
    TelegramSettings,
    downloads_automatically,
    downloads_folder,
)
from chimera_tk.errors import UserError
from chimera_tk.events import (
    DialogChanged,
    DialogRemoved,
    MessageChanged,
    MessageStored,
    OlderMessagesFetched,
    SponsoredAd,
    SponsoredMessagesFetched,
    StatusChanged,
    SyncProgress,
    TransferProgress,
)
from chimera_tk.net.peer.files import move_into_place, partial_path
from chimera_tk.net.telegram import transfer
from chimera_tk.net.telegram.mapping import (
    dialog_info,
    incoming_message,
    is_service_message,
    media_description,
)
from chimera_tk.profiles import ProfilePaths
from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message, OutboxEntry, utc_now_ms

log = logging.getLogger(__name__)

ClientFactory = Callable[[str, int, str], Any]
CATCH_UP_LIMIT = 100  # per dialog on a later start; older history loads on demand
OLDER_PAGE = 50  # messages fetched from Telegram when the reader scrolls past the local history
PROGRESS_INTERVAL_S = 0.1  # transfer progress events at most ~10 a second
LINK_POLL_S = 0.2  # how often the supervisor looks whether Telethon's own reconnect is under way
RECONNECT_DELAYS_S = (0.2, 1.0, 2.0, 5.0, 10.0, 30.0)  # ours, once Telethon's retries gave up


class TelegramWorker:
    name = "telegram"

    def __init__(self, settings: TelegramSettings, paths: ProfilePaths,
                 emit: Callable[[object], None], *,
                 client_factory: ClientFactory | None = None,
                 files: FileSettings | None = None) -> None:
        self._settings = settings
        self._paths = paths
        self._files = files or FileSettings()
        self._downloads = downloads_folder(self._files, paths.downloads)
        self._emit = emit
        self._factory = client_factory or _default_client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="telegram")
        self._ready = threading.Event()
        self._client: Any = None
        self._connected: asyncio.Event | None = None
        self._store: Store | None = None
        self._send_lock: asyncio.Lock | None = None
        self._phone: str | None = None
        self._sync_task: asyncio.Task | None = None
        self._flood_waiting = False
        self._supervisor: asyncio.Task | None = None
        self._stopping = False
        self._unacknowledged: set[int] = set()  # read while offline: told Telegram once back
        self.me_id: int | None = None
        self.online = False

    # -- lifecycle (any thread) ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        self.submit(self._connect())

    def stop(self) -> None:
        if self._thread.is_alive():
            future = self.submit(self._disconnect())
            with contextlib.suppress(Exception):
                future.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._store = Store.open(self._paths.database)
        self._send_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._store.close()
            self._loop.close()

    # -- connection and sign-in ------------------------------------------------------------------

    async def _connect(self) -> None:
        self._status("Telegram: connecting…")
        self._client = self._factory(str(self._paths.telegram_session),
                                     self._settings.api_id, self._settings.api_hash)
        try:
            await self._client.connect()
        except (OSError, ConnectionError) as exc:
            self._status(f"Telegram: offline ({exc})", "error")
            return
        finally:
            self._connected.set()
        _make_private(self._paths.telegram_session)
        if await self._client.is_user_authorized():
            await self._signed_in()
        else:
            self._status("Telegram: not signed in")

    def is_signed_in(self) -> concurrent.futures.Future:
        return self.submit(self._is_signed_in())

    async def _is_signed_in(self) -> bool:
        await self._connected.wait()
        return bool(self._client is not None and await self._client.is_user_authorized())

    async def _disconnect(self) -> None:
        self._stopping = True
        self.online = False
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.disconnect()

    def request_code(self, phone: str) -> concurrent.futures.Future:
        return self.submit(self._request_code(phone))

    async def _request_code(self, phone: str) -> None:
        from telethon import errors

        try:
            await self._client.send_code_request(phone)
        except errors.PhoneNumberInvalidError:
            raise UserError(f"{phone} is not a valid phone number") from None
        except errors.PhoneNumberBannedError:
            raise UserError(f"Telegram has banned the number {phone}") from None
        except errors.FloodWaitError as exc:
            raise UserError(f"Telegram asks to wait {exc.seconds} s before the next try") \
                from None
        self._phone = phone

    def submit_code(self, code: str) -> concurrent.futures.Future:
        """Resolves to True when signed in, False when the account's 2FA password is needed."""
        return self.submit(self._submit_code(code))

    async def _submit_code(self, code: str) -> bool:
        from telethon import errors

        try:
            await self._client.sign_in(phone=self._phone, code=code.strip())
        except errors.SessionPasswordNeededError:
            return False
        except errors.PhoneCodeInvalidError:
            raise UserError("that code is not right; check the Telegram message") from None
        except errors.PhoneCodeExpiredError:
            raise UserError("that code has expired; ask for a new one") from None
        except errors.FloodWaitError as exc:
            raise UserError(f"Telegram asks to wait {exc.seconds} s before the next try") \
                from None
        await self._signed_in()
        return True

    def submit_password(self, password: str) -> concurrent.futures.Future:
        return self.submit(self._submit_password(password))

    async def _submit_password(self, password: str) -> None:
        from telethon import errors

        try:
            await self._client.sign_in(password=password)
        except errors.PasswordHashInvalidError:
            raise UserError("that password is not right") from None
        await self._signed_in()

    async def _signed_in(self) -> None:
        from telethon import events
        from telethon.tl import types

        me = await self._client.get_me()
        self.me_id = me.id
        client = self._client
        client.add_event_handler(self._on_new_message, events.NewMessage())
        client.add_event_handler(self._on_edited, events.MessageEdited())
        client.add_event_handler(self._on_deleted, events.MessageDeleted())
        client.add_event_handler(self._on_chat_action, events.ChatAction())
        # Joining or leaving a channel (or its deletion) comes as a bare updateChannel, which
        # ChatAction does not cover.
        client.add_event_handler(self._on_channel_update, events.Raw(types=types.UpdateChannel))
        self.online = True
        log.info("signed in to Telegram as %s", me.id)
        loop = asyncio.get_running_loop()
        # first sync after signing in, catch-up on every later start
        self._sync_task = loop.create_task(self._sync_with_status())
        if self._supervisor is None:
            self._supervisor = loop.create_task(self._supervise())

    # -- staying connected -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Telethon reconnects by itself for a few tries (auto_reconnect); meanwhile the status
        says so and the router keeps messages queued. Once Telethon gives up, its ``disconnected``
        future resolves and this connects again, for as long as it takes."""
        while not self._stopping:
            lost = asyncio.ensure_future(self._client.disconnected)
            while not lost.done():
                await asyncio.wait({lost}, timeout=LINK_POLL_S)
                if not lost.done():
                    await self._link_is(_transport_up(self._client))
            reason = lost.exception() if not lost.cancelled() else None
            if self._stopping:
                return
            self.online = False
            self._status(f"Telegram: offline ({reason or 'disconnected'}); reconnecting…",
                         "error")
            await self._reconnect()

    async def _reconnect(self) -> None:
        # Telethon's update loop of the lost connection still waits on its queue: a clean
        # disconnect ends it (and saves the update state) before a new connect starts another.
        with contextlib.suppress(Exception):
            await self._client.disconnect()
        attempt = 0
        while not self._stopping:
            await asyncio.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
            attempt += 1
            try:
                await self._client.connect()
            except (OSError, ConnectionError) as exc:
                log.info("Telegram reconnection attempt %d failed: %s", attempt, exc)
                continue
            return

    async def _link_is(self, up: bool) -> None:
        if up == self.online:
            return
        self.online = up
        if not up:
            self._status("Telegram: reconnecting…", "error")
            return
        self._status("Telegram: online")
        # Updates pushed while the link was down are lost; getDifference fetches them now
        # instead of when the next pushed update reveals the gap.
        await self._client.catch_up()
        for dialog_id in list(self._unacknowledged):
            await self._mark_read(dialog_id)

    async def _sync_with_status(self) -> int:
        def progress(done: int, total: int) -> None:
            self._emit(SyncProgress(done, total))
            self._status(f"Telegram: syncing {done}/{total}")

        try:
            stored = await self._sync(progress)
        except (ConnectionError, OSError) as exc:
            self._status(f"Telegram: sync interrupted ({exc})", "error")
            return 0
        self._status("Telegram: online")
        return stored

    def wait_synced(self) -> concurrent.futures.Future:
        """Resolves once the sync that follows sign-in (or start-up) has finished."""
        return self.submit(self._wait_synced())

    async def _wait_synced(self) -> int:
        return await self._sync_task if self._sync_task is not None else 0

    # -- sync ------------------------------------------------------------------------------------

    def sync(self, progress: Callable[[int, int], None] | None = None
             ) -> concurrent.futures.Future:
        return self.submit(self._sync(progress))

    async def _sync(self, progress: Callable[[int, int], None] | None) -> int:
        """Dialogs, and for each the last ``seed_messages`` (first time) or what was missed."""
        assert self._store is not None
        dialogs = [dialog async for dialog in self._client.iter_dialogs()]
        stored = 0
        for done, dialog in enumerate(dialogs, 1):
            stored += await self._sync_dialog(dialog.entity)
            if progress is not None:
                progress(done, len(dialogs))
        return stored

    async def _sync_dialog(self, entity: Any) -> int:
        assert self._store is not None
        info = dialog_info(entity)
        if _is_gone(entity):
            # Telegram still lists a group one was removed from; it is not a conversation
            self._forget(info.id)
            return 0
        self._store.dialogs.upsert(info.id, info.kind, info.title, username=info.username,
                                   phone=info.phone)
        newest = self._store.messages.newest_telegram_id(info.id)
        limit = self._settings.seed_messages if newest is None else CATCH_UP_LIMIT
        stored = 0
        if limit:
            messages = await self._client.get_messages(entity, limit=limit, min_id=newest or 0)
            for message in reversed(list(messages)):
                stored += await self._store_message(message, info.id, info.kind,
                                                    announce=False)
        self._emit(DialogChanged(self._store.dialogs.get(info.id)))
        return stored

    def _forget(self, dialog_id: int) -> None:
        """Telegram says the dialog is gone for us: its row goes, messages and outbox rows
        cascade with it."""
        assert self._store is not None
        with self._store.transaction():
            removed = self._store.dialogs.delete_group_or_channel(dialog_id)
        if removed:
            self._emit(DialogRemoved(dialog_id))

    # -- live updates ----------------------------------------------------------------------------

    async def _on_new_message(self, event: Any) -> None:
        chat = await event.get_chat()
        info = dialog_info(chat)
        assert self._store is not None
        new_dialog = self._store.dialogs.find(info.id) is None
        self._store.dialogs.ensure(info.id, info.kind, info.title)
        async with self._send_lock:  # a message we are sending gets its id before we look
            await self._store_message(event.message, info.id, info.kind, announce=True)
        if new_dialog:
            self._emit(DialogChanged(self._store.dialogs.get(info.id)))

    async def _on_chat_action(self, event: Any) -> None:
        about_me = self.me_id in (event.user_ids or ())
        if about_me and (event.user_kicked or event.user_left):
            self._forget(event.chat_id)
        elif event.new_title or event.created or (
                about_me and (event.user_added or event.user_joined)):
            await self._dialog_updated(await event.get_chat())

    async def _on_channel_update(self, update: Any) -> None:
        from telethon import errors, utils
        from telethon.tl import types

        peer = types.PeerChannel(update.channel_id)
        try:
            entity = await self._client.get_entity(peer)
        except (ValueError, errors.ChannelPrivateError, errors.ChannelInvalidError):
            self._forget(utils.get_peer_id(peer))  # deleted, or private and we are out
            return
        await self._dialog_updated(entity)

    async def _dialog_updated(self, entity: Any) -> None:
        """A group or channel appeared, changed or went; only a real change is announced."""
        assert self._store is not None
        info = dialog_info(entity)
        known = self._store.dialogs.find(info.id)
        if known is None or _is_gone(entity):
            await self._sync_dialog(entity)  # a new one comes with its recent history
            return
        updated = self._store.dialogs.upsert(info.id, info.kind, info.title,
                                             username=info.username, phone=info.phone)
        if updated != known:
            self._emit(DialogChanged(updated))

    async def _on_edited(self, event: Any) -> None:
        assert self._store is not None
        found = self._store.messages.find_by_telegram_id(event.chat_id, event.message.id)
        if found is not None:
            edited = self._store.messages.edit(found.id, event.message.message or "",
                                               _ms(event.message.edit_date))
            self._emit(MessageChanged(edited))

    async def _on_deleted(self, event: Any) -> None:
        assert self._store is not None
        for tg_id in event.deleted_ids:
            if event.chat_id is not None:  # channels and supergroups have their own ids
                found = [self._store.messages.find_by_telegram_id(event.chat_id, tg_id)]
            else:
                found = self._store.messages.find_by_account_message_id(tg_id)
            for message in found:
                if message is not None and not message.deleted:
                    self._emit(MessageChanged(self._store.messages.mark_deleted(message.id)))

    async def _store_message(self, message: Any, dialog_id: int, kind: str, *,
                             announce: bool) -> int:
        assert self._store is not None
        if is_service_message(message):
            return 0  # "created the group" and the like: not a conversation message
        if self._store.messages.find_by_telegram_id(dialog_id, message.id) is not None:
            return 0
        sender = await message.get_sender() if message.sender_id else None
        sender_name = dialog_info(sender).title if sender is not None else ""
        file_id = await self._store_media(message, kind)
        stored, new = self._store.messages.receive(
            incoming_message(message, dialog_id, sender_name, file_id))
        if new and announce:
            self._emit(MessageStored(stored))
        return int(new)

    async def _store_media(self, message: Any, kind: str) -> int | None:
        described = media_description(message)
        if described is None:
            return None
        name, size, mime = described
        assert self._store is not None
        if not downloads_automatically(self._files, kind, size or 0):
            return self._store.files.create(name, size, mime=mime, state="pending").id
        downloads = self._downloads
        partial = partial_path(downloads, f"tg:{message.chat_id}:{message.id}")
        partial.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            await transfer.download_media(self._client, message, partial)
            final = move_into_place(partial, downloads, name)
        except (OSError, ConnectionError) as exc:
            log.warning("could not download %s: %s", name, exc)
            return self._store.files.create(name, size, mime=mime, state="failed").id
        return self._store.files.create(name, final.stat().st_size, mime=mime,
                                        path=str(final.resolve()), state="complete").id

    # -- transport -------------------------------------------------------------------------------

    def can_reach(self, dialog: Dialog) -> bool:
        return self.online

    def submit_message(self, entry: OutboxEntry, message: Message) -> None:
        self.submit(self._send(message.id))

    def submit_change(self, message_id: int, version: int) -> None:
        """Send a claimed edit/delete notice (net/telegram/changes.py)."""
        self.submit(self._send_change(message_id, version))

    async def _send_change(self, message_id: int, version: int) -> None:
        from chimera_tk.net.telegram.changes import send_change

        assert self._store is not None and self._send_lock is not None
        async with self._send_lock:  # after the message itself, and its id is stored
            await send_change(self._client, self._store, self._emit, message_id, version)

    async def _send(self, message_id: int) -> None:
        from telethon import errors

        assert self._store is not None and self._send_lock is not None
        async with self._send_lock:
            message = self._store.messages.get(message_id)
            if message.state != "sending":
                return
            try:
                entity = await self._client.get_input_entity(message.dialog_id)
                if message.file_id is not None:
                    file = self._store.files.get(message.file_id)
                    sent = await transfer.send_file(
                        self._client, entity, Path(file.path or ""),
                        caption=message.text or None,
                        progress=_Progress(self._emit, message_id, file.id, outgoing=True))
                else:
                    sent = await self._client.send_message(entity, message.text)
            except errors.FloodWaitError as exc:
                # Above flood_sleep_threshold Telethon raises instead of sleeping: the outbox
                # keeps the message and the router's tick hands it back once the wait is over.
                self._flood_waiting = True
                self._store.outbox.retry_later(message_id, f"flood wait {exc.seconds} s",
                                               utc_now_ms() + exc.seconds * 1000)
                self._status(f"Telegram: flood wait {exc.seconds} s", "error")
            except (ConnectionError, OSError) as exc:
                self._store.outbox.retry_later(message_id, str(exc), utc_now_ms() + 5000)
            except (errors.RPCError, ValueError) as exc:
                self._store.outbox.give_up(message_id, f"Telegram refused it: {exc}")
            else:
                self._store.outbox.complete(message_id, delivered=False, tg_msg_id=sent.id)
                if self._flood_waiting:
                    self._flood_waiting = False
                    self._status("Telegram: online")
            self._emit(MessageChanged(self._store.messages.get(message_id)))

    def download_file(self, message_id: int) -> concurrent.futures.Future:
        """Fetch the media of a message that was not downloaded on arrival (channels)."""
        return self.submit(self._download_file(message_id))

    async def _download_file(self, message_id: int) -> None:
        assert self._store is not None
        message = self._store.messages.get(message_id)
        if message.file_id is None or message.tg_msg_id is None:
            raise UserError("this message has no Telegram file")
        file = self._store.files.get(message.file_id)
        original = await self._client.get_messages(message.dialog_id, ids=message.tg_msg_id)
        if original is None or original.media is None:
            raise UserError(f"{file.name} is no longer available on Telegram")
        downloads = self._downloads
        partial = partial_path(downloads, message.uid)
        partial.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._store.files.set_state(file.id, "transferring")
        try:
            await transfer.download_media(
                self._client, original, partial,
                progress=_Progress(self._emit, message_id, file.id, outgoing=False))
            final = move_into_place(partial, downloads, file.name)
        except (OSError, ConnectionError) as exc:
            self._store.files.set_state(file.id, "failed")
            self._emit(MessageChanged(self._store.messages.get(message_id)))
            raise UserError(f"could not download {file.name}: {exc}") from None
        self._store.files.set_state(file.id, "complete", path=str(final.resolve()),
                                    bytes_done=final.stat().st_size)
        self._emit(MessageChanged(self._store.messages.get(message_id)))

    # -- history on demand ------------------------------------------------------------------------

    def fetch_older(self, dialog_id: int, before_tg_id: int) -> concurrent.futures.Future:
        """Store the page of Telegram messages before ``before_tg_id``; OlderMessagesFetched
        reports it (also on failure, so the view stops waiting)."""
        return self.submit(self._fetch_older(dialog_id, before_tg_id))

    async def _fetch_older(self, dialog_id: int, before_tg_id: int) -> int:
        try:
            stored, exhausted = await self._store_older(dialog_id, before_tg_id)
        except Exception as exc:
            log.warning("older messages of %s not fetched: %s", dialog_id, exc)
            self._emit(OlderMessagesFetched(dialog_id, before_tg_id, 0, True,
                                            f"older messages could not be loaded: {exc}"))
            return 0
        self._emit(OlderMessagesFetched(dialog_id, before_tg_id, stored, exhausted))
        return stored

    async def _store_older(self, dialog_id: int, before_tg_id: int) -> tuple[int, bool]:
        assert self._store is not None
        dialog = self._store.dialogs.get(dialog_id)
        entity = await self._client.get_input_entity(dialog_id)
        page = await self._client.get_messages(entity, limit=OLDER_PAGE, offset_id=before_tg_id)
        anchor = self._store.messages.find_by_telegram_id(dialog_id, before_tg_id)
        # Telegram dates have one-second resolution and our pages are ordered by (time, row id),
        # so a message fetched now would sort after an already stored one of the same second.
        # Within a second Telegram's id order is the truth: such messages are placed a few ms
        # earlier, which keeps the chat in order and is invisible at minute resolution.
        bound = anchor.sent_at if anchor is not None else None
        batch = []
        for message in page:  # newest first
            if is_service_message(message):
                continue
            if self._store.messages.find_by_telegram_id(dialog_id, message.id) is not None:
                continue
            sender = await message.get_sender() if message.sender_id else None
            sender_name = dialog_info(sender).title if sender is not None else ""
            file_id = await self._store_media(message, dialog.kind)
            incoming = incoming_message(message, dialog_id, sender_name, file_id)
            if bound is not None and incoming.sent_at >= bound:
                incoming = dataclasses.replace(incoming, sent_at=bound - 1)
            bound = incoming.sent_at
            batch.append(incoming)
        stored = self._store.messages.receive_many(reversed(batch))
        return stored, len(page) < OLDER_PAGE

    def fetch_sponsored(self, dialog_id: int) -> concurrent.futures.Future:
        """Telegram's sponsored messages for a broadcast channel, reported as an event only:
        they are never stored."""
        return self.submit(self._fetch_sponsored(dialog_id))

    async def _fetch_sponsored(self, dialog_id: int) -> int:
        from telethon.tl import functions, types

        entity = await self._client.get_input_entity(dialog_id)
        result = await self._client(functions.messages.GetSponsoredMessagesRequest(peer=entity))
        if not isinstance(result, types.messages.SponsoredMessages):
            return 0
        ads = tuple(SponsoredAd(ad.random_id, ad.title or "", ad.message or "", ad.url or "",
                                ad.button_text or "") for ad in result.messages)
        self._emit(SponsoredMessagesFetched(dialog_id, ads))
        return len(ads)

    def report_sponsored_view(self, random_id: bytes) -> concurrent.futures.Future:
        """Telegram's terms ask clients to report each sponsored message they displayed."""
        return self.submit(self._report_sponsored_view(random_id))

    async def _report_sponsored_view(self, random_id: bytes) -> None:
        from telethon.tl import functions

        await self._client(functions.messages.ViewSponsoredMessageRequest(random_id=random_id))

    # -- people and read state -------------------------------------------------------------------

    def find_by_phone(self, phone: str, first_name: str = "") -> concurrent.futures.Future:
        """Resolves to the dialog id of the person with that number, or raises UserError."""
        return self.submit(self._find_by_phone(phone, first_name))

    async def _find_by_phone(self, phone: str, first_name: str) -> int:
        from telethon.tl import functions, types

        contact = types.InputPhoneContact(client_id=int.from_bytes(os.urandom(7), "big"),
                                          phone=phone, first_name=first_name or phone,
                                          last_name="")
        result = await self._client(functions.contacts.ImportContactsRequest([contact]))
        if not result.users:
            raise UserError(f"{phone} is not on Telegram")
        info = dialog_info(result.users[0])
        assert self._store is not None
        self._store.dialogs.upsert(info.id, info.kind, info.title, username=info.username,
                                   phone=info.phone)
        self._emit(DialogChanged(self._store.dialogs.get(info.id)))
        return info.id

    def mark_read(self, dialog_id: int) -> concurrent.futures.Future | None:
        if self.me_id is None or self._stopping:
            return None
        return self.submit(self._mark_read(dialog_id))

    async def _mark_read(self, dialog_id: int) -> None:
        if not self.online:
            self._unacknowledged.add(dialog_id)
            return
        self._unacknowledged.discard(dialog_id)
        try:
            # no max_id: everything up to the newest message; channels get channels.readHistory
            await self._client.send_read_acknowledge(dialog_id)
        except (ConnectionError, OSError):
            self._unacknowledged.add(dialog_id)
        except Exception as exc:  # e.g. a LAN-only person Telegram does not know
            log.debug("read state of %s not sent to Telegram: %s", dialog_id, exc)

    def _status(self, text: str, level: str = "info") -> None:
        self._emit(StatusChanged("telegram", text, level))


class _Progress:
    """Telethon's progress_callback as TransferProgress events, ~10 a second and always the
    last one (so a view sees 100 %)."""

    def __init__(self, emit: Callable[[object], None], message_id: int, file_id: int, *,
                 outgoing: bool) -> None:
        self._emit = emit
        self._message_id = message_id
        self._file_id = file_id
        self._outgoing = outgoing
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        self._emit(TransferProgress(self._message_id, self._file_id, done, total,
                                    self._outgoing))


class TelegramTransport:
    """The router's view of the worker (``submit`` there is the worker's ``submit_message``)."""

    name = "telegram"

    def __init__(self, worker: TelegramWorker) -> None:
        self._worker = worker

    def can_reach(self, dialog: Dialog) -> bool:
        return self._worker.can_reach(dialog)

    def submit(self, entry: OutboxEntry, message: Message) -> None:
        self._worker.submit_message(entry, message)

    def submit_change(self, change: Any, message: Message) -> None:
        self._worker.submit_change(message.id, change.version)


def _default_client(session: str, api_id: int, api_hash: str) -> Any:
    from telethon import TelegramClient

    return TelegramClient(session, api_id, api_hash, flood_sleep_threshold=10,
                          device_model="Chimera", app_version="0.1")


def _is_gone(entity: Any) -> bool:
    """Kicked (…Forbidden), left, or a basic group that became a supergroup (deactivated)."""
    from telethon.tl import types

    if isinstance(entity, types.ChatForbidden | types.ChannelForbidden):
        return True
    return not isinstance(entity, types.User) and bool(
        getattr(entity, "left", False) or getattr(entity, "deactivated", False))


def _transport_up(client: Any) -> bool:
    # Telethon has no public "reconnecting" state: is_connected() stays true during its
    # auto-reconnect. Its keep-alive loop asks the sender this same question.
    return bool(client.is_connected() and client._sender._transport_connected())


def _make_private(session: Path) -> None:
    for candidate in (session, session.with_name(session.name + ".session")):
        if candidate.exists():
            os.chmod(candidate, 0o600)


def _ms(moment: Any) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
