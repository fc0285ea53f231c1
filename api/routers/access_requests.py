"""Access requests: the convoy workflow."""

from __future__ import annotations

import io
import uuid
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy import Row
from sqlmodel import Session
from starlette.responses import Response

from aidaccess.clock import utcnow
from api import idempotency
from api.conditional import expected_version, required_version
from api.deps import CurrentPrincipal, DbSession, ServicesDep, UnitOfWorkRoute
from api.pagination import CursorQuery, LimitQuery, cursor_instant, decode_cursor_as, encode_cursor
from api.problems import problem_responses
from api.representations import BOM_DESCRIPTION, UTF8_BOM, BodyCache, CsvWriter
from api.schemas.access_requests import (
    AccessRequestCounts,
    AccessRequestCreate,
    AccessRequestPage,
    AccessRequestRead,
    AccessRequestUpdate,
    Approval,
    CargoLineRead,
    Completion,
    Note,
    Reason,
    RequestCount,
    access_request_page_json,
    access_request_segments,
)
from api.schemas.audit import AuditEventRead
from api.schemas.common import Instant
from auth.principal import Principal
from workflow import access_requests as workflow
from workflow import audit, request_lists
from workflow.access_requests import AccessRequestRow, CargoLineRow, RequestStatus
from workflow.common import PageRequest
from workflow.pauses import request_flags
from workflow.request_lists import RequestFilters, SortKey

router = APIRouter(prefix="/v1/access-requests", tags=["access requests"], route_class=UnitOfWorkRoute)

IfMatch = Annotated[
    str | None,
    Header(description="The `ETag` you read. A stale one gets 412, so two people never both change the same version."),
]
ACTION_ERRORS = problem_responses(401, 403, 404, 409, 412, 413, 422)
EXPORT_LIMIT = 10_000


def _etag(request: AccessRequestRow) -> str:
    return f'"{request.version}"'


def access_request_read(
    session: Session,
    actor: Principal,
    request: AccessRequestRow,
    lines: list[CargoLineRow] | None = None,
    flags: dict[uuid.UUID, str] | None = None,
) -> AccessRequestRead:
    """The representation by the models: single requests, and lists that the list encoder cannot encode
    (_page_json computes the same PER_VIEW fields). ``lines``: the request's, when the caller has them."""
    if flags is None:
        flags = request_flags(session, [request])
    if lines is None:
        lines = request_lists.cargo_line_rows(session, [request.id])[request.id]
    read = AccessRequestRead.model_validate(request)
    read.pause_flag = flags.get(request.id)
    read.cargo_lines = [CargoLineRead.model_validate(line) for line in lines]
    read.allowed_actions = workflow.allowed_actions(actor, request)
    read.overdue = workflow.is_overdue(request, utcnow())
    return read


def _respond(
    session: Session,
    actor: Principal,
    request: AccessRequestRow,
    status_code: int = 200,
    lines: list[CargoLineRow] | None = None,
) -> Response:
    body = access_request_read(session, actor, request, lines).model_dump_json().encode()
    return Response(body, status_code=status_code, media_type="application/json", headers={"ETag": _etag(request)})


# ---- lists ---------------------------------------------------------------------------


def _filters(
    status: list[RequestStatus] | None,
    destination_city_id: uuid.UUID | None,
    organization_id: uuid.UUID | None,
    departure_from: datetime | None,
    departure_to: datetime | None,
    overdue: bool | None,
) -> RequestFilters:
    return RequestFilters(
        statuses=tuple(status or ()),
        destination_city_id=destination_city_id,
        organization_id=organization_id,
        departure_from=departure_from,
        departure_to=departure_to,
        overdue=overdue,
    )


StatusFilter = Annotated[list[RequestStatus] | None, Query(description="One or more statuses.")]
DepartureBound = Annotated[Instant | None, Query()]


@router.get(
    "",
    operation_id="listAccessRequests",
    summary="List access requests",
    response_model=AccessRequestPage,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "JSON pages, or (coordinators, `Accept: text/csv`) every matching request as HXL-tagged CSV, one row per cargo line.",
        },
        **problem_responses(401, 403, 422),
    },
    description="Partners and service accounts see their own organization's requests only; coordinators and "
    "co-chairs see all. Observers read counts only (`/v1/access-requests/counts`). `overdue=true` lists "
    "submitted requests past their review deadline.",
)
def list_access_requests(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    status: StatusFilter = None,
    destination_city_id: uuid.UUID | None = None,
    organization_id: uuid.UUID | None = None,
    departure_from: DepartureBound = None,
    departure_to: DepartureBound = None,
    overdue: bool | None = None,
    sort: SortKey = SortKey.created,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    bom: Annotated[bool, Query(description=BOM_DESCRIPTION + " With `Accept: text/csv` only.")] = False,
) -> Response:
    filters = _filters(status, destination_city_id, organization_id, departure_from, departure_to, overdue)
    descending = order == "desc"
    if "text/csv" in request.headers.get("accept", ""):
        return _export_csv(session, principal, filters, bom=bom)
    parsers = (str, uuid.UUID) if sort == SortKey.created else (cursor_instant, uuid.UUID)
    after = decode_cursor_as(cursor, *parsers)
    items, more = request_lists.list_access_requests(
        session=session,
        actor=principal,
        filters=filters,
        page=PageRequest(limit=limit, after=after),
        sort=sort,
        descending=descending,
        listed=True,
    )
    flags = request_flags(session, items)
    next_cursor = None
    if more and items:
        last = items[-1]
        value = request_lists.sort_value(last, sort)
        next_cursor = encode_cursor(["-" if value is None else value.isoformat(), str(last.id)])
    body = _page_json(request.app.state.listed_requests, session, principal, items, flags, next_cursor)
    if body is None:
        rows = request_lists.access_request_rows(session, [r.id for r in items])
        lines = request_lists.cargo_line_rows(session, list(rows))
        page = AccessRequestPage(
            items=[access_request_read(session, principal, rows[r.id], lines[r.id], flags) for r in items],
            next_cursor=next_cursor,
        )
        body = page.model_dump_json().encode()
    return Response(body, media_type="application/json")


def _page_json(
    cache: BodyCache,
    session: Session,
    actor: Principal,
    items: list[Row],
    flags: dict[uuid.UUID, str],
    next_cursor: str | None,
) -> bytes | None:
    """A page by the list encoder, each request's segments kept in ``cache`` by (id, version, updated_at):
    every change to a request or to its cargo lines is recorded, which moves both (workflow._record),
    so a kept version is exact. Reading and encoding a request and its lines was most of a list's CPU.
    None where a row holds a value orjson cannot encode."""
    keys = [(r.id.int, r.version, r.updated_at) for r in items]  # the id's int: UUID hashes and compares in Python
    found = cache.get_many(keys)
    listed = list(items)
    if missing := [r.id for r, segments in zip(items, found, strict=True) if segments is None]:
        # Lines, then rows. A request's lines change only with its version, so a row read after its
        # lines at the version listed says the lines are that version's: only such pairs are kept.
        # (On PostgreSQL each statement sees what was committed when it began.)
        lines = request_lists.cargo_line_rows(session, missing)
        rows = request_lists.access_request_rows(session, missing)
        for index, (r, key) in enumerate(zip(items, keys, strict=True)):
            if found[index] is None:
                row = rows[r.id]
                if (segments := access_request_segments(row, lines[r.id])) is None:
                    return None
                found[index] = segments
                if (row.version, row.updated_at) == key[1:]:
                    cache.put(key, segments)
                else:  # changed since it was listed: shown as read now, its computed fields too
                    listed[index] = row
    now, actions, encoded = utcnow(), {}, []
    for segments, r in zip(found, listed, strict=True):
        # As _read's, encoded; the allowed actions once per status and organization (all they depend on).
        if (allowed := actions.get(key := (r.status, r.organization_id))) is None:
            allowed = actions[key] = orjson.dumps(workflow.allowed_actions(actor, r))
        flag = flags.get(r.id)
        encoded.append(
            (
                segments,
                b"null" if flag is None else orjson.dumps(flag),
                b"true" if workflow.is_overdue(r, now) else b"false",
                allowed,
            )
        )
    return access_request_page_json(encoded, next_cursor)


EXPORT_COLUMNS = [
    ("request_id", "#meta+id"),
    ("organization", "#org"),
    ("destination", "#loc+dest"),
    ("destination_pcode", "#adm4+code+dest"),
    ("status", "#status"),
    ("planned_departure", "#date+start"),
    ("planned_arrival", "#date+end"),
    ("trucks", "#indicator+num+trucks"),
    ("people_targeted", "#targeted"),
    ("people_reached", "#reached"),
    ("sector", "#sector"),
    ("item", "#item+name"),
    ("unit", "#item+unit"),
    ("requested", "#indicator+num+requested"),
    ("approved", "#indicator+num+approved"),
    ("delivered", "#indicator+num+delivered"),
    ("removed", "#indicator+num+removed"),
    ("removed_at", "#loc+checkpoint"),
    ("submitted_at", "#date+submitted"),
    ("review_due_at", "#date+due"),
    ("outcome", "#status+outcome"),
]


def _export_csv(session: Session, principal: Principal, filters: RequestFilters, *, bom: bool = False) -> Response:
    exported = request_lists.export_lines(session=session, actor=principal, filters=filters, limit=EXPORT_LIMIT)
    buffer = io.StringIO()
    writer = CsvWriter(buffer)
    writer.writerow([c for c, _ in EXPORT_COLUMNS])
    writer.writerow([t for _, t in EXPORT_COLUMNS])

    def iso(value):  # noqa: ANN001, ANN202
        return value.isoformat().replace("+00:00", "Z") if value else ""

    def quantity(value):  # noqa: ANN001, ANN202
        return "" if value is None else f"{value:g}"

    for e in exported:
        r, line = e.request, e.line
        writer.writerow(
            [
                r.id,
                e.organization,
                e.destination,
                e.destination_pcode,
                r.status,
                iso(r.planned_departure),
                iso(r.planned_arrival),
                r.trucks,
                r.people_targeted,
                "" if r.people_reached is None else r.people_reached,
                line.sector,
                line.item,
                line.unit,
                quantity(line.quantity),
                quantity(line.approved_quantity),
                quantity(line.delivered_quantity),
                quantity(line.removed_quantity),
                line.removed_at or "",
                iso(r.submitted_at),
                iso(r.review_due_at),
                r.outcome or "",
            ]
        )
    return Response(
        (UTF8_BOM if bom else b"") + buffer.getvalue().encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="access-requests.csv"'},
    )


@router.get(
    "/counts",
    operation_id="countAccessRequests",
    summary="Count access requests by status and destination",
    response_model=AccessRequestCounts,
    responses=problem_responses(401, 403, 422),
    description="What observers may know of convoys. Partners count their own organization's requests only. "
    "Observers count the requests as they stood at the start of today in the taskforce's time zone, with "
    "`departure_from` and `departure_to` taken to the start of their days: convoy timing reaches them by the day.",
)
def count_access_requests(
    session: DbSession,
    principal: CurrentPrincipal,
    status: StatusFilter = None,
    destination_city_id: uuid.UUID | None = None,
    departure_from: DepartureBound = None,
    departure_to: DepartureBound = None,
    overdue: bool | None = None,
) -> AccessRequestCounts:
    filters = _filters(status, destination_city_id, None, departure_from, departure_to, overdue)
    rows = request_lists.count_access_requests(session=session, actor=principal, filters=filters)
    items = [RequestCount(status=s, destination_city_id=c, count=n) for s, c, n in rows]
    return AccessRequestCounts(items=items, total=sum(i.count for i in items))


# ---- one request ---------------------------------------------------------------------


@router.post(
    "",
    operation_id="createAccessRequest",
    summary="Create an access request (a draft)",
    status_code=201,
    response_model=AccessRequestRead,
    responses=problem_responses(401, 403, 409, 413, 422),
    description="Partners (and service accounts with `requests:write`) of the requesting organization. "
    "Send an `Idempotency-Key`: a retry with the same key and body returns the first response "
    "(`Idempotent-Replayed: true`), never a second request; the same key with another body is a 422.",
)
def create_access_request(
    body: AccessRequestCreate,
    session: DbSession,
    services: ServicesDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    payload = body.model_dump(mode="json")
    request_hash = idempotency.body_hash(payload)
    replayed = idempotency.replay(
        session, principal=principal, key=idempotency_key, operation="createAccessRequest", request_hash=request_hash
    )
    if replayed is not None:
        # The first response's ETag named the version it created, which its body carries.
        replayed.headers["ETag"] = f'"{orjson.loads(replayed.body)["version"]}"'
        return replayed
    created, lines = workflow.create_access_request(
        session=session, actor=principal, rules=services.request_rules, data=body.model_dump()
    )
    response = _respond(session, principal, created, 201, lines)
    idempotency.remember(
        session,
        principal=principal,
        key=idempotency_key,
        operation="createAccessRequest",
        request_hash=request_hash,
        status_code=201,
        body=response.body,
    )
    return response


@router.get(
    "/{request_id}",
    operation_id="getAccessRequest",
    summary="Get an access request",
    response_model=AccessRequestRead,
    responses=problem_responses(401, 403, 404, 422),
)
def get_access_request(request_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> Response:
    return _respond(
        session, principal, workflow.get_access_request(session=session, actor=principal, request_id=request_id)
    )


@router.patch(
    "/{request_id}",
    operation_id="updateAccessRequest",
    summary="Edit a draft, or a request sent back for changes",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
    description="`cargo_lines`, when given, replaces every line. Any other state is a 409.",
)
def update_access_request(
    request_id: uuid.UUID,
    body: AccessRequestUpdate,
    session: DbSession,
    services: ServicesDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    updated = workflow.update_access_request(
        session=session,
        actor=principal,
        rules=services.request_rules,
        request_id=request_id,
        changes=body.model_dump(exclude_unset=True),
        expected_version=required_version(if_match),
    )
    return _respond(session, principal, updated)


@router.post(
    "/{request_id}/submit",
    operation_id="submitAccessRequest",
    summary="Submit for review",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
    description="The planned departure must be in the future. Sets `review_due_at` (7 working days by default).",
)
def submit(
    request_id: uuid.UUID,
    session: DbSession,
    services: ServicesDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    return _respond(
        session,
        principal,
        workflow.submit_access_request(
            session=session,
            actor=principal,
            rules=services.request_rules,
            request_id=request_id,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{request_id}/request-changes",
    operation_id="requestChangesToAccessRequest",
    summary="Send back for changes",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
    description="Coordinators, never for their own organization. A reason is required.",
)
def request_changes(
    request_id: uuid.UUID, body: Reason, session: DbSession, principal: CurrentPrincipal, if_match: IfMatch = None
) -> Response:
    return _respond(
        session,
        principal,
        workflow.request_changes(
            session=session,
            actor=principal,
            request_id=request_id,
            reason=body.reason,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{request_id}/approve",
    operation_id="approveAccessRequest",
    summary="Approve",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
    description="Coordinators, never for their own organization. May reduce the approved quantity per cargo line, never raise it.",
)
def approve(
    request_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    body: Approval | None = None,
    if_match: IfMatch = None,
) -> Response:
    body = body or Approval()
    approved = {line.line_id: line.approved_quantity for line in body.lines}
    return _respond(
        session,
        principal,
        workflow.approve_access_request(
            session=session,
            actor=principal,
            request_id=request_id,
            approved=approved,
            note=body.note,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{request_id}/deny",
    operation_id="denyAccessRequest",
    summary="Deny",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
    description="Coordinators, never for their own organization. A reason is required.",
)
def deny(
    request_id: uuid.UUID, body: Reason, session: DbSession, principal: CurrentPrincipal, if_match: IfMatch = None
) -> Response:
    return _respond(
        session,
        principal,
        workflow.deny_access_request(
            session=session,
            actor=principal,
            request_id=request_id,
            reason=body.reason,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{request_id}/dispatch",
    operation_id="dispatchAccessRequest",
    summary="Record the convoy's departure",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
)
def dispatch(
    request_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    body: Note | None = None,
    if_match: IfMatch = None,
) -> Response:
    return _respond(
        session,
        principal,
        workflow.dispatch_access_request(
            session=session,
            actor=principal,
            request_id=request_id,
            note=(body or Note()).note,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{request_id}/complete",
    operation_id="completeAccessRequest",
    summary="Record the outcome per cargo line",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
    description="`delivered`, `partially_delivered` or `turned_back`, with every line's delivered quantity and what was removed at checkpoints (where and why). Partners of the organization, or coordinators.",
)
def complete(
    request_id: uuid.UUID, body: Completion, session: DbSession, principal: CurrentPrincipal, if_match: IfMatch = None
) -> Response:
    return _respond(
        session,
        principal,
        workflow.complete_access_request(
            session=session,
            actor=principal,
            request_id=request_id,
            outcome=body.outcome,
            lines=[line.model_dump() for line in body.lines],
            people_reached=body.people_reached,
            completed_at=body.completed_at,
            note=body.note,
            expected_version=expected_version(if_match),
        ),
    )


@router.post(
    "/{request_id}/cancel",
    operation_id="cancelAccessRequest",
    summary="Cancel",
    response_model=AccessRequestRead,
    responses=ACTION_ERRORS,
    description="Before dispatch. A reason is required.",
)
def cancel(
    request_id: uuid.UUID, body: Reason, session: DbSession, principal: CurrentPrincipal, if_match: IfMatch = None
) -> Response:
    return _respond(
        session,
        principal,
        workflow.cancel_access_request(
            session=session,
            actor=principal,
            request_id=request_id,
            reason=body.reason,
            expected_version=expected_version(if_match),
        ),
    )


@router.get(
    "/{request_id}/history",
    operation_id="getAccessRequestHistory",
    summary="Every step, who took it, when and why",
    response_model=list[AuditEventRead],
    responses=problem_responses(401, 403, 404, 422),
)
def get_history(request_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> list[AuditEventRead]:
    events = request_lists.history(session=session, actor=principal, request_id=request_id)
    return [AuditEventRead.model_validate(e) for e in audit.viewed(principal, events)]
