"""Dependencies routers use: the request's unit of work and the current principal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlowPassword, OAuthFlows
from fastapi.routing import APIRoute
from fastapi.security import OAuth2
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from aidaccess.services import Services
from api.admission import stepped_out
from auth import authentication
from auth.authentication import PictureInputs, Waiting
from auth.principal import Principal
from auth.roles import Scope
from db.engine import Database
from workflow import access
from workflow.errors import Throttled, Unauthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
T = TypeVar("T")

# What a service account may be granted (auth.roles.Scope); people act by role, with no scope.
SCOPES = {
    Scope.read.value: "Read cities, pictures, pauses, the feed, and the organization's own requests.",
    Scope.requests_write.value: "Create, edit, submit and cancel the organization's own access requests.",
}
oauth2_scheme = OAuth2(
    flows=OAuthFlows(
        password=OAuthFlowPassword(tokenUrl="/v1/auth/token", refreshUrl="/v1/auth/token"),
        clientCredentials=OAuthFlowClientCredentials(tokenUrl="/v1/auth/token", scopes=SCOPES),
    ),
    scheme_name="OAuth2",
    description="People sign in with the password grant; integrations with client credentials. "
    "Send the access token as `Authorization: Bearer <token>`.",
    auto_error=False,
)


async def get_services(request: Request) -> Services:
    # async: a plain def dependency would cost a threadpool hop on every request
    return request.app.state.services


_NO_LOCK = contextlib.nullcontext()


def _turn(request: Request, *, write: bool) -> contextlib.AbstractAsyncContextManager:
    """A writer's turn for a unit of work that writes; none for reads (nor where writers is 0: tests).
    A long wait for it is waited out of the request's admission place, which another request uses meanwhile."""
    database = request.app.state.services.database
    if not (write and database.writers):
        return _NO_LOCK
    return database.writer_turn(impatient=stepped_out)


def _finish(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


class _UnitOfWork:
    """The request's session, and whether its endpoint's thread has committed it already."""

    __slots__ = ("finished", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.finished = False


# The request's unit of work, for its endpoint's thread (a threadpool call runs in a copy of the context).
_unit: ContextVar[_UnitOfWork | None] = ContextVar("aidaccess_unit_of_work", default=None)


async def _unit_of_work(request: Request) -> AsyncIterator[Session]:
    """One session per request: committed once when the endpoint returns, rolled back if it raises.

    At most ``pool_size`` units of work run at once per process; the rest wait here, on
    the event loop, so no threadpool thread ever waits for a pool connection held by a
    request that itself waits for a thread (the deadlock of the tutorial pattern).
    A plain-def endpoint's own thread commits it (UnitOfWorkRoute); this commits it otherwise.
    """
    database = request.app.state.services.database
    write = request.method not in SAFE_METHODS
    # Writers wait for a writer's turn before taking a slot, so queued writers never starve readers.
    async with _turn(request, write=write), database.slots:
        unit = _UnitOfWork(database.session(write=write))
        _unit.set(unit)  # in this request's task's own context: no other request sees it
        try:
            yield unit.session
        except BaseException:
            await run_in_threadpool(_finish, unit.session, commit=False)
            raise
        if not unit.finished:
            await run_in_threadpool(_finish, unit.session, commit=True)


def _committing(endpoint: Callable[..., T]) -> Callable[..., T]:
    """``endpoint``, then the commit of the request's unit of work in the same thread: one threadpool
    call per request instead of two (docs/performance.md, "What the machinery buys").
    Only when it answered with a ``Response``, its body already encoded: a value FastAPI has yet to
    serialize is committed after that, by the unit of work, so a failure there still writes nothing."""

    @functools.wraps(endpoint)
    def run(*args: object, **kwargs: object) -> T:
        result = endpoint(*args, **kwargs)
        unit = _unit.get()
        if isinstance(result, Response) and unit is not None and not unit.finished:
            unit.finished = True  # if the commit fails, the unit of work rolls back; it never commits twice
            _finish(unit.session, commit=True)
        return result

    return run


class UnitOfWorkRoute(APIRoute):
    """A route whose plain-def endpoint commits the request's unit of work before it returns, in its
    own thread, so the client still never sees a success that was not committed."""

    def __init__(self, path: str, endpoint: Callable[..., object], **kwargs: object) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _committing(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _read_in_thread(database: Database, fn: Callable[[Session], T]) -> T:
    session = database.session(write=False)
    try:
        return fn(session)
    finally:
        session.close()


async def run_read(request: Request, fn: Callable[[Session], T]) -> T:
    """A read-only unit of work in one thread hop, for async endpoints that need a session only
    on some paths (the polls: not for a 304 or a body already rendered)."""
    return await read_on(request.app.state.services.database, fn)


async def read_on(database: Database, fn: Callable[[Session], T]) -> T:
    async with database.slots:
        return await run_in_threadpool(_read_in_thread, database, fn)


def _write_in_thread(database, fn: Callable[[Session], T]) -> T:
    session = database.session(write=True)
    try:
        result = fn(session)
    except BaseException:
        _finish(session, commit=False)
        raise
    _finish(session, commit=True)
    return result


async def run_write(request: Request, fn: Callable[[Session], T]) -> T:
    """A unit of work that writes, committed once when ``fn`` returns, for endpoints that must do
    slow work before it (a sign-in's password check) and so cannot take ``DbSession``, whose turn
    and connection are held from before the endpoint starts."""
    database = request.app.state.services.database
    async with _turn(request, write=True), database.slots:
        return await run_in_threadpool(_write_in_thread, database, fn)


async def run_password_check(request: Request, fn: Callable[..., T], /, **kwargs: object) -> T:
    """``fn`` on the password-check threads (auth.passwords.check_executor): no session, no turn."""
    return await asyncio.get_running_loop().run_in_executor(
        request.app.state.password_checks, functools.partial(fn, **kwargs)
    )


# scope="function": the commit happens before the response is sent, so a client never
# sees a success that was not committed.
DbSession = Annotated[Session, Depends(_unit_of_work, scope="function")]
ServicesDep = Annotated[Services, Depends(get_services)]


# The Authorization header, for endpoints that authenticate in the same read as their own (the polls).
BearerToken = Annotated[str | None, Security(oauth2_scheme)]


async def current_principal(request: Request, authorization: BearerToken = None) -> Principal:
    principal = await authenticate(request.app.state.services, authorization)
    limiter = request.app.state.write_limiter
    if limiter is not None and request.method not in SAFE_METHODS:
        count_write(request, limiter, principal.id)
    return principal


def count_write(request: Request, limiter: Any, key: uuid.UUID) -> None:
    """One write against the principal's rate; its RateLimit headers go on the answer, whatever it is
    (api.middleware reads them from the request's state); refused: Throttled, with Retry-After."""
    counted = limiter.count(key)
    request.state.rate_limit = (limiter.policy, limiter.header(counted))
    if counted.wait is not None:
        wait = counted.wait
        raise Throttled(
            detail=f"Too many writes from this account; try again in {wait} second{'s' if wait != 1 else ''}.",
            retry_after=wait,
        )


def out_of_place(services: Services) -> Waiting | None:
    """Out of the request's admission place while the hot reads wait for the database server."""
    return stepped_out if services.hot.waits_for_server else None


async def authenticate(services: Services, authorization: str | None) -> Principal:
    """The principal an ``Authorization`` header names (auth.authentication), or a 401."""
    try:
        return await authentication.authenticate(
            services.codec, services.hot, authorization, waiting=out_of_place(services)
        )
    except authentication.Refused as refused:
        raise Unauthenticated(str(refused)) from None


async def authenticate_with_picture_inputs(
    services: Services, authorization: str | None, city_id: uuid.UUID | None = None
) -> tuple[Principal, PictureInputs]:
    """``authenticate``, and the access picture's version inputs, in one read (auth.authentication)."""
    try:
        return await authentication.authenticate_with_picture_inputs(
            services.codec,
            services.hot,
            authorization,
            access.PICTURE_ENTITY_TYPES,
            city_id,
            waiting=out_of_place(services),
        )
    except authentication.Refused as refused:
        raise Unauthenticated(str(refused)) from None


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
