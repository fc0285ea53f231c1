"""Violations: reported by partners, coordinators and co-chairs, followed up by coordinators.

    reported --verify--> verified --resolve--> resolved
    reported --dismiss--> dismissed         verified --mark_unresolved--> unresolved

The time from report to the first coordinator action is kept. A verified violation of an
active pause offers the coordinator the suspension; it never suspends by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.policy import Action, can, can_list_violations, can_read_request, can_read_violation
from auth.principal import Principal
from auth.roles import Role
from db.models import AccessRequest, City, Pause, Violation
from workflow.audit import Actor, record_event
from workflow.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound, PreconditionFailed
from workflow.pauses import DisplayStatus, display_status

ENTITY = "violation"


class ViolationStatus(StrEnum):
    reported = "reported"
    verified = "verified"
    dismissed = "dismissed"
    resolved = "resolved"
    unresolved = "unresolved"


class ViolationAction(StrEnum):
    verify = "verify"
    dismiss = "dismiss"
    resolve = "resolve"
    mark_unresolved = "mark_unresolved"


class Category(StrEnum):
    """The nine OCHA access-constraint categories."""

    denial_of_needs = "denial_of_needs"
    restricted_access_to_services = "restricted_access_to_services"
    impediments_to_entry = "impediments_to_entry"
    movement_restrictions = "movement_restrictions"
    interference_in_implementation = "interference_in_implementation"
    violence_against_personnel_and_assets = "violence_against_personnel_and_assets"
    hostilities = "hostilities"
    explosive_hazards = "explosive_hazards"
    physical_environment = "physical_environment"


TRANSITIONS: dict[ViolationAction, dict[ViolationStatus, ViolationStatus]] = {
    ViolationAction.verify: {ViolationStatus.reported: ViolationStatus.verified},
    ViolationAction.dismiss: {ViolationStatus.reported: ViolationStatus.dismissed},
    ViolationAction.resolve: {ViolationStatus.verified: ViolationStatus.resolved},
    ViolationAction.mark_unresolved: {ViolationStatus.verified: ViolationStatus.unresolved},
}


_PAST = {
    ViolationAction.verify: "verified",
    ViolationAction.dismiss: "dismissed",
    ViolationAction.resolve: "resolved",
    ViolationAction.mark_unresolved: "marked unresolved",
}


def _request_org(session: Session, violation: Violation) -> uuid.UUID | None:
    if violation.access_request_id is None:
        return None
    return session.execute(
        select(col(AccessRequest.organization_id)).where(col(AccessRequest.id) == violation.access_request_id)
    ).scalar()


def get_violation(*, session: Session, actor: Principal, violation_id: uuid.UUID) -> Violation:
    violation = session.get(Violation, violation_id)
    if violation is None or not can_read_violation(
        actor, violation.reporter_organization_id, _request_org(session, violation)
    ):
        raise NotFound("No such violation.")
    return violation


def allowed_actions(actor: Principal, violation: Violation) -> list[str]:
    if not can(actor, Action.follow_up_violation):
        return []
    return [a.value for a in ViolationAction if ViolationStatus(violation.status) in TRANSITIONS[a]]


@dataclass(frozen=True)
class Suggestion:
    action: str
    pause_id: uuid.UUID


def suggestions(session: Session, actor: Principal, violation: Violation) -> list[Suggestion]:
    """A verified violation of an active pause: offer the suspension, to coordinators."""
    if (
        violation.status != ViolationStatus.verified
        or violation.pause_id is None
        or not can(actor, Action.manage_pauses)
    ):
        return []
    pause = session.get(Pause, violation.pause_id)
    if pause is not None and display_status(pause, utcnow()) == DisplayStatus.active:
        return [Suggestion(action="suspend_pause", pause_id=pause.id)]
    return []


def report_violation(*, session: Session, actor: Principal, data: dict[str, Any]) -> Violation:
    decision = can(actor, Action.report_violation)
    if not decision:
        raise Forbidden(decision.reason)
    errors: list[FieldError] = []
    if data.get("pause_id") is None and data.get("city_id") is None and data.get("access_request_id") is None:
        errors.append(FieldError("body.pause_id", "Name a pause, a city or an access request.", "missing"))
    if data.get("pause_id") is not None and session.get(Pause, data["pause_id"]) is None:
        errors.append(FieldError("body.pause_id", "No pause has this id.", "unknown_reference"))
    if data.get("city_id") is not None and session.get(City, data["city_id"]) is None:
        errors.append(FieldError("body.city_id", "No city has this id.", "unknown_reference"))
    if data.get("access_request_id") is not None:
        request = session.get(AccessRequest, data["access_request_id"])
        # A partner reports only against its own organization's requests; others' do not exist for it.
        if request is None or not can_read_request(actor, request.organization_id):
            errors.append(
                FieldError("body.access_request_id", "No access request you may see has this id.", "unknown_reference")
            )
    if data["occurred_at"] > utcnow():
        errors.append(FieldError("body.occurred_at", "A violation cannot occur in the future.", "in_the_future"))
    if errors:
        raise InvalidInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    violation = Violation(
        status=ViolationStatus.reported.value,
        reported_by=str(actor.id),
        reporter_organization_id=actor.organization_id,
        pause_id=data.get("pause_id"),
        city_id=data.get("city_id"),
        access_request_id=data.get("access_request_id"),
        category=Category(data["category"]).value,
        occurred_at=data["occurred_at"],
        place=(data.get("place") or "").strip() or None,
        description=data["description"].strip(),
        severity=data["severity"],
    )
    session.add(violation)
    session.flush()
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=violation.id,
        action="reported",
        to_state=violation.status,
        changes={
            k: data.get(k)
            for k in ("pause_id", "city_id", "access_request_id", "category", "occurred_at", "place", "severity")
        },
        reason=violation.description,
    )
    return violation


def follow_up(
    *,
    session: Session,
    actor: Principal,
    violation_id: uuid.UUID,
    action: ViolationAction,
    reason: str | None,
    expected_version: int | None,
) -> Violation:
    violation = get_violation(session=session, actor=actor, violation_id=violation_id)
    if expected_version is not None and violation.version != expected_version:
        raise PreconditionFailed(f"The violation is at version {violation.version}, not {expected_version}.")
    decision = can(actor, Action.follow_up_violation)
    if not decision:
        raise Forbidden(decision.reason)
    status = ViolationStatus(violation.status)
    if status not in TRANSITIONS[action]:
        raise Conflict(
            f"A {status.value} violation cannot be {_PAST[action]}.",
            state=status.value,
            allowed_actions=allowed_actions(actor, violation),
        )
    why = (reason or "").strip() or None
    if action == ViolationAction.dismiss and why is None:
        raise InvalidInput.field("body.reason", "Say why it is dismissed.", "missing")
    now = utcnow()
    violation.status = TRANSITIONS[action][status].value
    if violation.first_response_at is None:
        violation.first_response_at = now
    violation.last_reason = why
    violation.updated_at = now
    session.add(violation)
    session.flush()
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=violation.id,
        action=action.value,
        from_state=status.value,
        to_state=violation.status,
        reason=why,
    )
    return violation


@dataclass(frozen=True)
class ViolationFilters:
    pause_id: uuid.UUID | None = None
    city_id: uuid.UUID | None = None
    statuses: Sequence[ViolationStatus] = ()
    categories: Sequence[Category] = ()
    unanswered: bool | None = None


def list_violations(
    *, session: Session, actor: Principal, filters: ViolationFilters, limit: int, after: uuid.UUID | None
) -> tuple[list[Violation], bool]:
    decision = can_list_violations(actor)
    if not decision:
        raise Forbidden(decision.reason)
    stmt = select(Violation)
    if actor.role not in (Role.coordinator, Role.co_chair):
        # The list's form of can_read_violation: reported by, or about a request of, the caller's organization.
        own_requests = select(col(AccessRequest.id)).where(col(AccessRequest.organization_id) == actor.organization_id)
        stmt = stmt.where(
            or_(
                col(Violation.reporter_organization_id) == actor.organization_id,
                col(Violation.access_request_id).in_(own_requests),
            )
        )
    if filters.pause_id is not None:
        stmt = stmt.where(col(Violation.pause_id) == filters.pause_id)
    if filters.city_id is not None:
        stmt = stmt.where(col(Violation.city_id) == filters.city_id)
    if filters.statuses:
        stmt = stmt.where(col(Violation.status).in_([s.value for s in filters.statuses]))
    if filters.categories:
        stmt = stmt.where(col(Violation.category).in_([c.value for c in filters.categories]))
    if filters.unanswered is True:
        stmt = stmt.where(col(Violation.first_response_at).is_(None))
    elif filters.unanswered is False:
        stmt = stmt.where(col(Violation.first_response_at).is_not(None))
    if after is not None:
        stmt = stmt.where(col(Violation.id) > after)
    rows = list(session.execute(stmt.order_by(col(Violation.id)).limit(limit + 1)).scalars())
    return rows[:limit], len(rows) > limit


def response_seconds(violation: Violation) -> int | None:
    if violation.first_response_at is None:
        return None
    return int((violation.first_response_at - violation.created_at).total_seconds())
