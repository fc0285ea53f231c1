"""The change feed: every change the caller may see, in commit order.

The feed is the audit trail seen through the caller's permissions. Audit ids are assigned
as last + 1 while holding the append lock until commit, so they are gapless and increase in
commit order: a client that remembers the last id it saw and asks for what comes after never
misses an event and never sees one twice, however transactions interleave.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from aidaccess.clock import day_start, utcnow
from auth.opaque import SequenceCipher
from auth.policy import Action, can, can_read_request, can_read_violation
from auth.principal import Principal
from auth.roles import Role
from db.models import AccessRequest, AuditEvent, Violation
from workflow.errors import InvalidInput

# Events are named outside the trail by a keyed permutation of their id (auth.opaque): stable, and
# saying nothing of their place in it. The key is the audit key (audit.set_seal_key sets it).
_EVENT_NAMES: SequenceCipher | None = None


def set_name_key(key: str) -> None:
    global _EVENT_NAMES
    _EVENT_NAMES = SequenceCipher(key, "event ids")


def public_event_id(position: int) -> str:
    """An event's name outside the trail: stable, and saying nothing of its place ."""
    if _EVENT_NAMES is None:
        raise RuntimeError("no audit key: call workflow.audit.set_seal_key first")
    return _EVENT_NAMES.hide(position)


def event_position(name: str) -> int | None:
    """The trail's id of an event named by ``public_event_id``, or None."""
    if _EVENT_NAMES is None:
        raise RuntimeError("no audit key: call workflow.audit.set_seal_key first")
    return _EVENT_NAMES.reveal(name)


# (entity type, audit action) -> feed event type; what is not here is not in the feed.
_VIOLATION_ACTIONS = {
    "reported": "reported",
    "verify": "verified",
    "dismiss": "dismissed",
    "resolve": "resolved",
    "mark_unresolved": "marked_unresolved",
}
_DESIGNATION_ACTIONS = {"designation_recorded", "designation_corrected"}
ADMIN_ENTITIES = ("organization", "user", "service_account")
FEED_ENTITIES = ("city", "access_request", "pause", "violation", *ADMIN_ENTITIES)

EVENT_TYPES = sorted(
    {f"city.{a}" for a in ("created", "updated")}
    | {"city.designation_changed"}
    | {
        f"access_request.{a}"
        for a in (
            "created",
            "edited",
            "submitted",
            "changes_requested",
            "approved",
            "denied",
            "dispatched",
            "completed",
            "cancelled",
        )
    }
    | {
        f"pause.{a}"
        for a in (
            "proposed",
            "revised",
            "endorsed",
            "objected",
            "approved",
            "withdrawn",
            "suspended",
            "resumed",
            "terminated",
            "acknowledgement_recorded",
        )
    }
    | {f"violation.{a}" for a in _VIOLATION_ACTIONS.values()}
    | {f"{e}.{a}" for e in ADMIN_ENTITIES for a in ("created", "updated", "deactivated", "reactivated", "deleted")}
)


# The same names as an enumeration: the contract lists them, and a request naming another is refused
# with the list (integrators asked for it).
EventType = StrEnum("EventType", {name.replace(".", "__"): name for name in EVENT_TYPES})  # type: ignore[misc]


def event_type(entity_type: str, action: str) -> str | None:
    if entity_type == "city" and action in _DESIGNATION_ACTIONS:
        return "city.designation_changed"
    if entity_type == "violation":
        mapped = _VIOLATION_ACTIONS.get(action)
        return f"violation.{mapped}" if mapped else None
    name = f"{entity_type}.{action}"
    return name if name in EVENT_TYPES else None


@dataclass(frozen=True)
class FeedEvent:
    id: int  # the trail's: given out only as public_event_id
    type: str
    occurred_at: datetime
    entity_type: str
    entity_id: str
    state: str | None


# A page scans at most this many audit events for what the caller may see; the cursor then
# moves past what it scanned, so a caller who sees little still advances.
SCAN_LIMIT = 5000
_BATCH = 500


def visible_entities(actor: Principal) -> tuple[str, ...]:
    entities = []
    if can(actor, Action.read_cities):
        entities.append("city")
    if can(actor, Action.read_pauses):
        entities.append("pause")
    if actor.is_service_account or actor.role in (Role.partner, Role.coordinator, Role.co_chair):
        entities += ["access_request", "violation"]
    if actor.role == Role.admin:
        entities += list(ADMIN_ENTITIES)
    return tuple(entities)


def feed(
    *, session: Session, actor: Principal, after: int, limit: int, types: Sequence[str] = ()
) -> tuple[list[FeedEvent], int]:
    """Events after ``after`` the caller may see, and the cursor to continue from.

    The cursor moves past an event the caller may not see only once that event's day is over (in
    the taskforce's time zone), or when an event it may see follows: a cursor that moved as soon
    as a hidden event was committed would time that event to the poll."""
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput.field(
            "query.types", f"Unknown event type {unknown[0]}; known: {', '.join(EVENT_TYPES)}.", "unknown_type"
        )
    entities = visible_entities(actor)
    if types:
        entities = tuple(e for e in entities if any(t.startswith(f"{e}.") for t in types))
    found: list[FeedEvent] = []
    cursor = position = after
    today = day_start(utcnow())
    held = False  # a hidden event of today was passed: the cursor waits for a visible one or for tomorrow
    scanned = 0
    while len(found) < limit and scanned < SCAN_LIMIT and entities:
        rows = session.execute(
            select(
                col(AuditEvent.id),
                col(AuditEvent.occurred_at),
                col(AuditEvent.entity_type),
                col(AuditEvent.entity_id),
                col(AuditEvent.action),
                col(AuditEvent.to_state),
            )
            .where(col(AuditEvent.id) > position, col(AuditEvent.entity_type).in_(entities))
            .order_by(col(AuditEvent.id))
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        readable = readable_predicate(session, actor, rows)
        for row in rows:
            position = row.id
            scanned += 1
            kind = event_type(row.entity_type, row.action)
            if kind is None or (types and kind not in types) or not readable(row):
                held = held or row.occurred_at >= today
                if not held:
                    cursor = row.id
                continue
            found.append(FeedEvent(row.id, kind, row.occurred_at, row.entity_type, row.entity_id, row.to_state))
            cursor, held = row.id, False
            if len(found) == limit:
                break
    return found, cursor


def readable_predicate(session: Session, actor: Principal, rows: Sequence[Any]) -> Callable[[Any], bool]:
    """A predicate over this batch, with one query per kind of entity that needs its owner."""
    if actor.role in (Role.coordinator, Role.co_chair, Role.admin):
        return lambda row: True

    def ids(entity: str) -> list[uuid.UUID]:
        return [uuid.UUID(r.entity_id) for r in rows if r.entity_type == entity]

    request_orgs = dict(
        session.execute(
            select(col(AccessRequest.id), col(AccessRequest.organization_id)).where(
                col(AccessRequest.id).in_(ids("access_request"))
            )
        ).all()
    )
    violations = {
        v.id: (v.reporter_organization_id, v.access_request_id)
        for v in session.execute(select(Violation).where(col(Violation.id).in_(ids("violation")))).scalars()
    }
    violation_request_orgs = dict(
        session.execute(
            select(col(AccessRequest.id), col(AccessRequest.organization_id)).where(
                col(AccessRequest.id).in_([r for _, r in violations.values() if r is not None])
            )
        ).all()
    )

    def readable(row: Any) -> bool:
        if row.entity_type == "access_request":
            org = request_orgs.get(uuid.UUID(row.entity_id))
            return org is not None and bool(can_read_request(actor, org))
        if row.entity_type == "violation":
            reporter, request_id = violations.get(uuid.UUID(row.entity_id), (None, None))
            return reporter is not None and bool(
                can_read_violation(actor, reporter, violation_request_orgs.get(request_id))
            )
        return True

    return readable
