"""*Pair with a nearby person…* (Ctrl+Shift+P): trust someone without a team CA, by comparing codes.

While the dialog is open this computer listens on the pairing port (the window closes after
``lan.pairing_window_s``). It lists people announcing on the LAN whose certificate is not trusted
yet; choosing one calls them (their dialog must be open too). Both screens then show the same
six-digit code if nobody is in between; each person confirms, and only when both did is the
other's certificate pinned. The paired people are listed with an Unpair button.
"""

from __future__ import annotations

import ipaddress
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chimera_tk.errors import ChimeraError, UserError
from chimera_tk.events import EventDispatcher, PeerAnnounced, PeerExpired, PeerVerified
from chimera_tk.net.pairing.events import (
    PairingClosed,
    PairingCode,
    PairingFinished,
    PairingOpened,
    PairingRemoteConfirmed,
    PinsChanged,
    sentence,
)
from chimera_tk.net.pairing.worker import PairingWorker
from chimera_tk.pki.pairing import Pin, PinStore
from chimera_tk.pki.userid import InvalidUserId, parse_user_id

ERROR = "#c42b1c"
OK = "#0f7b0f"


def untrusted_nearby(announced: dict[int, str], verified: set[int] | dict[int, str],
                     pinned: set[int], own_id: int | None) -> list[tuple[int, str]]:
    """People announcing now whom this profile cannot verify yet: the ones worth pairing with."""
    return sorted((user_id, address) for user_id, address in announced.items()
                  if user_id not in verified and user_id not in pinned and user_id != own_id)


def countdown(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.999))
    return f"{seconds // 60}:{seconds % 60:02d}"


def parse_address(text: str) -> str:
    """An IPv4/IPv6 address or a host name typed by the user; UserError in plain words."""
    text = text.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if text and len(text) <= 253 and all(
            label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
            for label in labels):
        return text
    raise UserError(f"{text[:40]!r} is not an address: type the other computer's IP address, "
                    "e.g. 192.168.1.23")


class PairingDialog(tk.Toplevel):
    def __init__(self, master: tk.Misc, dispatcher: EventDispatcher, *,
                 worker: PairingWorker | None, pins: PinStore,
                 nearby: Callable[[], dict[int, str]] = dict,
                 verified: Callable[[], set[int] | dict[int, str]] = set,
                 make_identity: Callable[[int], None] | None = None,
                 on_unpaired: Callable[[int], None] | None = None) -> None:
        super().__init__(master)
        self.title("Pair with a nearby person")
        self.transient(master.winfo_toplevel())
        self.minsize(520, 0)
        self._worker = worker
        self._pins = pins
        self._nearby = nearby
        self._verified = verified
        self._make_identity = make_identity
        self._on_unpaired = on_unpaired
        self._window_ends: float | None = None
        self._tick: str | None = None
        self.code_shown: PairingCode | None = None
        self._build()
        self._unsubscribe = [dispatcher.subscribe(kind, handler) for kind, handler in (
            (PairingOpened, self._on_opened), (PairingClosed, self._on_closed),
            (PairingCode, self._on_code), (PairingRemoteConfirmed, self._on_remote_confirmed),
            (PairingFinished, self._on_finished), (PinsChanged, lambda _e: self.refresh_pins()),
            (PeerAnnounced, lambda _e: self.refresh_nearby()),
            (PeerExpired, lambda _e: self.refresh_nearby()),
            (PeerVerified, lambda _e: self.refresh_nearby()))]
        self.bind("<Escape>", lambda _e: self.destroy())
        self.protocol("WM_DELETE_WINDOW", self.destroy)
        self.refresh_nearby()
        self.refresh_pins()
        if worker is not None:
            try:
                worker.open()
            except ChimeraError as exc:
                self.show_status(f"This computer cannot be called: {exc}", ERROR)

    # -- building --------------------------------------------------------------------------------

    def _build(self) -> None:
        body = ttk.Frame(self, padding=20)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text="Pair with a nearby person", font="SunValleySubtitleFont") \
            .pack(anchor="w")
        ttk.Label(body, wraplength=480, justify="left",
                  text="For two people without a team: open this window on both computers and "
                       "choose the other person. Both screens show a code; confirm only if "
                       "the two codes are exactly the same.").pack(anchor="w", pady=(4, 10))
        self.window_label = ttk.Label(body, foreground="#606060")
        self.window_label.pack(anchor="w")
        if self._worker is None:
            self._build_no_identity(body)
        else:
            self._build_nearby(body)
        self._build_code(body)
        self.status = ttk.Label(body, wraplength=480, justify="left")
        self.status.pack(anchor="w", pady=(8, 0))
        self._build_paired(body)
        row = ttk.Frame(body)
        row.pack(fill="x", pady=(12, 0))
        ttk.Button(row, text="Close", command=self.destroy).pack(side="right")

    def _build_no_identity(self, body: ttk.Frame) -> None:
        frame = ttk.LabelFrame(body, text="Your personal certificate", padding=10)
        frame.pack(fill="x", pady=(8, 0))
        ttk.Label(frame, wraplength=460, justify="left",
                  text="This profile has no certificate yet. Make a personal one for your "
                       "Telegram user id (no team needed):").pack(anchor="w")
        row = ttk.Frame(frame)
        row.pack(fill="x", pady=(6, 0))
        self.user_id_entry = ttk.Entry(row, width=24)
        self.user_id_entry.pack(side="left")
        self.make_button = ttk.Button(row, text="Make certificate", style="Accent.TButton",
                                      command=self.make_identity)
        self.make_button.pack(side="left", padx=8)
        self.user_id_entry.focus_set()

    def _build_nearby(self, body: ttk.Frame) -> None:
        frame = ttk.LabelFrame(body, text="Nearby, not trusted yet", padding=10)
        frame.pack(fill="x", pady=(8, 0))
        self.nearby = ttk.Treeview(frame, columns=("address",), height=4, selectmode="browse")
        self.nearby.heading("#0", text="User id")
        self.nearby.heading("address", text="Address")
        self.nearby.column("#0", width=180)
        self.nearby.column("address", width=240)
        self.nearby.pack(fill="x")
        self.nearby.bind("<Double-1>", lambda _e: self.pair_selected())
        self.nearby.bind("<Return>", lambda _e: self.pair_selected())
        row = ttk.Frame(frame)
        row.pack(fill="x", pady=(6, 0))
        self.pair_button = ttk.Button(row, text="Pair", style="Accent.TButton",
                                      command=self.pair_selected)
        self.pair_button.pack(side="left")
        ttk.Label(row, text="or address:").pack(side="left", padx=(16, 4))
        self.address_entry = ttk.Entry(row, width=18)
        self.address_entry.pack(side="left")
        self.address_entry.bind("<Return>", lambda _e: self.pair_address())
        ttk.Button(row, text="Call", command=self.pair_address).pack(side="left", padx=4)

    def _build_code(self, body: ttk.Frame) -> None:
        self.code_frame = ttk.LabelFrame(body, text="Compare this code", padding=10)
        self.code_peer = ttk.Label(self.code_frame, wraplength=460)
        self.code_peer.pack(anchor="w")
        self.code_label = ttk.Label(self.code_frame, font=("TkFixedFont", 30, "bold"))
        self.code_label.pack(pady=6)
        ttk.Label(self.code_frame, text="Does the other screen show exactly this code?") \
            .pack(anchor="w")
        row = ttk.Frame(self.code_frame)
        row.pack(fill="x", pady=(6, 0))
        self.confirm_button = ttk.Button(row, text="Codes match — confirm",
                                         style="Accent.TButton", command=self.confirm)
        self.confirm_button.pack(side="left")
        self.reject_button = ttk.Button(row, text="They differ — cancel", command=self.reject)
        self.reject_button.pack(side="left", padx=8)

    def _build_paired(self, body: ttk.Frame) -> None:
        frame = ttk.LabelFrame(body, text="Paired people", padding=10)
        frame.pack(fill="x", pady=(10, 0))
        self.paired = ttk.Treeview(frame, columns=("name", "since"), height=3,
                                   selectmode="browse")
        self.paired.heading("#0", text="User id")
        self.paired.heading("name", text="Name")
        self.paired.heading("since", text="Paired")
        self.paired.column("#0", width=140)
        self.paired.column("name", width=140)
        self.paired.column("since", width=150)
        self.paired.pack(fill="x")
        self.unpair_button = ttk.Button(frame, text="Unpair", command=self.unpair_selected)
        self.unpair_button.pack(anchor="w", pady=(6, 0))

    # -- actions ---------------------------------------------------------------------------------

    def show_status(self, text: str, colour: str = "") -> None:
        self.status.configure(text=text, foreground=colour)

    def pair_selected(self) -> None:
        selection = self.nearby.selection()
        if not selection:
            self.show_status("Choose the person in the list first, or type their address.",
                             ERROR)
            return
        user_id = int(selection[0])
        address = self.nearby.set(selection[0], "address")
        self._call(address, f"user {user_id}")

    def pair_address(self) -> None:
        try:
            address = parse_address(self.address_entry.get())
        except UserError as exc:
            self.show_status(str(exc), ERROR)
            return
        self._call(address, address)

    def _call(self, address: str, who: str) -> None:
        assert self._worker is not None
        self.show_status(f"Calling {who}… their pairing window must be open.")
        self._worker.pair_with(address)

    def confirm(self) -> None:
        if self._worker is None or self.code_shown is None:
            return
        self.confirm_button.state(["disabled"])
        self._worker.confirm()
        self.show_status("Confirmed. Waiting for the other person to confirm too…")

    def reject(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.show_status("Cancelled: nothing was saved.")

    def unpair_selected(self) -> None:
        selection = self.paired.selection()
        if not selection:
            self.show_status("Choose a paired person first.", ERROR)
            return
        user_id = int(selection[0])
        self._pins.remove(user_id)
        if self._on_unpaired is not None:
            self._on_unpaired(user_id)
        self.refresh_pins()
        self.refresh_nearby()
        self.show_status(f"Unpaired user {user_id}: their certificate is no longer trusted.")

    def make_identity(self) -> None:
        try:
            user_id = parse_user_id(self.user_id_entry.get().strip())
        except InvalidUserId:
            self.show_status("Type your Telegram user id: digits only, e.g. 123456789.", ERROR)
            return
        if self._make_identity is None:
            return
        try:
            self._make_identity(user_id)
        except UserError as exc:
            self.show_status(str(exc), ERROR)

    # -- refreshing ------------------------------------------------------------------------------

    def refresh_nearby(self) -> None:
        if self._worker is None:
            return
        pinned = {pin.user_id for pin in self._safe_pins()}
        rows = untrusted_nearby(self._nearby(), self._verified(), pinned, self._worker.user_id)
        self.nearby.delete(*self.nearby.get_children())
        for user_id, address in rows:
            self.nearby.insert("", "end", iid=str(user_id), text=str(user_id),
                               values=(address,))
        if rows and not self.nearby.selection():
            self.nearby.selection_set(str(rows[0][0]))

    def refresh_pins(self) -> None:
        self.paired.delete(*self.paired.get_children())
        for pin in self._safe_pins():
            self.paired.insert("", "end", iid=str(pin.user_id), text=str(pin.user_id),
                               values=(pin.name or "—", pin.paired_at[:16].replace("T", " ")))

    def _safe_pins(self) -> list[Pin]:
        try:
            return self._pins.all()
        except UserError as exc:
            self.show_status(str(exc), ERROR)
            return []

    # -- events ----------------------------------------------------------------------------------

    def _on_opened(self, event: PairingOpened) -> None:
        assert self._worker is not None
        self._window_ends = time.monotonic() + event.seconds
        self._update_window()

    def _update_window(self) -> None:
        if self._window_ends is None:
            return
        left = self._window_ends - time.monotonic()
        you = f"You are user {self._worker.user_id}" if self._worker else ""
        self.window_label.configure(
            text=f"{you} · others can pair with this computer for {countdown(left)}")
        self._tick = self.after(1000, self._update_window) if left > 0 else None

    def _on_closed(self, event: PairingClosed) -> None:
        self._window_ends = None
        if self._tick is not None:
            self.after_cancel(self._tick)
            self._tick = None
        self.window_label.configure(text="Others can no longer call this computer "
                                         f"({event.reason}); close and reopen to try again.")

    def _on_code(self, event: PairingCode) -> None:
        self.code_shown = event
        who = f"user {event.peer_id}" + (f" ({event.peer_name})" if event.peer_name else "")
        way = "You called" if event.outgoing else "Call from"
        self.code_peer.configure(text=f"{way} {who} at {event.address}")
        self.code_label.configure(text=event.code)
        self.confirm_button.state(["!disabled"])
        self.reject_button.state(["!disabled"])
        self.code_frame.pack(fill="x", pady=(10, 0), before=self.status)
        self.confirm_button.focus_set()
        self.show_status("")
        self.lift()

    def _on_remote_confirmed(self, _event: PairingRemoteConfirmed) -> None:
        if self.confirm_button.instate(["disabled"]):
            return
        self.show_status("The other person confirmed. Confirm here if the codes match.")

    def _on_finished(self, event: PairingFinished) -> None:
        self.code_shown = None
        self.confirm_button.state(["disabled"])
        self.reject_button.state(["disabled"])
        if event.paired:
            self.code_frame.pack_forget()
            who = f"user {event.peer_id}" + (f" ({event.peer_name})" if event.peer_name else "")
            self.show_status(f"Paired with {who}: this computer now trusts their certificate "
                             "on the LAN.", OK)
        else:
            self.show_status(f"Not paired: {sentence(event.reason)} Nothing was saved.", ERROR)
        self.refresh_pins()
        self.refresh_nearby()

    def destroy(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._worker is not None:
            self._worker.cancel()
            self._worker.close()
        super().destroy()
