"""Cyclic garbage is collected on the Tk thread only.

Python runs its cycle collector in whichever thread happens to allocate when a threshold is
crossed. If that is a worker thread (Telethon, the tray, the peer link) and the garbage holds a Tk
object (a PhotoImage, a Variable, a widget of a closed dialog), its ``__del__`` calls into Tcl from
the wrong thread, and Tcl aborts the whole process ("Fatal Python error: Aborted", seen in the
suite). So while the window exists automatic collection is off and the Tk thread collects on a
timer instead: the young generation every second, everything every minute. Objects without cycles
are still freed at once by reference counting, wherever they die.
"""

from __future__ import annotations

import contextlib
import gc
import tkinter as tk

YOUNG_EVERY_MS = 1000
FULL_EVERY = 60  # young collections per full one


class TkThreadGarbageCollector:
    def __init__(self, root: tk.Misc) -> None:
        self._root = root
        self._was_enabled = gc.isenabled()
        self._ticks = 0
        self._after: str | None = None

    def start(self) -> TkThreadGarbageCollector:
        gc.disable()
        self._after = self._root.after(YOUNG_EVERY_MS, self._collect)
        return self

    def _collect(self) -> None:
        self._ticks += 1
        gc.collect(2 if self._ticks % FULL_EVERY == 0 else 0)
        self._after = self._root.after(YOUNG_EVERY_MS, self._collect)

    def stop(self) -> None:
        """Cancel the timer, collect everything now (on this, the Tk thread), restore the GC."""
        if self._after is not None:
            with contextlib.suppress(tk.TclError):  # the window may already be gone
                self._root.after_cancel(self._after)
            self._after = None
        gc.collect()
        if self._was_enabled:
            gc.enable()
