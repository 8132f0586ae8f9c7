"""Our edits and deletions of Telegram messages, sent through Telethon (inside its loop).

An edit is messages.editMessage with the message's current text; a delete for everyone is
delete_messages(revoke=True) (channels.deleteMessages in channels and supergroups, which Telethon
picks). Telegram answering "not modified" counts as done. A refusal (too old to edit, no longer
there, not allowed) cannot get better by retrying: the notice is dropped and the user told why in
the status bar; the local change stays. Network trouble and flood waits keep the notice for later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from chimera_tk.events import StatusChanged
from chimera_tk.store import Store
from chimera_tk.store.records import utc_now_ms

log = logging.getLogger(__name__)
RETRY_AFTER_MS = 5000


async def send_change(client: Any, store: Store, emit: Callable[[object], None],
                      message_id: int, version: int) -> None:
    from telethon import errors

    change = store.changes.find(message_id)  # first: a newer edit then only adds a version
    if change is None or change.version < version:
        return
    message = store.messages.get(message_id)
    if message.tg_msg_id is None:
        store.changes.drop(message_id)
        return
    try:
        entity = await client.get_input_entity(message.dialog_id)
        if change.kind == "delete":
            await client.delete_messages(entity, [message.tg_msg_id], revoke=True)
        else:
            await client.edit_message(entity, message.tg_msg_id, message.text)
    except errors.MessageNotModifiedError:
        pass
    except errors.FloodWaitError as exc:
        store.changes.retry_later(message_id, f"flood wait {exc.seconds} s",
                                  utc_now_ms() + exc.seconds * 1000)
        return
    except (ConnectionError, OSError) as exc:
        store.changes.retry_later(message_id, str(exc), utc_now_ms() + RETRY_AFTER_MS)
        return
    except (errors.RPCError, ValueError) as exc:
        store.changes.drop(message_id)
        what = "deletion" if change.kind == "delete" else "edit"
        log.warning("Telegram refused the %s of message %s: %s", what, message_id, exc)
        emit(StatusChanged("telegram", f"Telegram refused the {what} of your message: {exc}",
                           "error"))
        return
    store.changes.complete(message_id, change.version)
    log.info("%s of message %s sent to Telegram", change.kind, message_id)
