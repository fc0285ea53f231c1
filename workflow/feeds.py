"""Feed tokens: the access snapshot for tools that fetch a URL and set no header.

HXL Proxy, Power BI, QGIS and Excel open a URL and nothing more, so the token travels in it
(``?token=``), and a URL is copied into dashboards, proxies' logs and shared spreadsheets. So a feed
token reads the snapshot and nothing else, and reads it as an observer does whoever made it: the
cities, designations, pauses and counts; no convoy, not even its owner's. Its owner lists and revokes
it; a password reset or a deactivation of its owner ends it, as it ends every token.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.policy import Action, can
from auth.principal import Principal
from auth.roles import OrganizationKind, PrincipalKind, Role
from auth.tokens import hash_opaque_token, new_opaque_token
from db.models import FeedToken, Organization, User
from workflow.audit import Actor, record_event
from workflow.errors import Forbidden, NotFound

ENTITY = "feed_token"
PREFIX = "feed_"
MAX_LIVE_PER_USER = 20


def create_feed_token(*, session: Session, actor: Principal, name: str) -> tuple[FeedToken, str]:
    """A new token and its secret, shown this once."""
    if not actor.is_user or not can(actor, Action.read_cities):
        raise Forbidden("Feed tokens are for people; an integration uses its service account's token.")
    live = session.execute(
        select(col(FeedToken.id)).where(col(FeedToken.user_id) == actor.id, col(FeedToken.revoked_at).is_(None))
    ).all()
    if len(live) >= MAX_LIVE_PER_USER:
        raise Forbidden(f"You have {MAX_LIVE_PER_USER} live feed tokens; revoke one you no longer use first.")
    secret = PREFIX + new_opaque_token()
    token = FeedToken(user_id=actor.id, name=" ".join(name.split()), token_hash=hash_opaque_token(secret))
    session.add(token)
    session.flush()
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=token.id,
        action="created",
        to_state="active",
        changes={"name": token.name},
    )
    return token, secret


def list_feed_tokens(*, session: Session, actor: Principal) -> list[FeedToken]:
    """The caller's own tokens, live and revoked, newest first."""
    return list(
        session.execute(
            select(FeedToken)
            .where(col(FeedToken.user_id) == actor.id)
            .order_by(col(FeedToken.created_at).desc(), col(FeedToken.id))
        ).scalars()
    )


def revoke_feed_token(*, session: Session, actor: Principal, token_id: uuid.UUID) -> FeedToken:
    """Ends it at once; another user's token is not found (404), whoever asks."""
    token = session.get(FeedToken, token_id)
    if token is None or token.user_id != actor.id:
        raise NotFound("No such feed token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        record_event(
            session,
            actor=Actor.of(actor),
            entity_type=ENTITY,
            entity_id=token.id,
            action="revoked",
            from_state="active",
            to_state="revoked",
        )
    return token


def feed_reader(session: Session, secret: str) -> Principal | None:
    """Who reads the snapshot with this token: its owner's organization, as an observer; None when the
    token is unknown or revoked, or its owner deactivated or their password reset since it was made."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    row = session.execute(
        select(
            col(FeedToken.id),
            col(FeedToken.name),
            col(FeedToken.created_at),
            col(User.active),
            col(User.tokens_valid_after),
            col(Organization.id).label("organization_id"),
            col(Organization.name).label("organization_name"),
        )
        .join(User, col(User.id) == col(FeedToken.user_id))
        .join(Organization, col(Organization.id) == col(User.organization_id))
        .where(col(FeedToken.token_hash) == hash_opaque_token(secret), col(FeedToken.revoked_at).is_(None))
    ).first()
    if row is None or not row.active or _ended(row.created_at, row.tokens_valid_after):
        return None
    return Principal(
        kind=PrincipalKind.user,
        id=row.id,
        label=f"feed token {row.name}",
        name=row.name,
        organization_id=row.organization_id,
        organization_name=row.organization_name,
        # Whatever its owner may read: a URL travels, so it reads what an observer reads.
        organization_kind=OrganizationKind.observer,
        role=Role.observer,
        scopes=frozenset(),
        token_id=f"feed:{row.id}",
        token_expires_at=0,
    )


def _ended(created_at: datetime, tokens_valid_after: datetime | None) -> bool:
    return tokens_valid_after is not None and created_at <= tokens_valid_after
