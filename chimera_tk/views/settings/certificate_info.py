"""What the Certificate panel says about the profile's certificate, as plain text (no Tk).

States: ``none`` (no certificate), ``valid``, ``expiring`` (renewal is due: a third of the
lifetime or less is left), ``expired``, ``revoked`` (on the team CRL, or revoked from this
window). ``relative_time`` writes "in 9 days" / "3 hours ago" for the expiry line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chimera_tk.pki.identity import Identity

STATE_TEXT = {
    "none": "No certificate: join a team with New certificate…",
    "valid": "Valid",
    "expiring": "Valid, renewal due",
    "expired": "Expired: get a new certificate",
    "revoked": "Revoked: get a new certificate",
}


@dataclass(frozen=True, slots=True)
class CrlState:
    """What the LAN's revocation watcher last saw; ``updated`` is None before the first fetch."""

    url: str = ""
    updated: datetime | None = None
    revoked_count: int = 0


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    state: str
    user_id: str
    serial: str
    not_before: str
    not_after: str
    issuer: str
    renewal: str
    crl: str

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.state]


def relative_time(moment: datetime, now: datetime) -> str:
    """"in 9 days", "in 3 hours", "in 5 minutes", "2 days ago"; whole units, rounded down."""
    delta = moment - now
    future = delta >= timedelta(0)
    seconds = abs(delta.total_seconds())
    units = [(unit, int(seconds // size)) for unit, size in
             (("day", 86400), ("hour", 3600), ("minute", 60)) if seconds >= size]
    if not units:
        return "now"
    unit, count = units[0]
    words = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"in {words}" if future else f"{words} ago"


def _local(moment: datetime) -> str:
    return f"{moment.astimezone():%Y-%m-%d %H:%M}"


def summarize(identity: Identity | None, *, revoked: bool, crl: CrlState,
              auto_renew: bool, now: datetime | None = None) -> CertificateSummary:
    now = now or datetime.now(UTC)
    if identity is None:
        return CertificateSummary("none", "—", "—", "—", "—", "—", "—", _crl_text(crl, None))
    if revoked:
        state = "revoked"
    elif now >= identity.not_after:
        state = "expired"
    elif identity.renewal_due(now):
        state = "expiring"
    else:
        state = "valid"
    return CertificateSummary(
        state=state, user_id=str(identity.user_id),
        serial=f"{identity.serial:x}",  # as chimera --revoke and the logs write it
        not_before=_local(identity.not_before),
        not_after=f"{_local(identity.not_after)} ({relative_time(identity.not_after, now)})",
        issuer=identity.issuer,
        renewal=_renewal_text(identity, state, auto_renew, now),
        crl=_crl_text(crl, identity.serial if revoked else None))


def _renewal_text(identity: Identity, state: str, auto_renew: bool, now: datetime) -> str:
    if state in ("revoked", "expired"):
        return "Cannot be renewed"
    if not auto_renew:
        return "Not automatic: no team CA address is set"
    due = identity.not_after - (identity.not_after - identity.not_before) / 3
    if due <= now:
        return "Due now: renews automatically, or press Renew now"
    return f"Automatic from {_local(due)} ({relative_time(due, now)})"


def _crl_text(crl: CrlState, revoked_serial: int | None) -> str:
    if not crl.url:
        return "Not checked: no team CA address is set"
    if crl.updated is None:
        return "Not fetched yet" if revoked_serial is None else "This certificate is revoked"
    listed = f"{crl.revoked_count} revoked serial{'' if crl.revoked_count == 1 else 's'}"
    mine = "; this certificate is on it" if revoked_serial is not None else ""
    return f"Team list from {_local(crl.updated)}, {listed}{mine}"
