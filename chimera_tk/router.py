"""Decides and records the path of every outgoing message.

Sending writes the message and its outbox row in one transaction (state ``queued``) and emits an
event; the durable outbox is what makes the decision survive a crash. Transports (LAN, Telegram)
register here; when none can reach the recipient the message simply waits in the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from chimera_tk.errors import UserError
from chimera_tk.events import MessageChanged, MessageStored
from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message, OutboxEntry

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 1_000_000


class Transport(Protocol):
    """A way out of this machine. ``submit`` must not block: it hands work to the worker."""

    name: str  # "lan" or "telegram"

    def can_reach(self, dialog: Dialog) -> bool: ...

    def submit(self, entry: OutboxEntry, message: Message) -> None: ...


def choose_route(dialog: Dialog, reachable: dict[str, bool]) -> str | None:
    """LAN when the recipient is a verified peer now, else Telegram unless the dialog is LAN only.

    ``None`` means: keep the message queued until a transport can reach the recipient.
    """
    if reachable.get("lan"):
        return "lan"
    if not dialog.lan_only and reachable.get("telegram"):
        return "telegram"
    return None


class Router:
    def __init__(self, store: Store, emit: Callable[[object], None]) -> None:
        self._store = store
        self._emit = emit
        self._transports: dict[str, Transport] = {}

    def register(self, transport: Transport) -> None:
        self._transports[transport.name] = transport

    def recover(self) -> int:
        """Run once at start: messages caught mid-send by a crash go back to the queue."""
        ids = self._store.outbox.recover_interrupted()
        if ids:
            log.info("requeued %d message(s) interrupted by the last shutdown", len(ids))
        return len(ids)

    def send_text(self, dialog_id: int, text: str) -> Message:
        text = text.strip("\n")
        if not text.strip():
            raise UserError("an empty message cannot be sent")
        if len(text) > MAX_TEXT_CHARS:
            raise UserError(f"a message may hold at most {MAX_TEXT_CHARS:,} characters")
        with self._store.transaction():
            message = self._store.messages.add_outgoing(dialog_id, text)
            self._store.outbox.enqueue(message.id)
        self._emit(MessageStored(message))
        self.dispatch_due()
        return message

    def dispatch_due(self) -> int:
        """Hand every due message to a transport that can reach its recipient now."""
        if not self._transports:
            return 0
        handed = 0
        for entry in self._store.outbox.due():
            dialog = self._store.dialogs.get(entry.dialog_id)
            reachable = {name: t.can_reach(dialog) for name, t in self._transports.items()}
            route = choose_route(dialog, reachable)
            if route is None:
                continue
            self._store.outbox.claim(entry.message_id, route)
            message = self._store.messages.get(entry.message_id)
            self._emit(MessageChanged(message))
            self._transports[route].submit(self._store.outbox.get(entry.message_id), message)
            handed += 1
        return handed
