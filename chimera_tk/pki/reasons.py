"""Revocation reason codes (RFC 5280 CRLReason), numbered and named as the seed's ``--revoke``
menu shows them. Code 7 is unused in RFC 5280, so neither the menu nor the CA accepts it.
"""

from __future__ import annotations

REASONS: dict[int, str] = {
    0: "Unspecified",
    1: "KeyCompromise",
    2: "CACompromise",
    3: "AffiliationChanged",
    4: "Superseded",
    5: "CessationOfOperation",
    6: "CertificateHold",
    8: "RemoveFromCRL",
    9: "PrivilegeWithdrawn",
    10: "AACompromise",
}
MAX_NOTE_LENGTH = 500


def valid_reason_code(code: object) -> bool:
    return isinstance(code, int) and not isinstance(code, bool) and code in REASONS


def valid_note(note: object) -> bool:
    """A note is stored and listed as is, so it must be one printable line of modest length."""
    return isinstance(note, str) and len(note) <= MAX_NOTE_LENGTH and note.isprintable()
