"""Per-principal rate limit on writes: the generic cell rate algorithm (GCRA).

One number per principal (the theoretical arrival time of its next write) instead of a
window of timestamps: a principal may make ``burst`` writes at once, then one every
``60 / per_minute`` seconds. Every attempt counts, refused and failed ones included, so
a client cannot probe at full speed by sending bad writes.

The state is in the process: with N server processes a principal gets at most N times
the limit. That bounds abuse, which is the point; sign-in throttling, which guards
passwords, is kept in the database instead and holds across processes.
"""

from __future__ import annotations

import math
import threading
import uuid
from typing import NamedTuple

from aidaccess import clock

_MAX_TRACKED = 50_000


class Counted(NamedTuple):
    wait: int | None  # refused: seconds until a write is allowed again (Retry-After)
    remaining: int  # writes left in the burst now
    reset: int  # seconds until the whole burst is back


class WriteRateLimiter:
    def __init__(self, *, per_minute: int, burst: int) -> None:
        self.interval = 60.0 / per_minute
        self.tolerance = self.interval * (burst - 1)
        self._next: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    def acquire(self, key: uuid.UUID) -> int | None:
        """Count one write; ``None`` when allowed, else the seconds to wait (Retry-After)."""
        return self.count(key).wait

    def count(self, key: uuid.UUID) -> Counted:
        """Count one write, and what is left of the principal's burst after it."""
        now = clock.utcnow().timestamp()
        with self._lock:
            arrival = max(self._next.get(key, now), now)
            if arrival - now > self.tolerance:
                return Counted(max(1, math.ceil(arrival - now - self.tolerance)), 0, math.ceil(arrival - now))
            self._next[key] = arrival + self.interval
            if len(self._next) > _MAX_TRACKED:
                self._forget_idle(now)
            backlog = arrival + self.interval - now
            return Counted(
                None,
                max(0, math.floor((self.tolerance + self.interval - backlog) / self.interval + 1e-9)),
                math.ceil(backlog),
            )

    @property
    def policy(self) -> str:
        """``RateLimit-Policy`` (IETF HTTPAPI draft): a burst of q writes per w seconds, refilled steadily."""
        burst = round(self.tolerance / self.interval) + 1
        return f'"writes";q={burst};w={math.ceil(burst * self.interval)}'

    def header(self, counted: Counted) -> str:
        """``RateLimit``: r writes left now, all back in t seconds."""
        return f'"writes";r={counted.remaining};t={counted.reset}'

    def _forget_idle(self, now: float) -> None:
        # A principal whose next arrival is in the past has its whole burst back: no state needed.
        for key in [k for k, at in self._next.items() if at <= now]:
            del self._next[key]
