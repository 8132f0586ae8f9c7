"""Picture previews inside the message view's Text: placeholder first, the thumbnail when ready.

The message view writes a one-line placeholder (tag ``thumb<message id>``) above a picture's file
line; :meth:`InlinePreviews.fill` then swaps it for an embedded image at once if the thumbnail is in
memory, or asks the :class:`~chimera_tk.views.thumbnails.ThumbnailCache` for it and swaps it when
the ThumbnailReady event arrives. Nothing here waits for the disk or for Pillow. The PhotoImages are
held here, one per picture however many messages show it, and dropped when the last message
showing it leaves the widget (trimmed, re-opened, or the chat closed), or Tk would free them.
"""

from __future__ import annotations

import tkinter as tk
from collections import defaultdict
from collections.abc import Callable

from chimera_tk.events import ThumbnailReady
from chimera_tk.store.records import FileRecord, Message
from chimera_tk.views.thumbnails import ThumbnailCache, is_previewable, memory_key

PLACEHOLDER = "Loading preview…"
Chunk = tuple[str, tuple[str, ...]]


class InlinePreviews:
    def __init__(self, text: tk.Text, cache: ThumbnailCache, *, muted: str,
                 on_layout: Callable[[], None]) -> None:
        self._text = text
        self._cache = cache
        self._on_layout = on_layout
        self._files: dict[int, FileRecord] = {}  # message id -> its picture, while drawn
        self._unfilled: set[int] = set()  # placeholders written since the last fill()
        self._waiting: dict[str, set[int]] = defaultdict(set)  # key -> message ids
        self._photos: dict[str, tk.PhotoImage] = {}
        self._users: dict[str, set[int]] = defaultdict(set)  # key -> messages showing it
        text.tag_configure("thumb", foreground=muted, font="SunValleyCaptionFont", spacing1=4,
                           spacing3=2)
        text.tag_bind("thumb", "<Enter>", lambda _e: text.configure(cursor="hand2"), add="+")
        text.tag_bind("thumb", "<Leave>", lambda _e: text.configure(cursor="arrow"), add="+")
        for tag in ("thumb", "file"):
            # a click on a file puts the keyboard there too, so Enter opens it (X11 gives no
            # focus to a disabled Text on a click)
            text.tag_bind(tag, "<Button-1>", lambda _e: text.focus_set(), add="+")
        self._remove_listener = cache.add_listener(self._on_ready)
        text.bind("<Destroy>", self._on_destroy, add="+")

    # -- what the message view calls (inside its edits) ------------------------------------------

    def chunks(self, message: Message, file: FileRecord, tags: tuple[str, ...]) -> list[Chunk]:
        """The placeholder line for a picture; nothing for other files."""
        if not is_previewable(file):
            return []
        self._files[message.id] = file
        self._unfilled.add(message.id)
        tags = tuple(tag for tag in tags if tag != "body")  # search looks at bodies only
        return [(PLACEHOLDER, (*tags, "thumb", f"thumb{message.id}", "act-open")), ("\n", tags)]

    def fill(self) -> None:
        """Swap each new placeholder for its picture if it is known; ask for the others.
        Called while the Text is editable."""
        unfilled, self._unfilled = self._unfilled, set()
        for message_id in unfilled:
            file = self._files.get(message_id)
            if file is None or not self._text.tag_ranges(f"thumb{message_id}"):
                continue
            key = memory_key(file)
            result = self._photos.get(key) or self._cache.request(file)
            if result is None:
                self._waiting[key].add(message_id)
            else:
                self._show(message_id, key, result)

    def release(self, message_ids: list[int]) -> None:
        """These messages left the widget: forget them, and the pictures no one shows now."""
        for message_id in message_ids:
            file = self._files.pop(message_id, None)
            self._unfilled.discard(message_id)
            if file is None:
                continue
            self._text.tag_delete(f"thumb{message_id}")
            key = memory_key(file)
            self._waiting.get(key, set()).discard(message_id)
            users = self._users.get(key)
            if users is not None:
                users.discard(message_id)
                if not users:
                    del self._users[key]
                    self._photos.pop(key, None)

    def release_all(self) -> None:
        self.release(list(self._files))
        self._waiting.clear()

    def images_shown(self) -> int:
        """How many pictures the Text shows now (what a test or a screenshot checks)."""
        return len(self._text.image_names())

    # -- arrivals --------------------------------------------------------------------------------

    def _on_ready(self, event: ThumbnailReady) -> None:
        waiting = self._waiting.pop(event.key, set())
        if not waiting:
            return
        result = event.png if event.png is not None else event.error or "Preview unavailable"
        self._text.configure(state="normal")
        try:
            for message_id in waiting:
                if message_id in self._files:
                    self._show(message_id, event.key, result)
        finally:
            self._text.configure(state="disabled")
        self._on_layout()

    def _show(self, message_id: int, key: str, result: tk.PhotoImage | bytes | str) -> None:
        ranges = self._text.tag_ranges(f"thumb{message_id}")
        if not ranges:
            return
        start, end = ranges[0], ranges[-1]
        tags = self._text.tag_names(start)
        if isinstance(result, str):  # why there is no preview, in place of the placeholder
            self._text.delete(start, end)
            self._text.insert(start, result, tags)
            return
        photo = result if isinstance(result, tk.PhotoImage) else self._photo(key, result)
        self._text.delete(start, end)
        if photo is None:  # Tk could not read the PNG (a damaged cache file)
            self._text.insert(start, "Preview unavailable", tags)
            return
        name = self._text.image_create(start, image=photo, padx=2, pady=2)
        self._text.tag_add(f"thumb{message_id}", name)
        for tag in tags:
            self._text.tag_add(tag, name)
        self._users[key].add(message_id)

    def _photo(self, key: str, png: bytes) -> tk.PhotoImage | None:
        photo = self._photos.get(key)
        if photo is None:
            try:
                photo = tk.PhotoImage(master=self._text, data=png, format="png")
            except tk.TclError:
                return None  # a damaged cache file: the placeholder stays
            self._photos[key] = photo
        return photo

    def _on_destroy(self, event: tk.Event) -> None:
        if event.widget is self._text:
            self._remove_listener()
            self._photos.clear()
