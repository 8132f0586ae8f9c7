"""*New chat* (Ctrl+N): a phone number and an optional name, looked up on Telegram.

The lookup runs on the Telegram worker and comes back as a future that the dialog polls with
``after``; a number that is not on Telegram is said in plain words and can be corrected.
"""

from __future__ import annotations

import concurrent.futures
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.errors import UserError
from chimera_tk.views.futures import when_done
from chimera_tk.views.telegram_wizard import parse_phone

Find = Callable[[str, str], "concurrent.futures.Future | None"]


class NewChatDialog(tk.Toplevel):
    def __init__(self, master: tk.Misc, *, find: Find | None,
                 on_found: Callable[[int], None]) -> None:
        super().__init__(master)
        self.title("New chat")
        self.transient(master.winfo_toplevel())
        self.resizable(False, False)
        self._find = find
        self._on_found = on_found
        self._build()
        self.bind("<Escape>", lambda _e: self.destroy())
        self.bind("<Return>", lambda _e: self.submit())
        self.phone.focus_set()
        self.phone.icursor("end")

    def _build(self) -> None:
        body = ttk.Frame(self, padding=20)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text="New chat", font="SunValleySubtitleFont").pack(anchor="w")
        ttk.Label(body, text="Chimera finds the person on Telegram by their phone number.",
                  wraplength=340, justify="left").pack(anchor="w", pady=(4, 12))
        ttk.Label(body, text="Phone number").pack(anchor="w")
        self.phone = ttk.Entry(body, width=36)
        self.phone.insert(0, "+")
        self.phone.pack(fill="x", pady=(2, 8))
        ttk.Label(body, text="Name (optional, saved in your contacts)").pack(anchor="w")
        self.name = ttk.Entry(body, width=36)
        self.name.pack(fill="x", pady=(2, 8))
        self.error = ttk.Label(body, foreground="#c42b1c", wraplength=340)
        self.error.pack(anchor="w")
        row = ttk.Frame(body)
        row.pack(fill="x", pady=(12, 0))
        self.action = ttk.Button(row, text="Start chat", style="Accent.TButton",
                                 command=self.submit)
        self.action.pack(side="right")
        ttk.Button(row, text="Cancel", command=self.destroy).pack(side="right", padx=8)

    def show_error(self, message: str) -> None:
        self.error.configure(text=message)

    def submit(self) -> None:
        try:
            phone = parse_phone(self.phone.get())
        except UserError as exc:
            self.show_error(str(exc))
            return
        future = self._find(phone, self.name.get().strip()) if self._find is not None else None
        if future is None:
            self.show_error("Telegram is not connected: connect it first (click the status bar)")
            return
        self.show_error("")
        self.action.state(["disabled"])
        when_done(self, future, self._found, self._failed)

    def _failed(self, message: str) -> None:
        self.action.state(["!disabled"])
        self.show_error(message)

    def _found(self, dialog_id: int) -> None:
        self.destroy()
        self._on_found(dialog_id)
