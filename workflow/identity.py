"""Logins, token refresh with rotation and reuse detection, client credentials, revocation.

A refused login is still a write (the attempt is recorded, a reused refresh token
revokes its family), so refusals are returned, not raised: the request's unit of
work commits them and the HTTP edge answers 401 or 429.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, text, update
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.passwords import PasswordHasher
from auth.principal import Principal
from auth.roles import PrincipalKind, Scope
from auth.tokens import (
    InvalidToken,
    TokenCodec,
    hash_opaque_token,
    new_opaque_token,
)
from db.models import (
    AuthSession,
    LoginAttempt,
    RefreshToken,
    RevokedToken,
    ServiceAccount,
    User,
)
from workflow.audit import Actor, record_event


@dataclass(frozen=True)
class IdentityConfig:
    hasher: PasswordHasher
    codec: TokenCodec
    access_lifetime: timedelta
    refresh_lifetime: timedelta
    max_failures: int
    failure_window: timedelta
    max_failures_per_address: int = 50


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


@dataclass(frozen=True)
class AuthRefusal:
    """Why no token was given. ``error`` is the OAuth 2.0 error code."""

    error: str
    detail: str
    retry_after: int | None = None  # set when throttled
    status: int = 429  # when throttled: 429 (too many failures), or 503 (no place to check it now)


INVALID_CREDENTIALS = "The email or password is wrong, or the account cannot sign in."


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _throttle(
    session: Session, *, config: IdentityConfig, account_key: str, client_ip: str | None = None
) -> AuthRefusal | None:
    """Refuse while the account, or the client address, has too many recent failures; the state
    lives in the database. Per address: unknown e-mails each had their own five tries."""
    now = utcnow()
    if client_ip is not None:
        address_failures = (
            session.execute(
                select(col(LoginAttempt.attempted_at))
                .where(
                    col(LoginAttempt.client_ip) == client_ip,
                    col(LoginAttempt.succeeded).is_(False),
                    col(LoginAttempt.attempted_at) > now - config.failure_window,
                )
                .order_by(col(LoginAttempt.attempted_at).desc())
                .limit(config.max_failures_per_address)
            )
            .scalars()
            .all()
        )
        if len(address_failures) >= config.max_failures_per_address:
            retry_after = max(1, math.ceil((address_failures[-1] + config.failure_window - now).total_seconds()))
            return AuthRefusal(
                error="temporarily_unavailable",
                retry_after=retry_after,
                detail=f"Too many failed sign-ins from this address; try again in {retry_after} seconds.",
            )
    since = now - config.failure_window
    last_success = session.execute(
        select(func.max(col(LoginAttempt.attempted_at))).where(
            col(LoginAttempt.account_key) == account_key,
            col(LoginAttempt.succeeded).is_(True),
            col(LoginAttempt.attempted_at) > since,
        )
    ).scalar()
    if last_success is not None:
        since = last_success
    failures = (
        session.execute(
            select(col(LoginAttempt.attempted_at))
            .where(
                col(LoginAttempt.account_key) == account_key,
                col(LoginAttempt.succeeded).is_(False),
                col(LoginAttempt.attempted_at) > since,
            )
            .order_by(col(LoginAttempt.attempted_at).desc())
            .limit(config.max_failures)
        )
        .scalars()
        .all()
    )
    if len(failures) < config.max_failures:
        return None
    unlocks_at = failures[-1] + config.failure_window
    retry_after = max(1, math.ceil((unlocks_at - now).total_seconds()))
    return AuthRefusal(
        error="temporarily_unavailable",
        detail=f"Too many failed sign-ins for this account; try again in {retry_after} seconds.",
        retry_after=retry_after,
    )


SIGN_IN_LOCKS = 0x6C6F6769  # "logi": the advisory locks' first key, the account's the second


def sign_in_lock_key(account_key: str) -> int:
    return int.from_bytes(hashlib.sha256(account_key.encode()).digest()[:4], "big", signed=True)


def _one_sign_in_at_a_time(session: Session, account_key: str) -> None:
    """The throttle's count and the attempt it lets through are one step per account: PostgreSQL runs
    writes side by side, and two guesses that both counted four failures would both be answered.
    (SQLite runs one write at a time.)"""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {"space": SIGN_IN_LOCKS, "key": sign_in_lock_key(account_key)},
        )


# Attempts older than the throttling window count for nothing: a process deletes them at most once a
# PRUNE_EVERY, in a sign-in's write (a flood of unknown e-mails left a row each, for good).
PRUNE_EVERY = timedelta(minutes=1)
_pruned_at: datetime | None = None


def _record_attempt(
    session: Session, *, account_key: str, succeeded: bool, client_ip: str | None, config: IdentityConfig
) -> None:
    global _pruned_at
    now = utcnow()
    session.add(LoginAttempt(account_key=account_key, succeeded=succeeded, client_ip=client_ip, attempted_at=now))
    if _pruned_at is None or now - _pruned_at >= PRUNE_EVERY or now < _pruned_at:
        _pruned_at = now
        session.execute(delete(LoginAttempt).where(col(LoginAttempt.attempted_at) < now - config.failure_window))


def _issue_refresh(session: Session, *, config: IdentityConfig, session_id: uuid.UUID) -> str:
    token = new_opaque_token()
    session.add(
        RefreshToken(
            session_id=session_id,
            token_hash=hash_opaque_token(token),
            expires_at=utcnow() + config.refresh_lifetime,
        )
    )
    return token


def _user_grant(
    session: Session,
    *,
    config: IdentityConfig,
    user: User,
    auth_session_id: uuid.UUID,
    lifetime: timedelta | None = None,
    with_refresh: bool = True,
) -> TokenGrant:
    lifetime = lifetime or config.access_lifetime
    access, _claims = config.codec.issue_access(
        sub=str(user.id),
        principal_kind=PrincipalKind.user.value,
        org=str(user.organization_id),
        role=user.role,
        scopes=[],
        lifetime=lifetime,
        sid=str(auth_session_id),
    )
    refresh = _issue_refresh(session, config=config, session_id=auth_session_id) if with_refresh else None
    return TokenGrant(
        access_token=access,
        expires_in=int(lifetime.total_seconds()),
        scope="",
        refresh_token=refresh,
    )


@dataclass(frozen=True)
class StoredSecret:
    """What a sign-in's secret is checked against, read before the sign-in's write. Checking costs
    ~100 ms of CPU (Argon2) and is done with no session and outside the write's turn, which every
    write of the process shares (SQLite: one at a time): a burst of sign-ins must not stop the writes."""

    account_key: str
    subject_id: uuid.UUID | None = None  # the user or service account; None when there is none
    secret_hash: str | None = None
    refusal: AuthRefusal | None = None  # throttled: answered at once, with no hashing


@dataclass(frozen=True)
class CheckedSecret:
    stored: StoredSecret
    ok: bool
    new_hash: str | None = None  # the stored hash uses old parameters: its replacement


def stored_password(
    *, session: Session, config: IdentityConfig, email: str, client_ip: str | None = None
) -> StoredSecret:
    account_key = normalize_email(email)
    refusal = _throttle(session, config=config, account_key=account_key, client_ip=client_ip)
    if refusal is not None:
        return StoredSecret(account_key, refusal=refusal)
    row = session.execute(
        select(col(User.id), col(User.password_hash)).where(col(User.email) == account_key)
    ).one_or_none()
    return StoredSecret(account_key, row.id, row.password_hash) if row else StoredSecret(account_key)


def stored_client_secret(
    *, session: Session, config: IdentityConfig, client_id: str, client_ip: str | None = None
) -> StoredSecret:
    account_key = f"client:{client_id}"
    refusal = _throttle(session, config=config, account_key=account_key, client_ip=client_ip)
    if refusal is not None:
        return StoredSecret(account_key, refusal=refusal)
    row = session.execute(
        select(col(ServiceAccount.id), col(ServiceAccount.secret_hash)).where(
            col(ServiceAccount.client_id) == client_id, col(ServiceAccount.deleted_at).is_(None)
        )
    ).one_or_none()
    return StoredSecret(account_key, row.id, row.secret_hash) if row else StoredSecret(account_key)


def check_secret(*, config: IdentityConfig, stored: StoredSecret, secret: str) -> CheckedSecret:
    """The slow part: the secret against the stored hash, or the same time burnt when there is none."""
    if stored.secret_hash is None:
        config.hasher.burn(secret)
        return CheckedSecret(stored, ok=False)
    ok, new_hash = config.hasher.verify(secret, stored.secret_hash)
    return CheckedSecret(stored, ok=ok, new_hash=new_hash)


def _still_checked(
    config: IdentityConfig, checked: CheckedSecret, subject_id: uuid.UUID | None, secret_hash: str | None, secret: str
) -> CheckedSecret:
    """The check, if what it was made against is still what is stored; else a check against what is."""
    if (subject_id, secret_hash) == (checked.stored.subject_id, checked.stored.secret_hash):
        return checked
    # Changed in between (a password reset, an account replaced): rare, so checked again here.
    return check_secret(
        config=config, stored=StoredSecret(checked.stored.account_key, subject_id, secret_hash), secret=secret
    )


def login_with_password(
    *,
    session: Session,
    config: IdentityConfig,
    checked: CheckedSecret,
    password: str,
    client_ip: str | None,
    console: timedelta | None = None,
) -> TokenGrant | AuthRefusal:
    """The sign-in's write, after ``check_secret``. The throttle is asked again here: guesses checked
    side by side are answered one write at a time, so no more of them than the limit get past it.

    ``console``: a sign-in to the web console, whose cookie holds one access token of that lifetime
    and no refresh token. It names the login (``sid``) like any other, so whatever ends the login
    (signing out, a deactivation, a password reset, a revocation) ends the cookie at once."""
    account_key = checked.stored.account_key
    _one_sign_in_at_a_time(session, account_key)
    refusal = _throttle(session, config=config, account_key=account_key, client_ip=client_ip)
    if refusal is not None:
        return refusal
    user = session.execute(select(User).where(col(User.email) == account_key)).scalar_one_or_none()
    checked = _still_checked(config, checked, user.id if user else None, user.password_hash if user else None, password)
    if not checked.ok or user is None or not user.active:
        _record_attempt(session, account_key=account_key, succeeded=False, client_ip=client_ip, config=config)
        return AuthRefusal(error="invalid_grant", detail=INVALID_CREDENTIALS)
    if checked.new_hash is not None:
        user.password_hash = checked.new_hash
        session.add(user)
    _record_attempt(session, account_key=account_key, succeeded=True, client_ip=client_ip, config=config)
    auth_session = AuthSession(user_id=user.id)
    session.add(auth_session)
    session.flush()
    record_event(
        session,
        actor=Actor(type="user", id=str(user.id), label=user.email, organization_id=str(user.organization_id)),
        entity_type="auth_session",
        entity_id=auth_session.id,
        action="signed_in",
        to_state="active",
        changes={"client_ip": client_ip, "via": "console" if console else "api"},
    )
    if console is not None:
        return _user_grant(
            session, config=config, user=user, auth_session_id=auth_session.id, lifetime=console, with_refresh=False
        )
    return _user_grant(session, config=config, user=user, auth_session_id=auth_session.id)


def _revoke_session(session: Session, *, auth_session: AuthSession, reason: str, actor: Actor) -> None:
    if auth_session.revoked_at is not None:
        return
    auth_session.revoked_at = utcnow()
    auth_session.revoked_reason = reason
    session.add(auth_session)
    record_event(
        session,
        actor=actor,
        entity_type="auth_session",
        entity_id=auth_session.id,
        action="revoked",
        from_state="active",
        to_state="revoked",
        reason=reason,
    )


def revoke_user_sessions(session: Session, *, user_id: uuid.UUID, reason: str, actor: Actor) -> int:
    open_sessions = (
        session.execute(
            select(AuthSession).where(col(AuthSession.user_id) == user_id, col(AuthSession.revoked_at).is_(None))
        )
        .scalars()
        .all()
    )
    for auth_session in open_sessions:
        _revoke_session(session, auth_session=auth_session, reason=reason, actor=actor)
    return len(open_sessions)


def sign_out(*, session: Session, actor: Principal) -> None:
    """End the login the caller's token belongs to (the console's sign-out), audited."""
    auth_session = session.get(AuthSession, actor.session_id) if actor.session_id else None
    if auth_session is not None and auth_session.user_id == actor.id:
        _revoke_session(
            session,
            auth_session=auth_session,
            reason="signed_out",
            actor=Actor(type="user", id=str(actor.id), label=actor.label, organization_id=str(actor.organization_id)),
        )


def refresh(*, session: Session, config: IdentityConfig, refresh_token: str) -> TokenGrant | AuthRefusal:
    refused = AuthRefusal(error="invalid_grant", detail="The refresh token is not valid.")
    stored = session.execute(
        select(RefreshToken).where(col(RefreshToken.token_hash) == hash_opaque_token(refresh_token))
    ).scalar_one_or_none()
    if stored is None:
        return refused
    auth_session = session.get(AuthSession, stored.session_id)
    user = session.get(User, auth_session.user_id) if auth_session else None
    if auth_session is None or user is None or auth_session.revoked_at is not None:
        return refused
    now = utcnow()
    # Claim the token atomically: of two concurrent uses, only one rotates it.
    claim = update(RefreshToken).where(col(RefreshToken.id) == stored.id, col(RefreshToken.used_at).is_(None))
    # An UPDATE's result is a cursor's, which counts the rows it changed.
    claimed = cast(CursorResult[Any], session.execute(claim.values(used_at=now))).rowcount
    if claimed != 1:
        # A refresh token used twice was stolen or replayed: end the whole login.
        _revoke_session(
            session,
            auth_session=auth_session,
            reason="refresh_token_reused",
            actor=Actor(type="user", id=str(user.id), label=user.email, organization_id=str(user.organization_id)),
        )
        return AuthRefusal(
            error="invalid_grant", detail="The refresh token was already used; this sign-in has been ended."
        )
    if stored.expires_at <= now or not user.active:
        return refused
    return _user_grant(session, config=config, user=user, auth_session_id=auth_session.id)


def login_service_account(
    *,
    session: Session,
    config: IdentityConfig,
    checked: CheckedSecret,
    client_secret: str,
    requested_scopes: list[str] | None,
    client_ip: str | None,
) -> TokenGrant | AuthRefusal:
    """The client-credentials grant's write, after ``check_secret`` (as ``login_with_password``)."""
    account_key = checked.stored.account_key
    _one_sign_in_at_a_time(session, account_key)
    refusal = _throttle(session, config=config, account_key=account_key, client_ip=client_ip)
    if refusal is not None:
        return refusal
    account = session.execute(
        select(ServiceAccount).where(
            col(ServiceAccount.client_id) == account_key.removeprefix("client:"),
            col(ServiceAccount.deleted_at).is_(None),
        )
    ).scalar_one_or_none()
    checked = _still_checked(
        config, checked, account.id if account else None, account.secret_hash if account else None, client_secret
    )
    if not checked.ok or account is None:
        _record_attempt(session, account_key=account_key, succeeded=False, client_ip=client_ip, config=config)
        return AuthRefusal(error="invalid_client", detail="The client id or secret is wrong.")
    granted = list(account.scopes)
    if requested_scopes:
        missing = [s for s in requested_scopes if s not in granted]
        if missing:
            return AuthRefusal(
                error="invalid_scope", detail=f"Scopes not granted to this client: {', '.join(missing)}."
            )
        granted = [s for s in granted if s in requested_scopes]
    _record_attempt(session, account_key=account_key, succeeded=True, client_ip=client_ip, config=config)
    access, _claims = config.codec.issue_access(
        sub=str(account.id),
        principal_kind=PrincipalKind.service_account.value,
        org=str(account.organization_id),
        role=None,
        scopes=granted,
        lifetime=config.access_lifetime,
    )
    return TokenGrant(
        access_token=access, expires_in=int(config.access_lifetime.total_seconds()), scope=" ".join(granted)
    )


def revoke_token(*, session: Session, config: IdentityConfig, token: str) -> None:
    """RFC 7009: revoke a refresh token (its whole login) or an access token.

    Unknown and invalid tokens are ignored, as the RFC asks, so the answer tells nothing.
    """
    stored = session.execute(
        select(RefreshToken).where(col(RefreshToken.token_hash) == hash_opaque_token(token))
    ).scalar_one_or_none()
    if stored is not None:
        auth_session = session.get(AuthSession, stored.session_id)
        user = session.get(User, auth_session.user_id) if auth_session else None
        if auth_session is not None and user is not None:
            _revoke_session(
                session,
                auth_session=auth_session,
                reason="revoked_by_client",
                actor=Actor(type="user", id=str(user.id), label=user.email, organization_id=str(user.organization_id)),
            )
        return
    try:
        claims = config.codec.decode_access(token)
    except InvalidToken:
        _revoke_calendar_token(session, config, token)
        return
    if session.get(RevokedToken, claims.jti) is None:
        session.add(RevokedToken(jti=claims.jti, expires_at=datetime.fromtimestamp(claims.exp, UTC)))
        record_event(
            session,
            actor=Actor(type=claims.principal_kind, id=claims.sub, label=None, organization_id=claims.org),
            entity_type="access_token",
            entity_id=claims.jti,
            action="revoked",
            to_state="revoked",
        )


def known_scopes() -> list[str]:
    return [s.value for s in Scope]


__all__ = [
    "AuthRefusal",
    "CheckedSecret",
    "IdentityConfig",
    "StoredSecret",
    "TokenGrant",
    "check_secret",
    "login_service_account",
    "login_with_password",
    "refresh",
    "revoke_token",
    "revoke_user_sessions",
    "stored_client_secret",
    "stored_password",
]


def _revoke_calendar_token(session: Session, config: IdentityConfig, token: str) -> None:
    try:
        user_id, jti, _issued, expires = config.codec.decode_calendar(token)
    except InvalidToken:
        return
    if session.get(RevokedToken, jti) is None:
        session.add(RevokedToken(jti=jti, expires_at=datetime.fromtimestamp(expires, UTC)))
        user = session.get(User, uuid.UUID(user_id))
        record_event(
            session,
            actor=Actor(
                type="user",
                id=user_id,
                label=user.email if user else None,
                organization_id=str(user.organization_id) if user else None,
            ),
            entity_type="calendar_token",
            entity_id=jti,
            action="revoked",
            to_state="revoked",
        )


def calendar_subscriber(*, session: Session, config: IdentityConfig, token: str) -> User | None:
    """The account a calendar token reads for, or None: invalid, expired, revoked (POST
    /v1/auth/revoke), or issued before the account's password was reset or it was deactivated."""
    try:
        user_id, jti, issued, _expires = config.codec.decode_calendar(token)
        user = session.get(User, uuid.UUID(user_id))
    except (InvalidToken, ValueError):
        return None
    if user is None or not user.active or session.get(RevokedToken, jti) is not None:
        return None
    if user.tokens_valid_after is not None and issued <= int(user.tokens_valid_after.timestamp()):
        return None
    return user
