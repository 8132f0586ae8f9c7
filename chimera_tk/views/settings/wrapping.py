"""Labels whose text wraps at whatever width the layout gives them (Tk wraps at a fixed one)."""

from __future__ import annotations

from tkinter import ttk

MIN_WRAP = 80
MAX_NATURAL = 400


def wrap_to_width(label: ttk.Label) -> None:
    """Wrap ``label``'s text at its current width; grid it sticky "ew" (or pack fill="x").

    Until the first layout it wraps at ``MAX_NATURAL``, so a long text does not widen the window.
    """
    label.configure(wraplength=MAX_NATURAL)
    label.bind("<Configure>", lambda e: label.configure(wraplength=max(e.width - 4, MIN_WRAP)),
               add="+")
