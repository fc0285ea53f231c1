from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from api import reads
from api.deps import (
    BearerToken,
    DbSession,
    ServicesDep,
    UnitOfWorkRoute,
    run_write,
)
from api.problems import problem, problem_responses, unauthenticated
from api.schemas.auth import MeRead, TokenRead
from api.sign_ins import signed_in
from workflow import identity
from workflow.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["auth"], route_class=UnitOfWorkRoute)

GRANT_TYPES = ("password", "client_credentials", "refresh_token")


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        client_id, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if sep else None


def _missing(field: str) -> InvalidInput:
    return InvalidInput.field(f"body.{field}", f"'{field}' is required for this grant type.", "missing")


@router.post(
    "/auth/token",
    operation_id="createToken",
    summary="Get an access token",
    response_model=TokenRead,
    responses=problem_responses(401, 422, 429, 503),
    description=(
        "OAuth 2.0 token endpoint (form-encoded).\n\n"
        "* `grant_type=password` with `username` (the email) and `password`: people. Returns a "
        "`refresh_token` too.\n"
        "* `grant_type=client_credentials` with `client_id` and `client_secret` (form fields or HTTP "
        "Basic), optional `scope`: service accounts.\n"
        "* `grant_type=refresh_token` with `refresh_token`: a new access token and a new refresh token. "
        "Each refresh token works once; presenting a used one ends the whole sign-in.\n\n"
        "After 5 failed attempts for an account within 15 minutes, or 50 from one client address, the "
        "endpoint answers 429 with `Retry-After` until the window has passed. A process checks a few "
        "sign-ins at a time (two per client address): beyond that it answers 503 with `Retry-After` at "
        "once, and stores nothing."
    ),
)
async def create_token(
    request: Request,
    services: ServicesDep,
    grant_type: Annotated[str, Form(max_length=64, examples=["password"])],
    username: Annotated[str | None, Form(max_length=320)] = None,
    password: Annotated[str | None, Form(max_length=1024)] = None,
    refresh_token: Annotated[str | None, Form(max_length=512)] = None,
    client_id: Annotated[str | None, Form(max_length=128)] = None,
    client_secret: Annotated[str | None, Form(max_length=512)] = None,
    scope: Annotated[str | None, Form(max_length=512)] = None,
) -> TokenRead | Response:
    # No DbSession here: a secret is checked (Argon2, ~100 ms of CPU) between a read and the write,
    # with neither a connection nor the write's turn held, on low-priority threads of its own, so a
    # burst of sign-ins neither stops the writes nor starves the requests of CPU.
    client_ip = request.client.host if request.client else None
    config = services.identity
    if grant_type == "password":
        if not username:
            raise _missing("username")
        if not password:
            raise _missing("password")
        result = await signed_in(
            request,
            config,
            password,
            read=lambda session: identity.stored_password(
                session=session, config=config, email=username, client_ip=client_ip
            ),
            write=lambda session, checked: identity.login_with_password(
                session=session, config=config, checked=checked, password=password, client_ip=client_ip
            ),
        )
    elif grant_type == "client_credentials":
        basic = _basic_credentials(request)
        if basic is not None:
            client_id, client_secret = basic
        if not client_id:
            raise _missing("client_id")
        if not client_secret:
            raise _missing("client_secret")
        result = await signed_in(
            request,
            config,
            client_secret,
            read=lambda session: identity.stored_client_secret(
                session=session, config=config, client_id=client_id, client_ip=client_ip
            ),
            write=lambda session, checked: identity.login_service_account(
                session=session,
                config=config,
                checked=checked,
                client_secret=client_secret,
                requested_scopes=scope.split() if scope else None,
                client_ip=client_ip,
            ),
        )
    elif grant_type == "refresh_token":
        if not refresh_token:
            raise _missing("refresh_token")
        result = await run_write(
            request, lambda session: identity.refresh(session=session, config=config, refresh_token=refresh_token)
        )
    else:
        raise InvalidInput.field(
            "body.grant_type", f"grant_type must be one of: {', '.join(GRANT_TYPES)}.", "unsupported_grant_type"
        )
    if isinstance(result, identity.AuthRefusal):
        # Returned, not raised: the failed attempt (or the revoked family) must be committed.
        if result.retry_after is not None:
            return problem(
                result.status,
                result.detail,
                instance=request.url.path,
                headers={"Retry-After": str(result.retry_after)},
                error=result.error,
            )
        return unauthenticated(result.detail, instance=request.url.path, error=result.error)
    return TokenRead(
        access_token=result.access_token,
        expires_in=result.expires_in,
        refresh_token=result.refresh_token,
        scope=result.scope,
    )


@router.post(
    "/auth/revoke",
    operation_id="revokeToken",
    summary="Revoke a token",
    status_code=200,
    response_class=Response,
    responses={
        200: {"description": "Revoked, or it was not a valid token (RFC 7009 answers the same). No body."},
        **problem_responses(422),
    },
    description=(
        "RFC 7009. A refresh token ends its whole sign-in: every access token issued under it stops "
        "working at once. An access token, or a calendar token, stops working at once."
    ),
)
def revoke_token(
    session: DbSession,
    services: ServicesDep,
    token: Annotated[str, Form(min_length=1, max_length=4096)],
    token_type_hint: Annotated[str | None, Form(max_length=64)] = None,  # noqa: ARG001 - accepted, not needed
) -> Response:
    identity.revoke_token(session=session, config=services.identity, token=token)
    return Response(status_code=200)


@router.get(
    "/me",
    operation_id="getMe",
    summary="Who am I",
    response_model=MeRead,
    responses=problem_responses(401),
    description="The person or service account behind the access token, with its organization and role or scopes.",
)
async def get_me(services: ServicesDep, authorization: BearerToken = None) -> Response:
    answer = await reads.me(services, authorization)
    return Response(answer.body, status_code=answer.status, headers=answer.headers)
