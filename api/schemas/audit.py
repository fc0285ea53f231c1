from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import PageMeta


class AuditEventRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": 4211,
                "occurred_at": "2016-10-18T09:12:44Z",
                "actor_type": "user",
                "actor_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "actor_label": "coordinator@aidaccess.example",
                "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
                "entity_type": "access_request",
                "entity_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                "action": "approved",
                "from_state": "submitted",
                "to_state": "approved",
                "changes": {"reduced_lines": {}},
                "reason": None,
                "request_id": "0f6c7d0e9b7a4c1f",
                "prev_hash": "6b1f...",
                "hash": "9c2e...",
            }
        },
    )
    id: int | None = Field(
        description="The event's place in the trail; null for a caller who may not read every event (admins)."
    )
    occurred_at: datetime = Field(
        description="For an event on a convoy that the caller may not read: the start of its day in the taskforce's time zone."
    )
    actor_type: str | None
    actor_id: str | None
    actor_label: str | None
    organization_id: str | None
    entity_type: str
    entity_id: str
    action: str
    from_state: str | None
    to_state: str | None
    changes: dict[str, Any]
    reason: str | None
    request_id: str | None
    prev_hash: str | None
    hash: str | None


class AuditEventPage(PageMeta):
    items: list[AuditEventRead]
