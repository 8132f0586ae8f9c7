"""Ctrl+Shift+F: search every chat, LAN and Telegram alike, and open a chat at a result.

The query runs on the Tk thread after a short typing pause: the index answers the newest
``RESULT_LIMIT`` hits of a million messages in milliseconds (the FTS query walks the index in
rowid order and stops at the limit), which is cheaper than a round trip through a worker. What a
person types is quoted word by word (``fts_query``), so FTS syntax in it is just text.
"""

from __future__ import annotations

import logging
import sqlite3
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from tkinter import ttk

from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message
from chimera_tk.views.formatting import day_label, dialog_row_label, sender_label, time_label
from chimera_tk.views.highlight import highlight_colours, snippet
from chimera_tk.views.popups import focus_when_shown, give_focus_back
from chimera_tk.views.theme import Palette

log = logging.getLogger(__name__)

RESULT_LIMIT = 50
TYPING_DELAY_MS = 150
ROUTE_LABELS = {"lan": "LAN", "telegram": "Telegram"}


@dataclass(frozen=True, slots=True)
class SearchResult:
    message: Message
    dialog_title: str
    sender: str
    when: str
    route: str  # "LAN", "Telegram", or "not sent yet" for a queued message of ours
    snippet: tuple[tuple[str, bool], ...]  # (piece, is a matched word)


def search_messages(store: Store, query: str, limit: int = RESULT_LIMIT) -> list[SearchResult]:
    """The newest messages of every chat matching ``query``, described for the panel."""
    dialogs: dict[int, Dialog | None] = {}
    results = []
    for message in store.messages.search(query, limit=limit):
        if message.dialog_id not in dialogs:
            dialogs[message.dialog_id] = store.dialogs.find(message.dialog_id)
        dialog = dialogs[message.dialog_id]
        results.append(SearchResult(
            message=message,
            dialog_title=dialog_row_label(dialog) if dialog else str(message.dialog_id),
            sender=_sender(message, dialog),
            when=f"{day_label(message.sent_at)} {time_label(message.sent_at)}",
            route=ROUTE_LABELS.get(message.transport or "", "not sent yet"),
            snippet=tuple(snippet(message.text, query))))
    return results


def _sender(message: Message, dialog: Dialog | None) -> str:
    if not message.outgoing and not message.sender_name and message.sender_id is None:
        return ""  # a channel post: the chat's name says who wrote it
    return sender_label(message, dialog)


class SearchPanel(tk.Toplevel):
    def __init__(self, master: tk.Misc, store: Store, palette: Palette,
                 on_open: Callable[[int, int, str], None], query: str = "") -> None:
        # a visible edge: on a desktop without a window manager frame the panel would blend in
        super().__init__(master, highlightthickness=1, highlightbackground=palette.muted,
                         highlightcolor=palette.muted)
        self.title("Search messages")
        self.transient(master.winfo_toplevel())
        self._store = store
        self._palette = palette
        self._on_open = on_open
        self._search_after: str | None = None
        self.results: list[SearchResult] = []
        self.selected: int | None = None
        self._build()
        self._place_over(master.winfo_toplevel())
        self.bind("<Escape>", lambda _e: self.destroy())
        self.query.set(query)
        self.search()
        focus_when_shown(self, self.entry)
        self.entry.icursor("end")

    def _build(self) -> None:
        p = self._palette
        body = ttk.Frame(self, padding=12)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text="Search all messages (LAN and Telegram)",
                  font="SunValleyBodyStrongFont").pack(anchor="w")
        self.query = tk.StringVar()
        self.entry = ttk.Entry(body, textvariable=self.query)
        self.entry.pack(fill="x", pady=(6, 4))
        self.status = ttk.Label(body, foreground=p.muted)
        self.status.pack(anchor="w", pady=(0, 6))
        frame = ttk.Frame(body)
        frame.pack(fill="both", expand=True)
        self.list = tk.Text(frame, wrap="none", state="disabled", cursor="arrow", borderwidth=0,
                            highlightthickness=0, padx=8, pady=4, background=p.surface,
                            foreground=p.text, font="SunValleyBodyFont", takefocus=False)
        scroll = ttk.Scrollbar(frame, orient="vertical", command=self.list.yview)
        self.list.configure(yscrollcommand=scroll.set)
        scroll.pack(side="right", fill="y")
        self.list.pack(side="left", fill="both", expand=True)
        match_background, _ = highlight_colours(p.name)
        self.list.tag_configure("selected", background=p.bubble_out)
        self.list.tag_configure("title", font="SunValleyBodyStrongFont", spacing1=6)
        self.list.tag_configure("meta", foreground=p.muted, font="SunValleyCaptionFont")
        self.list.tag_configure("lan", foreground=p.lan, font="SunValleyCaptionFont")
        self.list.tag_configure("telegram", foreground=p.telegram, font="SunValleyCaptionFont")
        self.list.tag_configure("snippet", spacing3=6, lmargin1=12, lmargin2=12)
        self.list.tag_configure("match", background=match_background,
                                foreground="#1c1c1c" if p.name != "dark" else p.text)
        self.list.tag_bind("result", "<Button-1>", self._clicked)
        ttk.Label(body, text="↑ ↓ choose   Enter open   Esc close", foreground=p.muted,
                  font="SunValleyCaptionFont").pack(anchor="e", pady=(6, 0))
        self.query.trace_add("write", lambda *_: self._schedule_search())
        self.entry.bind("<Down>", lambda _e: self._move(1))
        self.entry.bind("<Up>", lambda _e: self._move(-1))
        self.entry.bind("<Next>", lambda _e: self._move(5))
        self.entry.bind("<Prior>", lambda _e: self._move(-5))
        for sequence in ("<Return>", "<KP_Enter>"):
            self.entry.bind(sequence, lambda _e: self.open_selected())

    def _place_over(self, window: tk.Misc) -> None:
        window.update_idletasks()
        width, height = 680, 500
        x = window.winfo_rootx() + max(0, (window.winfo_width() - width) // 2)
        y = window.winfo_rooty() + 60
        self.geometry(f"{width}x{height}+{x}+{y}")

    def _schedule_search(self) -> None:
        if self._search_after is not None:
            self.after_cancel(self._search_after)
        self._search_after = self.after(TYPING_DELAY_MS, self.search)

    def search(self) -> int:
        """Run the query now and show the results, the first one selected."""
        self._search_after = None
        text = self.query.get()
        try:
            self.results = search_messages(self._store, text) if text.strip() else []
        except sqlite3.Error:
            log.exception("message search failed")
            self.results = []
            self.status.configure(text="Search failed; try other words.")
        else:
            self.status.configure(text=self._status_text(text))
        self._render()
        self.selected = None
        if self.results:
            self.select(0)
        return len(self.results)

    def _status_text(self, text: str) -> str:
        if not text.strip():
            return "Type words to find; the last one may be the start of a word."
        if not self.results:
            return f"No messages contain “{text.strip()}”."
        if len(self.results) >= RESULT_LIMIT:
            return f"The newest {RESULT_LIMIT} results; more words find fewer."
        return f"{len(self.results)} result{'s' if len(self.results) != 1 else ''}"

    def _render(self) -> None:
        self.list.configure(state="normal")
        self.list.delete("1.0", "end")
        for index, result in enumerate(self.results):
            tag = f"r{index}"
            route_tag = {"LAN": "lan", "Telegram": "telegram"}.get(result.route, "meta")
            args: list[object] = [
                result.dialog_title, (tag, "result", "title"),
                f"   {result.sender + ' · ' if result.sender else ''}{result.when} · ",
                (tag, "result", "meta"),
                f"via {result.route}" if route_tag != "meta" else result.route,
                (tag, "result", route_tag), "\n", (tag, "result")]
            for piece, matched in result.snippet:
                args += [piece, (tag, "result", "snippet", "match") if matched
                         else (tag, "result", "snippet")]
            args += ["\n", (tag, "result", "snippet")]
            self.list.insert("end", *args)
        self.list.configure(state="disabled")

    def select(self, index: int) -> None:
        if not self.results:
            return
        index = max(0, min(index, len(self.results) - 1))
        self.selected = index
        self.list.tag_remove("selected", "1.0", "end")
        start, end = self.list.tag_ranges(f"r{index}")[:2]
        self.list.tag_add("selected", start, end)
        self.list.see(end)
        self.list.see(start)

    def _move(self, step: int) -> str:
        self.select((self.selected or 0) + step if self.selected is not None else 0)
        return "break"

    def selected_result(self) -> SearchResult | None:
        return None if self.selected is None else self.results[self.selected]

    def open_selected(self) -> str:
        """Enter: open the chat of the chosen result at that message."""
        if self._search_after is not None:
            self.search()  # typed and pressed Enter at once: search first, open the top hit
        result = self.selected_result()
        if result is not None:
            query = self.query.get()
            self.destroy()
            self._on_open(result.message.dialog_id, result.message.id, query)
        return "break"

    def _clicked(self, event: tk.Event) -> None:
        for tag in self.list.tag_names(f"@{event.x},{event.y}"):
            if tag[:1] == "r" and tag[1:].isdigit():
                self.select(int(tag[1:]))
                self.open_selected()
                return

    def destroy(self) -> None:
        if self._search_after is not None:
            self.after_cancel(self._search_after)
            self._search_after = None
        master = self.master
        super().destroy()
        give_focus_back(master)
