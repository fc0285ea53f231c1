"""Humanitarian pauses, their endorsements and acknowledgements, and their calendar."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sqlmodel import Session
from starlette.responses import Response

from aidaccess.clock import utcnow
from api.conditional import expected_version, required_version
from api.deps import CurrentPrincipal, DbSession, ServicesDep, UnitOfWorkRoute
from api.ical import calendar, utc
from api.pagination import CursorQuery, LimitQuery, decode_cursor_as, encode_cursor
from api.problems import problem_responses
from api.schemas.common import Instant
from api.schemas.pauses import (
    AcknowledgementCreate,
    AcknowledgementRead,
    AffectedRequest,
    CalendarTokenRead,
    DelegationDecision,
    EndorsementCreate,
    EndorsementRead,
    OptionalReason,
    PauseCreate,
    PausePage,
    PauseRead,
    PauseReason,
    PauseSummaryRead,
    PauseUpdate,
)
from auth.policy import Action
from auth.principal import Principal
from workflow import pauses as workflow
from workflow.common import require
from workflow.errors import Unauthenticated
from workflow.identity import calendar_subscriber
from workflow.pauses import Pause

router = APIRouter(prefix="/v1/pauses", tags=["pauses"], route_class=UnitOfWorkRoute)
IfMatch = Annotated[str | None, Header(description="The `ETag` you read; a stale one gets 412.")]
ACTION_ERRORS = problem_responses(401, 403, 404, 409, 412, 413, 422)


def pause_read(session: Session, actor: Principal, pause: Pause) -> PauseRead:
    v = workflow.view(session, actor, pause)
    return PauseRead(
        id=pause.id,
        version=pause.version,
        status=pause.status,
        display_status=workflow.display_status(pause, utcnow()),
        revision=pause.revision,
        city_ids=v.city_ids,
        starts_at=pause.starts_at,
        ends_at=pause.ends_at,
        purpose=pause.purpose,
        terms=pause.terms,
        delegations=[
            DelegationDecision(
                organization_id=org_id,
                name=name,
                decision=v.decisions[org_id].decision if org_id in v.decisions else "pending",
                comment=v.decisions[org_id].comment if org_id in v.decisions else None,
                decided_at=v.decisions[org_id].decided_at if org_id in v.decisions else None,
            )
            for org_id, name in v.delegations
        ],
        endorsements=[EndorsementRead.model_validate(e) for e in v.endorsement_history],
        acknowledgements=[AcknowledgementRead.model_validate(a) for a in v.acknowledgements],
        affected_requests=[
            AffectedRequest(
                id=r.id, organization_id=r.organization_id, status=r.status, planned_departure=r.planned_departure
            )
            for r in v.affected_requests
        ],
        approved_at=pause.approved_at,
        suspended_at=pause.suspended_at,
        terminated_at=pause.terminated_at,
        withdrawn_at=pause.withdrawn_at,
        last_reason=pause.last_reason,
        allowed_actions=workflow.allowed_actions(session, actor, pause),
        created_at=pause.created_at,
    )


def _respond(session: Session, actor: Principal, pause: Pause, status_code: int = 200) -> Response:
    return Response(
        pause_read(session, actor, pause).model_dump_json().encode(),
        status_code=status_code,
        media_type="application/json",
        headers={"ETag": f'"{pause.version}"'},
    )


@router.get(
    "",
    operation_id="listPauses",
    summary="List pauses",
    response_model=PausePage,
    responses=problem_responses(401, 403, 422),
    description="`active_at` lists the pauses in force at a moment (approved, started, not ended, not suspended or terminated then).",
)
def list_pauses(
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    city_id: uuid.UUID | None = None,
    status: Annotated[list[workflow.PauseStatus] | None, Query()] = None,
    active_at: Annotated[Instant | None, Query(description="RFC 3339 with an offset.")] = None,
) -> PausePage:
    after = decode_cursor_as(cursor, str, uuid.UUID)
    items, more = workflow.list_pauses(
        session=session,
        actor=principal,
        city_id=city_id,
        statuses=tuple(status or ()),
        active_at_moment=active_at,
        limit=limit,
        after=after[1] if after else None,
    )
    now = utcnow()
    return PausePage(
        items=[
            PauseSummaryRead(
                id=p.id,
                status=p.status,
                display_status=workflow.display_status(p, now),
                revision=p.revision,
                starts_at=p.starts_at,
                ends_at=p.ends_at,
                purpose=p.purpose,
            )
            for p in items
        ],
        next_cursor=encode_cursor(["-", str(items[-1].id)]) if more and items else None,
    )


@router.post(
    "/calendar-token",
    operation_id="createCalendarToken",
    summary="A token for subscribing to the pause calendar",
    response_model=CalendarTokenRead,
    responses=problem_responses(401, 403),
    description="Calendar programs cannot send headers, so the calendar takes a token in its URL. This token reads "
    "the calendar and nothing else; it stops working when your account is deactivated.",
)
def create_calendar_token(request: Request, services: ServicesDep, principal: CurrentPrincipal) -> CalendarTokenRead:
    require(principal, Action.subscribe_calendar)
    token, expires_at = services.codec.issue_calendar(
        sub=str(principal.id), lifetime=timedelta(days=services.settings.calendar_token_days)
    )
    return CalendarTokenRead(
        token=token, url=f"{request.base_url}v1/pauses/calendar.ics?token={token}", expires_at=expires_at
    )


@router.get(
    "/calendar.ics",
    operation_id="getPauseCalendar",
    summary="Approved pauses as an iCalendar feed",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {"schema": {"type": "string"}}}, "description": "RFC 5545."},
        **problem_responses(401, 422),
    },
    description="Approved pauses (UTC times, stable UIDs); terminated ones as cancelled (a pause withdrawn before "
    "approval never reached the calendar). Each event names its cities in `SUMMARY` and `LOCATION` (with their Arabic "
    "names), and the first by name as `GEO`. Authenticated "
    "by `token` from `POST /v1/pauses/calendar-token`.",
)
def get_calendar(
    session: DbSession,
    services: ServicesDep,
    token: Annotated[str, Query(max_length=4096)],
    city_id: uuid.UUID | None = None,
) -> Response:
    if calendar_subscriber(session=session, config=services.identity, token=token) is None:
        raise Unauthenticated(
            "The calendar token is invalid, expired, revoked, or its account deactivated or its password reset."
        )
    events = []
    now = utcnow()
    listed = workflow.calendar_pauses(session, city_id)
    places = workflow.cities_of_pauses(session, [p.id for p in listed])
    for pause in listed:
        cancelled = pause.status == workflow.PauseStatus.terminated
        cities = places.get(pause.id, [])
        names = ", ".join(c.name for c in cities)
        events.append(
            {
                "UID": f"pause-{pause.id}@aidaccess",
                "DTSTAMP": utc(now),
                "LAST-MODIFIED": utc(pause.updated_at),
                "SEQUENCE": str(pause.version),
                "DTSTART": utc(pause.starts_at),
                "DTEND": utc(pause.ends_at),
                "SUMMARY": f"Humanitarian pause{' (suspended)' if pause.status == workflow.PauseStatus.suspended else ''}: {names}",
                "LOCATION": ", ".join(f"{c.name} ({c.name_ar})" if c.name_ar else c.name for c in cities),
                # RFC 5545 3.8.1.6: one point; a pause over several cities takes the first by name.
                **({"GEO": f"{cities[0].latitude:.6f};{cities[0].longitude:.6f}"} if cities else {}),
                "DESCRIPTION": pause.purpose + (f"\n\nTerms: {pause.terms}" if pause.terms else ""),
                "STATUS": "CANCELLED" if cancelled else "CONFIRMED",
            }
        )
    return Response(calendar("Humanitarian pauses", events), media_type="text/calendar; charset=utf-8")


@router.post(
    "",
    operation_id="proposePause",
    summary="Propose a pause",
    status_code=201,
    response_model=PauseRead,
    responses=problem_responses(401, 403, 409, 413, 422),
    description="Coordinators. At most 7 days long. Needs every required co-chair delegation's endorsement of its current revision before approval.",
)
def propose(body: PauseCreate, session: DbSession, services: ServicesDep, principal: CurrentPrincipal) -> Response:
    pause = workflow.propose_pause(session=session, actor=principal, rules=services.pause_rules, data=body.model_dump())
    return _respond(session, principal, pause, 201)


@router.get(
    "/{pause_id}",
    operation_id="getPause",
    summary="Get a pause",
    response_model=PauseRead,
    responses=problem_responses(401, 403, 404, 422),
)
def get_pause(pause_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> Response:
    return _respond(session, principal, workflow.get_pause(session=session, actor=principal, pause_id=pause_id))


@router.patch(
    "/{pause_id}",
    operation_id="revisePause",
    summary="Revise a proposed pause",
    response_model=PauseRead,
    responses=ACTION_ERRORS,
    description="A new revision: every endorsement is cleared, since co-chairs endorse a specific text and window.",
)
def revise(
    pause_id: uuid.UUID,
    body: PauseUpdate,
    session: DbSession,
    services: ServicesDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    pause = workflow.revise_pause(
        session=session,
        actor=principal,
        rules=services.pause_rules,
        pause_id=pause_id,
        changes=body.model_dump(exclude_unset=True),
        expected_version=required_version(if_match),
    )
    return _respond(session, principal, pause)


@router.post(
    "/{pause_id}/endorsements",
    operation_id="endorsePause",
    summary="Endorse or object",
    status_code=201,
    response_model=PauseRead,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    description="A co-chair, for their own delegation, on the current revision (state it: a stale revision is a 409). Changing one's mind is a new entry; the history is kept.",
)
def endorse(pause_id: uuid.UUID, body: EndorsementCreate, session: DbSession, principal: CurrentPrincipal) -> Response:
    workflow.endorse_pause(
        session=session,
        actor=principal,
        pause_id=pause_id,
        decision=body.decision,
        revision=body.revision,
        comment=body.comment,
        delegation_id=body.delegation_id,
    )
    return _respond(session, principal, workflow.get_pause(session=session, actor=principal, pause_id=pause_id), 201)


@router.post(
    "/{pause_id}/approve",
    operation_id="approvePause",
    summary="Approve",
    response_model=PauseRead,
    responses=ACTION_ERRORS,
    description="Coordinators, once every required delegation has endorsed the current revision (else 409 naming the missing ones), at least 72 hours before it starts, and if no approved pause for the same city overlaps it.",
)
def approve(
    pause_id: uuid.UUID,
    session: DbSession,
    services: ServicesDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    return _respond(
        session,
        principal,
        workflow.approve_pause(
            session=session,
            actor=principal,
            rules=services.pause_rules,
            pause_id=pause_id,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{pause_id}/withdraw",
    operation_id="withdrawPause",
    summary="Withdraw before approval",
    response_model=PauseRead,
    responses=ACTION_ERRORS,
)
def withdraw(
    pause_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    body: OptionalReason | None = None,
    if_match: IfMatch = None,
) -> Response:
    return _respond(
        session,
        principal,
        workflow.withdraw_pause(
            session=session,
            actor=principal,
            pause_id=pause_id,
            reason=(body or OptionalReason()).reason,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{pause_id}/suspend",
    operation_id="suspendPause",
    summary="Suspend",
    response_model=PauseRead,
    responses=ACTION_ERRORS,
    description="A reason is required, usually a verified violation. Convoys relying on the pause are flagged.",
)
def suspend(
    pause_id: uuid.UUID, body: PauseReason, session: DbSession, principal: CurrentPrincipal, if_match: IfMatch = None
) -> Response:
    return _respond(
        session,
        principal,
        workflow.suspend_pause(
            session=session,
            actor=principal,
            pause_id=pause_id,
            reason=body.reason,
            violation_id=body.violation_id,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{pause_id}/resume",
    operation_id="resumePause",
    summary="Resume",
    response_model=PauseRead,
    responses=ACTION_ERRORS,
)
def resume(pause_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal, if_match: IfMatch = None) -> Response:
    return _respond(
        session,
        principal,
        workflow.resume_pause(
            session=session, actor=principal, pause_id=pause_id, expected_version=expected_version(if_match)
        ),
    )


@router.post(
    "/{pause_id}/terminate",
    operation_id="terminatePause",
    summary="End early",
    response_model=PauseRead,
    responses=ACTION_ERRORS,
    description="A reason is required. Convoys relying on the pause are flagged.",
)
def terminate(
    pause_id: uuid.UUID, body: PauseReason, session: DbSession, principal: CurrentPrincipal, if_match: IfMatch = None
) -> Response:
    return _respond(
        session,
        principal,
        workflow.terminate_pause(
            session=session,
            actor=principal,
            pause_id=pause_id,
            reason=body.reason,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{pause_id}/acknowledgements",
    operation_id="recordPauseAcknowledgement",
    summary="Record a party's answer",
    status_code=201,
    response_model=AcknowledgementRead,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    description="Coordinators record what each party to the conflict answered. It informs; it does not gate approval.",
)
def acknowledge(
    pause_id: uuid.UUID, body: AcknowledgementCreate, session: DbSession, principal: CurrentPrincipal
) -> AcknowledgementRead:
    return AcknowledgementRead.model_validate(
        workflow.acknowledge_pause(
            session=session,
            actor=principal,
            pause_id=pause_id,
            party=body.party,
            response=body.response,
            responded_at=body.responded_at,
            through=body.through,
        )
    )
