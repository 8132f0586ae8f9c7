"""The Tk side of the tray and notifications: badge, close-to-tray, quit, notify-or-not.

Everything here runs on the Tk thread. The tray and the notifier reach it only through events
(``TrayStatus``, ``TrayOpenRequested``, ``TrayMuteToggled``, ``TrayQuitRequested``,
``TrayMenuRequested``); it talks back to them through their thread-safe methods.
"""

from __future__ import annotations

import contextlib
import logging
import tkinter as tk
from collections.abc import Callable
from typing import Any, Protocol

from chimera_tk.config import UiSettings
from chimera_tk.desktop.policy import (
    NotifyContext,
    notification_content,
    should_notify,
    summary_content,
)
from chimera_tk.desktop.tray_host import tray_host_present
from chimera_tk.events import (
    DialogChanged,
    DialogRemoved,
    EventDispatcher,
    MessageChanged,
    MessageStored,
    TransferProgress,
    TrayMenuRequested,
    TrayMuteToggled,
    TrayOpenRequested,
    TrayQuitRequested,
    TrayStatus,
)
from chimera_tk.store import Store
from chimera_tk.store.records import Message

log = logging.getLogger(__name__)
BADGE_REFRESH_MS = 100
NOTIFY_COALESCE_MS = 300
MAX_NOTIFICATIONS_AT_ONCE = 3
TRAY_HINT = ("Chimera keeps running in the tray, so messages still arrive and notify you.\n\n"
             "Click the tray icon to open it again. To quit, choose Quit in the tray menu or "
             "press Ctrl+Q in the window.")


class Tray(Protocol):
    def set_unread(self, count: int) -> None: ...

    def set_muted(self, muted: bool) -> None: ...


class Notifications(Protocol):
    def notify(self, dialog_id: int, title: str, body: str) -> Any: ...


Ask = Callable[[str, str], bool]


class DesktopShell:
    def __init__(self, root: tk.Tk, window: Any, store: Store, dispatcher: EventDispatcher, *,
                 settings: Callable[[], UiSettings],
                 update_settings: Callable[..., None],
                 quit_app: Callable[[str], None]) -> None:
        self._root = root
        self._window = window
        self._store = store
        self._settings = settings
        self._update_settings = update_settings
        self._quit_app = quit_app
        self._tray: Tray | None = None
        self._notifications: Notifications | None = None
        self.tray_running = False
        self.tray_status: TrayStatus | None = None  # the latest report from the tray thread
        self._start_hidden = settings().start_minimised
        self._badge_after: str | None = None
        self._notify_after: str | None = None
        self._open_after: str | None = None
        self._pending: dict[int, tuple[Message, int]] = {}  # dialog -> (latest, how many)
        self._transfers: dict[int, int] = {}  # file id -> message id, while bytes are missing
        self.tray_menu = self._build_tray_menu()
        self._unsubscribe = [
            dispatcher.subscribe(TrayStatus, self._on_tray_status),
            dispatcher.subscribe(TrayOpenRequested, self._on_open_requested),
            dispatcher.subscribe(TrayMuteToggled, lambda _e: self.toggle_do_not_disturb()),
            dispatcher.subscribe(TrayQuitRequested, lambda _e: self.confirm_quit("tray menu")),
            dispatcher.subscribe(TrayMenuRequested, self._on_menu_requested),
            dispatcher.subscribe(MessageStored, self._on_message_stored),
            dispatcher.subscribe(DialogChanged, lambda _e: self.schedule_badge()),
            dispatcher.subscribe(DialogRemoved, lambda _e: self.schedule_badge()),
            dispatcher.subscribe(MessageChanged, self._on_message_changed),
            dispatcher.subscribe(TransferProgress, self._on_transfer_progress),
        ]
        # MainWindow bound both to quitting at once; here they learn about the tray and transfers
        root.protocol("WM_DELETE_WINDOW", self.close_window)
        root.bind("<Control-q>", lambda _e: self.confirm_quit("Ctrl+Q"))

    @property
    def attached(self) -> bool:
        return self._tray is not None or self._notifications is not None

    def attach(self, tray: Tray | None, notifications: Notifications | None) -> None:
        """The tray and notifier workers, built after the first paint (heavy imports)."""
        self._tray = tray
        self._notifications = notifications

    # -- window ----------------------------------------------------------------------------------

    def close_window(self) -> None:
        """The window's close button: hide to the tray when one shows us, else quit."""
        if not (self._settings().close_to_tray and self.tray_available()):
            self.confirm_quit("window closed")
            return
        self._root.withdraw()
        log.info("window closed to the tray")
        if not self._settings().close_to_tray_explained:
            self._update_settings(close_to_tray_explained=True)
            self._show_info("Chimera is still running", TRAY_HINT)

    def tray_available(self) -> bool:
        """A tray icon runs and a tray host shows it now (asked afresh: hosts come and go)."""
        if not self.tray_running or self.tray_status is None:
            return False
        return tray_host_present(self.tray_status.backend)

    def show_window(self, dialog_id: int | None = None) -> None:
        self._root.deiconify()
        self._root.lift()
        self._root.focus_force()
        if dialog_id is None or self._store.dialogs.find(dialog_id) is None:
            return
        dialogs = self._window.dialogs
        if not dialogs.tree.exists(str(dialog_id)):  # hidden by a search
            dialogs.search_var.set("")
            dialogs.refresh()
        dialogs.select(dialog_id)
        # A window that is only now being mapped may never see <<TreeviewSelect>>.
        self._open_after = self._root.after_idle(lambda: self._open_chat(dialog_id))

    def _open_chat(self, dialog_id: int) -> None:
        self._open_after = None
        if self._window.chat.dialog_id != dialog_id:
            self._window.open_dialog(dialog_id)

    def confirm_quit(self, reason: str) -> bool:
        """Quit, asking first while transfers are running; False when the user said no."""
        running = self.running_transfers()
        if running:
            noun = "transfer is" if running == 1 else "transfers are"
            if not self._ask("Quit Chimera?", f"{running} {noun} running. Quit anyway?"):
                return False
        self._quit_app(reason)
        return True

    def running_transfers(self) -> int:
        """Files with bytes still missing whose row still says so (a failed or cancelled
        transfer stops reporting progress, and its row no longer says 'transferring')."""
        for file_id in list(self._transfers):
            try:
                state = self._store.files.get(file_id).state
            except KeyError:
                state = "gone"
            if state not in ("pending", "transferring"):
                del self._transfers[file_id]
        return len(self._transfers)

    # -- badge and notifications -----------------------------------------------------------------

    def schedule_badge(self) -> None:
        if self._badge_after is None:
            self._badge_after = self._root.after(BADGE_REFRESH_MS, self.refresh_badge)

    def refresh_badge(self) -> int:
        self._badge_after = None
        total = self._store.dialogs.total_unread()
        if self._tray is not None:
            self._tray.set_unread(total)
        return total

    def toggle_do_not_disturb(self) -> None:
        muted = not self._settings().do_not_disturb
        self._update_settings(do_not_disturb=muted)
        if self._tray is not None:
            self._tray.set_muted(muted)
        log.info("notifications %s", "muted" if muted else "on")

    def window_focused(self) -> bool:
        if self._root.state() != "normal":
            return False
        try:
            return self._root.focus_displayof() is not None
        except (KeyError, tk.TclError):  # focus on a widget Tk no longer knows: a menu, a dialog
            return True

    def _on_message_stored(self, event: MessageStored) -> None:
        """Collect for a moment: a burst from one chat becomes one notification, and a storm
        across many chats a few notifications and a summary, never one popup per message."""
        self.schedule_badge()
        message = event.message
        if self._notifications is None or message.outgoing:
            return
        _, count = self._pending.get(message.dialog_id, (message, 0))
        self._pending[message.dialog_id] = (message, count + 1)
        if self._notify_after is None:
            self._notify_after = self._root.after(NOTIFY_COALESCE_MS, self.flush_notifications)

    def flush_notifications(self) -> int:
        """Decide and send what collected; returns how many notifications went out."""
        self._notify_after = None
        pending, self._pending = self._pending, {}
        if self._notifications is None:
            return 0
        ui = self._settings()
        due = []
        for dialog_id, (message, count) in pending.items():
            dialog = self._store.dialogs.find(dialog_id)
            context = NotifyContext(
                outgoing=message.outgoing, notifications_enabled=ui.notifications,
                do_not_disturb=ui.do_not_disturb,
                dialog_muted=dialog is not None and dialog.muted,
                window_focused=self.window_focused(),
                chat_open=self._window.chat.dialog_id == dialog_id)
            if should_notify(context):
                due.append((message, dialog, count))
        due.sort(key=lambda item: item[0].page_key, reverse=True)  # newest first
        for message, dialog, count in due[:MAX_NOTIFICATIONS_AT_ONCE]:
            title, body = notification_content(message, dialog, preview=ui.notification_preview,
                                               count=count)
            self._notifications.notify(message.dialog_id, title, body)
        rest = due[MAX_NOTIFICATIONS_AT_ONCE:]
        if rest:
            title, body = summary_content(sum(count for *_, count in rest), len(rest))
            self._notifications.notify(rest[0][0].dialog_id, title, body)
        return min(len(due), MAX_NOTIFICATIONS_AT_ONCE) + bool(rest)

    def _on_message_changed(self, event: MessageChanged) -> None:
        if event.message.file_id in self._transfers and event.message.state in (
                "delivered", "failed", "queued"):
            del self._transfers[event.message.file_id]

    def _on_transfer_progress(self, event: TransferProgress) -> None:
        if event.bytes_done >= event.total:
            self._transfers.pop(event.file_id, None)
        else:
            self._transfers[event.file_id] = event.message_id

    # -- tray ------------------------------------------------------------------------------------

    def _on_tray_status(self, event: TrayStatus) -> None:
        self.tray_status = event
        self.tray_running = event.running
        start_hidden, self._start_hidden = self._start_hidden, False  # only at the first report
        if not event.running:
            if self._root.state() == "withdrawn":
                self.show_window()  # the tray went away with the window hidden in it
            return
        if self._tray is not None:
            self._tray.set_muted(self._settings().do_not_disturb)
        self.refresh_badge()
        if start_hidden and self.tray_available():
            self._root.withdraw()
            log.info("started minimised to the tray")

    def _on_open_requested(self, event: TrayOpenRequested) -> None:
        self.show_window(event.dialog_id)

    def _on_menu_requested(self, event: TrayMenuRequested) -> None:
        self._mute_var.set(self._settings().do_not_disturb)
        self.tray_menu.tk_popup(event.x, event.y)

    def _build_tray_menu(self) -> tk.Menu:
        """The tray's menu drawn by Tk, for backends that draw none (xorg)."""
        menu = tk.Menu(self._root, tearoff=False)
        self._mute_var = tk.BooleanVar(master=self._root, value=self._settings().do_not_disturb)
        menu.add_command(label="Open", command=self.show_window)
        menu.add_checkbutton(label="Mute notifications", variable=self._mute_var,
                             command=self.toggle_do_not_disturb)
        menu.add_separator()
        menu.add_command(label="Quit", command=lambda: self.confirm_quit("tray menu"))
        return menu

    # -- dialogs (plain Tk message boxes; tests answer them through their buttons) ----------------

    def _ask(self, title: str, text: str) -> bool:
        from tkinter import messagebox

        return messagebox.askyesno(title, text, icon="warning", default="no", parent=self._root)

    def _show_info(self, title: str, text: str) -> None:
        from tkinter import messagebox

        messagebox.showinfo(title, text, parent=self._root)

    def destroy(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for pending in (self._badge_after, self._notify_after, self._open_after):
            if pending is not None:
                with contextlib.suppress(tk.TclError):
                    self._root.after_cancel(pending)
        self._badge_after = self._notify_after = self._open_after = None
