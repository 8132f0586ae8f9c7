"""The status bar: Telegram connection, LAN peers, certificate; fed only by StatusChanged events."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.events import EventDispatcher, StatusChanged

COMPONENTS = {
    "telegram": "Telegram: not connected",
    "lan": "LAN: not started",
    "certificate": "Certificate: none",
}


class StatusBar(ttk.Frame):
    def __init__(self, master: tk.Misc, dispatcher: EventDispatcher, *,
                 on_telegram: Callable[[], None] | None = None) -> None:
        super().__init__(master, padding=(10, 4))
        self.labels: dict[str, ttk.Label] = {}
        for index, (component, text) in enumerate(COMPONENTS.items()):
            if index:
                ttk.Separator(self, orient="vertical").pack(side="left", fill="y", padx=10)
            label = ttk.Label(self, text=text)
            label.pack(side="left")
            self.labels[component] = label
        self._unsubscribe = dispatcher.subscribe(StatusChanged, self._on_status)
        if on_telegram is not None:  # clicking the Telegram state opens Connect Telegram
            self.labels["telegram"].configure(cursor="hand2")
            self.labels["telegram"].bind("<Button-1>", lambda _e: on_telegram())

    def text(self, component: str) -> str:
        return str(self.labels[component].cget("text"))

    def _on_status(self, event: StatusChanged) -> None:
        label = self.labels.get(event.component)
        if label is not None:
            label.configure(text=event.text,
                            foreground="#c42b1c" if event.level == "error" else "")

    def destroy(self) -> None:
        self._unsubscribe()
        super().destroy()
