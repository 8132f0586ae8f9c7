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
from chimera_tk.views.lan_meter_view import LanMeterLabel
from chimera_tk.views.new_chat import NewChatDialog
from chimera_tk.views.quick_switch import QuickSwitch
from chimera_tk.views.search_panel import SearchPanel
from chimera_tk.views.status_bar import StatusBar
from chimera_tk.views.theme import Palette, apply_theme
from chimera_tk.views.thumbnails import ThumbnailCache

SHIFT_MASK = 0x1  # the Shift bit of a Tk key event's state


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
                 find_by_phone: Callable[[str, str], Future | None] | None = None,
                 thumbnails: ThumbnailCache | None = None,
                 open_settings: Callable[[str | None], None] | None = None,
                 open_pairing: Callable[[], None] | None = None) -> None:
        super().__init__(root)
        self._root = root
        self._on_quit = on_quit
        self._find_by_phone = find_by_phone
        self._store = store
        self._palette = palette
        self._presence = presence
        self.new_chat_dialog: NewChatDialog | None = None
        self.search_panel: SearchPanel | None = None
        self.quick_switch: QuickSwitch | None = None
        self.pack(fill="both", expand=True)
        self.status_bar = StatusBar(self, dispatcher, on_telegram=connect_telegram)
        self.status_bar.pack(side="bottom", fill="x")
        self.lan_meter = LanMeterLabel(self.status_bar, store, dispatcher, palette)
        self.lan_meter.pack(side="right")
        ttk.Separator(self.status_bar, orient="vertical").pack(side="right", fill="y", padx=10)
        ttk.Separator(self).pack(side="bottom", fill="x")
        panes = ttk.PanedWindow(self, orient="horizontal")
        panes.pack(fill="both", expand=True)
        self.chat = ChatView(panes, store, router, dispatcher, palette, presence, post, cancel,
                             mark_read or store.dialogs.mark_read, download_media,
                             load_older_remote, fetch_sponsored, sponsored_shown,
                             thumbnails=thumbnails)
        self.dialogs = DialogListView(panes, store, dispatcher, on_select=self.open_dialog,
                                      presence=presence, on_search_messages=self.open_search)
        panes.add(self.dialogs, weight=0)
        panes.add(self.chat, weight=1)
        self._bind_shortcuts()
        if open_settings is not None:
            self._add_settings_entry(open_settings)
        if open_pairing is not None:
            self._add_pairing_entry(open_pairing)
        root.protocol("WM_DELETE_WINDOW", on_quit)

    def _add_pairing_entry(self, open_pairing: Callable[[], None]) -> None:
        """Pair with a nearby person (no team CA): Ctrl+Shift+P, or a click on the LAN state in
        the status bar (no extra button: the bar is full at the default window width)."""
        self.status_bar.make_clickable("lan", open_pairing)
        self._root.bind("<Control-P>", lambda _e: (open_pairing(), "break")[1])

    def open_dialog(self, dialog_id: int) -> None:
        if dialog_id == self.chat.dialog_id:
            return  # e.g. the list catching up with a chat a search result opened
        self.chat.open_dialog(dialog_id)  # marks it read; DialogChanged then clears the badge

    def open_message(self, dialog_id: int, message_id: int, query: str = "") -> None:
        """Open a chat scrolled to one message (a search result), selected in the list."""
        if self._store.dialogs.find(dialog_id) is None:
            return  # removed since the search ran (Telegram said we left the group)
        self.chat.open_dialog(dialog_id, at_message=message_id, query=query)
        self.dialogs.select(dialog_id)

    def _bind_shortcuts(self) -> None:
        root = self._root
        # Text and entry fields delete to the end of the line on Ctrl+K, before the window's
        # binding sees it: the quick switcher must not cost the user their draft.
        for widget_class in ("Text", "Entry", "TEntry"):
            root.bind_class(widget_class, "<Control-Key-k>", "")
        root.bind("<Control-q>", lambda _e: self._on_quit())
        for key in ("<Control-k>", "<Control-K>"):  # K: with Caps Lock on
            root.bind(key, lambda _e: self.open_quick_switch())
        root.bind("<Control-l>", lambda _e: self._focus_search())
        root.bind("<Control-n>", lambda _e: self.open_new_chat())
        root.bind("<Control-f>", lambda _e: self.chat.show_find())
        # Ctrl+Shift+F; the same keysym comes for a plain Ctrl+F while Caps Lock is on
        root.bind("<Control-F>", lambda e: self.open_search() if e.state & SHIFT_MASK
                  else self.chat.show_find())
        root.bind("<F3>", lambda _e: self.chat.find_step(older=True))
        root.bind("<Shift-F3>", lambda _e: self.chat.find_step(older=False))
        root.bind("<Escape>", lambda _e: self.close_panels())

    def _add_settings_entry(self, open_settings: Callable[[str | None], None]) -> None:
        """Settings: Ctrl+comma, a button at the right of the status bar, and a click on the
        certificate there (which opens its page)."""
        self.settings_button = ttk.Button(self.status_bar, text="⚙", style="Toolbutton",
                                          command=lambda: open_settings(None))
        # packed ahead of the status texts, so a long status line never squeezes it away
        self.settings_button.pack(side="right", padx=(10, 0),
                                  before=self.status_bar.labels["telegram"])
        self.status_bar.make_clickable("certificate",
                                       lambda: open_settings("Team & Certificate"))
        self._root.bind("<Control-comma>", lambda _e: (open_settings(None), "break")[1])

    def open_search(self, query: str = "") -> str:
        """Ctrl+Shift+F: search every chat; choosing a result opens its chat at that message."""
        if self.search_panel is not None and self.search_panel.winfo_exists():
            self.search_panel.lift()
            self.search_panel.entry.focus_set()
            if query:
                self.search_panel.query.set(query)
        else:
            self.search_panel = SearchPanel(self._root, self._store, self._palette,
                                            on_open=self.open_message, query=query)
        return "break"

    def open_quick_switch(self) -> str:
        """Ctrl+K: type part of a name, Enter opens that conversation."""
        if self.quick_switch is not None and self.quick_switch.winfo_exists():
            self.quick_switch.lift()
            self.quick_switch.entry.focus_set()
        else:
            self.quick_switch = QuickSwitch(self._root, self._store, on_choose=self.dialogs.select,
                                            presence=self._presence)
        return "break"

    def close_panels(self) -> str | None:
        """Esc in the main window: close the find bar and any search or switch popup."""
        closed = self.chat.hide_find()
        for popup in (self.search_panel, self.quick_switch, self.new_chat_dialog):
            if popup is not None and popup.winfo_exists():
                popup.destroy()
                closed = True
        return "break" if closed else None

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

    def _take_focus_once(self, event: tk.Event) -> None:
        # (not unbound: Tkinter's unbind would drop every <Map> binding of the window)
        if event.widget is self._root and not self._focus_taken:
            self._focus_taken = True
            self._root.focus_force()

    def show(self) -> None:
        # The user just started Chimera (or chose to show it): take the keyboard once the window
        # is on screen (X refuses focus to an unmapped window), so shortcuts work at once even
        # where no window manager hands focus to new windows.
        self._focus_taken = False
        self._root.bind("<Map>", self._take_focus_once, add="+")
        self._root.deiconify()
        self.dialogs.search.focus_set()
        self._root.after_idle(self.chat.enable_drop)  # loads a native extension: after paint
