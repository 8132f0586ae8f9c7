"""The dialog list's context menu (right click, or the Menu key / Shift+F10 on the selected row).

It holds *Mute notifications* for now; other per-dialog actions belong in the same ``menu``.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.store.records import Dialog


class DialogContextMenu:
    def __init__(self, tree: ttk.Treeview, find_dialog: Callable[[int], Dialog | None],
                 set_muted: Callable[[int, bool], None]) -> None:
        self._tree = tree
        self._find = find_dialog
        self._set_muted = set_muted
        self._dialog_id: int | None = None
        self.muted = tk.BooleanVar(master=tree, value=False)
        self.menu = tk.Menu(tree, tearoff=False)
        self.menu.add_checkbutton(label="Mute notifications", variable=self.muted,
                                  command=self._toggle_muted)
        tree.bind("<Button-3>", self._on_right_click, add="+")
        tree.bind("<Shift-F10>", self._on_key, add="+")
        tree.bind("<Key-Menu>", self._on_key, add="+")  # the context-menu key

    def open_for(self, dialog_id: int) -> bool:
        """Point the menu at ``dialog_id`` (its checkmarks follow the stored dialog)."""
        dialog = self._find(dialog_id)
        if dialog is None:
            return False
        self._dialog_id = dialog_id
        self.muted.set(dialog.muted)
        return True

    def _on_right_click(self, event: tk.Event) -> str | None:
        row = self._tree.identify_row(event.y)
        if not row or not self.open_for(int(row)):
            return None
        # the selection stays: selecting a row opens its chat, which a right click must not do
        self.menu.tk_popup(event.x_root, event.y_root)
        return "break"

    def _on_key(self, _event: tk.Event) -> str | None:
        selection = self._tree.selection()
        if not selection or not self.open_for(int(selection[0])):
            return None
        x, y, _w, height = self._tree.bbox(selection[0]) or (0, 0, 0, 0)
        self.menu.tk_popup(self._tree.winfo_rootx() + x + 20,
                           self._tree.winfo_rooty() + y + height)
        return "break"

    def _toggle_muted(self) -> None:
        if self._dialog_id is not None:
            self._set_muted(self._dialog_id, self.muted.get())
