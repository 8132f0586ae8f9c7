"""Decides and records the path of every outgoing message.

Sending writes the message and its outbox row in one transaction (state ``queued``) and emits an
event; the durable outbox is what makes the decision survive a crash. Transports (LAN, Telegram)
register here; when none can reach the recipient the message simply waits in the outbox.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from chimera_tk.errors import UserError
from chimera_tk.events import MessageChanged, MessageStored
from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message, OutboxEntry

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 1_000_000


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Transport(Protocol):
    """A way out of this machine. ``submit`` must not block: it hands work to the worker."""

    name: str  # "lan" or "telegram"

    def can_reach(self, dialog: Dialog) -> bool: ...

    def submit(self, entry: OutboxEntry, message: Message) -> None: ...


def choose_route(dialog: Dialog, reachable: dict[str, bool], *,
                 lan_only: bool = False) -> str | None:
    """LAN when the recipient is a verified peer now, else Telegram unless held to the LAN.

    ``None`` means: keep the message queued until a transport can reach the recipient.
    """
    if reachable.get("lan"):
        return "lan"
    if not (dialog.lan_only or lan_only) and reachable.get("telegram"):
        return "telegram"
    return None


class Router:
    def __init__(self, store: Store, emit: Callable[[object], None]) -> None:
        self._store = store
        self._emit = emit
        self._transports: dict[str, Transport] = {}
        # Outgoing messages the window has been told about. Others in the outbox were queued by
        # another process (``chimera send`` while the app runs) and are announced when first seen.
        self._announced: set[int] = set()
        # Run after each dispatch of the outbox (edit and delete notices go out after the
        # messages they change).
        self.after_dispatch: list[Callable[[], object]] = []

    def register(self, transport: Transport) -> None:
        self._transports[transport.name] = transport

    def recover(self) -> int:
        """Run once at start: messages caught mid-send by a crash go back to the queue."""
        ids = self._store.outbox.recover_interrupted()
        if ids:
            log.info("requeued %d message(s) interrupted by the last shutdown", len(ids))
        return len(ids)

    def send_text(self, dialog_id: int, text: str, *, lan_only: bool = False) -> Message:
        text = text.strip("\n")
        if not text.strip():
            raise UserError("an empty message cannot be sent")
        if len(text) > MAX_TEXT_CHARS:
            raise UserError(f"a message may hold at most {MAX_TEXT_CHARS:,} characters")
        with self._store.transaction():
            message = self._queue(dialog_id, text, None, lan_only)
        return self._announce(message)

    def send_file(self, dialog_id: int, path: Path, *, caption: str = "",
                  sha256: str | None = None, lan_only: bool = False) -> Message:
        """Queue ``path`` for sending. Hashing a big file takes a while: call off the Tk thread."""
        path = path.expanduser().resolve()
        if not path.is_file():
            raise UserError(f"{path} is not a file that can be sent")
        if len(caption) > MAX_TEXT_CHARS:
            raise UserError(f"a caption may hold at most {MAX_TEXT_CHARS:,} characters")
        size = path.stat().st_size
        digest = sha256 or file_sha256(path)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with self._store.transaction():
            file = self._store.files.create(path.name, size, sha256=digest, mime=mime,
                                            path=str(path), state="complete")
            message = self._queue(dialog_id, caption, file.id, lan_only)
        return self._announce(message)

    def _queue(self, dialog_id: int, text: str, file_id: int | None, lan_only: bool) -> Message:
        """Message + outbox row; the caller holds the transaction that makes them one."""
        message = self._store.messages.add_outgoing(dialog_id, text, file_id=file_id)
        self._store.outbox.enqueue(message.id, lan_only=lan_only)
        return message

    def _announce(self, message: Message) -> Message:
        self._announced.add(message.id)
        self._emit(MessageStored(message))
        self.dispatch_due()
        return message

    def dispatch_due(self) -> int:
        """Hand every due message to a transport that can reach its recipient now."""
        due = self._store.outbox.due()
        for entry in due:
            if entry.message_id not in self._announced:
                self._announced.add(entry.message_id)
                message = self._store.messages.get(entry.message_id)
                if message is not None:
                    self._emit(MessageStored(message))  # a view that shows it already redraws
        if not self._transports:
            return 0
        handed = 0
        for entry in due:
            dialog = self._store.dialogs.get(entry.dialog_id)
            reachable = {name: t.can_reach(dialog) for name, t in self._transports.items()}
            route = choose_route(dialog, reachable, lan_only=bool(entry.lan_only))
            if route is None:
                continue
            self._store.outbox.claim(entry.message_id, route)
            message = self._store.messages.get(entry.message_id)
            self._emit(MessageChanged(message))
            self._transports[route].submit(self._store.outbox.get(entry.message_id), message)
            handed += 1
        for then in self.after_dispatch:
            then()
        return handed

    def transport(self, name: str) -> Transport | None:
        """The registered transport called ``name`` ("lan", "telegram"), if any."""
        return self._transports.get(name)
