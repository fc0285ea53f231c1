"""Aid-corridor access requests: a convoy's request from draft to its outcome.

    draft --submit--> submitted --approve--> approved --dispatch--> dispatched
    submitted --request_changes--> changes_requested --submit--> submitted
    submitted --deny--> denied
    dispatched --complete--> delivered | partially_delivered | turned_back
    draft | submitted | changes_requested | approved --cancel--> cancelled

``TRANSITIONS`` decides what may happen in which state; ``auth.policy`` decides who may.
Every action records its time on the request and appends an audit event, which is the
request's history.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.policy import (
    REQUEST_ACTION_CAPACITIES,
    RequestAction,
    can_act_on_request,
    can_read_request,
    request_capacities,
)
from auth.principal import Principal
from db.models import AccessRequest, CargoLine, City, Pause, table_of
from db.types import uuid7
from workflow.audit import Actor, jsonable, record_event
from workflow.common import read_rows, refuse_removal, required_reason
from workflow.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound, PreconditionFailed
from workflow.pauses import check_request_fits

ENTITY = "access_request"


class RequestStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"
    changes_requested = "changes_requested"
    approved = "approved"
    denied = "denied"
    dispatched = "dispatched"
    delivered = "delivered"
    partially_delivered = "partially_delivered"
    turned_back = "turned_back"
    cancelled = "cancelled"


class Outcome(StrEnum):
    delivered = "delivered"
    partially_delivered = "partially_delivered"
    turned_back = "turned_back"


class Sector(StrEnum):
    """The humanitarian clusters."""

    food = "food"
    health = "health"
    nutrition = "nutrition"
    wash = "wash"
    shelter_nfi = "shelter_nfi"
    protection = "protection"
    education = "education"
    logistics = "logistics"


# The outcome of ``complete`` is chosen by the caller among these.
OUTCOME = (RequestStatus.delivered, RequestStatus.partially_delivered, RequestStatus.turned_back)
_REVIEWABLE = {RequestStatus.submitted}

# action -> {from state: to state}. ``edit`` keeps the state; ``complete`` goes to the outcome.
TRANSITIONS: dict[RequestAction, dict[RequestStatus, RequestStatus | tuple[RequestStatus, ...]]] = {
    RequestAction.edit: {
        RequestStatus.draft: RequestStatus.draft,
        RequestStatus.changes_requested: RequestStatus.changes_requested,
    },
    RequestAction.submit: {
        RequestStatus.draft: RequestStatus.submitted,
        RequestStatus.changes_requested: RequestStatus.submitted,
    },
    RequestAction.request_changes: {RequestStatus.submitted: RequestStatus.changes_requested},
    RequestAction.approve: {RequestStatus.submitted: RequestStatus.approved},
    RequestAction.deny: {RequestStatus.submitted: RequestStatus.denied},
    RequestAction.dispatch: {RequestStatus.approved: RequestStatus.dispatched},
    RequestAction.complete: {RequestStatus.dispatched: OUTCOME},
    RequestAction.cancel: {
        RequestStatus.draft: RequestStatus.cancelled,
        RequestStatus.submitted: RequestStatus.cancelled,
        RequestStatus.changes_requested: RequestStatus.cancelled,
        RequestStatus.approved: RequestStatus.cancelled,
    },
}
STATE_ACTIONS = [a for a in RequestAction if a != RequestAction.create]


@dataclass(frozen=True)
class RequestRules:
    review_working_days: int
    weekend: frozenset[int]  # date.weekday() numbers
    timezone: ZoneInfo
    max_cargo_lines: int

    @classmethod
    def from_settings(cls, settings: Any) -> RequestRules:
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        weekend = frozenset(days.index(d) for d in settings.weekend_days.split(",") if d)
        return cls(settings.review_working_days, weekend, ZoneInfo(settings.timezone), settings.max_cargo_lines)

    def review_due(self, submitted_at: datetime) -> datetime:
        """``review_working_days`` working days after submission, at the same local time."""
        local = submitted_at.astimezone(self.timezone)
        day: date = local.date()
        remaining = self.review_working_days
        while remaining:
            day += timedelta(days=1)
            if day.weekday() not in self.weekend:
                remaining -= 1
        due = datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=self.timezone)
        return due.astimezone(submitted_at.tzinfo)


# ---- reading -------------------------------------------------------------------------


# The one shape in which every path hands a request and its cargo lines to be shown (a get, a list,
# a create, an action): the table's columns, in its order. A list reads them so, a create writes them
# so, and a write's instance becomes one with as_read once its changes are flushed.
# Written out so their fields have types; a test holds them to the tables' columns.
class AccessRequestRow(NamedTuple):
    id: uuid.UUID
    organization_id: uuid.UUID
    created_by: str
    destination_city_id: uuid.UUID
    origin_city_id: uuid.UUID | None
    origin_name: str | None
    route: list[dict[str, Any]]
    planned_departure: datetime
    planned_arrival: datetime
    trucks: int
    people_targeted: int
    contact: dict[str, Any]
    notes: str | None
    pause_id: uuid.UUID | None
    status: str
    version: int
    submitted_at: datetime | None
    review_due_at: datetime | None
    decided_at: datetime | None
    approved_at: datetime | None
    dispatched_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    outcome: str | None
    people_reached: int | None
    last_reason: str | None
    created_at: datetime
    updated_at: datetime


class CargoLineRow(NamedTuple):
    id: uuid.UUID
    access_request_id: uuid.UUID
    position: int
    sector: str
    item: str
    quantity: float
    unit: str
    approved_quantity: float | None
    delivered_quantity: float | None
    removed_quantity: float | None
    removed_at: str | None
    removal_reason: str | None


def as_read(request: AccessRequest) -> AccessRequestRow:
    return AccessRequestRow._make([getattr(request, name) for name in AccessRequestRow._fields])


def _load(session: Session, request_id: uuid.UUID, *, lock: bool = False) -> AccessRequest | None:
    stmt = select(AccessRequest).where(col(AccessRequest.id) == request_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def get_access_request(*, session: Session, actor: Principal, request_id: uuid.UUID) -> AccessRequestRow:
    return as_read(_visible(session, actor, request_id))


def _visible(session: Session, actor: Principal, request_id: uuid.UUID) -> AccessRequest:
    """The request, if this caller may read it: 404 if it may not know it exists, 403 if it may."""
    request = _load(session, request_id)
    if request is None:
        raise NotFound("No such access request.")
    decision = can_read_request(actor, request.organization_id)
    if not decision:
        if decision.hide:
            raise NotFound("No such access request.")
        raise Forbidden(decision.reason)
    return request


def cargo_lines(session: Session, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[CargoLine]]:
    lines: dict[uuid.UUID, list[CargoLine]] = {rid: [] for rid in request_ids}
    if request_ids:
        for line in session.execute(
            select(CargoLine)
            .where(col(CargoLine.access_request_id).in_(request_ids))
            .order_by(col(CargoLine.access_request_id), col(CargoLine.position))
        ).scalars():
            lines[line.access_request_id].append(line)
    return lines


class RequestState(Protocol):
    """What the computed fields read: an instance, a request as read, or a list's row of it."""

    status: str
    organization_id: uuid.UUID
    review_due_at: datetime | None


def allowed_actions(actor: Principal, request: RequestState) -> list[str]:
    """What this caller may do to this request now: the 409's helpful part, and the UI's."""
    status = RequestStatus(request.status)
    capacities = request_capacities(actor, request.organization_id)
    return [
        action.value
        for action in STATE_ACTIONS
        if status in TRANSITIONS[action] and REQUEST_ACTION_CAPACITIES[action] & capacities
    ]


def is_overdue(request: RequestState, now: datetime) -> bool:
    return (
        request.status == RequestStatus.submitted and request.review_due_at is not None and request.review_due_at < now
    )


# ---- writing -------------------------------------------------------------------------

MAX_ROUTE_STEPS = 30
_INSERT_LINES = insert(table_of(CargoLine))


def _check_lines(lines: Sequence[dict[str, Any]], rules: RequestRules) -> None:
    if not lines:
        raise InvalidInput.field("body.cargo_lines", "A request carries at least one cargo line.", "missing")
    if len(lines) > rules.max_cargo_lines:
        raise InvalidInput.field("body.cargo_lines", f"At most {rules.max_cargo_lines} cargo lines.", "too_long")


# The id alone: loading the whole row as an instance was an eighth of a create's CPU. Built once (see
# _CARGO_LINE_ROWS).
_ID_OF = {
    model: select(table.c.id).where(table.c.id == bindparam("id"))
    for model, table in ((City, table_of(City)), (Pause, table_of(Pause)))
}


# Cities are never removed: no operation deletes one, and the foreign keys of the requests, pauses and
# designations naming one keep it. So a city found once is known for good, and a create naming a known
# city asks the database nothing (on PostgreSQL that question is one round trip of a create's six).
# Unknown ids are asked every time, and the foreign key still guards the write (a 409 if it ever fails).
_KNOWN_CITIES: set[uuid.UUID] = set()
_KNOWN_CITIES_LIMIT = 10_000  # a bound on memory, far above any country's cities; past it, asked as before


def _exists(session: Session, model: type[City] | type[Pause], id_: Any) -> bool:
    if model is City and id_ in _KNOWN_CITIES:
        return True
    found = read_rows(session, _ID_OF[model], {"id": id_}).first() is not None
    if found and model is City and len(_KNOWN_CITIES) < _KNOWN_CITIES_LIMIT:
        _KNOWN_CITIES.add(id_)
    return found


def _check_references(session: Session, data: dict[str, Any]) -> None:
    errors: list[FieldError] = []
    if "destination_city_id" in data and not _exists(session, City, data["destination_city_id"]):
        errors.append(FieldError("body.destination_city_id", "No city has this id.", "unknown_reference"))
    if data.get("origin_city_id") is not None and not _exists(session, City, data["origin_city_id"]):
        errors.append(FieldError("body.origin_city_id", "No city has this id.", "unknown_reference"))
    if data.get("pause_id") is not None and not _exists(session, Pause, data["pause_id"]):
        errors.append(FieldError("body.pause_id", "No pause has this id.", "unknown_reference"))
    if errors:
        raise InvalidInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors)


def _check_window(departure: datetime, arrival: datetime) -> None:
    if departure >= arrival:
        raise InvalidInput.field(
            "body.planned_arrival", "The planned arrival must come after the departure.", "invalid_window"
        )


_UNSET_LINE = dict.fromkeys(CargoLineRow._fields)  # what a new line leaves empty (approved, delivered, removed)


def _replace_lines(
    session: Session, request_id: uuid.UUID, lines: Sequence[dict[str, Any]], *, new: bool = False
) -> list[CargoLineRow]:
    """The request's lines, replaced by these; returns them as written, so a create answers without
    reading them back."""
    if not new:  # a request being created has no lines to replace
        for old in session.execute(select(CargoLine).where(col(CargoLine.access_request_id) == request_id)).scalars():
            session.delete(old)
        session.flush()
    # Rows, not instances: nothing reads these lines back as instances in the same unit of work,
    # and building them was a tenth of a create's CPU. What the unit of work holds goes first.
    session.flush()
    rows = [
        CargoLineRow(
            **{
                **_UNSET_LINE,
                "id": uuid7(),
                "access_request_id": request_id,
                "position": position,
                "sector": Sector(line["sector"]).value,
                "item": " ".join(line["item"].split()),
                "quantity": float(line["quantity"]),
                "unit": line["unit"].strip(),
            }
        )
        for position, line in enumerate(lines)
    ]
    session.execute(_INSERT_LINES, [row._asdict() for row in rows])
    return rows


REQUEST_FIELDS = (
    "destination_city_id",
    "origin_city_id",
    "origin_name",
    "route",
    "planned_departure",
    "planned_arrival",
    "trucks",
    "people_targeted",
    "contact",
    "notes",
    "pause_id",
)


_UNSET_REQUEST = dict.fromkeys(AccessRequestRow._fields)
_INSERT_REQUEST = insert(table_of(AccessRequest))


def create_access_request(
    *, session: Session, actor: Principal, rules: RequestRules, data: dict[str, Any]
) -> tuple[AccessRequestRow, list[CargoLineRow]]:
    """A draft, and its cargo lines, as written (its representation needs them; reading them back
    was a sixth of a create's CPU in the endpoint)."""
    decision = can_act_on_request(actor, RequestAction.create, actor.organization_id)
    if not decision:
        raise Forbidden(decision.reason)
    _check_references(session, data)
    if data.get("origin_city_id") is None and not (data.get("origin_name") or "").strip():
        raise InvalidInput.field(
            "body.origin_name", "Name the origin: a city (origin_city_id) or a crossing point.", "missing"
        )
    _check_window(data["planned_departure"], data["planned_arrival"])
    _check_lines(data["cargo_lines"], rules)
    now = utcnow()
    # A row by a Core insert, not an instance by the unit of work: nothing reads the request back as
    # an instance in this unit of work, and building one and flushing it was a third of a create's CPU.
    request = AccessRequestRow(
        **{
            **_UNSET_REQUEST,
            **{field: data.get(field) for field in REQUEST_FIELDS if field not in ("route", "contact")},
            "id": uuid7(),
            "organization_id": actor.organization_id,
            "created_by": str(actor.id),
            "status": RequestStatus.draft.value,
            "version": 1,
            "route": jsonable(data.get("route") or []),
            "contact": jsonable(data.get("contact") or {}),
            "created_at": now,
            "updated_at": now,
        }
    )
    session.execute(_INSERT_REQUEST, request._asdict())
    lines = _replace_lines(session, request.id, data["cargo_lines"], new=True)
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=request.id,
        action="created",
        to_state=RequestStatus.draft.value,
        changes={**{f: data.get(f) for f in REQUEST_FIELDS}, "cargo_lines": data["cargo_lines"]},
    )
    return request, lines


def _act(
    session: Session,
    actor: Principal,
    request_id: uuid.UUID,
    action: RequestAction,
    expected_version: int | None,
) -> tuple[AccessRequest, RequestStatus]:
    """Load, then check in this order: visible (404), version (412), role (403), state (409)."""
    request = _visible(session, actor, request_id)
    if expected_version is not None and request.version != expected_version:
        raise PreconditionFailed(
            f"The request is at version {request.version}, not {expected_version}: read it again before changing it."
        )
    decision = can_act_on_request(actor, action, request.organization_id)
    if not decision:
        raise Forbidden(decision.reason)
    status = RequestStatus(request.status)
    if status not in TRANSITIONS[action]:
        allowed = allowed_actions(actor, request)
        raise Conflict(
            f"A {status.value} request cannot be {_past(action)}."
            + (f" Allowed now: {', '.join(allowed)}." if allowed else " Nothing can be done to it now."),
            state=status.value,
            allowed_actions=allowed,
        )
    return request, status


def _past(action: RequestAction) -> str:
    return {
        RequestAction.edit: "edited",
        RequestAction.submit: "submitted",
        RequestAction.request_changes: "sent back for changes",
        RequestAction.approve: "approved",
        RequestAction.deny: "denied",
        RequestAction.dispatch: "dispatched",
        RequestAction.complete: "completed",
        RequestAction.cancel: "cancelled",
    }[action]


def _record(
    session: Session,
    actor: Principal,
    request: AccessRequest,
    action: str,
    before: RequestStatus,
    *,
    changes: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    request.updated_at = utcnow()
    session.add(request)
    session.flush()  # the versioned UPDATE: a concurrent writer on the same version fails here
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type=ENTITY,
        entity_id=request.id,
        action=action,
        from_state=before.value,
        to_state=request.status,
        changes=changes or {},
        reason=reason,
    )


# What every request has: an edit may change these, never remove them.
KEPT_ON_EDIT = (
    "destination_city_id",
    "route",
    "planned_departure",
    "planned_arrival",
    "trucks",
    "people_targeted",
    "contact",
    "cargo_lines",
)


def update_access_request(
    *,
    session: Session,
    actor: Principal,
    rules: RequestRules,
    request_id: uuid.UUID,
    changes: dict[str, Any],
    expected_version: int | None,
) -> AccessRequestRow:
    request, status = _act(session, actor, request_id, RequestAction.edit, expected_version)
    refuse_removal(changes, KEPT_ON_EDIT)
    origin_city_id = changes.get("origin_city_id", request.origin_city_id)
    if origin_city_id is None and not (changes.get("origin_name", request.origin_name) or "").strip():
        raise InvalidInput.field(
            "body.origin_name", "Name the origin: a city (origin_city_id) or a crossing point.", "missing"
        )
    _check_references(session, changes)
    _check_window(
        changes.get("planned_departure", request.planned_departure),
        changes.get("planned_arrival", request.planned_arrival),
    )
    applied: dict[str, Any] = {}
    for field in REQUEST_FIELDS:
        if field in changes:
            value = jsonable(changes[field]) if field in ("route", "contact") else changes[field]
            if value != getattr(request, field):
                applied[field] = {"from": getattr(request, field), "to": value}
                setattr(request, field, value)
    if "cargo_lines" in changes:
        _check_lines(changes["cargo_lines"], rules)
        _replace_lines(session, request.id, changes["cargo_lines"])
        applied["cargo_lines"] = changes["cargo_lines"]
    if applied:
        _record(session, actor, request, "edited", status, changes=applied)
    return as_read(request)


def submit_access_request(
    *, session: Session, actor: Principal, rules: RequestRules, request_id: uuid.UUID, expected_version: int | None
) -> AccessRequestRow:
    request, status = _act(session, actor, request_id, RequestAction.submit, expected_version)
    now = utcnow()
    if request.planned_departure <= now:
        raise InvalidInput.field(
            "body.planned_departure", "The planned departure has passed; edit the request first.", "in_the_past"
        )
    if request.pause_id is not None:
        check_request_fits(session, request.pause_id, request.planned_departure, request.planned_arrival)
    request.status = RequestStatus.submitted.value
    request.submitted_at = now
    request.review_due_at = rules.review_due(now)
    _record(session, actor, request, "submitted", status, changes={"review_due_at": request.review_due_at})
    return as_read(request)


def _decide_with_reason(
    session: Session,
    actor: Principal,
    request_id: uuid.UUID,
    action: RequestAction,
    reason: str | None,
    expected_version: int | None,
    *,
    to: RequestStatus,
    stamp: str,
    audit_action: str,
) -> AccessRequestRow:
    """Sending back, denying and cancelling: a state, a time, and a reason that is required."""
    request, status = _act(session, actor, request_id, action, expected_version)
    why = required_reason(reason)
    request.status = to.value
    setattr(request, stamp, utcnow())
    request.last_reason = why
    _record(session, actor, request, audit_action, status, reason=why)
    return as_read(request)


def request_changes(
    *, session: Session, actor: Principal, request_id: uuid.UUID, reason: str | None, expected_version: int | None
) -> AccessRequestRow:
    return _decide_with_reason(
        session,
        actor,
        request_id,
        RequestAction.request_changes,
        reason,
        expected_version,
        to=RequestStatus.changes_requested,
        stamp="decided_at",
        audit_action="changes_requested",
    )


def approve_access_request(
    *,
    session: Session,
    actor: Principal,
    request_id: uuid.UUID,
    approved: dict[uuid.UUID, float] | None,
    note: str | None,
    expected_version: int | None,
) -> AccessRequestRow:
    """``approved`` may reduce quantities per line (never raise them); lines not named are approved in full."""
    request, status = _act(session, actor, request_id, RequestAction.approve, expected_version)
    now = utcnow()
    if request.planned_departure <= now:
        raise Conflict(
            "The planned departure has passed; request changes instead.",
            state=status.value,
            allowed_actions=allowed_actions(actor, request),
        )
    if request.pause_id is not None:
        try:
            check_request_fits(session, request.pause_id, request.planned_departure, request.planned_arrival)
        except InvalidInput as exc:
            raise Conflict(
                f"The pause it relies on no longer fits: {exc.detail}",
                state=status.value,
                allowed_actions=allowed_actions(actor, request),
            ) from None
    lines = cargo_lines(session, [request.id])[request.id]
    by_id = {line.id: line for line in lines}
    approved = approved or {}
    errors = [
        FieldError(f"body.lines.{line_id}", "No cargo line of this request has this id.", "unknown_reference")
        for line_id in approved
        if line_id not in by_id
    ]
    for line_id, quantity in approved.items():
        if line_id in by_id and quantity > by_id[line_id].quantity:
            errors.append(
                FieldError(
                    f"body.lines.{line_id}", f"At most the {by_id[line_id].quantity:g} requested.", "above_request"
                )
            )
    if errors:
        raise InvalidInput("; ".join(e.message for e in errors), errors)
    reductions = {}
    for line in lines:
        line.approved_quantity = approved.get(line.id, line.quantity)
        if line.approved_quantity != line.quantity:
            reductions[str(line.id)] = {
                "item": line.item,
                "requested": line.quantity,
                "approved": line.approved_quantity,
            }
        session.add(line)
    request.status = RequestStatus.approved.value
    request.decided_at = request.approved_at = now
    request.last_reason = note.strip() if note and note.strip() else None
    _record(
        session, actor, request, "approved", status, changes={"reduced_lines": reductions}, reason=request.last_reason
    )
    return as_read(request)


def deny_access_request(
    *, session: Session, actor: Principal, request_id: uuid.UUID, reason: str | None, expected_version: int | None
) -> AccessRequestRow:
    return _decide_with_reason(
        session,
        actor,
        request_id,
        RequestAction.deny,
        reason,
        expected_version,
        to=RequestStatus.denied,
        stamp="decided_at",
        audit_action="denied",
    )


def dispatch_access_request(
    *, session: Session, actor: Principal, request_id: uuid.UUID, note: str | None, expected_version: int | None
) -> AccessRequestRow:
    request, status = _act(session, actor, request_id, RequestAction.dispatch, expected_version)
    request.status = RequestStatus.dispatched.value
    request.dispatched_at = utcnow()
    _record(session, actor, request, "dispatched", status, reason=note.strip() if note and note.strip() else None)
    return as_read(request)


def complete_access_request(
    *,
    session: Session,
    actor: Principal,
    request_id: uuid.UUID,
    outcome: Outcome,
    lines: Iterable[dict[str, Any]],
    people_reached: int | None,
    completed_at: datetime | None,
    note: str | None,
    expected_version: int | None,
) -> AccessRequestRow:
    """The outcome per cargo line: delivered, and removed at checkpoints (where and why)."""
    request, status = _act(session, actor, request_id, RequestAction.complete, expected_version)
    now = utcnow()
    when = completed_at or now
    errors: list[FieldError] = []
    if when > now:
        errors.append(FieldError("body.completed_at", "Cannot be in the future.", "in_the_future"))
    if request.dispatched_at and when < request.dispatched_at:
        errors.append(FieldError("body.completed_at", "Cannot be before the dispatch.", "before_dispatch"))
    stored = {line.id: line for line in cargo_lines(session, [request.id])[request.id]}
    reported = {}
    for entry in lines:
        line_id = entry["line_id"]
        if line_id not in stored:
            errors.append(
                FieldError(f"body.lines.{line_id}", "No cargo line of this request has this id.", "unknown_reference")
            )
            continue
        line = stored[line_id]
        delivered, removed = entry.get("delivered_quantity", 0.0), entry.get("removed_quantity", 0.0)
        approved = line.approved_quantity if line.approved_quantity is not None else line.quantity
        if delivered + removed > approved + 1e-9:
            errors.append(
                FieldError(
                    f"body.lines.{line_id}",
                    f"Delivered and removed exceed the {approved:g} approved.",
                    "above_approved",
                )
            )
        if removed > 0 and not (entry.get("removed_at") and entry.get("removal_reason")):
            errors.append(FieldError(f"body.lines.{line_id}", "Say where and why cargo was removed.", "missing"))
        reported[line_id] = (delivered, removed, entry)
    missing = [line_id for line_id in stored if line_id not in reported]
    errors += [FieldError(f"body.lines.{line_id}", "Report every cargo line.", "missing") for line_id in missing]
    if not errors:
        total = sum(d for d, _, _ in reported.values())
        full = all(
            abs(d - (stored[i].approved_quantity if stored[i].approved_quantity is not None else stored[i].quantity))
            < 1e-9
            for i, (d, _, _) in reported.items()
        )
        if outcome == Outcome.turned_back and total > 0:
            errors.append(FieldError("body.outcome", "A convoy turned back delivered nothing.", "inconsistent"))
        if outcome == Outcome.delivered and not full:
            errors.append(
                FieldError(
                    "body.outcome", "Delivered means every line in full; use partially_delivered.", "inconsistent"
                )
            )
        if outcome == Outcome.partially_delivered and (total == 0 or full):
            errors.append(
                FieldError("body.outcome", "Partially delivered means some, not all, was delivered.", "inconsistent")
            )
    if errors:
        raise InvalidInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    outcome_lines = {}
    for line_id, (delivered, removed, entry) in reported.items():
        line = stored[line_id]
        line.delivered_quantity = delivered
        line.removed_quantity = removed
        line.removed_at = (entry.get("removed_at") or None) if removed else None
        line.removal_reason = (entry.get("removal_reason") or None) if removed else None
        session.add(line)
        outcome_lines[str(line_id)] = {
            "item": line.item,
            "approved": line.approved_quantity,
            "delivered": delivered,
            "removed": removed,
            "removed_at": line.removed_at,
            "removal_reason": line.removal_reason,
        }
    request.status = outcome.value
    request.outcome = outcome.value
    request.completed_at = when
    request.people_reached = people_reached
    _record(
        session,
        actor,
        request,
        "completed",
        status,
        changes={"outcome": outcome, "people_reached": people_reached, "completed_at": when, "lines": outcome_lines},
        reason=note.strip() if note and note.strip() else None,
    )
    return as_read(request)


def cancel_access_request(
    *, session: Session, actor: Principal, request_id: uuid.UUID, reason: str | None, expected_version: int | None
) -> AccessRequestRow:
    return _decide_with_reason(
        session,
        actor,
        request_id,
        RequestAction.cancel,
        reason,
        expected_version,
        to=RequestStatus.cancelled,
        stamp="cancelled_at",
        audit_action="cancelled",
    )
