from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import CurrentPrincipal, DbSession, ServicesDep, UnitOfWorkRoute
from api.pagination import CursorQuery, LimitQuery, encode_cursor, int_page
from api.problems import problem_responses
from api.schemas.audit import AuditEventPage, AuditEventRead
from api.schemas.common import Instant
from auth.policy import reads_every_audit_detail
from workflow.audit import list_audit_events
from workflow.common import PageRequest
from workflow.errors import InvalidInput

router = APIRouter(prefix="/v1/audit", tags=["audit"], route_class=UnitOfWorkRoute)


@router.get(
    "",
    operation_id="listAuditEvents",
    summary="Read the audit trail",
    response_model=AuditEventPage,
    responses=problem_responses(401, 403, 422),
    description=(
        "Every write, oldest first: who, when, what changed, from which state to which, and the request "
        "id. Each event carries the SHA-256 of the previous event's hash and its own canonical JSON, so "
        "tampering is detectable (`aidaccess audit verify`). Coordinators and admins only.\n\n"
        "What a caller may not read, it does not see in detail. Admins, who read no convoy, get the "
        "events on access requests and violations only with `entity_type=access_request` (or "
        "`violation`): that each happened, on which day, by which organization, nothing of what changed "
        "(their time bounds are taken to the start of their days); every other event comes without its "
        "id and hashes, and the list's cursors are opaque."
    ),
)
def get_audit(
    session: DbSession,
    services: ServicesDep,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    entity_type: str | None = Query(None, max_length=64, examples=["user"]),
    entity_id: str | None = Query(None, max_length=64),
    occurred_after: Instant | None = Query(None, description="RFC 3339 with an offset."),
    occurred_before: Instant | None = Query(None, description="RFC 3339 with an offset."),
) -> AuditEventPage:
    hidden = not reads_every_audit_detail(principal)
    if hidden and cursor is not None:
        position = services.audit_cursors.reveal(cursor)
        if position is None:
            raise InvalidInput.field("query.cursor", "This is not a cursor this list gave out.", "invalid_cursor")
        page = PageRequest(limit=limit, after=position)
    else:
        page = int_page(limit, cursor)
    items, more = list_audit_events(
        session,
        actor=principal,
        page=page,
        entity_type=entity_type,
        entity_id=entity_id,
        occurred_after=occurred_after,
        occurred_before=occurred_before,
    )
    following = None
    if more and items:
        following = (
            services.audit_cursors.hide(items[-1]["position"]) if hidden else encode_cursor(items[-1]["position"])
        )
    return AuditEventPage(items=[AuditEventRead.model_validate(e) for e in items], next_cursor=following)
