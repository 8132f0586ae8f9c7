"""Revoke…: the reason (the seed's RFC 5280 list), a note, then a confirmation naming the serial.

Revocation cannot be undone, so it takes two steps: first the reason and note, then a page that
repeats the serial and what will happen, with the button that does it. Errors from the CA are
shown on that page and the step can be tried again.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from concurrent.futures import Future
from tkinter import ttk

from chimera_tk.pki.reasons import MAX_NOTE_LENGTH, REASONS, valid_note
from chimera_tk.views.futures import when_done
from chimera_tk.views.settings.live_theme import current_palette

REASON_CHOICES = [f"{code} — {name}" for code, name in REASONS.items()]


def parse_reason(choice: str) -> int | None:
    """The reason code of a list entry ("1 — KeyCompromise" -> 1); None when nothing fits."""
    head = choice.split("—", 1)[0].strip()
    return int(head) if head.isdigit() and int(head) in REASONS else None


class RevokeDialog(tk.Toplevel):
    def __init__(self, master: tk.Misc, *, user_id: str, serial: str,
                 revoke: Callable[[int, str], Future]) -> None:
        super().__init__(master)
        self.title("Revoke certificate")
        self.transient(master.winfo_toplevel())
        self.resizable(False, False)
        self._revoke = revoke
        self.user_id = user_id
        self.serial = serial
        self.reason: int | None = None
        self.note = ""
        self.step = ""
        self._body = ttk.Frame(self, padding=20)
        self._body.pack(fill="both", expand=True)
        self.bind("<Escape>", lambda _e: self.destroy())
        self.bind("<Return>", lambda _e: self.action.invoke())
        self.bind("<KP_Enter>", lambda _e: self.action.invoke())
        self.show_reason()

    def _page(self, step: str, heading: str, text: str) -> ttk.Frame:
        self.step = step
        for child in self._body.winfo_children():
            child.destroy()
        ttk.Label(self._body, text=heading, font="SunValleySubtitleFont").pack(anchor="w")
        ttk.Label(self._body, text=text, wraplength=420, justify="left").pack(
            anchor="w", pady=(4, 12))
        form = ttk.Frame(self._body)
        form.pack(fill="x")
        self.error = ttk.Label(self._body, wraplength=420, justify="left",
                               foreground=current_palette(self).error)
        return form

    def _buttons(self, back: tuple[str, Callable[[], None]], action: str,
                 command: Callable[[], None]) -> None:
        self.error.pack(anchor="w", pady=(8, 0))
        row = ttk.Frame(self._body)
        row.pack(fill="x", pady=(12, 0))
        self.action = ttk.Button(row, text=action, style="Accent.TButton", command=command)
        self.action.pack(side="right")
        self.back = ttk.Button(row, text=back[0], command=back[1])
        self.back.pack(side="right", padx=8)
        self.progress = ttk.Progressbar(row, mode="indeterminate", length=100)

    def show_reason(self) -> None:
        form = self._page("reason", "Revoke this certificate?",
                          "Do this when the computer or its key is lost or was misused. Team "
                          "members refuse a revoked certificate within minutes; this profile "
                          "then needs a new certificate to use the LAN. Telegram keeps working.")
        ttk.Label(form, text="Reason").pack(anchor="w")
        self.reason_box = ttk.Combobox(form, values=REASON_CHOICES, state="readonly", width=36)
        if self.reason is not None:
            self.reason_box.set(f"{self.reason} — {REASONS[self.reason]}")
        self.reason_box.pack(anchor="w", pady=(2, 8))
        ttk.Label(form, text="Note (optional, kept by the team CA)").pack(anchor="w")
        self.note_entry = ttk.Entry(form, width=48)
        self.note_entry.insert(0, self.note)
        self.note_entry.pack(fill="x", pady=(2, 0))
        self._buttons(("Cancel", self.destroy), "Continue…", self.confirm)
        self.reason_box.focus_set()

    def confirm(self) -> None:
        reason = parse_reason(self.reason_box.get())
        note = self.note_entry.get().strip()
        if reason is None:
            self.error.configure(text="choose why the certificate is revoked")
            return
        if not valid_note(note):
            self.error.configure(text=f"the note must be one line of at most "
                                      f"{MAX_NOTE_LENGTH} characters")
            return
        self.reason, self.note = reason, note
        self.show_confirmation()

    def show_confirmation(self) -> None:
        form = self._page("confirm", "Revoke it for good?",
                          f"The certificate of id {self.user_id}, serial {self.serial}, goes on "
                          "the team's revocation list. This cannot be undone.")
        for label, value in (("Reason", f"{self.reason} — {REASONS[self.reason]}"),
                             ("Note", self.note or "(none)")):
            line = ttk.Frame(form)
            line.pack(fill="x")
            ttk.Label(line, text=f"{label}:", width=8).pack(side="left")
            ttk.Label(line, text=value, wraplength=340, justify="left").pack(side="left")
        self._buttons(("Back", self.show_reason), "Revoke certificate", self.submit)
        self.action.focus_set()

    def submit(self) -> None:
        if self.step != "confirm" or self.reason is None:
            return
        for button in (self.action, self.back):
            button.state(["disabled"])
        self.progress.pack(side="left")
        self.progress.start(15)
        self.error.configure(text="")

        def failed(message: str) -> None:
            self.progress.stop()
            self.progress.pack_forget()
            for button in (self.action, self.back):
                button.state(["!disabled"])
            self.error.configure(text=message)

        when_done(self, self._revoke(self.reason, self.note), lambda _r: self.destroy(), failed)
