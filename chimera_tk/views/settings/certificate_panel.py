"""The Certificate panel of Settings: what the certificate is, and Renew / Revoke / New.

The facts come from the host's ``certificate_details()`` (a CertificateSummary) and are read
again whenever the certificate or LAN status changes. Each action runs on the host's task
threads; meanwhile the buttons are off and a progress bar moves, and the outcome (or the error, in
plain words) is written under the buttons.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from concurrent.futures import Future
from tkinter import ttk
from typing import Any

from chimera_tk.events import StatusChanged
from chimera_tk.views.futures import when_done
from chimera_tk.views.settings.certificate_info import CertificateSummary
from chimera_tk.views.settings.wrapping import wrap_to_width

ROWS = (("user_id", "User id"), ("serial", "Serial"), ("not_before", "Valid from"),
        ("not_after", "Valid until"), ("issuer", "Issuer (CA)"), ("state_text", "State"),
        ("renewal", "Renewal"), ("crl", "Revocation list"))
STATE_STYLE = {"valid": "CertOk.TLabel", "expiring": "CertWarn.TLabel",
               "expired": "CertBad.TLabel", "revoked": "CertBad.TLabel", "none": "TLabel"}


class CertificatePanel(ttk.LabelFrame):
    def __init__(self, master: tk.Misc, host: Any) -> None:
        super().__init__(master, text="Certificate", padding=12)
        self._host = host
        self.values: dict[str, ttk.Label] = {}
        self.summary: CertificateSummary | None = None
        self.busy = False
        self.columnconfigure(1, weight=1)
        for row, (key, label) in enumerate(ROWS):
            ttk.Label(self, text=label).grid(row=row, column=0, sticky="nw", padx=(0, 16))
            value = ttk.Label(self, justify="left")
            value.grid(row=row, column=1, sticky="ew")
            wrap_to_width(value)
            self.values[key] = value
        buttons = ttk.Frame(self)
        buttons.grid(row=len(ROWS), column=0, columnspan=2, sticky="ew", pady=(10, 0))
        self.renew_button = ttk.Button(buttons, text="Renew now", command=self.renew)
        self.revoke_button = ttk.Button(buttons, text="Revoke…", command=self.ask_revoke)
        self.new_button = ttk.Button(buttons, text="New certificate…", command=self.ask_new)
        for button in (self.renew_button, self.revoke_button, self.new_button):
            button.pack(side="left", padx=(0, 8))
        self.progress = ttk.Progressbar(buttons, mode="indeterminate", length=120)
        self.message = ttk.Label(self, justify="left")
        self.message.grid(row=len(ROWS) + 1, column=0, columnspan=2, sticky="ew", pady=(6, 0))
        wrap_to_width(self.message)
        self.revoke_dialog: tk.Toplevel | None = None
        self.enroll_dialog: tk.Toplevel | None = None
        self._unsubscribe = host.dispatcher.subscribe(StatusChanged, self._on_status)
        self.refresh()

    def refresh(self) -> None:
        summary: CertificateSummary = self._host.certificate_details()
        self.summary = summary
        for key, label in self.values.items():
            label.configure(text=getattr(summary, key))
        self.values["state_text"].configure(style=STATE_STYLE[summary.state])
        self._update_buttons()

    def _update_buttons(self) -> None:
        state = self.summary.state if self.summary is not None else "none"
        usable = state in ("valid", "expiring")
        can_renew = usable and bool(self._host.config.team.ca_url)
        for button, enabled in ((self.renew_button, can_renew), (self.revoke_button, usable),
                                (self.new_button, True)):
            button.state(["!disabled"] if enabled and not self.busy else ["disabled"])

    def _on_status(self, event: StatusChanged) -> None:
        if event.component in ("certificate", "lan") and self.winfo_exists():
            self.refresh()

    # -- actions ---------------------------------------------------------------------------------

    def run(self, what: str, future: Future, then: Callable[[Any], str]) -> None:
        """Show ``what`` with a moving bar until ``future`` ends; then ``then(result)``'s text."""
        self.busy = True
        self._update_buttons()
        self.progress.pack(side="left", padx=(8, 0))
        self.progress.start(15)
        self.show(what)

        def finished() -> None:
            self.busy = False
            self.progress.stop()
            self.progress.pack_forget()
            self.refresh()

        def done(result: Any) -> None:
            finished()
            self.show(then(result))

        def failed(message: str) -> None:
            finished()
            self.show(message, error=True)

        when_done(self, future, done, failed)

    def show(self, text: str, *, error: bool = False) -> None:
        from chimera_tk.views.settings.live_theme import current_palette

        self.message.configure(text=text,
                               foreground=current_palette(self).error if error else "")

    def renew(self) -> None:
        old = self.summary.serial if self.summary is not None else "?"

        def renewed(identity: Any) -> str:
            return (f"Renewed: serial {old} replaced by {identity.serial:x}, valid until "
                    f"{identity.not_after.astimezone():%Y-%m-%d %H:%M}.")

        self.run("Renewing with the team CA…", self._host.renew_certificate(), renewed)

    def ask_revoke(self) -> None:
        from chimera_tk.views.settings.revoke_dialog import RevokeDialog

        if self.revoke_dialog is not None and self.revoke_dialog.winfo_exists():
            self.revoke_dialog.lift()
            return
        summary = self.summary
        self.revoke_dialog = RevokeDialog(
            self, user_id=summary.user_id, serial=summary.serial,
            revoke=lambda reason, note: self._revoke(reason, note))

    def _revoke(self, reason: int, note: str) -> Future:
        future = self._host.revoke_certificate(reason, note)
        self.run("Revoking with the team CA…", future,
                 lambda identity: f"Certificate serial {identity.serial:x} revoked. The LAN is "
                                  "off until you get a new certificate (New certificate…).")
        return future

    def ask_new(self) -> None:
        from chimera_tk.views.settings.enroll_dialog import EnrollDialog

        if self.enroll_dialog is not None and self.enroll_dialog.winfo_exists():
            self.enroll_dialog.lift()
            return
        summary = self.summary
        self.enroll_dialog = EnrollDialog(
            self, self._host, user_id=summary.user_id if summary and summary.user_id.isdigit()
            else "", on_joined=lambda enrollment: self.show(
                f"Joined: new certificate serial {enrollment.identity.serial:x} for id "
                f"{enrollment.identity.user_id}, valid until "
                f"{enrollment.identity.not_after.astimezone():%Y-%m-%d %H:%M}."))

    def destroy(self) -> None:
        self._unsubscribe()
        super().destroy()
