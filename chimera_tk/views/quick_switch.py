"""Ctrl+K: a small popup to jump to any conversation by typing a few letters of its name.

Names that have a word starting with what was typed come first, then names that contain it,
then names with a word holding its letters in order ("anbl" finds "Anabela"); within each group
the most recently active conversation is first, as in the dialog list.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import ttk

from chimera_tk.store import Store
from chimera_tk.store.records import Dialog
from chimera_tk.views.formatting import dialog_row_label, unread_badge
from chimera_tk.views.highlight import fold
from chimera_tk.views.popups import focus_when_shown, give_focus_back

MAX_DIALOGS = 2000
MAX_SHOWN = 200


def _searchable(dialog: Dialog) -> str:
    return fold(" ".join(part for part in (dialog.title, dialog.username, dialog.phone) if part))


def _has_in_order(letters: str, text: str) -> bool:
    position = 0
    for letter in letters:
        position = text.find(letter, position) + 1
        if position == 0:
            return False
    return True


def rank_dialogs(dialogs: Sequence[Dialog], query: str) -> list[Dialog]:
    """The dialogs that match ``query``, best first; ``dialogs`` come most recent first."""
    wanted = fold(" ".join(query.split()))
    if not wanted:
        return list(dialogs)
    word_start, inside, in_order = [], [], []
    letters = wanted.replace(" ", "")
    for dialog in dialogs:
        name = _searchable(dialog)
        if name.startswith(wanted) or f" {wanted}" in name:
            word_start.append(dialog)
        elif wanted in name:
            inside.append(dialog)
        elif any(_has_in_order(letters, word) for word in name.split()):
            in_order.append(dialog)
    return word_start + inside + in_order


class QuickSwitch(tk.Toplevel):
    def __init__(self, master: tk.Misc, store: Store, on_choose: Callable[[int], None],
                 presence: Callable[[int], bool] = lambda _id: False) -> None:
        super().__init__(master, highlightthickness=1, highlightbackground="gray",
                         highlightcolor="gray")  # an edge where no window manager draws one
        self.title("Go to chat")
        self.transient(master.winfo_toplevel())
        self._on_choose = on_choose
        self._presence = presence
        self._all = store.dialogs.list(limit=MAX_DIALOGS)
        self.shown: list[Dialog] = []
        self._build()
        self._place_over(master.winfo_toplevel())
        self.bind("<Escape>", lambda _e: self.destroy())
        self.filter()
        focus_when_shown(self, self.entry)

    def destroy(self) -> None:
        master = self.master
        super().destroy()
        give_focus_back(master)

    def _build(self) -> None:
        body = ttk.Frame(self, padding=10)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text="Go to chat", font="SunValleyBodyStrongFont").pack(anchor="w",
                                                                              pady=(0, 6))
        self.query = tk.StringVar()
        self.entry = ttk.Entry(body, textvariable=self.query)
        self.entry.pack(fill="x", pady=(0, 8))
        self.tree = ttk.Treeview(body, columns=("unread",), show="tree", selectmode="browse",
                                 height=10)
        self.tree.column("#0", width=300, stretch=True)
        self.tree.column("unread", width=48, anchor="e", stretch=False)
        self.tree.tag_configure("unread", font="SunValleyBodyStrongFont")
        self.tree.pack(fill="both", expand=True)
        self.empty = ttk.Label(body, text="No conversation has that name.", foreground="gray")
        ttk.Label(body, text="↑ ↓ choose   Enter open   Esc close", foreground="gray",
                  font="SunValleyCaptionFont").pack(anchor="e", pady=(6, 0))
        self.query.trace_add("write", lambda *_: self.filter())
        self.entry.bind("<Down>", lambda _e: self._move(1))
        self.entry.bind("<Up>", lambda _e: self._move(-1))
        for sequence in ("<Return>", "<KP_Enter>"):
            self.entry.bind(sequence, lambda _e: self.choose())
            self.tree.bind(sequence, lambda _e: self.choose())
        self.tree.bind("<Double-Button-1>", lambda _e: self.choose())

    def _place_over(self, window: tk.Misc) -> None:
        window.update_idletasks()
        width, height = 420, 380
        x = window.winfo_rootx() + max(0, (window.winfo_width() - width) // 2)
        y = window.winfo_rooty() + 80
        self.geometry(f"{width}x{height}+{x}+{y}")

    def filter(self) -> None:
        """Show the dialogs matching what is typed, the best one selected."""
        self.shown = rank_dialogs(self._all, self.query.get())[:MAX_SHOWN]
        self.tree.delete(*self.tree.get_children())
        for dialog in self.shown:
            label = dialog_row_label(dialog)
            if self._presence(dialog.id):
                label += "  ●"
            self.tree.insert("", "end", iid=str(dialog.id), text=label,
                             values=(unread_badge(dialog.unread_count),),
                             tags=("unread",) if dialog.unread_count else ())
        if self.shown:
            self.empty.pack_forget()
            self.tree.selection_set(str(self.shown[0].id))
            self.tree.see(str(self.shown[0].id))
        else:
            self.empty.pack(anchor="w", before=self.tree)

    def rows(self) -> list[str]:
        return [self.tree.item(iid, "text") for iid in self.tree.get_children()]

    def selected_id(self) -> int | None:
        selection = self.tree.selection()
        return int(selection[0]) if selection else None

    def _move(self, step: int) -> str:
        children = self.tree.get_children()
        if children:
            current = self.tree.selection()
            index = children.index(current[0]) + step if current else 0
            target = children[max(0, min(index, len(children) - 1))]
            self.tree.selection_set(target)
            self.tree.see(target)
        return "break"

    def choose(self) -> str:
        """Enter: open the selected conversation and close the popup."""
        dialog_id = self.selected_id()
        if dialog_id is not None:
            self.destroy()
            self._on_choose(dialog_id)
        return "break"
