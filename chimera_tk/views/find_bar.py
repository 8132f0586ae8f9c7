"""Ctrl+F in a chat: a bar above the messages that searches the whole chat through the index.

The hits are the chat's messages that the full-text index matches, not just the loaded pages;
stepping to one outside the loaded window loads the window around it. The newest hit comes first
and Enter goes to the next older one, as one reads a chat upwards from the bottom.
"""

from __future__ import annotations

import logging
import sqlite3
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.store import Store
from chimera_tk.store.records import PageKey
from chimera_tk.views.message_view import MessageView

log = logging.getLogger(__name__)

MAX_HITS = 1000  # newest hits of a chat that the bar steps through ("1000+" beyond)
TYPING_DELAY_MS = 200


def hit_label(position: int | None, total: int, capped: bool) -> str:
    """The count shown in the bar, like "3 of 12"; position 0 is the newest hit."""
    if total == 0:
        return "No results"
    more = "+" if capped else ""
    return f"{total}{more} found" if position is None else f"{position + 1} of {total}{more}"


class FindBar(ttk.Frame):
    def __init__(self, master: tk.Misc, store: Store, view: MessageView,
                 on_close: Callable[[], None]) -> None:
        super().__init__(master, padding=(12, 6, 12, 6))
        self._store = store
        self._view = view
        self._on_close = on_close
        self._search_after: str | None = None
        self.hits: list[PageKey] = []  # chat order, oldest first
        self.capped = False
        self.position: int | None = None  # index into hits counted from the newest
        self._build()

    def _build(self) -> None:
        ttk.Label(self, text="Find in chat").pack(side="left", padx=(0, 8))
        self.query = tk.StringVar()
        self.entry = ttk.Entry(self, textvariable=self.query, width=32)
        self.entry.pack(side="left", fill="x", expand=True)
        self.count = ttk.Label(self, width=14, anchor="center")
        self.count.pack(side="left", padx=8)
        self.older_button = ttk.Button(self, text="▲", width=3, command=self.older)
        self.older_button.pack(side="left")
        self.newer_button = ttk.Button(self, text="▼", width=3, command=self.newer)
        self.newer_button.pack(side="left", padx=(4, 0))
        ttk.Button(self, text="✕", width=3, command=self._on_close).pack(side="left",
                                                                       padx=(8, 0))
        self.query.trace_add("write", lambda *_: self._schedule_search())
        for sequence in ("<Return>", "<KP_Enter>", "<F3>", "<Up>"):
            self.entry.bind(sequence, lambda _e: self._step(self.older))
        for sequence in ("<Shift-Return>", "<Shift-KP_Enter>", "<Shift-F3>", "<Down>"):
            self.entry.bind(sequence, lambda _e: self._step(self.newer))
        self.entry.bind("<Escape>", lambda _e: (self._on_close(), "break")[1])

    def focus_entry(self) -> None:
        self.entry.focus_set()
        self.entry.select_range(0, "end")

    def reset(self) -> None:
        """Forget the hits (another chat was opened); the typed words stay for the next search."""
        self._cancel_search()
        self.hits, self.capped, self.position = [], False, None
        self.count.configure(text="")

    def _schedule_search(self) -> None:
        self._cancel_search()
        self._search_after = self.after(TYPING_DELAY_MS, self.search)

    def _cancel_search(self) -> None:
        if self._search_after is not None:
            self.after_cancel(self._search_after)
            self._search_after = None

    def search(self) -> int:
        """Find the words typed in the open chat and jump to the newest hit; returns the count."""
        self._search_after = None
        dialog = self._view.dialog
        text = self.query.get()
        self.hits, self.capped, self.position = [], False, None
        if dialog is None or not text.strip():
            self.count.configure(text="")
            return 0
        try:
            self.hits = self._store.messages.search_positions(text, dialog.id, MAX_HITS + 1)
        except sqlite3.Error:
            log.exception("search in chat %s failed", dialog.id)
            self.count.configure(text="Search failed")
            return 0
        if len(self.hits) > MAX_HITS:
            self.capped, self.hits = True, self.hits[1:]  # keep the newest MAX_HITS
        if self.hits:
            self._go(0)
        else:
            self.count.configure(text=hit_label(None, 0, False))
        return len(self.hits)

    def older(self) -> None:
        """The next hit up the chat (Enter, F3); wraps around to the newest."""
        if self._search_after is not None:
            self.search()  # Enter pressed before the typing pause ended: search now
            return
        if self.hits:
            self._go(0 if self.position is None else (self.position + 1) % len(self.hits))

    def newer(self) -> None:
        """The next hit down the chat (Shift+Enter, Shift+F3); wraps around to the oldest."""
        if self._search_after is not None:
            self.search()
            return
        if self.hits:
            self._go(0 if self.position is None else (self.position - 1) % len(self.hits))

    def current_message_id(self) -> int | None:
        return None if self.position is None else self.hits[-1 - self.position].id

    def _go(self, position: int) -> None:
        self.position = position
        self.count.configure(text=hit_label(position, len(self.hits), self.capped))
        dialog = self._view.dialog
        message_id = self.current_message_id()
        if dialog is not None and message_id is not None:
            self._view.open_at(dialog, message_id, self.query.get())

    def _step(self, move: Callable[[], None]) -> str:
        move()
        return "break"

    def destroy(self) -> None:
        self._cancel_search()
        super().destroy()
