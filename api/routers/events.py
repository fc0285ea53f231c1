"""The change feed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentPrincipal, DbSession, UnitOfWorkRoute
from api.problems import problem_responses
from workflow.errors import InvalidInput
from workflow.events import EVENT_TYPES, EventType, event_position, feed, public_event_id

router = APIRouter(prefix="/v1/events", tags=["events"], route_class=UnitOfWorkRoute)


class EventRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "5f0e2a7c91d4b3e8a0c2f4d6e8b1",
                "type": "access_request.approved",
                "occurred_at": "2016-10-18T09:12:44.120331Z",
                "entity_type": "access_request",
                "entity_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "state": "approved",
            }
        }
    )
    id: str = Field(
        description="The event's name: the same in the feed, in webhooks and on every read, and saying "
        "nothing of the events you may not see. Events come in commit order; compare names for equality only."
    )
    type: EventType = Field(examples=["access_request.approved"])
    occurred_at: datetime
    entity_type: str
    entity_id: str
    state: str | None = Field(description="The entity's state after the change, where it has one.")


class EventPage(BaseModel):
    items: list[EventRead]
    next_cursor: str = Field(
        description="Store it; ask with `after=` it next time. Always present, also when nothing is new. "
        "It moves past events you may not see only once their day is over, so it does not tell when they happened."
    )


@router.get(
    "",
    operation_id="listEvents",
    summary="The change feed",
    response_model=EventPage,
    responses=problem_responses(401, 422),
    description="Every change you may see, in commit order. Store `next_cursor` and poll with `after=`: you "
    "never miss an event and never see one twice. Filter with `types` (e.g. `access_request.approved`, "
    "`pause.endorsed`, `city.designation_changed`, `violation.reported`). Event types: "
    + ", ".join(f"`{t}`" for t in EVENT_TYPES)
    + ".",
)
def list_events(
    session: DbSession,
    principal: CurrentPrincipal,
    after: Annotated[
        str | None,
        Query(
            max_length=512,
            description="The `next_cursor` of the previous call, or an event's `id`; absent or `0`: from the start.",
        ),
    ] = None,
    types: Annotated[list[EventType] | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    position = 0 if after in (None, "0") else event_position(after)
    if position is None:
        raise InvalidInput.field("query.after", "This is not a cursor the feed gave out.", "invalid_cursor")
    items, cursor = feed(
        session=session, actor=principal, after=position, limit=limit, types=tuple(t.value for t in types or ())
    )
    return EventPage(
        items=[
            EventRead(
                id=public_event_id(e.id),
                type=e.type,
                occurred_at=e.occurred_at,
                entity_type=e.entity_type,
                entity_id=e.entity_id,
                state=e.state,
            )
            for e in items
        ],
        next_cursor=public_event_id(cursor),
    )
