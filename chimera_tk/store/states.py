"""The message state machine, written as a table in one place.

``received`` is where every incoming message starts and stays. Outgoing messages start ``queued``;
``sending`` means a transport has claimed it; ``sent`` means the Telegram server took it;
``delivered`` means the receiving machine acknowledged it after committing it to its database.
"""

from __future__ import annotations

from chimera_tk.errors import InvalidTransition

MESSAGE_STATES = ("queued", "sending", "sent", "delivered", "failed", "received")

MESSAGE_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"sending", "failed"}),
    "sending": frozenset({"sent", "delivered", "queued", "failed"}),
    "sent": frozenset({"delivered"}),
    "delivered": frozenset(),
    "failed": frozenset({"queued"}),
    "received": frozenset(),
}


def check_transition(current: str, new: str) -> None:
    if new not in MESSAGE_TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(f"message state {current!r} cannot become {new!r}")
