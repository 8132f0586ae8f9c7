"""The right-hand pane: header of the open chat, its messages, and the composer."""

from __future__ import annotations

import logging
import sqlite3
import threading
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import ttk

from chimera_tk.errors import UserError
from chimera_tk.events import (
    DialogChanged,
    DialogRemoved,
    EventDispatcher,
    FileHashed,
    MessageChanged,
    MessageStored,
    OlderMessagesFetched,
    SponsoredMessagesFetched,
    TransferProgress,
)
from chimera_tk.router import Router, file_sha256
from chimera_tk.store import Store
from chimera_tk.store.records import Dialog, Message
from chimera_tk.views.composer import Composer
from chimera_tk.views.find_bar import FindBar
from chimera_tk.views.formatting import human_size
from chimera_tk.views.message_view import MessageView
from chimera_tk.views.theme import Palette
from chimera_tk.views.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

_KIND_LABELS = {"user": "person", "group": "group", "channel": "channel",
                "supergroup": "supergroup"}


class ChatView(ttk.Frame):
    def __init__(self, master: tk.Misc, store: Store, router: Router,
                 dispatcher: EventDispatcher, palette: Palette,
                 presence: Callable[[int], bool] = lambda _id: False,
                 post: Callable[[object], None] | None = None,
                 cancel: Callable[[int], None] | None = None,
                 mark_read: Callable[[int], None] | None = None,
                 download_media: Callable[[int], None] | None = None,
                 load_older_remote: Callable[[int, int], None] | None = None,
                 fetch_sponsored: Callable[[int], None] | None = None,
                 sponsored_shown: Callable[[bytes], None] | None = None,
                 thumbnails: ThumbnailCache | None = None) -> None:
        super().__init__(master)
        self._thumbnails = thumbnails
        self._download_media = download_media
        self._load_older_remote = load_older_remote
        self._fetch_sponsored = fetch_sponsored
        self._sponsored_shown = sponsored_shown
        self._mark_read = mark_read or store.dialogs.mark_read
        self._presence = presence
        self._post = post or dispatcher.dispatch
        self._cancel = cancel
        self._transfer_message: int | None = None
        self._mark_read_pending = False
        self._store = store
        self._router = router
        self._palette = palette
        self.find_bar: FindBar | None = None  # made on the first Ctrl+F
        self._build()
        self._unsubscribe = [
            dispatcher.subscribe(MessageStored, self._on_message_stored),
            dispatcher.subscribe(MessageChanged, self._on_message_changed),
            dispatcher.subscribe(DialogChanged, self._on_dialog_changed),
            dispatcher.subscribe(DialogRemoved, self._on_dialog_removed),
            dispatcher.subscribe(TransferProgress, self._on_progress),
            dispatcher.subscribe(FileHashed, self._on_file_hashed),
            dispatcher.subscribe(OlderMessagesFetched, self._on_older_fetched),
            dispatcher.subscribe(SponsoredMessagesFetched, self._on_sponsored),
        ]
        self.show_placeholder()

    def _build(self) -> None:
        header = ttk.Frame(self, padding=(14, 10, 14, 6))
        header.pack(side="top", fill="x")
        self.title = ttk.Label(header, font="SunValleyTitleFont")
        self.title.pack(anchor="w")
        self.subtitle = ttk.Label(header, foreground=self._palette.muted)
        self.subtitle.pack(anchor="w")
        ttk.Separator(self).pack(side="top", fill="x")
        self.composer = Composer(self, self._palette, self._send, on_attach=self.choose_files)
        self.composer.pack(side="bottom", fill="x")
        self._build_transfer_bar()
        ttk.Separator(self).pack(side="bottom", fill="x")
        self.messages = MessageView(self, self._store, self._palette,
                                    on_file_action=self._file_action,
                                    on_need_older=self._load_older_remote,
                                    thumbnails=self._thumbnails)
        self.messages.pack(side="top", fill="both", expand=True)

    def _build_transfer_bar(self) -> None:
        self.transfer_bar = ttk.Frame(self, padding=(12, 6, 12, 0))
        self.transfer_label = ttk.Label(self.transfer_bar)
        self.transfer_label.pack(side="left")
        self.transfer_cancel = ttk.Button(self.transfer_bar, text="Cancel",
                                          command=self._cancel_transfer)
        self.transfer_cancel.pack(side="right")
        self.transfer_progress = ttk.Progressbar(self.transfer_bar, mode="determinate",
                                                 maximum=1000)
        self.transfer_progress.pack(side="right", fill="x", expand=True, padx=10)

    # -- files -----------------------------------------------------------------------------------

    def choose_files(self) -> None:
        from tkinter import filedialog

        if self.dialog_id is None:
            return
        for name in filedialog.askopenfilenames(parent=self, title="Send files"):
            self.attach(Path(name))

    def attach(self, path: Path) -> None:
        """Hash the file on a short-lived thread; FileHashed brings it back here to queue."""
        dialog_id = self.dialog_id
        if dialog_id is None:
            return
        self.composer.show_error("")
        threading.Thread(target=_hash_file, args=(dialog_id, path, self._post),
                         name="hash-attachment", daemon=True).start()

    def enable_drop(self) -> bool:
        """Accept files dragged from the desktop (tkdnd); without it, the Attach button remains."""
        try:
            from tkinterdnd2 import DND_FILES, TkinterDnD

            TkinterDnD._require(self.winfo_toplevel())
        except Exception as exc:  # a missing native extension must not stop the app
            log.info("drag and drop unavailable: %s", exc)
            return False
        for widget in (self.messages.text, self.composer.text):
            widget.drop_target_register(DND_FILES)
            widget.dnd_bind("<<Drop>>", self._on_drop)
        return True

    def _on_drop(self, event: object) -> str:
        for name in self.tk.splitlist(event.data):  # type: ignore[attr-defined]
            self.attach(Path(name))
        return "copy"

    def _on_file_hashed(self, event: FileHashed) -> None:
        if event.error is not None:
            self.composer.show_error(event.error)
            return
        try:
            self._router.send_file(event.dialog_id, Path(event.path), sha256=event.sha256)
        except UserError as exc:
            self.composer.show_error(str(exc))

    def _file_action(self, action: str, message: Message) -> None:
        from chimera_tk.views.desktop import open_path, show_in_folder

        file = self._store.files.get(message.file_id)
        if action == "download":
            self._download(message, file.name)
            return
        try:
            if file.path is None:
                raise UserError(f"{file.name} is not on this computer")
            (open_path if action == "open" else show_in_folder)(Path(file.path))
        except UserError as exc:
            self.composer.show_error(str(exc))

    def _download(self, message: Message, name: str) -> None:
        from tkinter import messagebox

        if self._download_media is None:
            self.composer.show_error("Telegram is not connected")
            return
        if messagebox.askyesno(
                "Download from a channel?",
                f"{name} comes from a channel or supergroup. Files there can carry malware, "
                "which is why Chimera did not fetch it. Download it anyway?",
                icon="warning", parent=self):
            self._download_media(message.id)

    def _on_progress(self, event: TransferProgress) -> None:
        self.messages.show_progress(event.message_id, event.bytes_done, event.total)
        message_dialog = next((m.dialog_id for m in self.messages.loaded
                               if m.id == event.message_id), None)
        if not event.outgoing or message_dialog != self.dialog_id:
            return
        if event.bytes_done >= event.total:
            self._hide_transfer()
            return
        self._transfer_message = event.message_id
        self.transfer_progress.configure(value=1000 * event.bytes_done // max(1, event.total))
        self.transfer_label.configure(
            text=f"Sending {human_size(event.bytes_done)} of {human_size(event.total)}")
        if not self.transfer_bar.winfo_ismapped():
            self.transfer_bar.pack(side="bottom", fill="x", before=self.composer)

    def _hide_transfer(self) -> None:
        self._transfer_message = None
        self.transfer_bar.pack_forget()

    def _cancel_transfer(self) -> None:
        if self._transfer_message is not None and self._cancel is not None:
            self._cancel(self._transfer_message)
        self._hide_transfer()

    @property
    def dialog_id(self) -> int | None:
        return None if self.messages.dialog is None else self.messages.dialog.id

    def show_placeholder(self) -> None:
        self.hide_find(refocus=False)
        self.messages.close()
        self.title.configure(text="Chimera")
        self.subtitle.configure(text="Choose a conversation on the left.")
        self.composer.set_enabled(False)

    def open_dialog(self, dialog_id: int, at_message: int | None = None,
                    query: str = "") -> None:
        """Open a chat at its newest page, or scrolled to ``at_message`` with the words of
        ``query`` highlighted in it (a search result)."""
        dialog = self._store.dialogs.get(dialog_id)
        self._mark_read(dialog_id)
        self.hide_find(refocus=False)
        self.title.configure(text=dialog.title or str(dialog.id))
        self.subtitle.configure(text=self._subtitle(dialog))
        if at_message is None:
            self.messages.open(dialog)
        else:
            self.messages.open_at(dialog, at_message, query)
        self.composer.set_enabled(True)
        self.composer.show_error("")
        self.composer.text.focus_set()
        self.event_generate("<<ChatOpened>>")  # e.g. an edit in the composer ends
        if (dialog.kind == "channel" and self._fetch_sponsored is not None
                and at_message is None):  # ads go after the newest message, not loaded then
            self._fetch_sponsored(dialog.id)  # Telegram shows ads in broadcast channels only

    # -- Ctrl+F ----------------------------------------------------------------------------------

    def show_find(self) -> str:
        """Ctrl+F: the find bar over the open chat, its entry focused."""
        if self.dialog_id is None:
            return "break"
        if self.find_bar is None:
            self.find_bar = FindBar(self, self._store, self.messages, on_close=self.hide_find)
        if not self.find_bar.winfo_manager():
            self.find_bar.pack(side="top", fill="x", before=self.messages)
        self.find_bar.focus_entry()
        return "break"

    def find_visible(self) -> bool:
        return self.find_bar is not None and bool(self.find_bar.winfo_manager())

    def hide_find(self, refocus: bool = True) -> bool:
        """Esc: close the find bar (True if it was open); the composer gets the focus back."""
        if not self.find_visible():
            return False
        self.find_bar.pack_forget()
        self.find_bar.reset()
        if refocus and self.dialog_id is not None:
            self.composer.text.focus_set()
        return True

    def find_step(self, older: bool) -> str:
        """F3 / Shift+F3 anywhere in the window while the find bar is open."""
        if self.find_visible():
            (self.find_bar.older if older else self.find_bar.newer)()
        return "break"

    def _subtitle(self, dialog: Dialog) -> str:
        parts = [_KIND_LABELS.get(dialog.kind, dialog.kind)]
        if dialog.username:
            parts.append("@" + dialog.username)
        if dialog.phone:
            parts.append(dialog.phone)
        if dialog.lan_only:
            parts.append("LAN only")
        if dialog.kind == "user":
            parts.append("on your LAN now" if self._presence(dialog.id) else "not on the LAN")
        return " · ".join(parts)

    def _send(self, text: str) -> None:
        if self.dialog_id is None:
            raise UserError("choose a conversation first")
        try:
            self._router.send_text(self.dialog_id, text)
        except sqlite3.Error as exc:
            log.exception("could not store an outgoing message")
            raise UserError(f"Could not save the message ({exc}); it is still in the box.") \
                from exc

    def _on_message_stored(self, event: MessageStored) -> None:
        if event.message.dialog_id == self.dialog_id:
            self.messages.append(event.message)
            if not event.message.outgoing and not self._mark_read_pending:
                self._mark_read_pending = True  # one write per burst, not one per message
                self.after_idle(self._mark_open_chat_read)

    def _mark_open_chat_read(self) -> None:
        self._mark_read_pending = False
        if self.dialog_id is not None:
            self._mark_read(self.dialog_id)

    def _on_message_changed(self, event: MessageChanged) -> None:
        if event.message.dialog_id == self.dialog_id:
            self.messages.replace(event.message)
            if (event.message.id == self._transfer_message
                    and event.message.state in ("delivered", "failed", "queued")):
                self._hide_transfer()

    def _on_older_fetched(self, event: OlderMessagesFetched) -> None:
        if event.dialog_id != self.dialog_id:
            return
        if event.error:
            self.composer.show_error(event.error)
        self.messages.older_arrived(event.stored, event.exhausted)
        if event.stored:
            # old history counts as unread in the store, but the reader is looking at it
            self._mark_read(event.dialog_id)

    def _on_sponsored(self, event: SponsoredMessagesFetched) -> None:
        if event.dialog_id != self.dialog_id or not event.ads:
            return
        self.messages.show_sponsored(event.ads)
        if self._sponsored_shown is not None:
            for ad in event.ads:
                self._sponsored_shown(ad.random_id)

    def _on_dialog_changed(self, event: DialogChanged) -> None:
        if event.dialog.id == self.dialog_id:
            self.title.configure(text=event.dialog.title or str(event.dialog.id))
            self.subtitle.configure(text=self._subtitle(event.dialog))
            if event.dialog.unread_count and not self._mark_read_pending:
                # messages stored without a MessageStored (sync, older pages) while it is open
                self._mark_read_pending = True
                self.after_idle(self._mark_open_chat_read)

    def _on_dialog_removed(self, event: DialogRemoved) -> None:
        if event.dialog_id == self.dialog_id:
            self.show_placeholder()

    def destroy(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        super().destroy()


def _hash_file(dialog_id: int, path: Path, post: Callable[[object], None]) -> None:
    try:
        if not path.is_file():
            raise OSError(f"{path.name} is not a file")
        post(FileHashed(dialog_id, str(path), file_sha256(path)))
    except OSError as exc:
        post(FileHashed(dialog_id, str(path), None, error=f"Cannot send {path.name}: {exc}"))
