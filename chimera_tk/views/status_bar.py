"""The status bar: Telegram connection, LAN peers, certificate; fed only by StatusChanged events."""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.events import EventDispatcher, StatusChanged

COMPONENTS = {
    "telegram": "Telegram: not connected",
    "lan": "LAN: not started",
    "certificate": "Certificate: none",
}
# A warning (e.g. renewal keeps failing) must stand out from "info" before it becomes an error.
LEVEL_COLOURS = {"error": "#c42b1c", "warning": "#9d5d00"}


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
        self._full_text = dict(COMPONENTS)
        self._fit_pending: str | None = None
        self.bind("<Configure>", lambda _e: self._schedule_fit(), add="+")
        self._unsubscribe = dispatcher.subscribe(StatusChanged, self._on_status)
        if on_telegram is not None:  # clicking the Telegram state opens Connect Telegram
            self.labels["telegram"].configure(cursor="hand2")
            self.labels["telegram"].bind("<Button-1>", lambda _e: on_telegram())

    def text(self, component: str) -> str:
        """The whole status text (the label may show it shortened with "…" when space is short)."""
        return self._full_text[component]

    def make_clickable(self, component: str, action: Callable[[], object]) -> None:
        """A click on ``component``'s text runs ``action`` (the certificate opens Settings)."""
        self.labels[component].configure(cursor="hand2")
        self.labels[component].bind("<Button-1>", lambda _e: action())

    def _on_status(self, event: StatusChanged) -> None:
        label = self.labels.get(event.component)
        if label is not None:
            self._full_text[event.component] = event.text
            label.configure(text=event.text, foreground=LEVEL_COLOURS.get(event.level, ""))
            self._schedule_fit()

    def _schedule_fit(self) -> None:
        if self._fit_pending is None:
            self._fit_pending = self.after_idle(self._fit)

    def _fit(self) -> None:
        """Shorten the longest texts with "…" until everything fits, so the widgets packed to
        the right (settings, LAN meter) are never pushed out or overlapped."""
        self._fit_pending = None
        if not self.winfo_exists():
            return
        others = 0
        for child in self.pack_slaves():
            if child in self.labels.values():
                continue
            others += child.winfo_reqwidth() + _horizontal_padding(child)
        available = self.winfo_width() - others - 24  # the frame's own padding, and a margin
        texts = fit_texts(self._full_text, available, _label_font(self))
        for component, label in self.labels.items():
            if label.cget("text") != texts[component]:
                label.configure(text=texts[component])

    def destroy(self) -> None:
        self._unsubscribe()
        super().destroy()


def fit_texts(texts: dict[str, str], available: int, measure: Callable[[str], int],
              shortest: int = 14) -> dict[str, str]:
    """The texts, the longest shortened one character at a time (ending in "…") until their
    widths add up to ``available`` pixels or every text is down to ``shortest`` characters."""
    fitted = dict(texts)
    widths = {key: measure(text) for key, text in fitted.items()}
    while sum(widths.values()) > available:
        longest = max((key for key in fitted if len(fitted[key]) > shortest),
                      key=lambda key: widths[key], default=None)
        if longest is None:
            break
        text = fitted[longest].removesuffix("…")
        fitted[longest] = text[:-1].rstrip() + "…"
        widths[longest] = measure(fitted[longest])
    return fitted


def _horizontal_padding(widget: tk.Misc) -> int:
    padx = widget.pack_info().get("padx", 0)
    parts = padx if isinstance(padx, tuple | list) else str(padx).split()
    numbers = [int(float(str(part))) for part in parts] or [0]
    return 2 * numbers[0] if len(numbers) == 1 else sum(numbers[:2])


def _label_font(widget: tk.Misc) -> Callable[[str], int]:
    name = ttk.Style(widget).lookup("TLabel", "font") or "TkDefaultFont"
    try:
        font = tkfont.nametofont(name, root=widget)
    except tk.TclError:
        font = tkfont.Font(root=widget, font=name)
    return font.measure
