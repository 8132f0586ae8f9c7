"""What counts as a Chimera user id: a Telegram user id, positive, written in canonical decimal.

Certificates, CSRs, tokens and invites all carry the id as text; accepting only one spelling per
number ("42", never "042" or "٤٢") means two different strings can never name the same person.
"""

from __future__ import annotations

import re

MAX_USER_ID = 2**63 - 1
_CANONICAL_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")


class InvalidUserId(ValueError):
    """The value is not a user id in canonical form."""


def check_user_id(value: object) -> int:
    """Return ``value`` if it is an int id in range; raise InvalidUserId otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_USER_ID:
        raise InvalidUserId("a user id must be a whole number from 1 to 2**63-1")
    return value


def parse_user_id(text: str) -> int:
    """The id written in ``text`` (ASCII digits, no sign, no leading zero); else InvalidUserId."""
    if not isinstance(text, str) or not _CANONICAL_DECIMAL.fullmatch(text):
        raise InvalidUserId("a user id must be written as decimal digits without a leading zero")
    return check_user_id(int(text))
