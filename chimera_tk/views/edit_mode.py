"""Editing a sent message in the composer, as Telegram Desktop does.

The composer is borrowed: it shows the message's text under an "Editing — Esc to cancel" line,
Enter saves the edit, Esc (or opening another chat) gives the box back with whatever the user had
been typing before. Up in an empty composer starts editing the user's newest message in the chat.
"""

from __future__ import annotations

from tkinter import ttk
from typing import TYPE_CHECKING

from chimera_tk.editing import MessageEditor
from chimera_tk.store.records import Message
from chimera_tk.views.theme import Palette

if TYPE_CHECKING:
    from chimera_tk.views.chat_view import ChatView

BANNER_TEXT = "Editing — Esc to cancel"


class ComposerEditing:
    def __init__(self, chat: ChatView, editor: MessageEditor, palette: Palette) -> None:
        self._chat = chat
        self._editor = editor
        self._composer = chat.composer
        self.message: Message | None = None
        self._draft = ""
        composer = self._composer
        self.banner = ttk.Frame(composer)
        self.banner_label = ttk.Label(self.banner, text=BANNER_TEXT,
                                      foreground=palette.accent)
        self.banner_label.pack(side="left")
        self.preview = ttk.Label(self.banner, foreground=palette.muted)
        self.preview.pack(side="left", padx=(10, 0))
        composer.text.bind("<Escape>", self._on_escape, add="+")
        composer.text.bind("<Up>", self._on_up, add="+")
        chat.bind("<<ChatOpened>>", self._on_chat_opened, add="+")

    @property
    def active(self) -> bool:
        return self.message is not None

    def start(self, message: Message) -> None:
        """Put ``message`` into the composer for editing (the draft is kept aside)."""
        composer = self._composer
        if self.message is None:
            self._draft = composer.content()
        self.message = message
        composer.show_error("")
        composer.text.delete("1.0", "end")
        composer.text.insert("1.0", message.text)
        composer.text.mark_set("insert", "end-1c")
        composer.text.edit_reset()  # Ctrl+Z must not bring the draft back into the edit
        composer.text.focus_set()
        first_line = message.text.split("\n", 1)[0]
        self.preview.configure(text=first_line[:60] + ("…" if len(first_line) > 60 else ""))
        if not self.banner.winfo_manager():
            self.banner.pack(side="top", fill="x", pady=(0, 4), before=composer.text.master)
        composer.send_override = self._save
        composer.send_button.configure(text="Save")

    def cancel(self) -> None:
        """Leave editing; the draft the user had been typing comes back."""
        if self.message is None:
            return
        self._leave()
        self._composer.text.delete("1.0", "end")
        self._composer.text.insert("1.0", self._draft)
        self._composer.show_error("")

    def _save(self, text: str) -> None:
        assert self.message is not None
        # a UserError propagates: the composer shows it and keeps the text
        self._editor.edit(self.message.id, text)
        self._leave()
        draft = self._draft
        # the composer empties itself after this returns: the draft goes back in afterwards
        self._composer.after_idle(lambda: self._composer.text.insert("1.0", draft))

    def _leave(self) -> None:
        self.message = None
        self.banner.pack_forget()
        self._composer.send_override = None
        self._composer.send_button.configure(text="Send")

    def _on_chat_opened(self, _event: object) -> None:
        if self.message is not None and self.message.dialog_id != self._chat.dialog_id:
            self.cancel()

    def _on_escape(self, _event: object) -> str | None:
        if self.message is None:
            return None
        self.cancel()
        return "break"

    def _on_up(self, _event: object) -> str | None:
        dialog_id = self._chat.dialog_id
        if self.message is not None or dialog_id is None or self._composer.content().strip():
            return None
        latest = self._editor.latest_editable(dialog_id)
        if latest is None:
            return None
        self.start(latest)
        return "break"
