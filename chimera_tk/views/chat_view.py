"""The right-hand pane: header of the open chat, its messages, and the composer."""

from __future__ import annotations

import logging
import sqlite3
import tkinter as tk
from tkinter import ttk

from chimera_tk.errors import UserError
from chimera_tk.events import DialogChanged, EventDispatcher, MessageChanged, MessageStored
from chimera_tk.router import Router
from chimera_tk.store import Store
from chimera_tk.views.composer import Composer
from chimera_tk.views.message_view import MessageView
from chimera_tk.views.theme import Palette

log = logging.getLogger(__name__)

_KIND_LABELS = {"user": "person", "group": "group", "channel": "channel",
                "supergroup": "supergroup"}


class ChatView(ttk.Frame):
    def __init__(self, master: tk.Misc, store: Store, router: Router,
                 dispatcher: EventDispatcher, palette: Palette) -> None:
        super().__init__(master)
        self._store = store
        self._router = router
        self._palette = palette
        self._build()
        self._unsubscribe = [
            dispatcher.subscribe(MessageStored, self._on_message_stored),
            dispatcher.subscribe(MessageChanged, self._on_message_changed),
            dispatcher.subscribe(DialogChanged, self._on_dialog_changed),
        ]
        self.show_placeholder()

    def _build(self) -> None:
        header = ttk.Frame(self, padding=(14, 10, 14, 6))
        header.pack(side="top", fill="x")
        self.title = ttk.Label(header, font="SunValleyTitleFont")
        self.title.pack(anchor="w")
        self.subtitle = ttk.Label(header, foreground=self._palette.muted)
        self.subtitle.pack(anchor="w")
        ttk.Separator(self).pack(side="top", fill="x")
        self.composer = Composer(self, self._palette, self._send)
        self.composer.pack(side="bottom", fill="x")
        ttk.Separator(self).pack(side="bottom", fill="x")
        self.messages = MessageView(self, self._store, self._palette)
        self.messages.pack(side="top", fill="both", expand=True)

    @property
    def dialog_id(self) -> int | None:
        return None if self.messages.dialog is None else self.messages.dialog.id

    def show_placeholder(self) -> None:
        self.messages.close()
        self.title.configure(text="Chimera")
        self.subtitle.configure(text="Choose a conversation on the left.")
        self.composer.set_enabled(False)

    def open_dialog(self, dialog_id: int) -> None:
        dialog = self._store.dialogs.get(dialog_id)
        self._store.dialogs.mark_read(dialog_id)
        self.title.configure(text=dialog.title or str(dialog.id))
        self.subtitle.configure(text=self._subtitle(dialog))
        self.messages.open(dialog)
        self.composer.set_enabled(True)
        self.composer.show_error("")
        self.composer.text.focus_set()

    def _subtitle(self, dialog) -> str:
        parts = [_KIND_LABELS.get(dialog.kind, dialog.kind)]
        if dialog.username:
            parts.append("@" + dialog.username)
        if dialog.phone:
            parts.append(dialog.phone)
        if dialog.lan_only:
            parts.append("LAN only")
        return " · ".join(parts)

    def _send(self, text: str) -> None:
        if self.dialog_id is None:
            raise UserError("choose a conversation first")
        try:
            self._router.send_text(self.dialog_id, text)
        except sqlite3.Error as exc:
            log.exception("could not store an outgoing message")
            raise UserError(f"Could not save the message ({exc}); it is still in the box.") \
                from exc

    def _on_message_stored(self, event: MessageStored) -> None:
        if event.message.dialog_id == self.dialog_id:
            self.messages.append(event.message)
            if not event.message.outgoing:
                self._store.dialogs.mark_read(event.message.dialog_id)

    def _on_message_changed(self, event: MessageChanged) -> None:
        if event.message.dialog_id == self.dialog_id:
            self.messages.replace(event.message)

    def _on_dialog_changed(self, event: DialogChanged) -> None:
        if event.dialog.id == self.dialog_id:
            self.title.configure(text=event.dialog.title or str(event.dialog.id))
            self.subtitle.configure(text=self._subtitle(event.dialog))

    def destroy(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        super().destroy()
