"""Which profile to open, asked at start when several exist and ``--profile`` was not given.

A small window of its own (before the main window exists): the profiles, last used first and
selected, the ones open in another Chimera marked and not openable, and a field to create a new
one. Enter opens, Esc cancels (Chimera then exits without opening anything).
"""

from __future__ import annotations

import contextlib
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tkinter import ttk

from chimera_tk import APP_NAME
from chimera_tk.errors import ConfigError
from chimera_tk.fsutil import atomic_write_bytes
from chimera_tk.profiles import validate_profile_name
from chimera_tk.views.theme import apply_theme

_LAST_USED = "last_profile"


@dataclass(frozen=True, slots=True)
class ProfileChoice:
    name: str
    in_use: bool


def needs_choice(profiles: list[str], explicit: bool) -> bool:
    """Ask only when the user did not name a profile and there is more than one to pick from."""
    return not explicit and len(profiles) > 1


def last_used(data_root: Path) -> str | None:
    try:
        name = (data_root / _LAST_USED).read_text(encoding="utf-8").strip()
        return validate_profile_name(name)
    except (OSError, ConfigError):
        return None


def remember_last_used(data_root: Path, name: str) -> None:
    # only a convenience: if it cannot be written, next time the list is not pre-selected
    with contextlib.suppress(OSError):
        atomic_write_bytes(data_root / _LAST_USED, name.encode("utf-8"))


def ordered(choices: list[ProfileChoice], last: str | None) -> list[ProfileChoice]:
    """Last used first, then the rest by name."""
    return sorted(choices, key=lambda choice: (choice.name != last, choice.name.lower()))


def check_new_name(name: str, existing: list[str]) -> str:
    """The validated new profile name; ConfigError with a sentence the dialog shows."""
    name = validate_profile_name(name.strip())
    if name.lower() in (other.lower() for other in existing):
        raise ConfigError(f"a profile named {name!r} already exists")
    return name


class ProfileChooser(ttk.Frame):
    def __init__(self, root: tk.Tk, choices: list[ProfileChoice],
                 on_done: Callable[[str | None], None]) -> None:
        super().__init__(root, padding=20)
        self._root = root
        self._choices = choices
        self._on_done = on_done
        self.pack(fill="both", expand=True)
        self._build()
        root.bind("<Escape>", lambda _e: self.finish(None))
        root.protocol("WM_DELETE_WINDOW", lambda: self.finish(None))

    def _build(self) -> None:
        ttk.Label(self, text="Choose a profile", font="SunValleySubtitleFont").pack(anchor="w")
        ttk.Label(self, text="Each profile has its own Telegram account, team certificate and "
                  "messages.", wraplength=360, justify="left").pack(anchor="w", pady=(4, 10))
        self.listbox = tk.Listbox(self, height=min(8, max(3, len(self._choices))),
                                  activestyle="dotbox", exportselection=False)
        for choice in self._choices:
            label = f"{choice.name}   (open in another Chimera)" if choice.in_use else choice.name
            self.listbox.insert("end", label)
        self.listbox.pack(fill="both", expand=True)
        first_free = next((i for i, c in enumerate(self._choices) if not c.in_use), 0)
        self.listbox.selection_set(first_free)
        self.listbox.activate(first_free)
        self.listbox.bind("<Return>", lambda _e: self.open_selected())
        self.listbox.bind("<Double-Button-1>", lambda _e: self.open_selected())
        ttk.Label(self, text="New profile").pack(anchor="w", pady=(12, 0))
        row = ttk.Frame(self)
        row.pack(fill="x", pady=(2, 0))
        self.new_name = ttk.Entry(row)
        self.new_name.pack(side="left", fill="x", expand=True)
        self.new_name.bind("<Return>", lambda _e: self.create())
        ttk.Button(row, text="Create", command=self.create).pack(side="left", padx=(8, 0))
        self.error = ttk.Label(self, foreground="#c42b1c", wraplength=360)
        self.error.pack(anchor="w", pady=(6, 0))
        buttons = ttk.Frame(self)
        buttons.pack(fill="x", pady=(8, 0))
        self.open_button = ttk.Button(buttons, text="Open", style="Accent.TButton",
                                      command=self.open_selected)
        self.open_button.pack(side="right")
        ttk.Button(buttons, text="Cancel", command=lambda: self.finish(None)).pack(
            side="right", padx=8)
        self.listbox.focus_set()

    def open_selected(self) -> None:
        selected = self.listbox.curselection()
        if not selected:
            self.error.configure(text="Select a profile first.")
            return
        choice = self._choices[selected[0]]
        if choice.in_use:
            self.error.configure(text=f"{choice.name!r} is already open in another Chimera; "
                                      "switch to that window or choose another profile.")
            return
        self.finish(choice.name)

    def create(self) -> None:
        try:
            name = check_new_name(self.new_name.get(), [c.name for c in self._choices])
        except ConfigError as exc:
            self.error.configure(text=str(exc))
            self.new_name.focus_set()
            return
        self.finish(name)

    def finish(self, name: str | None) -> None:
        self._on_done(name)


def choose_profile(choices: list[ProfileChoice], theme: str,
                   last: str | None = None) -> str | None:
    """Show the chooser and block until the user picks (a name) or cancels (None)."""
    root = tk.Tk(className=APP_NAME)
    root.title(f"{APP_NAME} — profiles")
    apply_theme(root, theme)
    result: list[str | None] = [None]

    def done(name: str | None) -> None:
        result[0] = name
        root.quit()

    ProfileChooser(root, ordered(choices, last), done)
    root.minsize(380, 0)
    try:
        root.mainloop()
    finally:
        root.destroy()
    return result[0]
