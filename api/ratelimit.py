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

from aidaccess import clock

_MAX_TRACKED = 50_000


class WriteRateLimiter:
    def __init__(self, *, per_minute: int, burst: int) -> None:
        self.interval = 60.0 / per_minute
        self.tolerance = self.interval * (burst - 1)
        self._next: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    def acquire(self, key: uuid.UUID) -> int | None:
        """Count one write; ``None`` when allowed, else the seconds to wait (Retry-After)."""
        now = clock.utcnow().timestamp()
        with self._lock:
            arrival = max(self._next.get(key, now), now)
            if arrival - now > self.tolerance:
                return max(1, math.ceil(arrival - now - self.tolerance))
            self._next[key] = arrival + self.interval
            if len(self._next) > _MAX_TRACKED:
                self._forget_idle(now)
            return None

    def _forget_idle(self, now: float) -> None:
        # A principal whose next arrival is in the past has its whole burst back: no state needed.
        for key in [k for k, at in self._next.items() if at <= now]:
            del self._next[key]
