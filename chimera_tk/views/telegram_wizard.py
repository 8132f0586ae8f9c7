"""*Connect Telegram*: api id and hash, phone, code, and the 2FA password when Telegram asks.

Every step runs on the Telegram worker and comes back as a future; the dialog polls it with
``after`` so the window never waits. Errors are shown under the field in plain words, and the
step can be tried again. The validators are plain functions that tests call without a display.
"""

from __future__ import annotations

import concurrent.futures
import re
import tkinter as tk
import webbrowser
from collections.abc import Callable
from tkinter import ttk
from typing import Any

from chimera_tk.errors import UserError
from chimera_tk.views.futures import when_done

API_PAGE = "https://my.telegram.org/apps"
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{5,20}")


def parse_api_id(text: str) -> int:
    text = text.strip()
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise UserError("api_id is the number shown on my.telegram.org (digits only)")
    return int(text)


def parse_api_hash(text: str) -> str:
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise UserError("api_hash is the 32 letters and digits shown on my.telegram.org")
    return text


def parse_phone(text: str) -> str:
    text = text.strip()
    if not _PHONE.fullmatch(text):
        raise UserError("write the number in international form, e.g. +55 21 99999-9999")
    digits = re.sub(r"[^0-9]", "", text)
    if not 7 <= len(digits) <= 15:
        raise UserError("a phone number has 7 to 15 digits with its country code")
    return "+" + digits


class ConnectTelegramDialog(tk.Toplevel):
    """Steps: credentials → phone → code → (password) → done."""

    def __init__(self, master: tk.Misc, *, api_id: int, api_hash: str,
                 save_credentials: Callable[[int, str], Any],
                 worker: Callable[[], Any]) -> None:
        super().__init__(master)
        self.title("Connect Telegram")
        self.transient(master.winfo_toplevel())
        self.resizable(False, False)
        self._save_credentials = save_credentials
        self._worker = worker
        self._body = ttk.Frame(self, padding=20)
        self._body.pack(fill="both", expand=True)
        self.step = ""
        self.error = ttk.Label(self._body, foreground="#c42b1c", wraplength=380)
        self.bind("<Escape>", lambda _e: self.destroy())
        self.show_credentials(api_id, api_hash)

    # -- pages -----------------------------------------------------------------------------------

    def _page(self, step: str, heading: str, explanation: str) -> ttk.Frame:
        self.step = step
        for child in self._body.winfo_children():
            if child is not self.error:
                child.destroy()
        self.error.pack_forget()  # packed again under the new page's fields, not above them
        self.error.configure(text="")
        ttk.Label(self._body, text=heading, font="SunValleySubtitleFont").pack(anchor="w")
        ttk.Label(self._body, text=explanation, wraplength=380, justify="left").pack(
            anchor="w", pady=(4, 12))
        form = ttk.Frame(self._body)
        form.pack(fill="x")
        return form

    def _field(self, form: ttk.Frame, label: str, value: str = "", *,
               secret: bool = False) -> ttk.Entry:
        ttk.Label(form, text=label).pack(anchor="w")
        entry = ttk.Entry(form, width=40, show="•" if secret else "")
        entry.insert(0, value)
        entry.pack(fill="x", pady=(2, 8))
        return entry

    def _buttons(self, action: str, command: Callable[[], None]) -> None:
        self.error.pack(anchor="w", pady=(4, 0))
        row = ttk.Frame(self._body)
        row.pack(fill="x", pady=(12, 0))
        self.action = ttk.Button(row, text=action, style="Accent.TButton", command=command)
        self.action.pack(side="right")
        ttk.Button(row, text="Cancel", command=self.destroy).pack(side="right", padx=8)
        self.bind("<Return>", lambda _e: command())

    def show_credentials(self, api_id: int, api_hash: str) -> None:
        form = self._page("credentials", "Connect Telegram",
                          "Chimera talks to Telegram as your own application. Create one (free, "
                          "once per account) and copy its api_id and api_hash here.")
        link = ttk.Label(form, text=API_PAGE, foreground="#005fb8", cursor="hand2")
        link.pack(anchor="w", pady=(0, 10))
        link.bind("<Button-1>", lambda _e: webbrowser.open(API_PAGE))
        self.api_id = self._field(form, "api_id", str(api_id or ""))
        self.api_hash = self._field(form, "api_hash", api_hash)
        self._buttons("Continue", self._submit_credentials)
        self.api_id.focus_set()

    def show_phone(self) -> None:
        form = self._page("phone", "Your phone number",
                          "Telegram sends a login code to your other Telegram apps (or by SMS).")
        self.phone = self._field(form, "Phone number", "+")
        self._buttons("Send code", self._submit_phone)
        self.phone.focus_set()
        self.phone.icursor("end")

    def show_code(self) -> None:
        form = self._page("code", "Login code", "Type the code Telegram just sent you.")
        self.code = self._field(form, "Code")
        self._buttons("Sign in", self._submit_code)
        self.code.focus_set()

    def show_password(self) -> None:
        form = self._page("password", "Two-step verification",
                          "This account is protected by a password. Type it to finish.")
        self.password = self._field(form, "Password", secret=True)
        self._buttons("Sign in", self._submit_password)
        self.password.focus_set()

    def show_done(self) -> None:
        self._page("done", "Connected",
                   "Chimera is signed in to Telegram. Your chats appear on the left as they "
                   "arrive.")
        self._buttons("Close", self.destroy)

    # -- actions ---------------------------------------------------------------------------------

    def _submit_credentials(self) -> None:
        try:
            api_id, api_hash = parse_api_id(self.api_id.get()), parse_api_hash(self.api_hash.get())
        except UserError as exc:
            self.show_error(str(exc))
            return
        self._save_credentials(api_id, api_hash)
        self._wait(self._worker().is_signed_in(),
                   lambda signed_in: self.show_done() if signed_in else self.show_phone())

    def _submit_phone(self) -> None:
        try:
            phone = parse_phone(self.phone.get())
        except UserError as exc:
            self.show_error(str(exc))
            return
        self._wait(self._worker().request_code(phone), lambda _r: self.show_code())

    def _submit_code(self) -> None:
        code = self.code.get().strip()
        if not code:
            self.show_error("type the code first")
            return
        self._wait(self._worker().submit_code(code),
                   lambda signed_in: self.show_done() if signed_in else self.show_password())

    def _submit_password(self) -> None:
        self._wait(self._worker().submit_password(self.password.get()),
                   lambda _r: self.show_done())

    def show_error(self, message: str) -> None:
        self.error.configure(text=message)

    def _wait(self, future: concurrent.futures.Future, then: Callable[[Any], None]) -> None:
        """Poll a worker future from Tk; never block the window while Telegram answers."""
        self.action.state(["disabled"])
        self.error.configure(text="")

        def done(result: Any) -> None:
            self.action.state(["!disabled"])
            then(result)

        def failed(message: str) -> None:
            self.action.state(["!disabled"])
            self.show_error(message)

        when_done(self, future, done, failed)
