from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.access import CitySummary
from api.schemas.common import Instant, Kept, PageMeta
from workflow.cities import ADM1_PCODE_PATTERN, PCODE_PATTERN, DesignationStatus

_ALEPPO = {
    "name": "Aleppo",
    "name_ar": "حلب",
    "aliases": ["Halab"],
    "pcode": "C1007",
    "adm1_pcode": "SY02",
    "adm1_name": "Aleppo",
    "latitude": 36.20311,
    "longitude": 37.14087,
    "population": 1800000,
}


class CityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": _ALEPPO})
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    name_ar: str | None = Field(None, max_length=200, description="The name in Arabic script.")
    aliases: list[str] = Field(default_factory=list, max_length=50, description="Other spellings and names.")
    pcode: str = Field(pattern=PCODE_PATTERN, description="OCHA community P-code, e.g. `C1007`.")
    adm1_pcode: str = Field(pattern=ADM1_PCODE_PATTERN, description="Governorate P-code, e.g. `SY02`.")
    adm1_name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    population: int | None = Field(None, ge=0, le=100_000_000)


class CityUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"population": 1600000, "aliases": ["Halab", "Alep"]}}
    )
    name: Kept[Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]] = None
    name_ar: str | None = Field(None, max_length=200)
    aliases: Kept[Annotated[list[str], Field(max_length=50)]] = None
    pcode: Kept[Annotated[str, Field(pattern=PCODE_PATTERN)]] = None
    adm1_pcode: Kept[Annotated[str, Field(pattern=ADM1_PCODE_PATTERN)]] = None
    adm1_name: Kept[Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]] = None
    latitude: Kept[Annotated[float, Field(ge=-90, le=90)]] = None
    longitude: Kept[Annotated[float, Field(ge=-180, le=180)]] = None
    population: int | None = Field(None, ge=0, le=100_000_000)


class DesignationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    status: DesignationStatus
    besieged_by: str | None
    severity: int
    effective_from: datetime


class CityRead(CitySummary):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {"id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f", **_ALEPPO, "current_designation": None}
        },
    )
    current_designation: DesignationSummary | None = Field(None, description="The designation effective now.")


class CityPage(PageMeta):
    items: list[CityRead]


class DesignationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "status": "besieged",
                "besieged_by": "Government of Syria and allied forces",
                "severity": 5,
                "effective_from": "2016-07-17T00:00:00+03:00",
                "reason": "The Castello road, the last route into eastern Aleppo, was cut.",
                "source": "Taskforce field report, 17 July 2016",
            }
        },
    )
    status: DesignationStatus
    besieged_by: str | None = Field(None, max_length=200, description="Required when besieged; absent otherwise.")
    severity: int = Field(ge=0, le=5, description="0 (none) to 5 (extreme).")
    effective_from: Instant = Field(description="May be in the past or the future; RFC 3339 with an offset.")
    reason: str = Field(min_length=1, max_length=4000, pattern=r"\S")
    source: str | None = Field(None, max_length=2000)
    corrects_id: uuid.UUID | None = Field(
        None, description="The designation this one corrects; that one then no longer counts."
    )


class DesignationRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "city_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
                "status": "besieged",
                "besieged_by": "Government of Syria and allied forces",
                "severity": 5,
                "effective_from": "2016-07-16T21:00:00Z",
                "reason": "The Castello road was cut.",
                "source": "Taskforce field report",
                "decided_by_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                "corrects_id": None,
                "corrected_by_id": None,
                "recorded_at": "2016-10-18T09:12:44Z",
            }
        },
    )
    id: uuid.UUID
    city_id: uuid.UUID
    status: DesignationStatus
    besieged_by: str | None
    severity: int
    effective_from: datetime
    reason: str
    source: str | None
    decided_by_id: uuid.UUID | None
    corrects_id: uuid.UUID | None
    corrected_by_id: uuid.UUID | None = Field(None, description="Set when a later designation corrects this one.")
    recorded_at: datetime


class DesignationPage(PageMeta):
    items: list[DesignationRead]
