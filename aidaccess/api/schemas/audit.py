from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from aidaccess.api.schemas.common import PageMeta


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    occurred_at: datetime
    actor_type: str
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
    prev_hash: str
    hash: str


class AuditEventPage(PageMeta):
    items: list[AuditEventRead]
