"""The context menu of a message: Copy, Edit, Delete…, Open file, Show in folder.

Opened by a right click on a message, or from the keyboard with the Menu key or Shift+F10 (for
the message under the selection or the text cursor, else the newest one on screen). Edit and
"delete for everyone" are offered for the user's own messages only; anyone's message can be
deleted on this computer. :func:`install` wires the menu, the composer's edit mode and the
``ui.received_deletes`` setting into a chat view.
"""

from __future__ import annotations

import logging
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import ttk
from typing import TYPE_CHECKING

from chimera_tk.editing import MessageEditor, can_edit
from chimera_tk.errors import UserError
from chimera_tk.store import Store
from chimera_tk.store.records import Message
from chimera_tk.views.edit_mode import ComposerEditing
from chimera_tk.views.formatting import body_text, sender_label
from chimera_tk.views.theme import Palette

if TYPE_CHECKING:
    from chimera_tk.views.chat_view import ChatView

log = logging.getLogger(__name__)

ENTRIES = ("Copy", "Edit", "Delete…", "Open file", "Show in folder")


def menu_states(message: Message, *, has_file_on_disk: bool) -> dict[str, bool]:
    """Which entries are enabled for ``message``."""
    return {"Copy": not message.deleted, "Edit": can_edit(message), "Delete…": not (
        message.deleted and message.deleted_here), "Open file": has_file_on_disk,
        "Show in folder": has_file_on_disk}


class MessageMenu:
    def __init__(self, chat: ChatView, store: Store, editor: MessageEditor,
                 editing: ComposerEditing) -> None:
        self._chat = chat
        self._store = store
        self._view = chat.messages
        self._editor = editor
        self._editing = editing
        self.target: Message | None = None
        self.confirm: DeleteDialog | None = None
        text = self._view.text
        self.menu = tk.Menu(text, tearoff=False)
        commands: dict[str, Callable[[], None]] = {
            "Copy": self.copy, "Edit": self.edit, "Delete…": self.delete,
            "Open file": lambda: self._file("open"), "Show in folder": lambda: self._file("folder")}
        for label in ENTRIES:
            if label == "Open file":
                self.menu.add_separator()
            self.menu.add_command(label=label, command=commands[label])
        text.bind("<Button-3>", self._on_right_click, add="+")
        for sequence in ("<KeyPress-Menu>", "<Shift-F10>"):
            text.bind(sequence, self._on_menu_key, add="+")
        # A disabled Text never takes the focus, so the keys above could not reach it: a click
        # (or Ctrl+Tab from the composer) focuses the messages, and typing there goes on in
        # the composer, as in Telegram Desktop.
        text.configure(takefocus=1)
        text.bind("<Button-1>", lambda _e: text.focus_set(), add="+")
        text.bind("<KeyPress>", self._type_into_composer, add="+")

    def set_received_deletes(self, mode: str) -> None:
        """ui.received_deletes changed in Settings: redraw the deleted messages on screen."""
        self._view.received_deletes = mode
        for message in [m for m in self._view.loaded if m.deleted]:
            self._view.replace(message)

    # -- which message --------------------------------------------------------------------------

    def message_at(self, index: str) -> Message | None:
        for tag in self._view.text.tag_names(index):
            if tag.startswith("msg") and tag[3:].isdigit():
                wanted = int(tag[3:])
                return next((m for m in self._view.loaded if m.id == wanted), None)
        return None

    def keyboard_target(self) -> Message | None:
        text = self._view.text
        for index in ("sel.first", "insert"):
            try:
                found = self.message_at(text.index(index))
            except tk.TclError:  # no selection
                continue
            if found is not None:
                return found
        # the newest message on screen: the newest of all while the reader follows the chat
        bottom = "end" if self._view.following else text.index(
            f"@0,{max(0, text.winfo_height() - 1)}")
        for message in reversed(self._view.loaded):
            ranges = text.tag_ranges(f"msg{message.id}")
            if ranges and not message.deleted and text.compare(ranges[0], "<=", bottom):
                return message
        return None

    # -- opening --------------------------------------------------------------------------------

    def prepare(self, message: Message) -> None:
        """Point the menu at ``message`` and enable what applies to it."""
        self.target = message
        for label, enabled in menu_states(message, has_file_on_disk=self._file_path(
                message) is not None).items():
            self.menu.entryconfigure(label, state="normal" if enabled else "disabled")

    def _on_right_click(self, event: tk.Event) -> str | None:
        index = self._view.text.index(f"@{event.x},{event.y}")
        message = self.message_at(index)
        if message is None:
            return None
        self.prepare(message)
        self.menu.tk_popup(event.x_root, event.y_root)
        return "break"

    def _on_menu_key(self, _event: object) -> str:
        message = self.keyboard_target()
        if message is not None:
            text = self._view.text
            start = text.tag_ranges(f"msg{message.id}")[0]
            text.see(start)
            x, y, _w, height = text.bbox(start) or (0, 0, 0, 0)
            self.prepare(message)
            self.menu.tk_popup(text.winfo_rootx() + x + 40, text.winfo_rooty() + y + height)
        return "break"

    def _type_into_composer(self, event: tk.Event) -> str | None:
        control = 0x4
        composer = self._chat.composer
        if (not event.char or not event.char.isprintable() or event.state & control
                or str(composer.text.cget("state")) != "normal"):
            return None
        composer.text.focus_set()
        composer.text.insert("insert", event.char)
        return "break"

    # -- actions --------------------------------------------------------------------------------

    def copy(self) -> None:
        """The selected part of the message, or its whole text."""
        if self.target is None:
            return
        text = self._view.text
        try:
            chosen = text.get("sel.first", "sel.last")
        except tk.TclError:
            chosen = ""
        if not chosen or self.message_at(text.index("sel.first")) != self.target:
            chosen = body_text(self.target) if not self.target.deleted else ""
        text.clipboard_clear()
        text.clipboard_append(chosen)

    def edit(self) -> None:
        if self.target is not None and can_edit(self.target):
            self._editing.start(self._fresh(self.target))

    def delete(self) -> None:
        """Ask (own message: for everyone or only here; others': only here), then delete."""
        if self.target is None:
            return
        message = self._fresh(self.target)
        if self.confirm is not None and self.confirm.winfo_exists():
            self.confirm.destroy()
        self.confirm = DeleteDialog(self._chat.winfo_toplevel(), message,
                                    sender_label(message, self._view.dialog),
                                    on_choice=lambda everyone: self._delete(message, everyone))

    def _delete(self, message: Message, for_everyone: bool) -> None:
        try:
            self._editor.delete(message.id, for_everyone=for_everyone)
        except UserError as exc:
            self._chat.composer.show_error(str(exc))
            return
        if self._editing.message is not None and self._editing.message.id == message.id:
            self._editing.cancel()

    def _file(self, action: str) -> None:
        from chimera_tk.views.desktop import open_path, show_in_folder

        path = self._file_path(self.target) if self.target is not None else None
        try:
            if path is None:
                raise UserError("this message's file is not on this computer")
            (open_path if action == "open" else show_in_folder)(path)
        except UserError as exc:
            self._chat.composer.show_error(str(exc))

    def _file_path(self, message: Message) -> Path | None:
        if message.file_id is None or message.deleted:
            return None
        try:
            file = self._store.files.get(message.file_id)
        except KeyError:
            return None
        return Path(file.path) if file.state == "complete" and file.path else None

    def _fresh(self, message: Message) -> Message:
        """The stored row: the one drawn may be a moment old."""
        try:
            return self._store.messages.get(message.id)
        except KeyError:
            return message


class DeleteDialog(tk.Toplevel):
    """"Delete for everyone?" for the user's own messages; "Delete on this computer?" else."""

    def __init__(self, master: tk.Misc, message: Message, sender: str,
                 on_choice: Callable[[bool], None]) -> None:
        super().__init__(master)
        self._on_choice = on_choice
        self.title("Delete message")
        self.transient(master)
        self.resizable(False, False)
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        own = message.outgoing
        question = "Delete for everyone?" if own else "Delete this message on this computer?"
        detail = ("“Delete for everyone” removes it from the other side too; “Delete for me” "
                  "only here." if own else f"{sender} keeps their copy.")
        ttk.Label(frame, text=question, font="SunValleyBodyStrongFont").pack(anchor="w")
        ttk.Label(frame, text=detail, wraplength=360).pack(anchor="w", pady=(4, 12))
        buttons = ttk.Frame(frame)
        buttons.pack(fill="x")
        self.cancel_button = ttk.Button(buttons, text="Cancel", command=self.destroy)
        self.cancel_button.pack(side="right")
        self.me_button = ttk.Button(buttons, text="Delete for me",
                                    command=lambda: self._choose(False))
        self.me_button.pack(side="right", padx=(0, 8))
        self.everyone_button: ttk.Button | None = None
        default = self.me_button
        if own:
            self.everyone_button = ttk.Button(buttons, text="Delete for everyone",
                                              style="Accent.TButton",
                                              command=lambda: self._choose(True))
            self.everyone_button.pack(side="right", padx=(0, 8))
            default = self.everyone_button
        self.bind("<Escape>", lambda _e: self.destroy())
        self.bind("<Return>", lambda _e: default.invoke())
        default.focus_set()
        self.update_idletasks()
        x = master.winfo_rootx() + (master.winfo_width() - self.winfo_reqwidth()) // 2
        y = master.winfo_rooty() + (master.winfo_height() - self.winfo_reqheight()) // 3
        self.geometry(f"+{max(0, x)}+{max(0, y)}")

    def _choose(self, for_everyone: bool) -> None:
        self.destroy()
        self._on_choice(for_everyone)


def install(chat: ChatView, store: Store, editor: MessageEditor, palette: Palette, *,
            received_deletes: str) -> MessageMenu:
    """Give a chat view its message menu and edit mode; deleted messages per the setting."""
    chat.messages.received_deletes = received_deletes
    return MessageMenu(chat, store, editor, ComposerEditing(chat, editor, palette))
