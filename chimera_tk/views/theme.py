"""The ttk theme (Sun Valley, light or dark) and matching colours for the non-ttk widgets."""

from __future__ import annotations

import logging
import tkinter as tk
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Palette:
    name: str
    background: str
    surface: str
    text: str
    muted: str
    accent: str
    bubble_out: str
    bubble_in: str
    error: str
    lan: str
    telegram: str
    sponsored: str  # background of Telegram's sponsored messages: never mistaken for a post


LIGHT = Palette("light", background="#fafafa", surface="#ffffff", text="#1c1c1c",
                muted="#6b6b6b", accent="#005fb8", bubble_out="#dcecff", bubble_in="#f0f0f0",
                error="#c42b1c", lan="#0f7b0f", telegram="#2a7fd4", sponsored="#fff4ce")
DARK = Palette("dark", background="#1c1c1c", surface="#202020", text="#f0f0f0",
               muted="#a0a0a0", accent="#57c8ff", bubble_out="#1f3a55", bubble_in="#2b2b2b",
               error="#ff99a4", lan="#6ccb5f", telegram="#60b0ff", sponsored="#433519")


def resolve_theme(setting: str) -> str:
    """``system`` follows the desktop's dark mode where it can be read, else light."""
    if setting in ("light", "dark"):
        return setting
    try:
        import darkdetect

        return "dark" if darkdetect.isDark() else "light"
    except Exception:  # a missing or confused desktop setting must never stop the app
        log.debug("could not read the system theme; using light", exc_info=True)
        return "light"


def apply_theme(root: tk.Tk, setting: str) -> Palette:
    import sv_ttk

    name = resolve_theme(setting)
    sv_ttk.set_theme(name, root)
    palette = DARK if name == "dark" else LIGHT
    root.configure(background=palette.background)
    return palette
