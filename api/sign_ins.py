"""How many sign-ins a process holds at once, in all and per client address.

Each sign-in checks a secret (Argon2, ~100 ms of CPU) on a few threads of its own. Unbounded, sixty
concurrent sign-ins with unknown e-mails queued a legitimate one behind them for ten seconds. Here a
sign-in that finds no place is answered at once, 503 with ``Retry-After``, before anything is read or
stored; and one client address holds only a few places, so a flood from one address leaves the rest
for everyone else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from threading import Lock

from fastapi import Request
from sqlmodel import Session

from api.deps import run_password_check, run_read, run_write
from workflow import identity


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


async def signed_in(
    request: Request,
    config: identity.IdentityConfig,
    secret: str,
    *,
    read: Callable[[Session], identity.StoredSecret],
    write: Callable[[Session, identity.CheckedSecret], identity.TokenGrant | identity.AuthRefusal],
) -> identity.TokenGrant | identity.AuthRefusal:
    """Read what the secret is checked against, check it (no session, no turn), then write; all in
    one of the process's sign-in places, or a 503 before anything is read. The token endpoint and
    the console's sign-in form both come through here: one throttle for both doors."""
    address = request.client.host if request.client else None
    places: SignInPlaces = request.app.state.sign_ins
    busy = places.enter(address)
    if busy is not None:
        return identity.AuthRefusal(error="temporarily_unavailable", detail=busy, retry_after=1, status=503)
    try:
        stored = await run_read(request, read)
        if stored.refusal is not None:
            return stored.refusal
        checked = await run_password_check(request, identity.check_secret, config=config, stored=stored, secret=secret)
        return await run_write(request, lambda session: write(session, checked))
    finally:
        places.leave(address)
