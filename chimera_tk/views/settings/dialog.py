"""The Settings window: one notebook page per config section, each field with a hint.

Nothing is written until Save. Save runs :func:`validate_form`; each problem is shown under its
field (and its page is brought forward) and nothing is saved. A valid form goes to the host's
``apply_config``, which writes config.toml atomically and applies what it can at once; what must
wait for a restart is said once, in the footer. The theme is previewed as soon as it is chosen
and put back if the window is closed without saving.
"""

from __future__ import annotations

import logging
import tkinter as tk
from concurrent.futures import Future
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Protocol

from chimera_tk.config import Config
from chimera_tk.errors import UserError
from chimera_tk.events import EventDispatcher
from chimera_tk.views.settings.certificate_panel import CertificatePanel
from chimera_tk.views.settings.form import (
    FIELDS,
    PAGES,
    Field,
    FieldError,
    FormValue,
    config_to_form,
    validate_form,
)
from chimera_tk.views.settings.live_theme import current_palette, switch_theme
from chimera_tk.views.settings.wrapping import wrap_to_width
from chimera_tk.views.theme import resolve_theme

CERTIFICATE_PAGE = "Team & Certificate"

log = logging.getLogger(__name__)


class SettingsHost(Protocol):
    """What the dialog needs from the application (``App`` provides it)."""

    config: Config
    dispatcher: EventDispatcher

    def apply_config(self, new: Config) -> list[str]: ...

    def open_telegram_wizard(self) -> None: ...

    def certificate_details(self) -> object: ...

    def renew_certificate(self) -> Future: ...

    def revoke_certificate(self, reason_code: int, note: str) -> Future: ...

    def enroll_with_invite(self, code: str) -> Future: ...

    def send_enrollment_code(self, url: str, fingerprint: str, user_id: int) -> Future: ...

    def enroll_with_telegram_code(self, url: str, fingerprint: str, user_id: int,
                                  code: str) -> Future: ...


class SettingsDialog(tk.Toplevel):
    def __init__(self, master: tk.Misc, host: SettingsHost, *, page: str | None = None) -> None:
        super().__init__(master)
        self.title("Settings")
        self.transient(master.winfo_toplevel())
        self.minsize(560, 480)
        self._host = host
        self._saved_theme = host.config.ui.theme
        self.variables: dict[str, tk.Variable] = {}
        self.inputs: dict[str, ttk.Widget] = {}
        self.errors: dict[str, ttk.Label] = {}
        self.pages: dict[str, ttk.Frame] = {}
        self._restart_said: set[str] = set()
        self._build()
        self.load(host.config)
        self.bind("<Escape>", lambda _e: self.close())
        self.bind("<Return>", self._on_return)
        self.bind("<KP_Enter>", self._on_return)
        self.bind("<Control-s>", lambda _e: self.save())
        self.protocol("WM_DELETE_WINDOW", self.close)
        self.present(page)

    # -- building --------------------------------------------------------------------------------

    def _build(self) -> None:
        body = ttk.Frame(self, padding=(12, 12, 12, 0))
        body.pack(fill="both", expand=True)
        self.notebook = ttk.Notebook(body)
        self.notebook.pack(fill="both", expand=True)
        self.notebook.enable_traversal()  # Ctrl+Tab / Ctrl+Shift+Tab switch pages
        for name, fields in PAGES.items():
            page = ttk.Frame(self.notebook, padding=16)
            page.columnconfigure(1, weight=1)
            self.notebook.add(page, text=name)
            self.pages[name] = page
            row = 0
            for spec in fields:
                row = self._field_row(page, spec, row)
            if name == "Telegram":
                ttk.Button(page, text="Connect…", command=self._host.open_telegram_wizard) \
                    .grid(row=row, column=1, sticky="w", pady=(4, 0))
                ttk.Label(page, text="Sign in with your phone number (opens Connect Telegram).",
                          style="Hint.TLabel").grid(row=row + 1, column=1, sticky="w")
            if name == CERTIFICATE_PAGE:
                self.certificate = CertificatePanel(page, self._host)
                self.certificate.grid(row=row, column=0, columnspan=2, sticky="nsew",
                                      pady=(8, 0))
                page.rowconfigure(row, weight=1)
        footer = ttk.Frame(self, padding=12)
        footer.pack(fill="x")
        self.save_button = ttk.Button(footer, text="Save", style="Accent.TButton",
                                      command=self.save)
        self.save_button.pack(side="right")
        ttk.Button(footer, text="Cancel", command=self.close).pack(side="right", padx=8)
        self.notice = ttk.Label(footer, justify="left")
        self.notice.pack(side="left", fill="x", expand=True)
        wrap_to_width(self.notice)
        self._configure_styles()

    def _configure_styles(self) -> None:
        """ttk styles belong to one theme: set again after every light/dark switch."""
        palette = current_palette(self)
        style = ttk.Style(self)
        style.configure("Hint.TLabel", font="SunValleyCaptionFont", foreground=palette.muted)
        style.configure("FieldError.TLabel", font="SunValleyCaptionFont",
                        foreground=palette.error)
        style.configure("CertOk.TLabel", foreground=palette.lan)
        style.configure("CertWarn.TLabel", foreground="#9d5d00" if palette.name == "light"
                        else "#fce100")
        style.configure("CertBad.TLabel", foreground=palette.error)

    def _field_row(self, page: ttk.Frame, spec: Field, row: int) -> int:
        ttk.Label(page, text=spec.label).grid(row=row, column=0, sticky="w", padx=(0, 16),
                                              pady=(6, 0))
        widget = self._input(page, spec)
        widget.grid(row=row, column=1, sticky="w" if spec.kind == "bool" else "ew", pady=(6, 0))
        hint = ttk.Label(page, text=spec.hint, style="Hint.TLabel", justify="left")
        hint.grid(row=row + 1, column=1, sticky="ew")
        error = ttk.Label(page, style="FieldError.TLabel", justify="left")
        error.grid(row=row + 2, column=1, sticky="ew")
        for label in (hint, error):
            wrap_to_width(label)
        error.grid_remove()
        self.errors[spec.key] = error
        return row + 3

    def _input(self, page: ttk.Frame, spec: Field) -> ttk.Widget:
        if spec.kind == "bool":
            variable: tk.Variable = tk.BooleanVar(self)
            widget: ttk.Widget = ttk.Checkbutton(page, variable=variable,
                                                 style="Switch.TCheckbutton")
            self.inputs[spec.key] = widget
        elif spec.kind == "choice":
            variable = tk.StringVar(self)
            widget = ttk.Combobox(page, textvariable=variable, state="readonly",
                                  values=[shown for _stored, shown in spec.choices])
            self.inputs[spec.key] = widget
            if spec.key == "ui.theme":
                widget.bind("<<ComboboxSelected>>", lambda _e: self._preview_theme())
        elif spec.kind == "folder":
            variable = tk.StringVar(self)
            widget = ttk.Frame(page)
            entry = ttk.Entry(widget, textvariable=variable)
            entry.pack(side="left", fill="x", expand=True)
            self.browse_button = ttk.Button(widget, text="Browse…",
                                            command=lambda: self._browse(spec.key))
            self.browse_button.pack(side="left", padx=(8, 0))
            self.inputs[spec.key] = entry
        else:
            variable = tk.StringVar(self)
            widget = ttk.Entry(page, textvariable=variable,
                               show="•" if spec.kind == "secret" else "")
            self.inputs[spec.key] = widget
        self.variables[spec.key] = variable
        return widget

    # -- values ----------------------------------------------------------------------------------

    def load(self, config: Config) -> None:
        for key, value in config_to_form(config).items():
            spec = FIELDS[key]
            if spec.kind == "choice":
                value = dict(spec.choices).get(str(value), str(value))
            self.variables[key].set(value)

    def form_values(self) -> dict[str, FormValue]:
        return {key: variable.get() for key, variable in self.variables.items()}

    def set_value(self, key: str, value: FormValue) -> None:
        """Type into a field as a person would (tests use it); choices take the stored value."""
        spec = FIELDS[key]
        if spec.kind == "choice":
            value = dict(spec.choices).get(str(value), str(value))
        self.variables[key].set(value)

    def save(self) -> bool:
        """Validate; show every problem under its field, or save and apply. True when saved."""
        result = validate_form(self.form_values(), self._host.config)
        self._clear_errors()
        if isinstance(result, list):
            self._show_errors(result)
            return False
        try:
            later = self._host.apply_config(result)
        except UserError as exc:
            self.notice.configure(text=f"Not saved: {exc}", foreground=self._error_colour())
            return False
        except Exception as exc:  # a bug while applying: said in words, the log has the trace
            log.exception("applying the settings failed")
            self.notice.configure(text=f"Saved, but not all could be applied now ({exc}); "
                                       "restart Chimera to apply them.",
                                  foreground=self._error_colour())
            return True
        self._saved_theme = result.ui.theme
        self._configure_styles()
        new = [item for item in later if item not in self._restart_said]
        self._restart_said.update(later)
        if new:
            self.notice.configure(text=f"Saved. Restart Chimera to apply {', '.join(new)}.",
                                  foreground="")
        else:
            self.notice.configure(text="Saved.", foreground="")
        return True

    def _show_errors(self, errors: list[FieldError]) -> None:
        first_page = None
        for field, message in errors:
            label = self.errors.get(field)
            if label is None:  # a rule about a key with no field here: say it in the footer
                self.notice.configure(text=message, foreground=self._error_colour())
                continue
            label.configure(text=message)
            label.grid()
            if first_page is None:
                first_page = self._page_of(field)
                self.notebook.select(self.pages[first_page])
                self.inputs[field].focus_set()
        count = len(errors)
        if first_page is not None:
            self.notice.configure(text=f"Not saved: {count} value{'s' if count > 1 else ''} "
                                       "to correct.", foreground=self._error_colour())

    def _error_colour(self) -> str:
        return current_palette(self).error

    def _clear_errors(self) -> None:
        for label in self.errors.values():
            label.configure(text="")
            label.grid_remove()
        self.notice.configure(text="")

    def error_text(self, key: str) -> str:
        return str(self.errors[key].cget("text"))

    @staticmethod
    def _page_of(key: str) -> str:
        return next(name for name, fields in PAGES.items() if any(f.key == key for f in fields))

    # -- actions ---------------------------------------------------------------------------------

    def present(self, page: str | None = None) -> None:
        if page is not None and page in self.pages:
            self.notebook.select(self.pages[page])
        self.deiconify()
        self.lift()
        self.notebook.focus_set()

    def _preview_theme(self) -> None:
        result = validate_form({"ui.theme": self.variables["ui.theme"].get()}, self._host.config)
        if not isinstance(result, list):
            self._switch_theme(result.ui.theme)

    def _switch_theme(self, setting: str) -> None:
        switch_theme(self.nametowidget("."), setting)
        self._configure_styles()

    def _browse(self, key: str) -> None:
        current = str(self.variables[key].get()) or str(Path.home())
        chosen = filedialog.askdirectory(parent=self, initialdir=current,
                                         title="Folder for received files", mustexist=False)
        if chosen:
            self.variables[key].set(chosen)

    def _on_return(self, event: tk.Event) -> str:
        focused = self.focus_get()
        if isinstance(focused, ttk.Button):  # Enter on a focused button presses it
            focused.invoke()
        else:
            self.save()
        return "break"

    def destroy(self) -> None:
        # Drop the Tk variables now, on the Tk thread: left to the garbage collector they may be
        # freed on a worker thread, where tkinter cannot reach the interpreter.
        self.variables.clear()
        super().destroy()

    def close(self) -> None:
        if current_palette(self).name != resolve_theme(self._saved_theme):  # unsaved preview
            self._switch_theme(self._saved_theme)
        self.destroy()
