"""Admission: at most ``limit`` requests of one process worked on at once; the rest are let in
in the order they arrived.

Why: a worker process is one core and one GIL. Unbounded, every request in flight shares
them, and writes, which SQLite takes one at a time, wait behind whatever reads keep coming:
under the load bench's mix at 64 connections (SQLite, one worker) a create waited 350 ms
(server-side p50) while a read took 0.1 ms, and the mix's p99 was 388 ms. Let in in order,
two at a time: p99 93 ms at the same throughput, no kind of request starving another (on
PostgreSQL, eight at a time: 130 ms instead of 467; settings.concurrent_requests).

A request waits only before it starts, and with its body already received, so a client that
sends slowly never holds a place. It waits at most ``max_wait`` seconds; then 503 with
``Retry-After``, having changed nothing. A write waiting for its turn to write gives its place
up meanwhile (``Admission.stepped_out``), so writes queued behind a slow one never stop the
reads. Not queued (``ungated``): sign-in, whose password check runs on threads of its own and
is bounded there (a place held during it would be a place idle), and the probes and metrics,
which must answer however loaded the process is.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aidaccess.api.problems import problem


@dataclass
class _Place:
    held: bool = True


# The place of the request this task serves, if it was let in by the gate (ungated ones hold none).
_place: ContextVar[_Place | None] = ContextVar("admission_place", default=None)


class Admission:
    """The places of one process, and the queue for them, first come first served.

    A place freed goes straight to the first in line, so nobody arriving later can take it
    first. A request that must wait for something other than the CPU (a write's turn, see
    ``stepped_out``) gives its place up meanwhile and is first in line when it comes back.
    """

    def __init__(self, *, limit: int, max_wait: float) -> None:
        self.limit = limit
        self.max_wait = max_wait
        self.working = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        """Requests in line (a gauge in /metrics)."""
        return len(self._queue)

    async def enter(self, *, first: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # tests run one app on several loops in turn: start afresh on each
            self._loop, self.working, self._queue = loop, 0, deque()
        if self.working < self.limit and not self._queue:
            self.working += 1
            return
        turn = loop.create_future()
        if first:
            self._queue.appendleft(turn)
        else:
            self._queue.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed a place just as it stopped waiting: the next in line has it
            else:
                self._queue.remove(turn)
            raise

    def leave(self) -> None:
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)  # the place passes on; ``working`` stays as it is
                return
        self.working -= 1

    @asynccontextmanager
    async def stepped_out(self) -> AsyncIterator[None]:
        """Around a wait that needs no CPU: the place is someone else's until it ends."""
        place = _place.get()
        if place is None or not place.held:
            yield
            return
        place.held = False
        self.leave()
        try:
            yield
        finally:
            await self.enter(first=True)
            place.held = True


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, *, admission: Admission, ungated: Iterable[str]) -> None:
        self.app = app
        self.admission = admission
        self.ungated = frozenset(ungated)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or get_route_path(scope) in self.ungated:
            await self.app(scope, receive, send)
            return
        received = await _request_messages(receive)
        admission = self.admission
        try:
            async with asyncio.timeout(admission.max_wait):
                await admission.enter()
        except TimeoutError:
            # The queue was at least this long: coming back sooner would only lengthen it.
            retry_after = str(max(1, math.ceil(admission.max_wait)))
            response = problem(503, "The service is busier than it can answer in time; nothing was done. Try again shortly.",
                               instance=scope["path"], headers={"Retry-After": retry_after})
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        place = _Place()
        token = _place.set(place)
        try:
            await self.app(scope, replay, send)
        finally:
            _place.reset(token)
            if place.held:
                admission.leave()


async def _request_messages(receive: Receive) -> list[Message]:
    """The request's body messages, all of them (the body's size is bounded outside, by the
    request-context middleware's receive), or up to a disconnect."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages
