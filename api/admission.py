"""Admission: at most ``limit`` requests of one process worked on at once; the rest are let in
in the order they arrived.

Why: a worker process is one core and one GIL. Unbounded, every request in flight shares
them, and writes, which SQLite takes one at a time, wait behind whatever reads keep coming;
let in in order, a few at a time, every kind of request waits alike and the tail shrinks at
the same throughput (docs/performance.md, "Admission").

A request waits only before it starts, and with its body already received, so a client that
sends slowly never holds a place. It waits at most ``max_wait`` seconds; then 503 with
``Retry-After``, having changed nothing. A request waiting for something other than the CPU
gives its place up meanwhile (``stepped_out``): a write whose turn to write is long in coming
(db.engine.TURN_PATIENCE_SECONDS; the writer ahead waits on a lock held elsewhere), so the reads
never wait with it, and on PostgreSQL a hot read waiting for the server's answer, so polls
waiting together for one answer do not fill the places. Not queued (``ungated``): sign-in, whose
password check runs on threads of its own and is bounded there (a place held during it would
be a place idle), and the probes and metrics, which must answer however loaded the process is.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem


class Admission:
    """The places of one process, and the queue for them, first come first served.

    A place freed goes straight to the first in line, so nobody arriving later can take it
    first. A request that must wait for something other than the CPU gives its place up
    meanwhile (``stepped_out``).
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

    def try_enter(self) -> bool:
        """A place now, if one is free and nobody is in line."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # tests run one app on several loops in turn: start afresh on each
            self._loop, self.working, self._queue = loop, 0, deque()
        if self.working < self.limit and not self._queue:
            self.working += 1
            return True
        return False

    async def enter(self) -> None:
        if self.try_enter():
            return
        turn = self._loop.create_future()  # type: ignore[union-attr]
        self._queue.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed a place just as it stopped waiting: the next in line has it
            elif turn in self._queue:  # a leave() may have dropped it already, passing over it
                self._queue.remove(turn)
            raise

    def leave(self) -> None:
        if self.working <= self.limit:
            while self._queue:
                turn = self._queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # the place passes on; ``working`` stays as it is
                    return
        self.working -= 1  # over the limit (see come_back), or nobody in line

    def come_back(self) -> None:
        self.working += 1


@dataclass
class _Place:
    admission: Admission
    held: bool = True


# The place of the request this task serves, if it was let in (ungated requests hold none).
_place: ContextVar[_Place | None] = ContextVar("admission_place", default=None)


class stepped_out:  # lower case: used as a function, async with stepped_out(): ...
    """Around a wait that needs no CPU (a write's turn long in coming; on PostgreSQL, the server's
    answer to a hot read): the request's place is the next one's meanwhile. It comes back without
    queueing again, as it was let in once: the limit bounds what starts, and those coming back
    exceed it until enough have left. A write that had its turn and then queued for a place
    would hold the turn idle meanwhile."""

    __slots__ = ("_place",)

    async def __aenter__(self) -> None:
        # A class, not a generator-based context manager: on PostgreSQL every poll passes here.
        place = self._place = _place.get()
        if place is not None and place.held:
            place.held = False
            place.admission.leave()
        else:
            self._place = None

    async def __aexit__(self, *exc: object) -> None:
        if (place := self._place) is not None:
            place.admission.come_back()
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
        admission = self.admission
        app_receive = receive
        if _has_body(scope):
            received = await _request_messages(receive)

            async def app_receive() -> Message:
                return received.pop(0) if received else await receive()

        # A free place is taken at once: no timer, no coroutine (a poll's whole cost is a few of these).
        if not admission.try_enter():
            try:
                async with asyncio.timeout(admission.max_wait):
                    await admission.enter()
            except TimeoutError:
                # The queue was at least this long: coming back sooner would only lengthen it.
                retry_after = str(max(1, math.ceil(admission.max_wait)))
                response = problem(
                    503,
                    "The service is busier than it can answer in time; nothing was done. Try again shortly.",
                    instance=scope["path"],
                    headers={"Retry-After": retry_after},
                )
                await response(scope, receive, send)
                return
        place = _Place(admission)
        token = _place.set(place)
        try:
            await self.app(scope, app_receive, send)
        finally:
            _place.reset(token)
            if place.held:
                admission.leave()


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


async def _request_messages(receive: Receive) -> list[Message]:
    """The request's body messages, all of them (the body's size is bounded outside, by the
    request-context middleware's receive), or up to a disconnect."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages
