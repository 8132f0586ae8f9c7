"""*Unlock the LAN key*: asks for the private key's passphrase at start, when the keyring has none.

The dialog only collects the passphrase; ``try_unlock(passphrase, remember)`` (the app's
KeyUnlocker) decides, and a UserError it raises is shown under the field so the user can try again.
Skipping keeps the LAN off; Telegram and the rest of the window work either way, so the dialog does
not grab the whole application.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.errors import UserError


class UnlockKeyDialog(tk.Toplevel):
    """Masked passphrase entry, "Remember in the system keyring", Unlock / Skip LAN."""

    def __init__(self, master: tk.Misc, *, key_name: str, user_id: int,
                 keyring_available: bool, try_unlock: Callable[[str, bool], object],
                 on_unlocked: Callable[[], None], on_skip: Callable[[], None]) -> None:
        super().__init__(master)
        self.title("Unlock the LAN key")
        self.transient(master.winfo_toplevel())
        self.resizable(False, False)
        self._try_unlock = try_unlock
        self._on_unlocked = on_unlocked
        self._on_skip = on_skip
        self._finished = False
        body = ttk.Frame(self, padding=20)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text="Unlock your LAN key", font="SunValleySubtitleFont").pack(anchor="w")
        ttk.Label(body, wraplength=380, justify="left",
                  text=f"The private key {key_name} of user {user_id} is protected by a "
                       "passphrase. Enter it to start messaging on the local network. "
                       "Telegram works without it.").pack(anchor="w", pady=(4, 12))
        ttk.Label(body, text="Passphrase").pack(anchor="w")
        self.entry = ttk.Entry(body, width=40, show="•")
        self.entry.pack(fill="x", pady=(2, 8))
        label = "Remember in the system keyring"
        if not keyring_available:
            label += " (none found)"
        # No tk.BooleanVar: one outliving its interpreter raises in __del__ at exit.
        self.remember_box = ttk.Checkbutton(body, text=label)
        self.remember_box.state(["!alternate", "!selected"]
                                + ([] if keyring_available else ["disabled"]))
        self.remember_box.pack(anchor="w")
        self.error = ttk.Label(body, foreground="#c42b1c", wraplength=380)
        self.error.pack(anchor="w", pady=(8, 0))
        row = ttk.Frame(body)
        row.pack(fill="x", pady=(12, 0))
        self.unlock_button = ttk.Button(row, text="Unlock", style="Accent.TButton",
                                        command=self.submit)
        self.unlock_button.pack(side="right")
        self.skip_button = ttk.Button(row, text="Skip LAN", command=self.skip)
        self.skip_button.pack(side="right", padx=8)
        self.bind("<Return>", lambda _e: self.submit())
        self.bind("<KP_Enter>", lambda _e: self.submit())
        self.bind("<Escape>", lambda _e: self.skip())
        self.protocol("WM_DELETE_WINDOW", self.skip)
        self._center_over(master.winfo_toplevel())
        self.entry.focus_set()

    def _center_over(self, parent: tk.Misc) -> None:
        """Over the main window rather than wherever the window manager puts new windows."""
        self.update_idletasks()
        x = parent.winfo_rootx() + (parent.winfo_width() - self.winfo_reqwidth()) // 2
        y = parent.winfo_rooty() + (parent.winfo_height() - self.winfo_reqheight()) // 3
        self.geometry(f"+{max(0, x)}+{max(0, y)}")

    @property
    def remember_chosen(self) -> bool:
        return self.remember_box.instate(["selected", "!disabled"])

    def submit(self) -> None:
        if self._finished:
            return
        passphrase = self.entry.get()
        self.entry.delete(0, "end")  # the widget keeps no copy, right or wrong
        if not passphrase:
            self.error.configure(text="Enter the passphrase, or choose Skip LAN.")
            return
        try:
            self._try_unlock(passphrase, self.remember_chosen)
        except UserError as exc:
            self.error.configure(text=f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
            self.entry.focus_set()
            return
        self._finish(self._on_unlocked)

    def skip(self) -> None:
        if not self._finished:
            self._finish(self._on_skip)

    def _finish(self, then: Callable[[], None]) -> None:
        self._finished = True
        self.destroy()
        then()
