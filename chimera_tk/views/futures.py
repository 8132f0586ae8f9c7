"""Waiting for a worker's future from Tk without ever blocking the window."""

from __future__ import annotations

import concurrent.futures
import tkinter as tk
from collections.abc import Callable
from typing import Any

from chimera_tk.errors import UserError

POLL_MS = 50


def when_done(widget: tk.Misc, future: concurrent.futures.Future,
              then: Callable[[Any], None], show_error: Callable[[str], None]) -> None:
    """Call ``then(result)`` on the Tk thread once ``future`` is done, or ``show_error`` with
    words a person can read. Nothing happens if ``widget`` was closed meanwhile."""

    def poll() -> None:
        if not widget.winfo_exists():
            return
        if not future.done():
            widget.after(POLL_MS, poll)
            return
        try:
            result = future.result()
        except UserError as exc:
            show_error(str(exc))
            return
        except Exception as exc:  # the network, or Telegram, said something unexpected
            show_error(f"Telegram did not answer as expected: {exc}")
            return
        then(result)

    poll()
