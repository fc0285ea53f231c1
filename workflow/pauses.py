"""Humanitarian pauses: proposed by coordinators, endorsed by every required co-chair
delegation, approved, then active and completed by the clock.

    proposed --approve--> approved   (shown as active, then completed, by the clock)
    proposed --withdraw--> withdrawn
    approved --suspend--> suspended --resume--> approved
    approved | suspended --terminate--> terminated   (ended early)

A revision (PATCH while proposed) clears every endorsement: a co-chair endorses one text
and one window. Every endorsement also bumps the pause's version, so an approval racing
an endorsement or a revision fails cleanly instead of approving what was not endorsed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.policy import Action, can, can_endorse_pause, can_read_request
from auth.principal import Principal
from auth.roles import OrganizationKind
from db.models import (
    AccessRequest,
    Acknowledgement,
    AuditEvent,
    City,
    Endorsement,
    Organization,
    Pause,
    PauseCity,
    PauseDelegation,
)
from workflow.audit import Actor, record_event
from workflow.common import AnyRow, refuse_removal, require, required_reason
from workflow.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound, PreconditionFailed

ENTITY = "pause"


class PauseStatus(StrEnum):
    proposed = "proposed"
    approved = "approved"
    suspended = "suspended"
    terminated = "terminated"
    withdrawn = "withdrawn"


class DisplayStatus(StrEnum):
    """What a reader sees: an approved pause is active, then completed, by the clock."""

    proposed = "proposed"
    approved = "approved"  # approved, not started yet
    active = "active"
    completed = "completed"
    suspended = "suspended"
    terminated = "terminated"
    withdrawn = "withdrawn"


class PauseAction(StrEnum):
    revise = "revise"
    approve = "approve"
    withdraw = "withdraw"
    suspend = "suspend"
    resume = "resume"
    terminate = "terminate"
    endorse = "endorse"
    acknowledge = "acknowledge"


class Decision(StrEnum):
    endorse = "endorse"
    object = "object"


class PartyResponse(StrEnum):
    accepted = "accepted"
    rejected = "rejected"
    no_response = "no_response"


TRANSITIONS: dict[PauseAction, dict[PauseStatus, PauseStatus]] = {
    PauseAction.revise: {PauseStatus.proposed: PauseStatus.proposed},
    PauseAction.endorse: {PauseStatus.proposed: PauseStatus.proposed},
    PauseAction.approve: {PauseStatus.proposed: PauseStatus.approved},
    PauseAction.withdraw: {PauseStatus.proposed: PauseStatus.withdrawn},
    PauseAction.suspend: {PauseStatus.approved: PauseStatus.suspended},
    PauseAction.resume: {PauseStatus.suspended: PauseStatus.approved},
    PauseAction.terminate: {
        PauseStatus.approved: PauseStatus.terminated,
        PauseStatus.suspended: PauseStatus.terminated,
    },
    PauseAction.acknowledge: {s: s for s in (PauseStatus.proposed, PauseStatus.approved, PauseStatus.suspended)},
}
COORDINATOR_ACTIONS = [a for a in PauseAction if a != PauseAction.endorse]


@dataclass(frozen=True)
class PauseRules:
    max_length: timedelta
    notice: timedelta

    @classmethod
    def from_settings(cls, settings: Any) -> PauseRules:
        return cls(timedelta(days=settings.pause_max_days), timedelta(hours=settings.pause_notice_hours))


def display_status(pause: Pause, now: datetime) -> DisplayStatus:
    if pause.status == PauseStatus.approved:
        if now < pause.starts_at:
            return DisplayStatus.approved
        return DisplayStatus.active if now < pause.ends_at else DisplayStatus.completed
    if pause.status == PauseStatus.suspended and now >= pause.ends_at:
        return DisplayStatus.completed
    return DisplayStatus(pause.status)


def active_at(pause: Pause, moment: datetime) -> bool:
    """Whether the pause was in force at ``moment``, from its recorded times."""
    if pause.approved_at is None or pause.approved_at > moment:
        return False
    end = min(pause.ends_at, pause.terminated_at) if pause.terminated_at else pause.ends_at
    if not (pause.starts_at <= moment < end):
        return False
    if (
        pause.suspended_at
        and pause.suspended_at <= moment
        and (pause.resumed_at is None or pause.resumed_at < pause.suspended_at or pause.resumed_at > moment)
    ):
        return False
    return True


# ---- reading -------------------------------------------------------------------------


@dataclass
class PauseView:
    pause: Pause
    city_ids: list[uuid.UUID]
    delegations: list[tuple[uuid.UUID, str]]  # (organization id, name)
    decisions: dict[uuid.UUID, Endorsement]  # current revision, latest per delegation
    endorsement_history: list[Endorsement]
    acknowledgements: list[Acknowledgement]
    affected_requests: list[AccessRequest] = field(default_factory=list)


def _load(session: Session, pause_id: uuid.UUID) -> Pause:
    pause = session.get(Pause, pause_id)
    if pause is None:
        raise NotFound("No such pause.")
    return pause


def _city_ids(session: Session, pause_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    result: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    if pause_ids:
        for pause_id, city_id in session.execute(
            select(col(PauseCity.pause_id), col(PauseCity.city_id)).where(col(PauseCity.pause_id).in_(pause_ids))
        ):
            result[pause_id].append(city_id)
    return result


def required_delegations(session: Session, pause_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        session.execute(
            select(col(PauseDelegation.organization_id)).where(col(PauseDelegation.pause_id) == pause_id)
        ).scalars()
    )


def _current_decisions(session: Session, pause: Pause) -> dict[uuid.UUID, Endorsement]:
    latest: dict[uuid.UUID, Endorsement] = {}
    for endorsement in session.execute(
        select(Endorsement)
        .where(col(Endorsement.pause_id) == pause.id, col(Endorsement.revision) == pause.revision)
        .order_by(col(Endorsement.decided_at), col(Endorsement.id))
    ).scalars():
        latest[endorsement.organization_id] = endorsement
    return latest


def view(session: Session, actor: Principal, pause: Pause) -> PauseView:
    delegations = session.execute(
        select(col(Organization.id), col(Organization.name))
        .join(PauseDelegation, col(PauseDelegation.organization_id) == col(Organization.id))
        .where(col(PauseDelegation.pause_id) == pause.id)
        .order_by(col(Organization.name))
    ).all()
    history = list(
        session.execute(
            select(Endorsement)
            .where(col(Endorsement.pause_id) == pause.id)
            .order_by(col(Endorsement.decided_at), col(Endorsement.id))
        ).scalars()
    )
    acknowledgements = list(
        session.execute(
            select(Acknowledgement)
            .where(col(Acknowledgement.pause_id) == pause.id)
            .order_by(col(Acknowledgement.responded_at))
        ).scalars()
    )
    affected = []
    if pause.status in (PauseStatus.suspended, PauseStatus.terminated):
        relying = session.execute(
            select(AccessRequest).where(
                col(AccessRequest.pause_id) == pause.id, col(AccessRequest.status).in_(LIVE_REQUEST_STATES)
            )
        ).scalars()
        affected = [r for r in relying if can_read_request(actor, r.organization_id)]
    return PauseView(
        pause=pause,
        city_ids=_city_ids(session, [pause.id])[pause.id],
        delegations=[(row.id, row.name) for row in delegations],
        decisions=_current_decisions(session, pause),
        endorsement_history=history,
        acknowledgements=acknowledgements,
        affected_requests=affected,
    )


# Requests still on their way: a pause ending under them affects them.
LIVE_REQUEST_STATES = ("draft", "submitted", "changes_requested", "approved", "dispatched")


def get_pause(*, session: Session, actor: Principal, pause_id: uuid.UUID) -> Pause:
    require(actor, Action.read_pauses)
    return _load(session, pause_id)


def allowed_actions(session: Session, actor: Principal, pause: Pause) -> list[str]:
    status = PauseStatus(pause.status)
    actions = []
    if can(actor, Action.manage_pauses):
        actions += [a.value for a in COORDINATOR_ACTIONS if status in TRANSITIONS[a]]
    if status in TRANSITIONS[PauseAction.endorse] and can_endorse_pause(actor, required_delegations(session, pause.id)):
        actions.append(PauseAction.endorse.value)
    return actions


def list_pauses(
    *,
    session: Session,
    actor: Principal,
    city_id: uuid.UUID | None = None,
    statuses: Sequence[PauseStatus] = (),
    active_at_moment: datetime | None = None,
    limit: int = 50,
    after: uuid.UUID | None = None,
) -> tuple[list[Pause], bool]:
    require(actor, Action.read_pauses)
    stmt = select(Pause)
    if city_id is not None:
        stmt = stmt.join(PauseCity, col(PauseCity.pause_id) == col(Pause.id)).where(col(PauseCity.city_id) == city_id)
    if statuses:
        stmt = stmt.where(col(Pause.status).in_([s.value for s in statuses]))
    if active_at_moment is not None:
        stmt = stmt.where(
            col(Pause.approved_at) <= active_at_moment,
            col(Pause.starts_at) <= active_at_moment,
            col(Pause.ends_at) > active_at_moment,
            or_(col(Pause.terminated_at).is_(None), col(Pause.terminated_at) > active_at_moment),
        )
    if after is not None:
        stmt = stmt.where(col(Pause.id) > after)
    rows = list(session.execute(stmt.order_by(col(Pause.id)).limit(limit + 1)).scalars())
    if active_at_moment is not None:
        rows = [p for p in rows if active_at(p, active_at_moment)]
    return rows[:limit], len(rows) > limit


def calendar_pauses(session: Session, city_id: uuid.UUID | None = None) -> list[Pause]:
    """The pauses a calendar shows, by start: every pause ever approved (a terminated one as cancelled);
    one withdrawn before approval never reached a calendar. Pauses are public to every role."""
    stmt = select(Pause).where(col(Pause.approved_at).is_not(None))
    if city_id is not None:
        stmt = stmt.join(PauseCity, col(PauseCity.pause_id) == col(Pause.id)).where(col(PauseCity.city_id) == city_id)
    return list(session.execute(stmt.order_by(col(Pause.starts_at), col(Pause.id))).scalars())


def cities_of_pauses(session: Session, pause_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[AnyRow]]:
    """Each pause's cities by name: (name, name_ar, latitude, longitude), for a calendar's place."""
    found: dict[uuid.UUID, list[AnyRow]] = defaultdict(list)
    if pause_ids:
        for row in session.execute(
            select(col(PauseCity.pause_id), col(City.name), col(City.name_ar), col(City.latitude), col(City.longitude))
            .join(City, col(City.id) == col(PauseCity.city_id))
            .where(col(PauseCity.pause_id).in_(list(pause_ids)))
            .order_by(col(City.name))
        ):
            found[row.pause_id].append(row)
    return found


def pauses_for_cities(
    session: Session, city_ids: Sequence[uuid.UUID] | None, as_of: datetime
) -> dict[uuid.UUID, tuple[list[Pause], list[Pause]]]:
    """Per city, (active, upcoming) pauses at ``as_of``: approved by then, not ended."""
    stmt = (
        select(Pause, col(PauseCity.city_id))
        .join(PauseCity, col(PauseCity.pause_id) == col(Pause.id))
        .where(
            col(Pause.approved_at) <= as_of,
            col(Pause.ends_at) > as_of,
            or_(col(Pause.terminated_at).is_(None), col(Pause.terminated_at) > as_of),
        )
        .order_by(col(Pause.starts_at))
    )
    if city_ids is not None:
        stmt = stmt.where(col(PauseCity.city_id).in_(city_ids))
    result: dict[uuid.UUID, tuple[list[Pause], list[Pause]]] = defaultdict(lambda: ([], []))
    for pause, city_id in session.execute(stmt):
        active, upcoming = result[city_id]
        if active_at(pause, as_of):
            active.append(pause)
        elif pause.starts_at > as_of:
            upcoming.append(pause)
    return result


# ---- writing -------------------------------------------------------------------------


def _check_window(starts_at: datetime, ends_at: datetime, rules: PauseRules) -> None:
    if ends_at <= starts_at:
        raise InvalidInput.field("body.ends_at", "The end must come after the start.", "invalid_window")
    if ends_at - starts_at > rules.max_length:
        raise InvalidInput.field("body.ends_at", f"A pause lasts at most {rules.max_length.days} days.", "too_long")


def _check_cities(session: Session, city_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    unique = list(dict.fromkeys(city_ids))
    if not unique:
        raise InvalidInput.field("body.city_ids", "Name at least one city.", "missing")
    known = set(session.execute(select(col(City.id)).where(col(City.id).in_(unique))).scalars())
    unknown = [c for c in unique if c not in known]
    if unknown:
        raise InvalidInput.field("body.city_ids", f"No city has the id {unknown[0]}.", "unknown_reference")
    return unique


def propose_pause(*, session: Session, actor: Principal, rules: PauseRules, data: dict[str, Any]) -> Pause:
    require(actor, Action.manage_pauses)
    city_ids = _check_cities(session, data["city_ids"])
    _check_window(data["starts_at"], data["ends_at"], rules)
    delegations = data.get("delegation_ids")
    active_delegations = set(
        session.execute(
            select(col(Organization.id)).where(col(Organization.kind) == OrganizationKind.co_chair_delegation.value)
        ).scalars()
    )
    if delegations is None:
        # By default every co-chair delegation at proposal time; fixed from then on.
        delegations = sorted(active_delegations)
    else:
        delegations = list(dict.fromkeys(delegations))
        strangers = [d for d in delegations if d not in active_delegations]
        if strangers:
            raise InvalidInput.field(
                "body.delegation_ids", f"{strangers[0]} is not a co-chair delegation.", "not_a_delegation"
            )
    if not delegations:
        raise InvalidInput.field(
            "body.delegation_ids", "A pause needs at least one co-chair delegation to endorse it.", "missing"
        )
    pause = Pause(
        status=PauseStatus.proposed.value,
        starts_at=data["starts_at"],
        ends_at=data["ends_at"],
        purpose=data["purpose"].strip(),
        terms=(data.get("terms") or "").strip() or None,
        proposed_by=str(actor.id),
    )
    session.add(pause)
    session.flush()
    for city_id in city_ids:
        session.add(PauseCity(pause_id=pause.id, city_id=city_id, starts_at=pause.starts_at, ends_at=pause.ends_at))
    for organization_id in delegations:
        session.add(PauseDelegation(pause_id=pause.id, organization_id=organization_id))
    session.flush()
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=pause.id,
        action="proposed",
        to_state=pause.status,
        changes={
            "city_ids": city_ids,
            "starts_at": pause.starts_at,
            "ends_at": pause.ends_at,
            "purpose": pause.purpose,
            "terms": pause.terms,
            "delegation_ids": delegations,
            "revision": 1,
        },
    )
    return pause


def _act(
    session: Session, actor: Principal, pause_id: uuid.UUID, action: PauseAction, expected_version: int | None
) -> tuple[Pause, PauseStatus]:
    pause = get_pause(session=session, actor=actor, pause_id=pause_id)
    if expected_version is not None and pause.version != expected_version:
        raise PreconditionFailed(f"The pause is at version {pause.version}, not {expected_version}: read it again.")
    if action == PauseAction.endorse:
        decision = can_endorse_pause(actor, required_delegations(session, pause.id))
    else:
        decision = can(actor, Action.manage_pauses)
    if not decision:
        raise Forbidden(decision.reason)
    status = PauseStatus(pause.status)
    if status not in TRANSITIONS[action]:
        allowed = allowed_actions(session, actor, pause)
        raise Conflict(
            f"A {status.value} pause cannot be {_PAST[action]}."
            + (f" Allowed now: {', '.join(allowed)}." if allowed else ""),
            state=status.value,
            allowed_actions=allowed,
        )
    return pause, status


_PAST = {
    PauseAction.revise: "revised",
    PauseAction.approve: "approved",
    PauseAction.withdraw: "withdrawn",
    PauseAction.suspend: "suspended",
    PauseAction.resume: "resumed",
    PauseAction.terminate: "terminated",
    PauseAction.endorse: "endorsed or objected to",
    PauseAction.acknowledge: "acknowledged",
}


def _record(session: Session, actor: Principal, pause: Pause, action: str, before: PauseStatus, **kwargs: Any) -> None:
    pause.updated_at = utcnow()
    session.add(pause)
    session.flush()
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=pause.id,
        action=action,
        from_state=before.value,
        to_state=pause.status,
        **kwargs,
    )


# What every pause has: a revision may change these, never remove them.
KEPT_ON_EDIT = ("starts_at", "ends_at", "purpose", "city_ids")


def revise_pause(
    *,
    session: Session,
    actor: Principal,
    rules: PauseRules,
    pause_id: uuid.UUID,
    changes: dict[str, Any],
    expected_version: int | None,
) -> Pause:
    pause, status = _act(session, actor, pause_id, PauseAction.revise, expected_version)
    refuse_removal(changes, KEPT_ON_EDIT)
    applied: dict[str, Any] = {}
    starts_at, ends_at = changes.get("starts_at", pause.starts_at), changes.get("ends_at", pause.ends_at)
    _check_window(starts_at, ends_at, rules)
    for name in ("starts_at", "ends_at", "purpose", "terms"):
        if name in changes:
            value = changes[name].strip() if isinstance(changes[name], str) else changes[name]
            if value != getattr(pause, name):
                applied[name] = {"from": getattr(pause, name), "to": value}
                setattr(pause, name, value)
    if "city_ids" in changes:
        city_ids = _check_cities(session, changes["city_ids"])
        current = _city_ids(session, [pause.id])[pause.id]
        if set(city_ids) != set(current):
            for link in session.execute(select(PauseCity).where(col(PauseCity.pause_id) == pause.id)).scalars():
                session.delete(link)
            session.flush()
            for city_id in city_ids:
                session.add(
                    PauseCity(pause_id=pause.id, city_id=city_id, starts_at=pause.starts_at, ends_at=pause.ends_at)
                )
            applied["city_ids"] = {"from": current, "to": city_ids}
    if applied:
        # A co-chair endorsed the previous text and window, not this one.
        pause.revision += 1
        applied["revision"] = pause.revision
        _record(session, actor, pause, "revised", status, changes=applied)
    return pause


def endorse_pause(
    *,
    session: Session,
    actor: Principal,
    pause_id: uuid.UUID,
    decision: Decision,
    revision: int,
    comment: str | None,
    delegation_id: uuid.UUID | None,
) -> Endorsement:
    pause, status = _act(session, actor, pause_id, PauseAction.endorse, None)
    if delegation_id is not None and delegation_id != actor.organization_id:
        raise InvalidInput.field(
            "body.delegation_id", "A co-chair speaks for their own delegation only.", "other_delegation"
        )
    if revision != pause.revision:
        raise Conflict(
            f"The pause is at revision {pause.revision}; revision {revision} was replaced. Read it and decide on the current text.",
            state=status.value,
            allowed_actions=allowed_actions(session, actor, pause),
            extra={"revision": pause.revision},
        )
    current = _current_decisions(session, pause).get(actor.organization_id)
    if current is not None and current.decision == decision.value:
        raise Conflict(
            f"Your delegation has already decided '{decision.value}' on revision {revision}.",
            extra={"endorsement_id": str(current.id)},
        )
    endorsement = Endorsement(
        pause_id=pause.id,
        organization_id=actor.organization_id,
        revision=revision,
        decision=decision.value,
        comment=(comment or "").strip() or None,
        decided_by=actor.id,
    )
    session.add(endorsement)
    # Touch the pause: its version moves, so an approval that read the old endorsements fails.
    _record(
        session,
        actor,
        pause,
        "endorsed" if decision == Decision.endorse else "objected",
        status,
        changes={
            "delegation_id": actor.organization_id,
            "revision": revision,
            "decision": decision,
            "replaces": str(current.id) if current else None,
        },
        reason=endorsement.comment,
    )
    return endorsement


def _overlapping(session: Session, pause: Pause, city_ids: Sequence[uuid.UUID]) -> Pause | None:
    """An approved (or suspended) pause for one of these cities whose window overlaps."""
    other_end = col(Pause.ends_at)
    return session.execute(
        select(Pause)
        .join(PauseCity, col(PauseCity.pause_id) == col(Pause.id))
        .where(
            col(PauseCity.city_id).in_(city_ids),
            col(Pause.id) != pause.id,
            col(Pause.status).in_([PauseStatus.approved.value, PauseStatus.suspended.value]),
            col(Pause.starts_at) < pause.ends_at,
            other_end > pause.starts_at,
        )
        .limit(1)
    ).scalar_one_or_none()


def approve_pause(
    *, session: Session, actor: Principal, rules: PauseRules, pause_id: uuid.UUID, expected_version: int | None
) -> Pause:
    pause, status = _act(session, actor, pause_id, PauseAction.approve, expected_version)
    now = utcnow()
    decisions = _current_decisions(session, pause)
    required = session.execute(
        select(col(Organization.id), col(Organization.name))
        .join(PauseDelegation, col(PauseDelegation.organization_id) == col(Organization.id))
        .where(col(PauseDelegation.pause_id) == pause.id)
        .order_by(col(Organization.name))
    ).all()
    missing = [
        row for row in required if decisions.get(row.id) is None or decisions[row.id].decision != Decision.endorse
    ]
    if missing:
        raise Conflict(
            f"Not every required delegation has endorsed revision {pause.revision}: "
            + ", ".join(
                f"{row.name} ({decisions[row.id].decision if row.id in decisions else 'no answer'})" for row in missing
            )
            + ".",
            state=status.value,
            allowed_actions=allowed_actions(session, actor, pause),
            extra={"missing_delegations": [str(row.id) for row in missing], "revision": pause.revision},
        )
    if pause.starts_at - now < rules.notice:
        hours = int(rules.notice.total_seconds() // 3600)
        raise Conflict(
            f"A pause is approved at least {hours} hours before it starts; revise its window.",
            state=status.value,
            allowed_actions=allowed_actions(session, actor, pause),
        )
    city_ids = _city_ids(session, [pause.id])[pause.id]
    other = _overlapping(session, pause, city_ids)
    if other is not None:
        raise Conflict(
            f"It overlaps approved pause {other.id} for the same city.",
            state=status.value,
            allowed_actions=allowed_actions(session, actor, pause),
            extra={"overlapping_pause_id": str(other.id)},
        )
    session.flush()  # nothing pending: the savepoint below holds the approval's write alone
    try:
        with session.begin_nested():
            pause.status = PauseStatus.approved.value
            pause.approved_at = now
            session.flush()
    except IntegrityError as exc:
        # An overlapping approval committed after the check above read: the database refuses this
        # one (PostgreSQL's pause_city_no_overlap, alembic 0009); now it can be named.
        if "pause_city_no_overlap" not in str(exc.orig):
            raise
        other = _overlapping(session, pause, city_ids)
        raise Conflict(
            f"It overlaps approved pause {other.id if other else 'approved at the same moment'} for the same city.",
            state=status.value,
            allowed_actions=allowed_actions(session, actor, pause),
            extra={"overlapping_pause_id": str(other.id) if other else None},
        ) from None
    _record(session, actor, pause, "approved", status, changes={"revision": pause.revision})
    return pause


def withdraw_pause(
    *, session: Session, actor: Principal, pause_id: uuid.UUID, reason: str | None, expected_version: int | None
) -> Pause:
    pause, status = _act(session, actor, pause_id, PauseAction.withdraw, expected_version)
    pause.status = PauseStatus.withdrawn.value
    pause.withdrawn_at = utcnow()
    pause.last_reason = (reason or "").strip() or None
    _record(session, actor, pause, "withdrawn", status, reason=pause.last_reason)
    return pause


def suspend_pause(
    *,
    session: Session,
    actor: Principal,
    pause_id: uuid.UUID,
    reason: str | None,
    violation_id: uuid.UUID | None,
    expected_version: int | None,
) -> Pause:
    pause, status = _act(session, actor, pause_id, PauseAction.suspend, expected_version)
    why = required_reason(reason)
    now = utcnow()
    if now >= pause.ends_at:
        raise Conflict("The pause has ended; there is nothing to suspend.", state=status.value, allowed_actions=[])
    pause.status = PauseStatus.suspended.value
    pause.suspended_at = now
    pause.last_reason = why
    _record(session, actor, pause, "suspended", status, reason=why, changes={"violation_id": violation_id})
    return pause


def resume_pause(*, session: Session, actor: Principal, pause_id: uuid.UUID, expected_version: int | None) -> Pause:
    pause, status = _act(session, actor, pause_id, PauseAction.resume, expected_version)
    pause.status = PauseStatus.approved.value
    pause.resumed_at = utcnow()
    _record(session, actor, pause, "resumed", status)
    return pause


def terminate_pause(
    *, session: Session, actor: Principal, pause_id: uuid.UUID, reason: str | None, expected_version: int | None
) -> Pause:
    pause, status = _act(session, actor, pause_id, PauseAction.terminate, expected_version)
    why = required_reason(reason)
    pause.status = PauseStatus.terminated.value
    pause.terminated_at = utcnow()
    pause.last_reason = why
    _record(session, actor, pause, "terminated", status, reason=why)
    return pause


def acknowledge_pause(
    *,
    session: Session,
    actor: Principal,
    pause_id: uuid.UUID,
    party: str,
    response: PartyResponse,
    responded_at: datetime,
    through: str | None,
) -> Acknowledgement:
    pause, status = _act(session, actor, pause_id, PauseAction.acknowledge, None)
    if responded_at > utcnow():
        raise InvalidInput.field("body.responded_at", "Cannot be in the future.", "in_the_future")
    acknowledgement = Acknowledgement(
        pause_id=pause.id,
        party=" ".join(party.split()),
        response=response.value,
        responded_at=responded_at,
        through=(through or "").strip() or None,
        recorded_by=actor.id,
    )
    session.add(acknowledgement)
    session.flush()
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=pause.id,
        action="acknowledgement_recorded",
        from_state=status.value,
        to_state=status.value,
        changes={
            "party": acknowledgement.party,
            "response": response,
            "responded_at": responded_at,
            "through": acknowledgement.through,
        },
    )
    return acknowledgement


def check_request_fits(
    session: Session, pause_id: uuid.UUID, departure: datetime, arrival: datetime, *, field_name: str = "body.pause_id"
) -> Pause:
    """An access request relying on a pause must travel inside its window, while it holds."""
    pause = session.get(Pause, pause_id)
    if pause is None:
        raise InvalidInput.field(field_name, "No pause has this id.", "unknown_reference")
    if pause.status in (PauseStatus.withdrawn, PauseStatus.terminated):
        raise InvalidInput.field(field_name, f"The pause was {pause.status}.", "pause_ended")
    errors = []
    if departure < pause.starts_at:
        errors.append(
            FieldError("body.planned_departure", "The convoy must leave after the pause starts.", "outside_pause")
        )
    if arrival > pause.ends_at:
        errors.append(
            FieldError("body.planned_arrival", "The convoy must arrive before the pause ends.", "outside_pause")
        )
    if errors:
        raise InvalidInput("The convoy's window must lie inside the pause's.", errors)
    return pause


class FlaggedRequest(Protocol):
    """What a pause flag reads of a request: any of its shapes (instance, row as read, a list's row)."""

    id: uuid.UUID
    status: str
    pause_id: uuid.UUID | None


def request_flags(session: Session, requests: Sequence[FlaggedRequest]) -> dict[uuid.UUID, str]:
    """Requests whose pause was suspended or terminated, while they are still on their way."""
    pause_ids = {r.pause_id for r in requests if r.pause_id is not None and r.status in LIVE_REQUEST_STATES}
    if not pause_ids:
        return {}
    statuses = dict(
        session.execute(
            select(col(Pause.id), col(Pause.status)).where(
                col(Pause.id).in_(pause_ids),
                col(Pause.status).in_([PauseStatus.suspended.value, PauseStatus.terminated.value]),
            )
        ).all()
    )
    return {
        r.id: f"pause_{statuses[r.pause_id]}"
        for r in requests
        if r.pause_id in statuses and r.status in LIVE_REQUEST_STATES
    }


def last_decided_revision(session: Session, pause_id: uuid.UUID, delegation_id: uuid.UUID) -> int | None:
    """The latest revision the delegation decided on: the text it last saw."""
    revision: int | None = session.execute(
        select(func.max(col(Endorsement.revision))).where(
            col(Endorsement.pause_id) == pause_id, col(Endorsement.organization_id) == delegation_id
        )
    ).scalar_one()
    return revision


def revisions_since(session: Session, actor: Principal, pause_id: uuid.UUID, revision: int) -> list[AuditEvent]:
    """The revisions made after ``revision``, oldest first, each with what it changed (from, to)."""
    require(actor, Action.read_pauses)
    events = session.execute(
        select(AuditEvent)
        .where(
            col(AuditEvent.entity_type) == ENTITY,
            col(AuditEvent.entity_id) == str(pause_id),
            col(AuditEvent.action) == "revised",
        )
        .order_by(col(AuditEvent.id))
    ).scalars()
    return [event for event in events if int((event.changes or {}).get("revision", 0)) > revision]
