"""Telethon objects to Chimera's records, in one place.

Dialog ids are Telethon's marked peer ids (users positive, basic groups negative, channels and
supergroups -100…), so a conversation with a person has the same id on both routes: their
Telegram user id, which is also the id in their LAN certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

from telethon import utils
from telethon.tl import types

from chimera_tk.store.messages import telegram_uid
from chimera_tk.store.records import IncomingMessage


@dataclass(frozen=True, slots=True)
class DialogInfo:
    id: int
    kind: str
    title: str
    username: str | None
    phone: str | None


def dialog_kind(entity: object) -> str:
    if isinstance(entity, types.User):
        return "user"
    if isinstance(entity, types.Chat | types.ChatForbidden):
        return "group"
    if isinstance(entity, types.Channel | types.ChannelForbidden):
        return "supergroup" if getattr(entity, "megagroup", False) else "channel"
    raise ValueError(f"not a dialog entity: {type(entity).__name__}")


def display_name(entity: object) -> str:
    if isinstance(entity, types.User):
        name = " ".join(part for part in (entity.first_name, entity.last_name) if part)
        return name or entity.username or (f"+{entity.phone}" if entity.phone else str(entity.id))
    return getattr(entity, "title", "") or str(getattr(entity, "id", ""))


def dialog_info(entity: object) -> DialogInfo:
    return DialogInfo(
        id=utils.get_peer_id(entity), kind=dialog_kind(entity), title=display_name(entity),
        username=getattr(entity, "username", None),
        phone=(f"+{entity.phone}" if isinstance(entity, types.User) and entity.phone else None))


def is_service_message(message: object) -> bool:
    return isinstance(message, types.MessageService)


def incoming_message(message: object, dialog_id: int, sender_name: str = "",
                     file_id: int | None = None) -> IncomingMessage:
    """A Telethon ``Message`` as the record our store keeps (text, time, direction, sender)."""
    return IncomingMessage(
        dialog_id=dialog_id,
        uid=telegram_uid(dialog_id, message.id),
        sender_id=message.sender_id,
        sender_name=sender_name,
        text=message.message or "",
        sent_at=int(message.date.timestamp() * 1000),
        transport="telegram",
        tg_msg_id=message.id,
        outgoing=bool(message.out),
        file_id=file_id,
    )


def media_description(message: object) -> tuple[str, int, str] | None:
    """(name, size, mime type) of a message's document or photo, or None when it has none."""
    file = getattr(message, "file", None)
    if file is None or getattr(message, "media", None) is None:
        return None
    if isinstance(message.media, types.MessageMediaWebPage):
        return None
    name = file.name or f"{'photo' if message.photo else 'file'}-{message.id}{file.ext or ''}"
    return name, int(file.size or 0), file.mime_type or "application/octet-stream"
