"""Violations and their follow-up."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query
from sqlmodel import Session
from starlette.responses import Response

from api.conditional import expected_version
from api.deps import CurrentPrincipal, DbSession, UnitOfWorkRoute
from api.pagination import CursorQuery, LimitQuery, decode_cursor_as, encode_cursor
from api.problems import problem_responses
from api.schemas.pauses import OptionalReason, Suggestion, ViolationCreate, ViolationPage, ViolationRead
from auth.principal import Principal
from workflow import violations as workflow
from workflow.violations import Category, Violation, ViolationAction, ViolationFilters, ViolationStatus

router = APIRouter(prefix="/v1/violations", tags=["violations"], route_class=UnitOfWorkRoute)
IfMatch = Annotated[str | None, Header(description="The `ETag` you read; a stale one gets 412.")]
ACTION_ERRORS = problem_responses(401, 403, 404, 409, 412, 413, 422)


def _read(session: Session, actor: Principal, violation: Violation) -> ViolationRead:
    read = ViolationRead.model_validate(violation)
    read.response_seconds = workflow.response_seconds(violation)
    read.allowed_actions = workflow.allowed_actions(actor, violation)
    read.suggested_actions = [
        Suggestion(action=s.action, href=f"/v1/pauses/{s.pause_id}/suspend")
        for s in workflow.suggestions(session, actor, violation)
    ]
    return read


def _respond(session: Session, actor: Principal, violation: Violation, status_code: int = 200) -> Response:
    return Response(
        _read(session, actor, violation).model_dump_json().encode(),
        status_code=status_code,
        media_type="application/json",
        headers={"ETag": f'"{violation.version}"'},
    )


@router.get(
    "",
    operation_id="listViolations",
    summary="List violations",
    response_model=ViolationPage,
    responses=problem_responses(401, 403, 422),
    description="Coordinators and co-chairs read all; partners what their organization reported or what concerns its requests. `unanswered=true`: no coordinator has acted yet.",
)
def list_violations(
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    pause_id: uuid.UUID | None = None,
    city_id: uuid.UUID | None = None,
    status: Annotated[list[ViolationStatus] | None, Query()] = None,
    category: Annotated[list[Category] | None, Query()] = None,
    unanswered: bool | None = None,
) -> ViolationPage:
    after = decode_cursor_as(cursor, str, uuid.UUID)
    filters = ViolationFilters(
        pause_id=pause_id,
        city_id=city_id,
        statuses=tuple(status or ()),
        categories=tuple(category or ()),
        unanswered=unanswered,
    )
    items, more = workflow.list_violations(
        session=session, actor=principal, filters=filters, limit=limit, after=after[1] if after else None
    )
    return ViolationPage(
        items=[_read(session, principal, v) for v in items],
        next_cursor=encode_cursor(["-", str(items[-1].id)]) if more and items else None,
    )


@router.post(
    "",
    operation_id="reportViolation",
    summary="Report a violation",
    status_code=201,
    response_model=ViolationRead,
    responses=problem_responses(401, 403, 413, 422),
    description="Partners, coordinators and co-chairs, against a pause, a city and/or an access request (partners: their own organization's).",
)
def report(body: ViolationCreate, session: DbSession, principal: CurrentPrincipal) -> Response:
    return _respond(
        session, principal, workflow.report_violation(session=session, actor=principal, data=body.model_dump()), 201
    )


@router.get(
    "/{violation_id}",
    operation_id="getViolation",
    summary="Get a violation",
    response_model=ViolationRead,
    responses=problem_responses(401, 403, 404, 422),
)
def get_violation(violation_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> Response:
    return _respond(
        session, principal, workflow.get_violation(session=session, actor=principal, violation_id=violation_id)
    )


def _follow_up(
    action: ViolationAction,
    violation_id: uuid.UUID,
    session: Session,
    principal: Principal,
    reason: str | None,
    if_match: str | None,
) -> Response:
    return _respond(
        session,
        principal,
        workflow.follow_up(
            session=session,
            actor=principal,
            violation_id=violation_id,
            action=action,
            reason=reason,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{violation_id}/verify",
    operation_id="verifyViolation",
    summary="Verify",
    response_model=ViolationRead,
    responses=ACTION_ERRORS,
    description="Coordinators. A verified violation of an active pause offers the suspension in `suggested_actions`.",
)
def verify(
    violation_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    body: OptionalReason | None = None,
    if_match: IfMatch = None,
) -> Response:
    return _follow_up(
        ViolationAction.verify, violation_id, session, principal, (body or OptionalReason()).reason, if_match
    )


@router.post(
    "/{violation_id}/dismiss",
    operation_id="dismissViolation",
    summary="Dismiss",
    response_model=ViolationRead,
    responses=ACTION_ERRORS,
    description="Coordinators; a reason is required.",
)
def dismiss(
    violation_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    body: OptionalReason | None = None,
    if_match: IfMatch = None,
) -> Response:
    return _follow_up(
        ViolationAction.dismiss, violation_id, session, principal, (body or OptionalReason()).reason, if_match
    )


@router.post(
    "/{violation_id}/resolve",
    operation_id="resolveViolation",
    summary="Resolve",
    response_model=ViolationRead,
    responses=ACTION_ERRORS,
)
def resolve(
    violation_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    body: OptionalReason | None = None,
    if_match: IfMatch = None,
) -> Response:
    return _follow_up(
        ViolationAction.resolve, violation_id, session, principal, (body or OptionalReason()).reason, if_match
    )


@router.post(
    "/{violation_id}/mark-unresolved",
    operation_id="markViolationUnresolved",
    summary="Mark unresolved",
    response_model=ViolationRead,
    responses=ACTION_ERRORS,
)
def mark_unresolved(
    violation_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    body: OptionalReason | None = None,
    if_match: IfMatch = None,
) -> Response:
    return _follow_up(
        ViolationAction.mark_unresolved, violation_id, session, principal, (body or OptionalReason()).reason, if_match
    )
