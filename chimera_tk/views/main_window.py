"""The main window: dialog list | chat pane, status bar below, and the window-wide shortcuts."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from concurrent.futures import Future
from importlib import resources
from tkinter import ttk

from chimera_tk import APP_NAME
from chimera_tk.events import EventDispatcher
from chimera_tk.router import Router
from chimera_tk.store import Store
from chimera_tk.views.chat_view import ChatView
from chimera_tk.views.dialog_list import DialogListView
from chimera_tk.views.new_chat import NewChatDialog
from chimera_tk.views.status_bar import StatusBar
from chimera_tk.views.theme import Palette, apply_theme


def create_root(theme_setting: str, *, profile_name: str) -> tuple[tk.Tk, Palette]:
    """The Tk root with the theme applied; raises tk.TclError when there is no display."""
    root = tk.Tk(className=APP_NAME)
    root.withdraw()  # no half-styled flash: shown once the main window is built
    palette = apply_theme(root, theme_setting)
    title = APP_NAME if profile_name == "default" else f"{APP_NAME} — {profile_name}"
    root.title(title)
    root.geometry("1040x700")
    root.minsize(640, 420)
    icon = tk.PhotoImage(master=root, file=str(resources.files("chimera_tk") / "assets" /
                                               "icon-64.png"))
    root.iconphoto(True, icon)
    return root, palette


class MainWindow(ttk.Frame):
    def __init__(self, root: tk.Tk, store: Store, router: Router, dispatcher: EventDispatcher,
                 palette: Palette, on_quit: Callable[[], None],
                 presence: Callable[[int], bool] = lambda _id: False,
                 post: Callable[[object], None] | None = None,
                 cancel: Callable[[int], None] | None = None,
                 mark_read: Callable[[int], None] | None = None,
                 connect_telegram: Callable[[], None] | None = None,
                 download_media: Callable[[int], None] | None = None,
                 load_older_remote: Callable[[int, int], None] | None = None,
                 fetch_sponsored: Callable[[int], None] | None = None,
                 sponsored_shown: Callable[[bytes], None] | None = None,
                 find_by_phone: Callable[[str, str], Future | None] | None = None) -> None:
        super().__init__(root)
        self._root = root
        self._on_quit = on_quit
        self._find_by_phone = find_by_phone
        self.new_chat_dialog: NewChatDialog | None = None
        self.pack(fill="both", expand=True)
        self.status_bar = StatusBar(self, dispatcher, on_telegram=connect_telegram)
        self.status_bar.pack(side="bottom", fill="x")
        ttk.Separator(self).pack(side="bottom", fill="x")
        panes = ttk.PanedWindow(self, orient="horizontal")
        panes.pack(fill="both", expand=True)
        self.chat = ChatView(panes, store, router, dispatcher, palette, presence, post, cancel,
                             mark_read or store.dialogs.mark_read, download_media,
                             load_older_remote, fetch_sponsored, sponsored_shown)
        self.dialogs = DialogListView(panes, store, dispatcher, on_select=self.open_dialog,
                                      presence=presence)
        panes.add(self.dialogs, weight=0)
        panes.add(self.chat, weight=1)
        self._bind_shortcuts()
        root.protocol("WM_DELETE_WINDOW", on_quit)

    def open_dialog(self, dialog_id: int) -> None:
        self.chat.open_dialog(dialog_id)  # marks it read; DialogChanged then clears the badge

    def _bind_shortcuts(self) -> None:
        root = self._root
        root.bind("<Control-q>", lambda _e: self._on_quit())
        root.bind("<Control-k>", lambda _e: self._focus_search())
        root.bind("<Control-l>", lambda _e: self._focus_search())
        root.bind("<Control-n>", lambda _e: self.open_new_chat())

    def open_new_chat(self) -> str:
        """Ctrl+N: start a chat with a phone number (found on Telegram by the worker)."""
        if self.new_chat_dialog is not None and self.new_chat_dialog.winfo_exists():
            self.new_chat_dialog.lift()
        else:
            self.new_chat_dialog = NewChatDialog(self._root, find=self._find_by_phone,
                                                 on_found=self.dialogs.select)
        return "break"

    def _focus_search(self) -> str:
        self.dialogs.search.focus_set()
        self.dialogs.search.select_range(0, "end")
        return "break"

    def show(self) -> None:
        self._root.deiconify()
        self.dialogs.search.focus_set()
        self._root.after_idle(self.chat.enable_drop)  # loads a native extension: after paint
