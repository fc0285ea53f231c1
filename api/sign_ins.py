"""How many sign-ins a process holds at once, in all and per client address.

Each sign-in checks a secret (Argon2, ~100 ms of CPU) on a few threads of its own. Unbounded, sixty
concurrent sign-ins with unknown e-mails queued a legitimate one behind them for ten seconds. Here a
sign-in that finds no place is answered at once, 503 with ``Retry-After``, before anything is read or
stored; and one client address holds only a few places, so a flood from one address leaves the rest
for everyone else.
"""

from __future__ import annotations

from collections import Counter
from threading import Lock


class SignInPlaces:
    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._held: Counter[str | None] = Counter()
        self._lock = Lock()

    def enter(self, address: str | None) -> str | None:
        """None when a place is taken (give it back with ``leave``); else why there is none."""
        with self._lock:
            if self._held[address] >= self.per_address:
                return "Too many sign-ins from this address are being checked; retry shortly."
            if sum(self._held.values()) >= self.total:
                return "Too many sign-ins are being checked; retry shortly."
            self._held[address] += 1
            return None

    def leave(self, address: str | None) -> None:
        with self._lock:
            self._held[address] -= 1
            if self._held[address] <= 0:
                del self._held[address]

    def held(self) -> int:
        with self._lock:
            return sum(self._held.values())
