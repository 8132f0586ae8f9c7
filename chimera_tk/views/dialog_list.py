"""The list of conversations: search box, unread badges, newest activity first."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.events import (
    DialogChanged,
    DialogRemoved,
    EventDispatcher,
    MessageChanged,
    MessageStored,
)
from chimera_tk.store import Store
from chimera_tk.store.records import Dialog
from chimera_tk.views.formatting import dialog_row_label, unread_badge

REFRESH_DELAY_MS = 60
LAN_DOT = "●"  # shown after the name of a person who is on the LAN right now
MAX_ROWS = 1000


class DialogListView(ttk.Frame):
    def __init__(self, master: tk.Misc, store: Store, dispatcher: EventDispatcher,
                 on_select: Callable[[int], None],
                 presence: Callable[[int], bool] = lambda _id: False,
                 on_search_messages: Callable[[str], object] | None = None) -> None:
        super().__init__(master, padding=(8, 8, 4, 8))
        self._store = store
        self._presence = presence
        self._on_search_messages = on_search_messages
        self._on_select = on_select
        self._refresh_after: str | None = None
        self._selected: int | None = None
        self._build()
        self._unsubscribe = [
            dispatcher.subscribe(DialogChanged, lambda _e: self.schedule_refresh()),
            dispatcher.subscribe(DialogRemoved, self._on_dialog_removed),
            dispatcher.subscribe(MessageStored, lambda _e: self.schedule_refresh()),
            dispatcher.subscribe(MessageChanged, lambda _e: self.schedule_refresh()),
        ]
        self.refresh()

    def _build(self) -> None:
        self.search_var = tk.StringVar()
        self.search = ttk.Entry(self, textvariable=self.search_var)
        self.search.pack(fill="x", pady=(0, 8))
        if self._on_search_messages is not None:
            # the global message search, with whatever is typed above as its first words
            self.search_messages = ttk.Button(
                self, text="Search in messages  (Ctrl+Shift+F)",
                command=lambda: self._on_search_messages(self.search_var.get().strip()))
            self.search_messages.pack(fill="x", pady=(0, 8))
        self.search_var.trace_add("write", lambda *_: self.schedule_refresh())
        self.search.bind("<Down>", self._focus_list)
        self.search.bind("<Return>", self._focus_list)
        self.search.bind("<Escape>", lambda _e: self.search_var.set(""))

        body = ttk.Frame(self)
        body.pack(fill="both", expand=True)
        self._body = body
        self.tree = ttk.Treeview(body, columns=("unread",), show="tree", selectmode="browse")
        self.tree.column("#0", width=220, stretch=True)
        self.tree.column("unread", width=48, anchor="e", stretch=False)
        scroll = ttk.Scrollbar(body, orient="vertical", command=self.tree.yview)
        self.tree.configure(yscrollcommand=scroll.set)
        self.tree.pack(side="left", fill="both", expand=True)
        scroll.pack(side="right", fill="y")
        self.tree.tag_configure("unread", font="SunValleyBodyStrongFont")
        self.tree.bind("<<TreeviewSelect>>", self._selection_changed)
        self.empty_label = ttk.Label(
            self, text="No conversations yet.\nPeople on your LAN and your Telegram chats\n"
                       "appear here.", justify="center", foreground="gray")

    def schedule_refresh(self) -> None:
        if self._refresh_after is None:
            self._refresh_after = self.after(REFRESH_DELAY_MS, self.refresh)

    def refresh(self) -> None:
        self._refresh_after = None
        dialogs = self._store.dialogs.list(self.search_var.get().strip(), limit=MAX_ROWS)
        self.tree.delete(*self.tree.get_children())
        for dialog in dialogs:
            self._insert(dialog)
        if self._selected is not None and self.tree.exists(str(self._selected)):
            self.tree.selection_set(str(self._selected))
        if dialogs or self.search_var.get():
            self.empty_label.pack_forget()
        else:
            self.empty_label.pack(fill="x", pady=16, before=self._body)

    def rows(self) -> list[tuple[int, str, str]]:
        """(dialog id, label, badge) of each visible row, top to bottom."""
        return [(int(iid), self.tree.item(iid, "text"), self.tree.set(iid, "unread"))
                for iid in self.tree.get_children()]

    def select(self, dialog_id: int) -> None:
        if self.tree.exists(str(dialog_id)):
            self.tree.selection_set(str(dialog_id))
            self.tree.see(str(dialog_id))
        else:
            self._selected = dialog_id
            self._on_select(dialog_id)

    def _insert(self, dialog: Dialog) -> None:
        label = dialog_row_label(dialog)
        if self._presence(dialog.id):
            label = f"{label}  {LAN_DOT}"
        self.tree.insert("", "end", iid=str(dialog.id), text=label,
                         values=(unread_badge(dialog.unread_count),),
                         tags=("unread",) if dialog.unread_count else ())

    def _on_dialog_removed(self, event: DialogRemoved) -> None:
        if self._selected == event.dialog_id:
            self._selected = None
        self.schedule_refresh()

    def _selection_changed(self, _event: object) -> None:
        selection = self.tree.selection()
        if not selection:
            return
        dialog_id = int(selection[0])
        if dialog_id != self._selected:
            self._selected = dialog_id
            self._on_select(dialog_id)

    def _focus_list(self, _event: object) -> str:
        children = self.tree.get_children()
        if children:
            self.tree.focus_set()
            target = self.tree.selection() or children[:1]
            self.tree.focus(target[0])
            self.tree.selection_set(target[0])
        return "break"

    def destroy(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._refresh_after is not None:
            self.after_cancel(self._refresh_after)
        super().destroy()
