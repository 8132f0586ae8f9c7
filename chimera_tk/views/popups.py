"""Keyboard focus after a popup closes.

When a focused toplevel is destroyed, X gives the focus to nobody (or to whatever is under the
pointer); without a window manager to hand it back, the main window would then ignore the keys
the user types next, right after choosing a chat in a popup. So the popup gives it back.
"""

from __future__ import annotations

import contextlib
import tkinter as tk


def give_focus_back(window: tk.Misc) -> None:
    """Give the keyboard back to ``window``'s toplevel, keeping the widget Tk had chosen in it."""
    with contextlib.suppress(tk.TclError):  # the main window may be closing too
        top = window.winfo_toplevel()
        if top.winfo_exists() and top.winfo_viewable():
            inside = top.focus_lastfor()
            top.focus_force()
            if inside is not None:
                inside.focus_set()


def focus_when_shown(popup: tk.Toplevel, widget: tk.Misc) -> None:
    """Put the keyboard in ``widget`` as soon as ``popup`` is on screen (X refuses the focus to a
    window that is not mapped yet, and no window manager may be there to give it later)."""
    widget.focus_set()
    taken = [False]

    def on_map(event: tk.Event) -> None:
        if event.widget is popup and not taken[0]:
            taken[0] = True
            with contextlib.suppress(tk.TclError):
                widget.focus_force()

    popup.bind("<Map>", on_map, add="+")
