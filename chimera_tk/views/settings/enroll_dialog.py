"""New certificate…: join a team with an invite code, or with a code sent on Telegram.

Either way the app makes a new key, gets it certified and saves the files only when everything
checked out; the LAN then restarts with the new certificate. The Telegram way takes two steps:
ask the identity provider to send a code, then type it.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from concurrent.futures import Future
from tkinter import ttk
from typing import Any

from chimera_tk.pki.userid import InvalidUserId, parse_user_id
from chimera_tk.views.futures import when_done
from chimera_tk.views.settings.live_theme import current_palette


class EnrollDialog(tk.Toplevel):
    def __init__(self, master: tk.Misc, host: Any, *, user_id: str,
                 on_joined: Callable[[Any], None]) -> None:
        super().__init__(master)
        self.title("New certificate")
        self.transient(master.winfo_toplevel())
        self.resizable(False, False)
        self._host = host
        self._on_joined = on_joined
        body = ttk.Frame(self, padding=20)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text="Get a new certificate", font="SunValleySubtitleFont").pack(
            anchor="w")
        ttk.Label(body, wraplength=440, justify="left",
                  text="Chimera makes a new key on this computer and has the team CA certify "
                       "it. The current certificate stays in use until the new one is saved."
                  ).pack(anchor="w", pady=(4, 12))
        self.method = tk.StringVar(self, value="invite")
        ttk.Radiobutton(body, text="Invite code from the team admin", value="invite",
                        variable=self.method, command=self._show_method).pack(anchor="w")
        ttk.Radiobutton(body, text="Code sent to my Telegram account", value="telegram",
                        variable=self.method, command=self._show_method).pack(anchor="w")
        self.forms = ttk.Frame(body)
        self.forms.pack(fill="x", pady=(10, 0))
        self.invite_form = ttk.Frame(self.forms)
        self.invite = self._entry(self.invite_form, "Invite code", "")
        self.telegram_form = ttk.Frame(self.forms)
        self.telegram_id = self._entry(self.telegram_form, "Telegram user id", user_id)
        self.provider = self._entry(self.telegram_form, "Identity provider (https://HOST:PORT)",
                                    host.config.team.identity_url)
        self.fingerprint = self._entry(self.telegram_form, "Team root fingerprint (empty: the "
                                       "one this profile already trusts)", "")
        self.code_label = ttk.Label(self.telegram_form, text="Code received on Telegram")
        self.code = ttk.Entry(self.telegram_form, width=52)
        self.error = ttk.Label(body, wraplength=440, justify="left",
                               foreground=current_palette(self).error)
        self.error.pack(anchor="w", pady=(8, 0))
        row = ttk.Frame(body)
        row.pack(fill="x", pady=(12, 0))
        self.action = ttk.Button(row, text="Join", style="Accent.TButton", command=self.submit)
        self.action.pack(side="right")
        ttk.Button(row, text="Cancel", command=self.destroy).pack(side="right", padx=8)
        self.progress = ttk.Progressbar(row, mode="indeterminate", length=100)
        self.code_sent = False
        self.bind("<Escape>", lambda _e: self.destroy())
        self.bind("<Return>", lambda _e: self.action.invoke())
        self._show_method()

    def destroy(self) -> None:
        self.method = None  # freed now, on the Tk thread (see SettingsDialog.destroy)
        super().destroy()

    @staticmethod
    def _entry(form: ttk.Frame, label: str, value: str) -> ttk.Entry:
        ttk.Label(form, text=label).pack(anchor="w")
        entry = ttk.Entry(form, width=52)
        entry.insert(0, value)
        entry.pack(fill="x", pady=(2, 8))
        return entry

    def _show_method(self) -> None:
        self.invite_form.pack_forget()
        self.telegram_form.pack_forget()
        if self.method.get() == "invite":
            self.invite_form.pack(fill="x")
            self.action.configure(text="Join")
            self.invite.focus_set()
        else:
            self.telegram_form.pack(fill="x")
            self.action.configure(text="Join" if self.code_sent else "Send code")
            self.telegram_id.focus_set()
        self.error.configure(text="")

    def submit(self) -> None:
        if self.method.get() == "invite":
            code = self.invite.get().strip()
            if not code:
                self.error.configure(text="paste the invite code your team admin sent you")
                return
            self._wait(self._host.enroll_with_invite(code), self._joined)
            return
        try:
            user_id = parse_user_id(self.telegram_id.get().strip())
        except InvalidUserId:
            self.error.configure(text="the Telegram user id is a number (your account's id)")
            return
        url, fingerprint = self.provider.get().strip(), self.fingerprint.get().strip()
        if not self.code_sent:
            self._wait(self._host.send_enrollment_code(url, fingerprint, user_id),
                       lambda _r: self._code_sent())
            return
        code = self.code.get().strip()
        if not code:
            self.error.configure(text="type the code Telegram sent you")
            return
        self._wait(self._host.enroll_with_telegram_code(url, fingerprint, user_id, code),
                   self._joined)

    def _code_sent(self) -> None:
        self.code_sent = True
        self.code_label.pack(anchor="w")
        self.code.pack(fill="x", pady=(2, 8))
        self.action.configure(text="Join")
        self.error.configure(text="A code was sent to your Telegram account; it is valid for "
                                  "a few minutes.", foreground="")
        self.code.focus_set()

    def _joined(self, enrollment: Any) -> None:
        self._on_joined(enrollment)
        self.destroy()

    def _wait(self, future: Future, then: Callable[[Any], None]) -> None:
        self.action.state(["disabled"])
        self.progress.pack(side="left")
        self.progress.start(15)
        self.error.configure(text="", foreground=current_palette(self).error)

        def finish() -> None:
            self.progress.stop()
            self.progress.pack_forget()
            self.action.state(["!disabled"])

        def done(result: Any) -> None:
            finish()
            then(result)

        def failed(message: str) -> None:
            finish()
            self.error.configure(text=message, foreground=current_palette(self).error)

        when_done(self, future, done, failed)
