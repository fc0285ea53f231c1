from __future__ import annotations

from fastapi import APIRouter, Query

from aidaccess.api.deps import CurrentPrincipal, DbSession, UnitOfWorkRoute
from aidaccess.api.pagination import CursorQuery, LimitQuery, int_page, next_cursor
from aidaccess.api.problems import problem_responses
from aidaccess.api.schemas.audit import AuditEventPage, AuditEventRead
from aidaccess.workflow.audit import list_audit_events
from aidaccess.api.schemas.common import Instant

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
        "tampering is detectable (`aidaccess audit verify`). Coordinators and admins only."
    ),
)
def get_audit(
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    entity_type: str | None = Query(None, max_length=64, examples=["user"]),
    entity_id: str | None = Query(None, max_length=64),
    occurred_after: Instant | None = Query(None, description="RFC 3339 with an offset."),
    occurred_before: Instant | None = Query(None, description="RFC 3339 with an offset."),
) -> AuditEventPage:
    items, more = list_audit_events(
        session, actor=principal, page=int_page(limit, cursor), entity_type=entity_type, entity_id=entity_id,
        occurred_after=occurred_after, occurred_before=occurred_before,
    )
    return AuditEventPage(items=[AuditEventRead.model_validate(e) for e in items], next_cursor=next_cursor(items, more))
