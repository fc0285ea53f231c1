from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Instant, Kept
from workflow.pauses import Decision, DisplayStatus, PartyResponse, PauseStatus
from workflow.violations import Category, ViolationStatus


class PauseCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "city_ids": ["01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f"],
                "starts_at": "2016-10-20T08:00:00+03:00",
                "ends_at": "2016-10-22T08:00:00+03:00",
                "purpose": "A 48-hour humanitarian pause in Aleppo for medical evacuations and food deliveries.",
                "terms": "No aerial bombardment or shelling; safe passage along the Castello road.",
            }
        },
    )
    city_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)
    starts_at: Instant
    ends_at: Instant = Field(description="At most 7 days after the start.")
    purpose: str = Field(min_length=1, max_length=4000, pattern=r"\S")
    terms: str | None = Field(None, max_length=20000)
    delegation_ids: list[uuid.UUID] | None = Field(
        None,
        description="The co-chair delegations whose endorsement it needs; default every co-chair delegation now. Fixed once proposed.",
    )


class PauseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"ends_at": "2016-10-22T20:00:00+03:00"}})
    city_ids: Kept[Annotated[list[uuid.UUID], Field(min_length=1, max_length=50)]] = None
    starts_at: Kept[Instant] = None
    ends_at: Kept[Instant] = None
    purpose: Kept[Annotated[str, Field(min_length=1, max_length=4000, pattern=r"\S")]] = None
    terms: str | None = Field(None, max_length=20000)


class DelegationDecision(BaseModel):
    organization_id: uuid.UUID
    name: str
    decision: str = Field(description="`endorse`, `object` or `pending` for the current revision.")
    comment: str | None
    decided_at: datetime | None


class EndorsementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    organization_id: uuid.UUID
    revision: int
    decision: Decision
    comment: str | None
    decided_by: uuid.UUID
    decided_at: datetime


class AcknowledgementRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "party": "Government of Syria",
                "response": "accepted",
                "responded_at": "2016-10-18T09:12:44Z",
                "through": "Co-chair Delegation Alpha",
                "recorded_at": "2016-10-18T09:12:44Z",
            }
        },
    )
    id: uuid.UUID
    party: str
    response: PartyResponse
    responded_at: datetime
    through: str | None
    recorded_at: datetime


class AffectedRequest(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    status: str
    planned_departure: datetime


class PauseRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "version": 7,
                "status": "approved",
                "display_status": "active",
                "revision": 2,
                "city_ids": ["01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10"],
                "starts_at": "2016-10-20T05:00:00Z",
                "ends_at": "2016-10-22T05:00:00Z",
                "purpose": "A 48-hour humanitarian pause for medical evacuations.",
                "terms": "No shelling.",
                "delegations": [
                    {
                        "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                        "name": "Co-chair Delegation Alpha",
                        "decision": "endorse",
                        "comment": None,
                        "decided_at": "2016-10-18T09:12:44Z",
                    }
                ],
                "endorsements": [
                    {
                        "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                        "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                        "revision": 2,
                        "decision": "endorse",
                        "comment": None,
                        "decided_by": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
                        "decided_at": "2016-10-18T09:12:44Z",
                    }
                ],
                "acknowledgements": [],
                "affected_requests": [],
                "approved_at": "2016-10-18T09:12:44Z",
                "suspended_at": None,
                "terminated_at": None,
                "withdrawn_at": None,
                "last_reason": None,
                "allowed_actions": ["suspend", "terminate", "acknowledge"],
                "created_at": "2016-10-14T08:00:00Z",
            }
        }
    )
    id: uuid.UUID
    version: int
    status: PauseStatus = Field(description="The recorded state.")
    display_status: DisplayStatus = Field(
        description="What it is now: an approved pause is `active`, then `completed`, by the clock."
    )
    revision: int
    city_ids: list[uuid.UUID]
    starts_at: datetime
    ends_at: datetime
    purpose: str
    terms: str | None
    delegations: list[DelegationDecision]
    endorsements: list[EndorsementRead] = Field(description="Every decision on every revision, in order.")
    acknowledgements: list[AcknowledgementRead]
    affected_requests: list[AffectedRequest] = Field(
        description="Convoys relying on it, when it is suspended or terminated (those you may read)."
    )
    approved_at: datetime | None
    suspended_at: datetime | None
    terminated_at: datetime | None
    withdrawn_at: datetime | None
    last_reason: str | None
    allowed_actions: list[str]
    created_at: datetime


class PauseSummaryRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "status": "approved",
                "display_status": "active",
                "revision": 2,
                "starts_at": "2016-10-20T05:00:00Z",
                "ends_at": "2016-10-22T05:00:00Z",
                "purpose": "A 48-hour humanitarian pause.",
            }
        }
    )
    id: uuid.UUID
    status: PauseStatus
    display_status: DisplayStatus
    revision: int
    starts_at: datetime
    ends_at: datetime
    purpose: str


class PausePage(BaseModel):
    items: list[PauseSummaryRead]
    next_cursor: str | None


class EndorsementCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"decision": "endorse", "revision": 2, "comment": "Endorsed as revised."}},
    )
    decision: Decision
    revision: int = Field(ge=1, description="The revision you decide on; a stale one is a 409.")
    comment: str | None = Field(None, max_length=4000)
    delegation_id: uuid.UUID | None = Field(None, description="Your own delegation; any other is refused.")


class AcknowledgementCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "party": "Government of Syria",
                "response": "accepted",
                "responded_at": "2016-10-18T12:00:00+03:00",
                "through": "Russian Federation delegation",
            }
        },
    )
    party: str = Field(min_length=1, max_length=200, pattern=r"\S")
    response: PartyResponse
    responded_at: Instant
    through: str | None = Field(None, max_length=200)


class PauseReason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000, pattern=r"\S")
    violation_id: uuid.UUID | None = Field(None, description="The verified violation behind a suspension, if any.")


class OptionalReason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=4000)


class CalendarTokenRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                "url": "https://aidaccess.example.org/v1/pauses/calendar.ics?token=eyJ...",
                "expires_at": 1810000000,
            }
        }
    )
    token: str
    url: str = Field(description="Subscribe to this in a calendar program; keep it secret.")
    expires_at: int


class ViolationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "pause_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "category": "hostilities",
                "occurred_at": "2016-10-20T14:30:00+03:00",
                "place": "Bustan al-Qasr crossing",
                "description": "Shelling near the crossing during the pause.",
                "severity": 4,
            }
        },
    )
    pause_id: uuid.UUID | None = None
    city_id: uuid.UUID | None = None
    access_request_id: uuid.UUID | None = None
    category: Category
    occurred_at: Instant
    place: str | None = Field(None, max_length=200)
    description: str = Field(min_length=1, max_length=10000, pattern=r"\S")
    severity: int = Field(ge=0, le=5)


class Suggestion(BaseModel):
    action: str = Field(description="`suspend_pause`")
    href: str
    method: str = "POST"


class ViolationRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "version": 2,
                "status": "verified",
                "pause_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
                "city_id": None,
                "access_request_id": None,
                "category": "hostilities",
                "occurred_at": "2016-10-20T11:30:00Z",
                "place": "Bustan al-Qasr crossing",
                "description": "Shelling near the crossing during the pause.",
                "severity": 4,
                "reporter_organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                "created_at": "2016-10-20T11:45:00Z",
                "first_response_at": "2016-10-20T12:05:00Z",
                "response_seconds": 1200,
                "last_reason": None,
                "allowed_actions": ["resolve", "mark_unresolved"],
                "suggested_actions": [
                    {
                        "action": "suspend_pause",
                        "href": "/v1/pauses/01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10/suspend",
                        "method": "POST",
                    }
                ],
            }
        },
    )
    id: uuid.UUID
    version: int
    status: ViolationStatus
    pause_id: uuid.UUID | None
    city_id: uuid.UUID | None
    access_request_id: uuid.UUID | None
    category: Category
    occurred_at: datetime
    place: str | None
    description: str
    severity: int
    reporter_organization_id: uuid.UUID
    created_at: datetime
    first_response_at: datetime | None
    response_seconds: int | None = Field(None, description="From the report to the first coordinator action.")
    last_reason: str | None
    allowed_actions: list[str] = []
    suggested_actions: list[Suggestion] = Field(default_factory=list, description="Offered, never taken by themselves.")


class ViolationPage(BaseModel):
    items: list[ViolationRead]
    next_cursor: str | None
