"""The paged view of one chat: newest page first, older pages loaded when scrolled to the top.

Only pages that the user has scrolled through are in the widget, so a chat of 100,000 messages
opens as fast as one of ten. Each message's text range carries the tag ``msg<id>`` so a state
change or an edit re-renders that message alone.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message, PageKey
from chimera_tk.views.formatting import body_text, day_label, local_time, meta_label, sender_label
from chimera_tk.views.theme import Palette

PAGE_SIZE = 50
BUBBLE_INDENT = 140


class MessageView(ttk.Frame):
    def __init__(self, master: tk.Misc, store: Store, palette: Palette) -> None:
        super().__init__(master)
        self._store = store
        self._palette = palette
        self.dialog: Dialog | None = None
        self.loaded: list[Message] = []  # oldest first, exactly what the widget shows
        self.has_older = False
        self._older_pending: str | None = None
        self._build()

    def _build(self) -> None:
        p = self._palette
        self.text = tk.Text(
            self, wrap="word", state="disabled", cursor="arrow", borderwidth=0,
            highlightthickness=0, padx=12, pady=8, background=p.surface, foreground=p.text,
            selectbackground=p.accent, inactiveselectbackground=p.accent,
            font="SunValleyBodyFont")
        self.scrollbar = ttk.Scrollbar(self, orient="vertical", command=self.text.yview)
        self.text.configure(yscrollcommand=self._on_scroll)
        self.scrollbar.pack(side="right", fill="y")
        self.text.pack(side="left", fill="both", expand=True)
        t = self.text
        t.tag_configure("day", justify="center", foreground=p.muted, spacing1=10, spacing3=6,
                        font="SunValleyCaptionFont")
        for side, margins in (("out", (BUBBLE_INDENT, 12)), ("in", (12, BUBBLE_INDENT))):
            t.tag_configure(side, lmargin1=margins[0], lmargin2=margins[0], rmargin=margins[1],
                            background=p.bubble_out if side == "out" else p.bubble_in)
        t.tag_configure("sender", font="SunValleyBodyStrongFont", foreground=p.accent,
                        spacing1=6)
        t.tag_configure("body", spacing1=2, spacing3=2)
        t.tag_configure("meta", foreground=p.muted, font="SunValleyCaptionFont", spacing3=6)
        t.tag_configure("failed", foreground=p.error)
        t.tag_configure("deleted", foreground=p.muted, font="SunValleyCaptionFont")
        t.tag_configure("gap", font=("TkDefaultFont", 3))
        t.bind("<Control-a>", self._select_all)

    # -- opening and paging --------------------------------------------------------------------

    def open(self, dialog: Dialog) -> None:
        self.dialog = dialog
        page = self._store.messages.latest_page(dialog.id, PAGE_SIZE)
        self.loaded = []
        self.has_older = len(page) == PAGE_SIZE
        self._edit(lambda: self.text.delete("1.0", "end"))
        self._insert_block(page, at_top=False)
        self.scroll_to_newest()

    def showing_newest(self) -> bool:
        """True when the end of the chat is on screen (yview fractions are only estimates)."""
        return self.text.dlineinfo("end-1c") is not None

    def scroll_to_newest(self) -> None:
        self.text.yview_moveto(1.0)
        # line heights are only exact once Tk has laid the text out, so settle again then
        self.after_idle(lambda: self.text.yview_moveto(1.0))

    def close(self) -> None:
        self.dialog = None
        self.loaded = []
        self.has_older = False
        self._edit(lambda: self.text.delete("1.0", "end"))

    def load_older(self) -> int:
        """Prepend the page before the oldest loaded message; keeps what the user was looking at."""
        self._older_pending = None
        if self.dialog is None or not self.loaded or not self.has_older:
            return 0
        page = self._store.messages.page_before(self.dialog.id, self.loaded[0].page_key,
                                                PAGE_SIZE)
        self.has_older = len(page) == PAGE_SIZE
        if not page:
            return 0
        top_line = int(self.text.index("@0,0").split(".")[0])
        lines_before = self._line_count()
        self._insert_block(page, at_top=True)
        self.text.yview(f"{top_line + self._line_count() - lines_before}.0")
        return len(page)

    def _on_scroll(self, first: str, last: str) -> None:
        self.scrollbar.set(first, last)
        if float(first) <= 0.0 and self.has_older and self._older_pending is None:
            self._older_pending = self.after_idle(self.load_older)

    # -- live changes ----------------------------------------------------------------------------

    def append(self, message: Message) -> None:
        """Show a message that belongs after the newest loaded one (new or just sent)."""
        if self.dialog is None or message.dialog_id != self.dialog.id:
            return
        if self.loaded and message.page_key <= self.loaded[-1].page_key:
            self.replace(message)
            return
        at_bottom = self.showing_newest()
        self._insert_block([message], at_top=False)
        if at_bottom or message.outgoing:
            self.scroll_to_newest()

    def replace(self, message: Message) -> None:
        """Re-render a loaded message after its state, text or deleted flag changed."""
        position = next((i for i, shown in enumerate(self.loaded) if shown.id == message.id), None)
        if position is None:
            return
        self.loaded[position] = message
        ranges = self.text.tag_ranges(f"msg{message.id}")
        if not ranges:
            return
        start, end = ranges[0], ranges[-1]

        def rerender() -> None:
            self.text.delete(start, end)
            self._write(str(start), self._chunks(message, with_day=False))

        self._edit(rerender)

    # -- rendering -------------------------------------------------------------------------------

    def _insert_block(self, messages: list[Message], *, at_top: bool) -> None:
        if not messages:
            return
        neighbour = self.loaded[0] if at_top and self.loaded else None
        previous = None if at_top or not self.loaded else self.loaded[-1]
        chunks: list[tuple[str, tuple[str, ...]]] = []
        for message in messages:
            new_day = previous is None or _day(previous) != _day(message)
            chunks += self._chunks(message, with_day=new_day)
            previous = message

        def insert() -> None:
            if neighbour is not None and _day(neighbour) == _day(messages[-1]):
                ranges = self.text.tag_ranges(f"day{neighbour.id}")
                if ranges:
                    self.text.delete(ranges[0], ranges[-1])
            self._write("1.0" if at_top else "end-1c", chunks)

        self._edit(insert)
        self.loaded = messages + self.loaded if at_top else self.loaded + messages

    def _chunks(self, message: Message, *, with_day: bool) -> list[tuple[str, tuple[str, ...]]]:
        tag = f"msg{message.id}"
        side = "out" if message.outgoing else "in"
        chunks: list[tuple[str, tuple[str, ...]]] = []
        if with_day:
            chunks.append((f"{day_label(message.sent_at)}\n", ("day", f"day{message.id}")))
        chunks.append((sender_label(message, self.dialog) + "\n", (tag, side, "sender")))
        body_tags = (tag, side, "body", "deleted") if message.deleted else (tag, side, "body")
        chunks.append((body_text(message) + "\n", body_tags))
        meta_tags = (tag, side, "meta", "failed") if message.state == "failed" else (
            tag, side, "meta")
        chunks.append((meta_label(message) + "\n", meta_tags))
        chunks.append(("\n", (tag, "gap")))
        return chunks

    def _write(self, index: str, chunks: list[tuple[str, tuple[str, ...]]]) -> None:
        args: list[object] = []
        for text, tags in chunks:
            args += [text, tags]
        self.text.insert(index, *args)

    def _edit(self, change) -> None:
        self.text.configure(state="normal")
        try:
            change()
        finally:
            self.text.configure(state="disabled")

    def _line_count(self) -> int:
        return int(self.text.index("end-1c").split(".")[0])

    def _select_all(self, _event: object) -> str:
        self.text.tag_add("sel", "1.0", "end")
        return "break"

    def visible_text(self) -> str:
        return self.text.get("1.0", "end-1c")


def _day(message: Message) -> object:
    return local_time(message.sent_at).date()


__all__ = ["PAGE_SIZE", "MessageView", "PageKey"]
