"""EDIT and DELETE over the peer link: what a received notice may change, and sending ours.

Receiving: a peer may change only messages it wrote to us, as its certificate says (the
connection's ``peer_id``), never as the frame says. A notice for a message the peer did not write
is a protocol violation: the caller counts it and drops the connection. A notice for a message we
do not have (never arrived, or its chat is gone), one already deleted, or an edit older than the
stored one changes nothing and is still acknowledged, so the sender stops repeating it.

ACK semantics: the receiver sends ACK(uid) only after the change is committed (or found to be
unnecessary); the sender completes its ``message_changes`` row only on that ACK. No ACK within
the timeout means the notice goes out again when the peer is next verified.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chimera_tk.errors import RemoteProtocolError
from chimera_tk.events import PeerUnavailable
from chimera_tk.net.peer.channel import ChannelClosed
from chimera_tk.net.peer.protocol import Delete, Edit
from chimera_tk.store import Store
from chimera_tk.store.records import Message, utc_now_ms

if TYPE_CHECKING:
    from chimera_tk.net.peer.worker import PeerWorker

log = logging.getLogger(__name__)


def apply_peer_change(store: Store, peer_id: int, change: Edit | Delete) -> Message | None:
    """Apply a notice from ``peer_id``; the changed message, or None when nothing changed.
    Raises RemoteProtocolError when the message is not one ``peer_id`` wrote to us."""
    message = store.messages.find_by_uid(change.uid)
    if message is None:
        return None
    if message.outgoing or message.sender_id != peer_id or message.dialog_id != peer_id:
        raise RemoteProtocolError(
            f"{type(change).__name__.upper()} for message {change.uid}, which user {peer_id} "
            "did not write")
    if message.deleted:
        return None
    if isinstance(change, Delete):
        return store.messages.mark_deleted(message.id)
    edited_at = min(change.edited_at, utc_now_ms())  # a clock ahead must not pin future edits
    edited = store.messages.edit(message.id, change.text, edited_at)
    return edited if edited != message else None


def send_change(worker: PeerWorker, store: Store, peer_id: int, message_id: int,
                version: int) -> None:
    """Send one claimed notice to ``peer_id`` and record the outcome (sender thread)."""
    change = store.changes.find(message_id)  # first: a newer edit then only adds a version
    if change is None or change.version < version:
        return  # completed meanwhile by an earlier copy of this item
    message = store.messages.get(message_id)
    notice: Edit | Delete = (Delete(message.uid) if change.kind == "delete" else
                             Edit(message.uid, message.text, message.edited_at or utc_now_ms()))
    channel = None
    try:
        channel = worker.connect(peer_id)
        waiter = worker.expect(peer_id, message.uid)
        channel.send(notice)
        waiter.wait(worker.limits.ack_timeout_s)
    except (ChannelClosed, OSError) as exc:
        if channel is not None:
            channel.abort(f"gave up: {exc}")
        worker.emit(PeerUnavailable(peer_id, channel.address if channel else "", str(exc)))
        # the peer now counts as gone: the notice goes again once it is verified anew
        store.changes.retry_later(message_id, str(exc), utc_now_ms())
        log.info("%s of message %s to %s will be retried: %s", change.kind, message_id,
                 peer_id, exc)
        return
    store.changes.complete(message_id, change.version)
    worker.wrote()
    log.info("%s of message %s acknowledged by %s", change.kind, message_id, peer_id)
