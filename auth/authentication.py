"""Who a bearer token names, checked against the database now: authentication, in one place.

The token's signature and expiry are checked by ``auth.tokens``; the account behind it is read
through ``db.hot`` on every request, so a deactivation, a logout, a password reset or a scope taken
away stops the token at once. The HTTP edge only calls these and turns ``Refused`` into a 401.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from aidaccess.clock import utcnow
from auth.principal import Principal
from auth.roles import OrganizationKind, PrincipalKind, Role
from auth.tokens import AccessClaims, InvalidToken, TokenCodec
from db.hot import HotReads, PictureInputs, ServiceAccountRow, UserRow

Waiting = Callable[[], AbstractAsyncContextManager[object]]


class Refused(Exception):
    """No principal: the header is missing or malformed, or the token invalid, expired or revoked."""


async def authenticate(
    codec: TokenCodec, hot: HotReads, authorization: str | None, *, waiting: Waiting | None = None
) -> Principal:
    """The principal an ``Authorization`` header names. ``waiting``: what to be inside while the
    database answers (the HTTP edge gives up the request's admission place meanwhile)."""
    waiting = waiting or contextlib.nullcontext
    claims = _claims(codec, authorization)
    if claims.principal_kind == PrincipalKind.user:
        async with waiting():
            row = await hot.user(claims.subject_id, claims.session_id, claims.jti)
        return _user_principal(claims, row)
    if claims.principal_kind == PrincipalKind.service_account:
        async with waiting():
            account = await hot.service_account(claims.subject_id, claims.jti)
        return _service_account_principal(claims, account)
    raise _refused()


async def authenticate_with_picture_inputs(
    codec: TokenCodec,
    hot: HotReads,
    authorization: str | None,
    entity_types: Sequence[str],
    city_id: uuid.UUID | None = None,
    *,
    waiting: Waiting | None = None,
) -> tuple[Principal, PictureInputs]:
    """``authenticate``, and the access picture's version inputs (of one city, or of all; writes to
    ``entity_types`` move them), read together: a poll's two questions in one statement where the
    engine makes a round trip for each."""
    waiting = waiting or contextlib.nullcontext
    claims = _claims(codec, authorization)
    now = utcnow()
    if claims.principal_kind == PrincipalKind.user:
        async with waiting():
            row, inputs = await hot.user_and_picture_inputs(
                claims.subject_id, claims.session_id, claims.jti, entity_types, now, city_id
            )
        return _user_principal(claims, row), inputs
    if claims.principal_kind == PrincipalKind.service_account:
        async with waiting():
            account, inputs = await hot.service_account_and_picture_inputs(
                claims.subject_id, claims.jti, entity_types, now, city_id
            )
        return _service_account_principal(claims, account), inputs
    raise _refused()


def _claims(codec: TokenCodec, authorization: str | None) -> AccessClaims:
    if not authorization:
        raise Refused("Send an access token: Authorization: Bearer <token>.")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Refused("Use the Bearer scheme: Authorization: Bearer <token>.")
    try:
        return codec.decode_access(token)
    except InvalidToken:
        raise Refused("The access token is invalid or has expired.") from None


def _refused() -> Refused:
    return Refused("The access token is no longer valid.")


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
