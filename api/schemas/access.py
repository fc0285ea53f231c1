"""The access picture: the same shape for one city and in the snapshot."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from workflow.cities import DesignationStatus
from workflow.convoys import CONVOYS_LISTED_PER_CITY


class CitySummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    name_ar: str | None
    aliases: list[str]
    pcode: str
    adm1_pcode: str
    adm1_name: str
    latitude: float
    longitude: float
    population: int | None


class DesignationView(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    status: DesignationStatus
    besieged_by: str | None
    severity: int
    effective_from: datetime
    reason: str
    source: str | None
    decided_by_id: uuid.UUID | None
    decided_by_name: str | None


class PauseSummary(BaseModel):
    id: uuid.UUID
    status: str = Field(description="`active` or `approved` (upcoming).")
    starts_at: datetime
    ends_at: datetime
    purpose: str


class ConvoySummary(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str
    planned_departure: datetime
    planned_arrival: datetime
    trucks: int


class Convoys(BaseModel):
    upcoming_count: int = Field(
        description="Approved convoys to the city not yet dispatched, of every organization. For a caller who may not "
        "read every convoy (all but coordinators and co-chairs), counted, like `upcoming` and `last_delivery`, as they "
        "stood at the start of the taskforce's calendar day of the moment asked about (and never later than the start "
        "of today): convoy timing reaches it by the day, not the instant."
    )
    upcoming: list[ConvoySummary] | None = Field(
        description="Those the caller may read (partners: their own organization's), soonest departure first, at most "
        f"{CONVOYS_LISTED_PER_CITY}. Null for observers: counts only."
    )
    upcoming_truncated: bool = Field(
        description=f"True when the caller may read more than the {CONVOYS_LISTED_PER_CITY} listed: "
        "`GET /v1/access-requests?destination_city_id=…&status=approved&departure_from=…&sort=departure` pages "
        "through those of the present."
    )


class Pauses(BaseModel):
    active: list[PauseSummary]
    upcoming: list[PauseSummary]


class LastDelivery(BaseModel):
    delivered_at: datetime | None = Field(
        description="Null when the caller may not read that request: it gets the day only."
    )
    delivered_on: date = Field(description="The calendar day of the delivery in the taskforce's time zone.")
    outcome: str = Field(description="`delivered` or `partially_delivered`.")
    access_request_id: uuid.UUID | None = Field(description="Null when the caller may not read that request.")


_PICTURE_EXAMPLE = {
    "city": {
        "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
        "name": "Madaya",
        "name_ar": "مضايا",
        "aliases": [],
        "pcode": "C2450",
        "adm1_pcode": "SY03",
        "adm1_name": "Rural Damascus",
        "latitude": 33.69056,
        "longitude": 36.10268,
        "population": None,
    },
    "designation": {
        "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
        "status": "besieged",
        "besieged_by": "Government of Syria and allied forces",
        "severity": 5,
        "effective_from": "2015-07-01T00:00:00Z",
        "reason": "Encircled; no regular access.",
        "source": "Demo data modelled on 2016 UN reporting",
        "decided_by_id": None,
        "decided_by_name": "Demo Coordinator",
    },
    "status_since": "2015-07-01T00:00:00Z",
    "days_in_status": 342,
    "pauses": {"active": [], "upcoming": []},
    "convoys": {"upcoming_count": 0, "upcoming": [], "upcoming_truncated": False},
    "last_delivery": None,
    "days_since_last_delivery": None,
}


class AccessPictureRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": _PICTURE_EXAMPLE})
    city: CitySummary
    designation: DesignationView | None = Field(description="In force at the moment asked about; null if none yet.")
    status_since: datetime | None = Field(description="Since when the city has been in this status without a break.")
    days_in_status: int | None = Field(
        description="Calendar days (in the taskforce's time zone) from `status_since` to the moment asked about."
    )
    pauses: Pauses
    convoys: Convoys
    last_delivery: LastDelivery | None
    days_since_last_delivery: int | None


class AccessSnapshotRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"as_of": None, "count": 1, "cities": [_PICTURE_EXAMPLE]}})
    as_of: datetime | None = Field(description="The moment asked about; null for now.")
    count: int
    cities: list[AccessPictureRead]
