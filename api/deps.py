"""Dependencies routers use: the request's unit of work and the current principal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Annotated, TypeVar

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlowPassword, OAuthFlows
from fastapi.routing import APIRoute
from fastapi.security import OAuth2
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from aidaccess.clock import utcnow
from aidaccess.services import Services
from api.admission import stepped_out
from auth.principal import Principal
from auth.roles import OrganizationKind, PrincipalKind, Role
from auth.tokens import AccessClaims, InvalidToken
from db.hot import PictureInputs, ServiceAccountRow, UserRow
from workflow import access
from workflow.errors import Throttled, Unauthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
T = TypeVar("T")

oauth2_scheme = OAuth2(
    flows=OAuthFlows(
        password=OAuthFlowPassword(tokenUrl="/v1/auth/token", refreshUrl="/v1/auth/token"),
        clientCredentials=OAuthFlowClientCredentials(tokenUrl="/v1/auth/token"),
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
    call per request instead of two (the second was ~0.1 ms of a list of one's 0.8, in-process).
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


def _read_in_thread(database, fn: Callable[[Session], T]) -> T:  # noqa: ANN001
    session = database.session(write=False)
    try:
        return fn(session)
    finally:
        session.close()


async def run_read(request: Request, fn: Callable[[Session], T]) -> T:
    """A read-only unit of work in one thread hop, for async endpoints whose fast path
    needs no session at all (a 304, a cached body) and whose slow path does."""
    database = request.app.state.services.database
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
    return await asyncio.get_running_loop().run_in_executor(request.app.state.password_checks, functools.partial(fn, **kwargs))


# scope="function": the commit happens before the response is sent, so a client never
# sees a success that was not committed.
DbSession = Annotated[Session, Depends(_unit_of_work, scope="function")]
ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(
    request: Request, authorization: Annotated[str | None, Security(oauth2_scheme)] = None
) -> Principal:
    principal = await authenticate(request.app.state.services, authorization)
    limiter = request.app.state.write_limiter
    if limiter is not None and request.method not in SAFE_METHODS:
        wait = limiter.acquire(principal.id)
        if wait is not None:
            raise Throttled(
                detail=f"Too many writes from this account; try again in {wait} second{'s' if wait != 1 else ''}.",
                retry_after=wait,
            )
    return principal


async def authenticate(services: Services, authorization: str | None) -> Principal:
    """The principal an ``Authorization`` header names, checked against the database now."""
    claims = _claims(services, authorization)
    if claims.principal_kind == PrincipalKind.user:
        async with _out_of_place(services):
            row = await services.hot.user(claims.subject_id, claims.session_id, claims.jti)
        return _user_principal(claims, row)
    if claims.principal_kind == PrincipalKind.service_account:
        async with _out_of_place(services):
            account = await services.hot.service_account(claims.subject_id, claims.jti)
        return _service_account_principal(claims, account)
    raise _refused()


def _out_of_place(services: Services) -> contextlib.AbstractAsyncContextManager:
    """Out of the request's admission place while the hot reads wait for the database server."""
    return stepped_out() if services.hot.waits_for_server else _NO_LOCK


async def authenticate_with_picture_inputs(
    services: Services, authorization: str | None, city_id: uuid.UUID | None = None
) -> tuple[Principal, PictureInputs]:
    """``authenticate``, and the access picture's version inputs (of one city, or of all), read together:
    a poll's two questions in one statement where the engine makes a round trip for each."""
    claims = _claims(services, authorization)
    types, now = access.PICTURE_ENTITY_TYPES, utcnow()
    if claims.principal_kind == PrincipalKind.user:
        async with _out_of_place(services):
            row, inputs = await services.hot.user_and_picture_inputs(
                claims.subject_id, claims.session_id, claims.jti, types, now, city_id
            )
        return _user_principal(claims, row), inputs
    if claims.principal_kind == PrincipalKind.service_account:
        async with _out_of_place(services):
            account, inputs = await services.hot.service_account_and_picture_inputs(claims.subject_id, claims.jti, types, now, city_id)
        return _service_account_principal(claims, account), inputs
    raise _refused()


def _claims(services: Services, authorization: str | None) -> AccessClaims:
    if not authorization:
        raise Unauthenticated("Send an access token: Authorization: Bearer <token>.")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Use the Bearer scheme: Authorization: Bearer <token>.")
    try:
        return services.codec.decode_access(token)
    except InvalidToken:
        raise Unauthenticated("The access token is invalid or has expired.") from None


def _refused() -> Unauthenticated:
    return Unauthenticated("The access token is no longer valid.")


def _user_principal(claims: AccessClaims, row: UserRow | None) -> Principal:
    if row is None or not row.active or not row.session_live or row.token_revoked:
        raise _refused()
    return Principal(
        kind=PrincipalKind.user,
        id=claims.subject_id,
        label=row.email,
        name=row.full_name,
        organization_id=row.organization_id,
        organization_name=row.organization_name,
        organization_kind=OrganizationKind(row.organization_kind),
        role=Role(row.role),
        scopes=frozenset(),
        token_id=claims.jti,
        token_expires_at=claims.exp,
        session_id=claims.session_id,
    )


def _service_account_principal(claims: AccessClaims, account: ServiceAccountRow | None) -> Principal:
    if account is None or not account.live or account.token_revoked:
        raise _refused()
    return Principal(
        kind=PrincipalKind.service_account,
        id=claims.subject_id,
        label=account.client_id,
        name=account.name,
        organization_id=account.organization_id,
        organization_name=account.organization_name,
        organization_kind=OrganizationKind(account.organization_kind),
        role=None,
        # A scope taken away since the token was issued is gone at once.
        scopes=frozenset(claims.scopes) & frozenset(account.scopes),
        token_id=claims.jti,
        token_expires_at=claims.exp,
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
