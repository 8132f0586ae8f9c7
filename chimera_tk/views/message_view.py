"""The paged view of one chat: newest page first, older pages loaded when scrolled to the top.

Only pages that the user has scrolled through are in the widget, so a chat of 100,000 messages
opens as fast as one of ten. Each message's text range carries the tag ``msg<id>`` so a state
change or an edit re-renders that message alone. When the local history of a Telegram chat runs
out, the view asks (``on_need_older``) for the page before its oldest Telegram message and shows
it once it has been stored. Telegram's sponsored messages sit after the newest message, tagged
``sponsored``; they are only drawn, never stored.
"""

from __future__ import annotations

import logging
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.editing import hidden_in_chat
from chimera_tk.events import SponsoredAd
from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message, PageKey
from chimera_tk.views.formatting import (
    body_text,
    day_label,
    file_status,
    local_time,
    meta_label,
    sender_label,
)
from chimera_tk.views.highlight import highlight_colours, match_spans, query_terms
from chimera_tk.views.inline_previews import InlinePreviews
from chimera_tk.views.theme import Palette
from chimera_tk.views.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_LOADED = 600  # messages kept in the widget while following a busy chat at the bottom
TRIM_SLACK = 100  # trim in steps, not one message at a time
BUBBLE_INDENT = 140
JUMP_FLASH_MS = 2500  # how long the message a search opened stays highlighted


class MessageView(ttk.Frame):
    def __init__(self, master: tk.Misc, store: Store, palette: Palette,
                 on_file_action: Callable[[str, Message], None] | None = None,
                 on_need_older: Callable[[int, int], None] | None = None,
                 thumbnails: ThumbnailCache | None = None) -> None:
        super().__init__(master)
        self._store = store
        self._on_need_older = on_need_older
        self._palette = palette
        self._on_file_action = on_file_action
        self._progress: dict[int, tuple[int, int]] = {}
        self.dialog: Dialog | None = None
        self._pending: list[Message] = []
        self._flush_after: str | None = None
        self._settle_after: str | None = None
        # Whether new messages should keep the view pinned to the bottom. Only the reader's own
        # scrolling changes it: Tk's scroll fractions are estimates while lines are laid out.
        self.following = True
        self._settled = False
        self.loaded: list[Message] = []  # oldest first, exactly what the widget shows
        self.has_older = False
        self.remote_older = False  # Telegram may hold messages older than the local history
        self.fetching_older = False
        self.sponsored: tuple[SponsoredAd, ...] = ()
        self._older_pending: str | None = None
        self.received_deletes = "remove"  # ui.received_deletes: "remove" or "mark"
        # After a jump into the history the newest messages are not loaded: newer pages come as
        # the reader scrolls down, and arrivals are not drawn until the tail is reached again.
        self.has_newer = False
        self._newer_pending: str | None = None
        self.highlighted: int | None = None  # the message a jump landed on
        self._flash_after: str | None = None
        self._build()
        self.previews = None if thumbnails is None else InlinePreviews(
            self.text, thumbnails, muted=palette.muted, on_layout=self._previews_drawn)
        self.text.bind("<Return>", self._open_file_at_insert, add="+")
        self.text.bind("<KP_Enter>", self._open_file_at_insert, add="+")

    def _build(self) -> None:
        p = self._palette
        self.text = tk.Text(
            self, wrap="word", state="disabled", cursor="arrow", borderwidth=0,
            highlightthickness=0, padx=12, pady=8, background=p.surface, foreground=p.text,
            selectbackground=p.accent, inactiveselectbackground=p.accent,
            font="SunValleyBodyFont")
        self.scrollbar = ttk.Scrollbar(self, orient="vertical", command=self._scrollbar_moved)
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
        t.tag_configure("hidden", elide=True)  # a deleted message the chat leaves out
        t.tag_configure("gap", font=("TkDefaultFont", 3))
        t.tag_configure("file", font="SunValleyBodyStrongFont")
        t.tag_configure("link", foreground=p.accent, underline=True)
        t.tag_configure("sponsored", background=p.sponsored, lmargin1=12, lmargin2=12,
                        rmargin=BUBBLE_INDENT)
        t.tag_configure("sponsored-mark", foreground=p.muted, font="SunValleyCaptionFont",
                        spacing1=6)
        match_background, jump_background = highlight_colours(p.name)
        t.tag_configure("jump", background=jump_background)  # after "in"/"out": drawn above
        t.tag_configure("match", background=match_background, foreground="#1c1c1c"
                        if p.name != "dark" else p.text)
        for action in ("open", "folder", "download"):
            t.tag_bind(f"act-{action}", "<Button-1>",
                       lambda event, a=action: self._file_action(a, event))
        t.tag_bind("link", "<Enter>", lambda _e: t.configure(cursor="hand2"))
        t.tag_bind("link", "<Leave>", lambda _e: t.configure(cursor="arrow"))
        t.bind("<Control-a>", self._select_all)
        for sequence in ("<MouseWheel>", "<Button-4>", "<Button-5>", "<Prior>", "<Next>",
                         "<Up>", "<Down>", "<Control-Home>", "<Control-End>"):
            t.bind(sequence, lambda _e: self._user_scrolled(), add="+")
        t.bind("<Control-End>", lambda _e: self._back_to_tail(), add="+")

    # -- opening and paging --------------------------------------------------------------------

    def _drop_pending(self) -> None:
        self._pending = []
        self._settled = False  # until the first layout, scroll positions are not the reader's
        for name in ("_flush_after", "_older_pending", "_newer_pending", "_flash_after"):
            pending = getattr(self, name)
            if pending is not None:
                self.after_cancel(pending)
                setattr(self, name, None)
        self.has_newer = False  # every (re)load starts from the tail unless open_at says not
        self.highlighted = None

    def open(self, dialog: Dialog) -> None:
        self._drop_pending()
        self.dialog = dialog
        page = self._store.messages.latest_page(dialog.id, PAGE_SIZE)
        self.loaded = []
        self.has_older = len(page) == PAGE_SIZE
        self.fetching_older = False
        self.sponsored = ()
        self._edit(self._clear)
        self._insert_block(page, at_top=False)
        self.remote_older = (self._on_need_older is not None
                             and self._oldest_telegram_id() is not None)
        self.following = True
        self.scroll_to_newest()

    def _scrollbar_moved(self, *args: str) -> None:
        self.text.yview(*args)
        self._user_scrolled()

    def _user_scrolled(self) -> None:
        self.after_idle(self._update_following)

    def _update_following(self) -> None:
        self.following = not self.has_newer and self.showing_newest()

    def showing_newest(self) -> bool:
        """True when the end of the chat is on screen (yview fractions are only estimates)."""
        return self.text.dlineinfo("end-1c") is not None

    def scroll_to_newest(self) -> None:
        self.text.yview_moveto(1.0)
        if self._settle_after is None:
            # line heights are only exact once Tk has laid the text out: settle once more then
            self._settle_after = self.after_idle(self._settle_at_newest)

    def _settle_at_newest(self) -> None:
        self._settle_after = None
        self.text.yview_moveto(1.0)
        self._settled = True

    def close(self) -> None:
        self._drop_pending()
        self.dialog = None
        self.loaded = []
        self.has_older = False
        self.remote_older = False
        self.fetching_older = False
        self.sponsored = ()
        self._edit(self._clear)

    def load_older(self) -> int:
        """Prepend the page before the oldest loaded message; keeps what the user was looking at.
        When the database has nothing older, ask Telegram for the page before (once at a time)."""
        self._older_pending = None
        if self.dialog is None or not self.loaded or not (self.has_older or self.remote_older):
            return 0
        if self.text.yview()[0] > 0.0:
            return 0  # the reader moved away from the top meanwhile
        self.following = False  # the reader went up to the top
        page: list[Message] = []
        if self.has_older:
            page = self._store.messages.page_before(self.dialog.id, self.loaded[0].page_key,
                                                    PAGE_SIZE)
            self.has_older = len(page) == PAGE_SIZE
        if not self.has_older:
            self._request_remote_older()
        if not page:
            return 0
        top_line = int(self.text.index("@0,0").split(".")[0])
        lines_before = self._line_count()
        self._insert_block(page, at_top=True)
        self.text.yview(f"{top_line + self._line_count() - lines_before}.0")
        self._trim_newest()
        return len(page)

    def _request_remote_older(self) -> None:
        if not self.remote_older or self.fetching_older or self.dialog is None:
            return
        oldest = self._oldest_telegram_id()
        if oldest is None or self._on_need_older is None:
            self.remote_older = False
            return
        self.fetching_older = True
        self._on_need_older(self.dialog.id, oldest)

    def _oldest_telegram_id(self) -> int | None:
        return min((m.tg_msg_id for m in self.loaded if m.tg_msg_id is not None), default=None)

    def older_arrived(self, stored: int, exhausted: bool) -> int:
        """Telegram's older page is in the database now: show it if the reader is still up."""
        if self.dialog is None or not self.fetching_older:
            return 0
        self.fetching_older = False
        if exhausted or stored == 0:  # nothing new came: asking again would bring the same
            self.remote_older = False
        if stored:
            self.has_older = True
        return self.load_older()

    # -- jumping to a message (search results, the find bar) -------------------------------------

    def open_at(self, dialog: Dialog, message_id: int, query: str = "") -> bool:
        """Show ``dialog`` scrolled to one message, highlighted along with the words of ``query``
        in it. Only a window around it is loaded; older and newer pages come as the reader
        scrolls. Returns False (and opens the newest page) if the chat has no such message."""
        if self._settle_after is not None:  # a pending settle would pull the view to the end
            self.after_cancel(self._settle_after)
            self._settle_after = None
        already_shown = (self.dialog is not None and self.dialog.id == dialog.id
                         and any(m.id == message_id for m in self.loaded))
        if not already_shown:
            window = self._store.messages.around(dialog.id, message_id, PAGE_SIZE, PAGE_SIZE)
            if window is None:
                self.open(dialog)
                return False
            older, middle, newer = window
            self._drop_pending()
            self.dialog = dialog
            self.loaded = []
            self.has_older = len(older) == PAGE_SIZE
            self.has_newer = len(newer) == PAGE_SIZE
            self.fetching_older = False
            self.sponsored = ()
            self._edit(self._clear)
            self._insert_block([*older, middle, *newer], at_top=False)
            self.remote_older = (self._on_need_older is not None
                                 and self._oldest_telegram_id() is not None)
        self.following = False
        self.show_message(message_id, query)
        return True

    def show_message(self, message_id: int, query: str = "") -> bool:
        """Scroll a loaded message to the upper middle of the view and highlight it for a moment;
        the words of ``query`` in it stay marked until the next jump."""
        ranges = self.text.tag_ranges(f"msg{message_id}")
        if not ranges:
            return False
        start, end = str(ranges[0]), str(ranges[-1])
        for tag in ("jump", "match"):
            self.text.tag_remove(tag, "1.0", "end")
        self.text.tag_add("jump", start, end)
        if query:
            self._mark_matches(start, end, query)
        self.highlighted = message_id
        if self._flash_after is not None:
            self.after_cancel(self._flash_after)
        self._flash_after = self.after(JUMP_FLASH_MS, self._end_flash)
        self._scroll_near_top(start)
        self.after_idle(self._scroll_near_top, start)  # again once Tk knows the line heights
        return True

    def _scroll_near_top(self, index: str) -> None:
        self.text.yview(index)
        self.text.yview_scroll(-(self.text.winfo_height() // 4), "pixels")

    def _end_flash(self) -> None:
        self._flash_after = None
        self.text.tag_remove("jump", "1.0", "end")

    def _mark_matches(self, start: str, end: str, query: str) -> None:
        terms = query_terms(query)
        index = start
        while found := self.text.tag_nextrange("body", index, end):
            body_start, body_end = str(found[0]), str(found[1])
            body = self.text.get(body_start, body_end)
            for span_start, span_end in match_spans(body, terms):
                # "+Nc" steps over whole characters (an emoji is one), as Python counts
                self.text.tag_add("match", f"{body_start}+{span_start}c",
                                  f"{body_start}+{span_end}c")
            index = body_end

    def load_newer(self) -> int:
        """Append the page after the newest loaded message, when a jump left the tail unloaded."""
        self._newer_pending = None
        if self.dialog is None or not self.loaded or not self.has_newer:
            return 0
        if self.text.yview()[1] < 1.0:
            return 0  # the reader moved away from the bottom meanwhile
        page = self._store.messages.page_after(self.dialog.id, self.loaded[-1].page_key,
                                               PAGE_SIZE)
        self.has_newer = len(page) == PAGE_SIZE
        self._insert_block(page, at_top=False)
        self._trim_oldest()
        return len(page)

    def _on_scroll(self, first: str, last: str) -> None:
        self.scrollbar.set(first, last)
        wants_older = self.has_older or (self.remote_older and not self.fetching_older)
        if float(first) <= 0.0 and wants_older and self._older_pending is None:
            self._older_pending = self.after_idle(self.load_older)
        if float(last) >= 1.0 and self.has_newer and self._newer_pending is None:
            self._newer_pending = self.after_idle(self.load_newer)

    # -- sponsored messages ----------------------------------------------------------------------

    def show_sponsored(self, ads: tuple[SponsoredAd, ...]) -> None:
        """Telegram's sponsored messages, after the newest message and marked as such."""
        self.sponsored = ads
        chunks: list[tuple[str, tuple[str, ...]]] = []
        for ad in ads:
            chunks += [("Sponsored\n", ("sponsored", "sponsored-mark")),
                       (f"{ad.title}\n", ("sponsored", "sender")),
                       (f"{ad.text}\n", ("sponsored", "body"))]
            if ad.url:
                chunks.append((f"{ad.button_text or 'Open'}: {ad.url}\n",
                               ("sponsored", "meta")))
            chunks.append(("\n", ("sponsored", "gap")))

        def redraw() -> None:
            ranges = self.text.tag_ranges("sponsored")
            if ranges:
                self.text.delete(ranges[0], ranges[-1])
            self._write("end-1c", chunks)

        self._edit(redraw)
        if self.following:
            self.scroll_to_newest()

    def sponsored_text(self) -> str:
        ranges = self.text.tag_ranges("sponsored")
        return self.text.get(ranges[0], ranges[-1]) if ranges else ""

    def _newest_end(self) -> str:
        """Where a newer message goes: before the sponsored block, which stays last."""
        ranges = self.text.tag_ranges("sponsored")
        return str(ranges[0]) if ranges else "end-1c"

    # -- live changes ----------------------------------------------------------------------------

    def append(self, message: Message) -> None:
        """Show a new message of this chat. Arrivals are drawn together at the next idle moment,
        so a burst of a thousand messages costs one insert and one scroll, not a thousand."""
        if self.dialog is None or message.dialog_id != self.dialog.id:
            return
        self._pending.append(message)
        if self._flush_after is None:
            self._flush_after = self.after_idle(self.flush_pending)

    def flush_pending(self) -> int:
        """Draw the messages waiting since the last idle moment; returns how many were new."""
        self._flush_after = None
        pending, self._pending = self._pending, []
        if self.dialog is None or not pending:
            return 0
        newest = self.loaded[-1].page_key if self.loaded else None
        fresh: dict[int, Message] = {}
        for message in pending:
            if newest is None or message.page_key > newest:
                fresh[message.id] = message
            else:
                self.replace(message)
        if not fresh:
            return 0
        if self.has_newer:
            # the tail is not loaded: drawing these would leave a hole before them. Paging down
            # reaches them; the reader's own message brings the reader back to the tail.
            if any(m.outgoing for m in fresh.values()):
                self.open(self.dialog)
            return 0
        at_bottom = self.following
        if at_bottom and len(fresh) > PAGE_SIZE:
            # more arrived at once than anyone reads at once: redraw the newest page instead
            self.open(self.dialog)
            return len(fresh)
        block = sorted(fresh.values(), key=lambda m: m.page_key)
        self._insert_block(block, at_top=False)
        if at_bottom or any(m.outgoing for m in block):
            self._trim_oldest()
            self.scroll_to_newest()
        return len(block)

    def _trim_oldest(self) -> None:
        """Keep the widget small while the reader follows a busy chat at the bottom."""
        excess = len(self.loaded) - MAX_LOADED
        if excess <= 0:
            return
        dropped, kept = self.loaded[:excess + TRIM_SLACK], self.loaded[excess + TRIM_SLACK:]
        first = kept[0]
        start_of_first = (self.text.tag_ranges(f"day{first.id}") or
                          self.text.tag_ranges(f"msg{first.id}"))[0]

        def trim() -> None:
            self.text.delete("1.0", start_of_first)
            if not self.text.tag_ranges(f"day{first.id}"):
                self._write("1.0", [(f"{day_label(first.sent_at)}\n",
                                     ("day", f"day{first.id}"))])
            self.text.tag_delete(*[name for m in dropped for name in (f"msg{m.id}",
                                                                      f"day{m.id}")])

        self._edit(trim)
        if self.previews is not None:
            self.previews.release([m.id for m in dropped])
        self.loaded = kept
        self.has_older = True

    def _trim_newest(self) -> None:
        """Keep the widget small while the reader pages up through a long history: the newest
        pages go, and come back by scrolling down (``has_newer``)."""
        excess = len(self.loaded) - MAX_LOADED
        if excess <= 0 or self.following:
            return
        kept, dropped = (self.loaded[:-(excess + TRIM_SLACK)],
                         self.loaded[-(excess + TRIM_SLACK):])
        first = dropped[0]
        start_of_first = (self.text.tag_ranges(f"day{first.id}") or
                          self.text.tag_ranges(f"msg{first.id}"))[0]

        def trim() -> None:
            self.text.delete(start_of_first, "end-1c")  # Telegram's ads after them go too
            self.text.tag_delete(*[name for m in dropped for name in (f"msg{m.id}",
                                                                      f"day{m.id}")])

        self._edit(trim)
        if self.previews is not None:
            self.previews.release([m.id for m in dropped])
        self.loaded = kept
        self.sponsored = ()
        self.has_newer = True

    def _back_to_tail(self) -> None:
        """Ctrl+End after a jump: the newest page again, instead of paging down to it."""
        if self.has_newer and self.dialog is not None:
            self.open(self.dialog)

    def replace(self, message: Message) -> None:
        """Re-render a loaded message after its state, text or deleted flag changed."""
        position = next((i for i, shown in enumerate(self.loaded) if shown.id == message.id), None)
        if position is None:
            # not drawn yet: make sure the batch waiting to be drawn carries the newest state
            self._pending = [message if m.id == message.id else m for m in self._pending]
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
            self._write("1.0" if at_top else self._newest_end(), chunks)

        self._edit(insert)
        self.loaded = messages + self.loaded if at_top else self.loaded + messages
        log.debug("chat %s shows %s", self.dialog.id if self.dialog else None,
                  " ".join(m.uid for m in messages))

    def _chunks(self, message: Message, *, with_day: bool) -> list[tuple[str, tuple[str, ...]]]:
        tag = f"msg{message.id}"
        side = "out" if message.outgoing else "in"
        chunks: list[tuple[str, tuple[str, ...]]] = []
        if with_day:
            chunks.append((f"{day_label(message.sent_at)}\n", ("day", f"day{message.id}")))
        if hidden_in_chat(message, self.received_deletes):
            # an elided line: the message keeps its place (paging, trimming, re-rendering)
            return [*chunks, ("\n", (tag, "hidden"))]
        chunks.append((sender_label(message, self.dialog) + "\n", (tag, side, "sender")))
        body_tags = (tag, side, "body", "deleted") if message.deleted else (tag, side, "body")
        if message.file_id is not None and not message.deleted:
            chunks += self._file_chunks(message, (tag, side, "body"))
            if message.text:
                chunks.append((body_text(message) + "\n", body_tags))
        else:
            chunks.append((body_text(message) + "\n", body_tags))
        meta_tags = (tag, side, "meta", "failed") if message.state == "failed" else (
            tag, side, "meta")
        chunks.append((meta_label(message) + "\n", meta_tags))
        chunks.append(("\n", (tag, "gap")))
        return chunks

    def _file_chunks(self, message: Message,
                     tags: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
        try:
            file = self._store.files.get(message.file_id)
        except KeyError:
            return [("[file record missing]\n", tags)]
        status = file_status(file, self._progress.get(message.id), message.outgoing)
        chunks = [(file.name, (*tags, "file")), (f"  {status}", tags)]
        if self.previews is not None:  # a picture's thumbnail goes above its name
            chunks = self.previews.chunks(message, file, tags) + chunks
        if file.state == "complete" and file.path:
            chunks += [("   ", tags), ("Open", (*tags, "link", "act-open")), ("  ·  ", tags),
                       ("Show in folder", (*tags, "link", "act-folder"))]
        elif file.state == "pending" and not message.outgoing:
            # channel media are never fetched on their own (possible malware): on request only
            chunks += [("   ", tags), ("Download…", (*tags, "link", "act-download"))]
        chunks.append(("\n", tags))
        return chunks

    def show_progress(self, message_id: int, done: int, total: int) -> None:
        self._progress[message_id] = (done, total)
        for message in self.loaded:
            if message.id == message_id:
                self.replace(message)
                return

    def _file_action(self, action: str, event: tk.Event) -> str:
        index = self.text.index(f"@{event.x},{event.y}")
        for tag in self.text.tag_names(index):
            if tag.startswith("msg") and tag[3:].isdigit():
                message = next((m for m in self.loaded if m.id == int(tag[3:])), None)
                if message is not None and self._on_file_action is not None:
                    self._on_file_action(action, message)
                break
        return "break"

    def _open_file_at_insert(self, _event: object = None) -> str | None:
        """Enter on a file message (clicked or reached with the arrow keys) opens its file."""
        for tag in self.text.tag_names("insert"):
            if tag.startswith("msg") and tag[3:].isdigit():
                message = next((m for m in self.loaded if m.id == int(tag[3:])), None)
                if message is None or message.file_id is None or self._on_file_action is None:
                    return None
                self._on_file_action("open", message)
                return "break"
        return None

    def _previews_drawn(self) -> None:
        if self.following:  # a picture made the chat taller: keep the newest message in view
            self.scroll_to_newest()

    def _write(self, index: str, chunks: list[tuple[str, tuple[str, ...]]]) -> None:
        args: list[object] = []
        for text, tags in chunks:
            args += [text, tags]
        self.text.insert(index, *args)
        if self.previews is not None:
            self.previews.fill()

    def _edit(self, change) -> None:
        self.text.configure(state="normal")
        try:
            change()
        finally:
            self.text.configure(state="disabled")

    def _clear(self) -> None:
        self.text.delete("1.0", "end")
        if self.previews is not None:
            self.previews.release_all()
        stale = [name for name in self.text.tag_names() if name[:3] in ("msg", "day")
                 and name[3:].isdigit()]
        if stale:
            self.text.tag_delete(*stale)

    def _line_count(self) -> int:
        return int(self.text.index("end-1c").split(".")[0])

    def _select_all(self, _event: object) -> str:
        self.text.tag_add("sel", "1.0", "end")
        return "break"

    def visible_text(self) -> str:
        return self.text.get("1.0", "end-1c")

    def destroy(self) -> None:
        if self._flash_after is not None:  # a timer outlives its window otherwise
            self.after_cancel(self._flash_after)
            self._flash_after = None
        super().destroy()


def _day(message: Message) -> object:
    return local_time(message.sent_at).date()


__all__ = ["PAGE_SIZE", "MessageView", "PageKey"]
