"""How often announcements may make this node call the announcing address back.

An announcement is a hint, and the node verifies it by calling the announced address (TCP + TLS).
The source address of a UDP datagram is not proven, so without a limit anyone could make every
node on the LAN connect to a victim once per forged datagram (a reflection attack), and start
one sender thread per made-up user id. The budget allows a few calls per source address and a
bounded number in all per discovery interval, whatever the number of datagrams; a peer whose call
was not allowed now is called at one of its next announcements (each is reported at least once
per interval until the peer is verified). Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import defaultdict

PER_ADDRESS = 4  # two profiles on one machine, each restarting once, fit in one interval
TOTAL = 64


class CallbackBudget:
    def __init__(self, interval_s: float, *, per_address: int = PER_ADDRESS,
                 total: int = TOTAL) -> None:
        if interval_s <= 0 or per_address < 1 or total < per_address:
            raise ValueError("interval_s, per_address and total must be positive")
        self.interval_s = interval_s
        self.per_address = per_address
        self.total = total
        self.refused = 0
        self._window_start: float | None = None
        self._used: defaultdict[str, int] = defaultdict(int)
        self._used_total = 0

    def allow(self, address: str, now: float) -> bool:
        """True if a call to ``address`` may start now (and counts it)."""
        if self._window_start is None or now - self._window_start >= self.interval_s:
            self._window_start = now
            self._used.clear()
            self._used_total = 0
        if self._used[address] >= self.per_address or self._used_total >= self.total:
            self.refused += 1
            return False
        self._used[address] += 1
        self._used_total += 1
        return True
