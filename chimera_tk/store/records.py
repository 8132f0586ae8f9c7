"""Immutable records that the repositories return and events carry across threads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

DIALOG_KINDS = ("user", "group", "channel", "supergroup")
TRANSPORTS = ("lan", "telegram")


def utc_now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Dialog:
    id: int
    kind: str
    title: str
    username: str | None = None
    phone: str | None = None
    unread_count: int = 0
    last_activity: int = 0
    lan_only: bool = False
    muted: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    dialog_id: int
    uid: str
    tg_msg_id: int | None
    sender_id: int | None
    sender_name: str
    outgoing: bool
    text: str
    sent_at: int
    edited_at: int | None
    transport: str | None
    state: str
    deleted: bool
    reply_to: int | None
    file_id: int | None
    deleted_here: bool = False  # deleted by the user on this machine, not by its author elsewhere

    @property
    def page_key(self) -> PageKey:
        return PageKey(self.sent_at, self.id)


class PageKey(NamedTuple):
    """Position of a message in its chat; pages are fetched strictly before or after one."""

    sent_at: int
    id: int


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message that arrived from a transport, before it has a local id."""

    dialog_id: int
    uid: str
    sender_id: int | None
    sender_name: str
    text: str
    sent_at: int
    transport: str
    tg_msg_id: int | None = None
    outgoing: bool = False
    reply_to: int | None = None
    file_id: int | None = None


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: int
    name: str
    size: int
    sha256: str | None
    mime: str | None
    path: str | None
    state: str
    bytes_done: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    message_id: int
    dialog_id: int
    route: str | None
    attempts: int
    next_attempt_at: int
    last_error: str | None
    lan_only: bool = False
