"""Events of a pairing window, posted by the pairing worker for the Tk thread (no secrets)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PairingOpened:
    """This side listens for a pairing caller on ``port`` until the window closes."""

    port: int
    seconds: float


@dataclass(frozen=True, slots=True)
class PairingClosed:
    """The pairing window is over (time up, closed by the user, or a listen error)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class PairingCode:
    """Show ``code`` next to who it is; the user compares it with the other screen."""

    peer_id: int
    peer_name: str
    code: str
    address: str
    outgoing: bool


@dataclass(frozen=True, slots=True)
class PairingRemoteConfirmed:
    peer_id: int


@dataclass(frozen=True, slots=True)
class PairingFinished:
    """The exchange ended: ``paired`` means both confirmed and the pin was written."""

    peer_id: int | None
    peer_name: str
    paired: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PinsChanged:
    """pins.json changed (paired here, or ``chimera pair`` / ``unpair`` in another process)."""

    removed: tuple[int, ...]  # user ids that are no longer pinned


def sentence(reason: str) -> str:
    """``reason`` ending in exactly one full stop or question mark, for "Not paired: …"."""
    reason = reason.rstrip()
    return reason if reason.endswith((".", "?", "!")) else reason + "."
