"""The multi-line message box: Enter sends, Shift+Enter starts a new line."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.errors import UserError
from chimera_tk.views.theme import Palette


class Composer(ttk.Frame):
    def __init__(self, master: tk.Misc, palette: Palette,
                 on_send: Callable[[str], None],
                 on_attach: Callable[[], None] | None = None) -> None:
        super().__init__(master, padding=(12, 6, 12, 10))
        self._on_send = on_send
        # While set, Enter and the button hand the text here instead (editing a sent message).
        self.send_override: Callable[[str], None] | None = None
        self._on_attach = on_attach
        self._palette = palette
        self._build()

    def _build(self) -> None:
        p = self._palette
        self.error = ttk.Label(self, foreground=p.error)
        row = ttk.Frame(self)
        row.pack(side="bottom", fill="x")
        self.send_button = ttk.Button(row, text="Send", style="Accent.TButton",
                                      command=self.send)
        self.send_button.pack(side="right", padx=(8, 0), fill="y")
        self.attach_button = ttk.Button(row, text="Attach", command=self.attach, width=7)
        self.attach_button.pack(side="left", padx=(0, 8), fill="y")
        self.text = tk.Text(row, width=1, height=3, wrap="word", undo=True, borderwidth=0,
                            relief="flat", highlightthickness=1, highlightbackground=p.muted,
                            highlightcolor=p.accent, padx=8, pady=6, background=p.surface,
                            foreground=p.text, insertbackground=p.text,
                            font="SunValleyBodyFont")
        self.text.pack(side="left", fill="both", expand=True)
        self.text.bind("<Return>", self._on_return)
        self.text.bind("<KP_Enter>", self._on_return)
        self.text.bind("<Shift-Return>", self._on_shift_return)
        self.text.bind("<Control-o>", lambda _e: (self.attach(), "break")[1])

    def set_enabled(self, enabled: bool) -> None:
        self.text.configure(state="normal" if enabled else "disabled")
        for button in (self.send_button, self.attach_button):
            button.state(["!disabled"] if enabled else ["disabled"])

    def attach(self) -> None:
        if self._on_attach is not None:
            self._on_attach()

    def content(self) -> str:
        return self.text.get("1.0", "end-1c")

    def send(self) -> None:
        text = self.content()
        if not text.strip():
            return
        try:
            (self.send_override or self._on_send)(text)
        except UserError as exc:
            self.show_error(str(exc))
            return  # the text stays in the box: nothing the user typed is lost
        self.text.delete("1.0", "end")
        self.show_error("")

    def show_error(self, message: str) -> None:
        if message:
            self.error.configure(text=message)
            self.error.pack(side="top", anchor="w", pady=(0, 4))
        else:
            self.error.pack_forget()

    def _on_return(self, _event: object) -> str:
        self.send()
        return "break"

    def _on_shift_return(self, _event: object) -> str:
        self.text.insert("insert", "\n")
        self.text.see("insert")
        return "break"
