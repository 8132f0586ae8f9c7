"""Editing and deleting messages after they were written, and telling the other side.

Rules (issue 6, DESIGN.md "Routing"):
- Only the user's own messages can be edited, or deleted for everyone. Anyone's message can be
  deleted on this machine only ("for me"); the chat then never shows it.
- A message that has not left (queued, or failed before any attempt reached anyone) changes or
  disappears locally: it goes out with the new text, or never. No notice is needed.
- A message that left, or may have (in flight, or an earlier attempt's ACK was lost), gets a
  notice in ``message_changes``. The notice goes the way the original went: a LAN message's
  change waits for the peer to be back on the LAN (never Telegram: the peer's copy came over the
  LAN), a Telegram message's change goes through Telegram (a message Telegram never took has no
  Telegram id: nothing to tell). A notice never overtakes its original.
- Deleted rows stay as tombstones with no text (and no search index entry): a repeat of the same
  message is still recognised. Whether a deletion made by the author elsewhere is shown as
  "This message was deleted." or hidden is ``ui.received_deletes``; see :func:`hidden_in_chat`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from chimera_tk.errors import UserError
from chimera_tk.events import MessageChanged
from chimera_tk.router import MAX_TEXT_CHARS
from chimera_tk.store import Store
from chimera_tk.store.changes import ChangeEntry
from chimera_tk.store.records import Dialog, Message

log = logging.getLogger(__name__)


class ChangeTransport(Protocol):
    """A transport that can carry edit and delete notices (``submit_change`` must not block)."""

    name: str

    def can_reach(self, dialog: Dialog) -> bool: ...

    def submit_change(self, change: ChangeEntry, message: Message) -> None: ...


def can_edit(message: Message) -> bool:
    return message.outgoing and not message.deleted


def hidden_in_chat(message: Message, received_deletes: str) -> bool:
    """Whether the chat leaves a deleted message out entirely (else it says it was deleted)."""
    return message.deleted and (message.deleted_here or received_deletes != "mark")


class MessageEditor:
    """Edits and deletes for the views, ``chimera`` commands and tests; sends due notices."""

    def __init__(self, store: Store, emit: Callable[[object], None],
                 transport: Callable[[str], ChangeTransport | None] = lambda _name: None) -> None:
        self._store = store
        self._emit = emit
        self._transport = transport

    def recover(self) -> int:
        """Run once at start: notices caught in flight by a crash go out again."""
        return self._store.changes.recover_interrupted()

    def latest_editable(self, dialog_id: int) -> Message | None:
        return self._store.messages.latest_own(dialog_id)

    def edit(self, message_id: int, text: str) -> Message:
        """Give one of the user's messages a new text; raises UserError when it cannot be."""
        message = self._store.messages.get(message_id)
        if not can_edit(message):
            raise UserError("only your own messages can be edited" if not message.outgoing
                            else "a deleted message cannot be edited")
        text = text.strip("\n")
        if not text.strip() and message.file_id is None:
            raise UserError("a message cannot be edited to nothing; delete it instead")
        if len(text) > MAX_TEXT_CHARS:
            raise UserError(f"a message may hold at most {MAX_TEXT_CHARS:,} characters")
        if text == message.text:
            return message
        store = self._store
        with store.transaction():
            route = self._where_it_may_be(message)
            if route is False:
                edited = store.messages.rewrite(message_id, text)
            else:
                edited = store.messages.edit(message_id, text)
                store.changes.record(message_id, "edit", route or None)
        self._emit(MessageChanged(edited))
        self.dispatch_due()
        return edited

    def delete(self, message_id: int, *, for_everyone: bool) -> Message:
        """Delete a message here, and for everyone when it is the user's own and they ask so."""
        message = self._store.messages.get(message_id)
        if for_everyone and not message.outgoing:
            raise UserError("only your own messages can be deleted for everyone")
        store = self._store
        with store.transaction():
            route = self._where_it_may_be(message) if message.outgoing else False
            if message.outgoing:
                store.outbox.withdraw(message_id)  # not yet left: now it never will
            deleted = store.messages.mark_deleted(message_id, here=True)
            if for_everyone and route is not False:
                store.changes.record(message_id, "delete", route or None)
            else:
                store.changes.drop(message_id)  # an edit notice no longer matters
        self._emit(MessageChanged(deleted))
        self.dispatch_due()
        return deleted

    def _where_it_may_be(self, message: Message) -> str | bool:
        """The route of a message that left or may have (True: it did, route not known yet);
        False when it certainly never left this machine."""
        if message.state in ("sent", "delivered"):
            return message.transport or True
        try:
            entry = self._store.outbox.get(message.id)
        except KeyError:
            return message.state == "sending"
        if message.state == "sending" or entry.attempts > 0:
            return entry.route or True
        return False

    # -- sending notices -------------------------------------------------------------------------

    def dispatch_due(self) -> int:
        """Hand every due notice to the transport of its original, when it can reach the chat."""
        handed = 0
        for change in self._store.changes.due():
            message = self._store.messages.get(change.message_id)
            route = message.transport or change.route
            if route is None or (route == "telegram" and message.tg_msg_id is None):
                log.info("change of message %s dropped: it never reached anyone", message.id)
                self._store.changes.drop(change.message_id)
                continue
            if message.state == "queued":  # deleted while in flight, then back in the queue
                self._store.outbox.withdraw(message.id)
            transport = self._transport(route)
            if transport is None or not hasattr(transport, "submit_change"):
                continue
            if not transport.can_reach(self._store.dialogs.get(message.dialog_id)):
                continue
            claimed = self._store.changes.claim(change.message_id)
            transport.submit_change(claimed, message)
            handed += 1
        return handed
