"""The webhook outbox: the deliveries an appended audit event makes, written in its transaction.

The audit trail's append calls ``enqueue`` for each event it appends (before the commit), so an
event and its deliveries commit together or not at all; ``workflow.webhooks`` delivers them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlmodel import Session, col

from auth.principal import Principal
from auth.roles import OrganizationKind, PrincipalKind, Role, Scope
from db.models import Organization, ServiceAccount, User, WebhookDelivery, WebhookSubscription
from workflow.common import read_rows
from workflow.events import event_type, public_event_id, readable_predicate, visible_entities


class AppendedEvent(Protocol):
    """What the outbox reads of an event: an ``AuditEvent`` row or the audit trail's ``RecordedEvent``."""

    @property
    def id(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def entity_type(self) -> str: ...
    @property
    def entity_id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def to_state(self) -> str | None: ...


def _owner(session: Session, subscription: WebhookSubscription) -> Principal | None:
    """The subscription's owner as they are now: what they may read is what they get."""
    if subscription.owner_type == PrincipalKind.user:
        user = session.get(User, subscription.owner_id)
        if user is None or not user.active:
            return None
        organization = session.get_one(Organization, user.organization_id)
        return Principal(
            kind=PrincipalKind.user,
            id=user.id,
            label=user.email,
            name=user.full_name,
            organization_id=user.organization_id,
            organization_name=organization.name,
            organization_kind=OrganizationKind(organization.kind),
            role=Role(user.role),
            scopes=frozenset(),
            token_id="",
            token_expires_at=0,
        )
    account = session.get(ServiceAccount, subscription.owner_id)
    if account is None or account.deleted_at is not None:
        return None
    organization = session.get_one(Organization, account.organization_id)
    return Principal(
        kind=PrincipalKind.service_account,
        id=account.id,
        label=account.client_id,
        name=account.name,
        organization_id=account.organization_id,
        organization_name=organization.name,
        organization_kind=OrganizationKind(organization.kind),
        role=None,
        scopes=frozenset(account.scopes) & {s.value for s in Scope},
        token_id="",
        token_expires_at=0,
    )


def payload(event: AppendedEvent, kind: str) -> dict[str, Any]:
    """The same shape as an item of the change feed."""
    return {
        "id": public_event_id(event.id),
        "type": kind,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "state": event.to_state,
    }


# Built once, as audit's statements. Which live subscriptions want an event is read as rows on the
# unit of work's connection, every write asks and most find none; those that want it are loaded whole.
_LIVE_SUBSCRIPTIONS = (
    select(col(WebhookSubscription.id), col(WebhookSubscription.event_types))
    .where(col(WebhookSubscription.deleted_at).is_(None))
    .order_by(col(WebhookSubscription.id))
)
_SUBSCRIPTIONS = (
    select(WebhookSubscription)
    .where(col(WebhookSubscription.id).in_(bindparam("ids", expanding=True)))
    .order_by(col(WebhookSubscription.id))
)


# The same rows as one JSON value, [[id, event types], ...] by id, for a statement to carry beside its
# own columns: the audit trail's append on PostgreSQL, a round trip fewer for a write a subscription can want.
LIVE_SUBSCRIPTIONS_JSON = (
    "(SELECT coalesce(json_agg(json_build_array(s.id, s.event_types) ORDER BY s.id), '[]'::json)"
    " FROM webhook_subscription s WHERE s.deleted_at IS NULL)"
)


def subscribable(events: Iterable[tuple[str, str]]) -> bool:
    """Whether any of ``events`` (entity type, action) is a kind a subscription can want."""
    return any(event_type(entity_type, action) is not None for entity_type, action in events)


def live_subscriptions(session: Session, events: Iterable[tuple[str, str]]) -> list[tuple[uuid.UUID, list[str]]]:
    """(id, event types) of every live subscription: what ``enqueue`` needs of them all. Not read where
    none of ``events`` is ``subscribable``, as enqueue would skip them."""
    if not subscribable(events):
        return []
    return [tuple(row) for row in read_rows(session, _LIVE_SUBSCRIPTIONS)]


def live_subscriptions_of(value: list[list[Any]]) -> list[tuple[uuid.UUID, list[str]]]:
    """``live_subscriptions`` from the value of ``LIVE_SUBSCRIPTIONS_JSON``."""
    return [(uuid.UUID(id_), event_types) for id_, event_types in value]


def enqueue(session: Session, event: AppendedEvent, live: list[tuple[uuid.UUID, list[str]]]) -> None:
    """The outbox rows of ``event``, one per subscription of ``live`` that wants it and may read it."""
    kind = event_type(event.entity_type, event.action)
    if kind is None:
        return
    wanted = [id_ for id_, event_types in live if kind in event_types]
    if not wanted:
        return
    for subscription in session.execute(_SUBSCRIPTIONS, {"ids": wanted}).scalars():
        owner = _owner(session, subscription)
        if (
            owner is None
            or event.entity_type not in visible_entities(owner)
            or not readable_predicate(session, owner, [event])(event)
        ):
            continue
        session.add(
            WebhookDelivery(
                subscription_id=subscription.id,
                event_id=event.id,
                event_type=kind,
                payload=json.dumps(payload(event, kind), separators=(",", ":")),
                next_attempt_at=event.occurred_at,
            )
        )
