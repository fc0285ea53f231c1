from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from operator import itemgetter
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from api.schemas.common import Instant, Kept, PageMeta
from workflow.access_requests import Outcome, RequestStatus, Sector


class RouteStepKind(StrEnum):
    crossing_point = "crossing_point"
    checkpoint = "checkpoint"


class RouteStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: RouteStepKind
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    controlled_by: str | None = Field(None, max_length=200)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    phone: str | None = Field(None, max_length=50)
    email: EmailStr | None = None


class CargoLineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sector: Sector
    item: str = Field(min_length=1, max_length=200, pattern=r"\S")
    quantity: float = Field(gt=0, le=1_000_000_000)
    unit: str = Field(min_length=1, max_length=32, pattern=r"\S", examples=["MT", "kits", "cartons"])


_EXAMPLE = {
    "destination_city_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
    "origin_city_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e01",
    "origin_name": None,
    "route": [
        {"kind": "checkpoint", "name": "Ramouseh", "controlled_by": "Government of Syria"},
        {"kind": "crossing_point", "name": "Castello road", "controlled_by": None},
    ],
    "planned_departure": "2016-10-20T06:00:00+03:00",
    "planned_arrival": "2016-10-20T14:00:00+03:00",
    "trucks": 40,
    "people_targeted": 80000,
    "contact": {"name": "Convoy lead", "phone": "+963 11 000 0000", "email": "convoys@wfp.example"},
    "notes": "Requires the 48-hour pause.",
    "pause_id": None,
    "cargo_lines": [
        {"sector": "food", "item": "Food rations", "quantity": 4000, "unit": "rations"},
        {"sector": "health", "item": "Surgical kits", "quantity": 20, "unit": "kits"},
    ],
}


class AccessRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": _EXAMPLE})
    destination_city_id: uuid.UUID
    origin_city_id: uuid.UUID | None = Field(None, description="The origin, when it is a city; else `origin_name`.")
    origin_name: str | None = Field(None, max_length=200, description="A named crossing point or warehouse.")
    route: list[RouteStep] = Field(
        default_factory=list, max_length=30, description="Crossing points and checkpoints, in order."
    )
    planned_departure: Instant
    planned_arrival: Instant
    trucks: int = Field(ge=1, le=1000)
    people_targeted: int = Field(ge=0, le=100_000_000)
    contact: Contact
    notes: str | None = Field(None, max_length=4000)
    pause_id: uuid.UUID | None = Field(None, description="A pause the convoy relies on; its window must lie inside it.")
    cargo_lines: list[CargoLineCreate] = Field(min_length=1, description="At most 50 lines.")

    def origin_given(self) -> bool:
        return self.origin_city_id is not None or bool(self.origin_name and self.origin_name.strip())


class AccessRequestUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"trucks": 35, "notes": "Reduced after assessment."}}
    )
    destination_city_id: Kept[uuid.UUID] = None
    origin_city_id: uuid.UUID | None = None
    origin_name: str | None = Field(None, max_length=200)
    route: Kept[Annotated[list[RouteStep], Field(max_length=30)]] = None
    planned_departure: Kept[Instant] = None
    planned_arrival: Kept[Instant] = None
    trucks: Kept[Annotated[int, Field(ge=1, le=1000)]] = None
    people_targeted: Kept[Annotated[int, Field(ge=0, le=100_000_000)]] = None
    contact: Kept[Contact] = None
    notes: str | None = Field(None, max_length=4000)
    pause_id: uuid.UUID | None = None
    cargo_lines: Kept[Annotated[list[CargoLineCreate], Field(min_length=1)]] = Field(
        None, description="Replaces every line."
    )


class CargoLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    sector: Sector
    item: str
    quantity: float
    unit: str
    approved_quantity: float | None
    delivered_quantity: float | None
    removed_quantity: float | None
    removed_at: str | None
    removal_reason: str | None


class AccessRequestRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "version": 4,
                "status": "approved",
                "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
                "destination_city_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                "origin_city_id": None,
                "origin_name": "Damascus warehouse",
                "route": [{"kind": "checkpoint", "name": "Ramouseh", "controlled_by": "Government of Syria"}],
                "planned_departure": "2016-10-20T03:00:00Z",
                "planned_arrival": "2016-10-20T11:00:00Z",
                "trucks": 40,
                "people_targeted": 80000,
                "contact": {"name": "Convoy lead"},
                "notes": None,
                "pause_id": None,
                "pause_flag": None,
                "cargo_lines": [
                    {
                        "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                        "sector": "health",
                        "item": "Surgical kits",
                        "quantity": 20,
                        "unit": "kits",
                        "approved_quantity": 15,
                        "delivered_quantity": None,
                        "removed_quantity": None,
                        "removed_at": None,
                        "removal_reason": None,
                    }
                ],
                "submitted_at": "2016-10-10T08:00:00Z",
                "review_due_at": "2016-10-19T08:00:00Z",
                "overdue": False,
                "decided_at": "2016-10-18T09:12:44Z",
                "approved_at": "2016-10-18T09:12:44Z",
                "dispatched_at": None,
                "completed_at": None,
                "cancelled_at": None,
                "outcome": None,
                "people_reached": None,
                "last_reason": "Surgical kits reduced.",
                "allowed_actions": ["dispatch", "cancel"],
                "created_at": "2016-10-09T08:00:00Z",
                "updated_at": "2016-10-18T09:12:44Z",
            }
        },
    )
    id: uuid.UUID
    version: int = Field(description="Also the `ETag`; send it back as `If-Match`.")
    status: RequestStatus
    organization_id: uuid.UUID
    destination_city_id: uuid.UUID
    origin_city_id: uuid.UUID | None
    origin_name: str | None
    route: list[dict[str, Any]]
    planned_departure: datetime
    planned_arrival: datetime
    trucks: int
    people_targeted: int
    contact: dict[str, Any]
    notes: str | None
    pause_id: uuid.UUID | None
    pause_flag: str | None = Field(
        None,
        description="`pause_suspended` or `pause_terminated` when the pause this convoy relies on no longer holds.",
    )
    cargo_lines: list[CargoLineRead] = []
    submitted_at: datetime | None
    review_due_at: datetime | None
    overdue: bool = False
    decided_at: datetime | None
    approved_at: datetime | None
    dispatched_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    outcome: Outcome | None
    people_reached: int | None
    last_reason: str | None = Field(description="Why it was last sent back, denied or cancelled, or the approval note.")
    allowed_actions: list[str] = Field(default_factory=list, description="What the caller may do now.")
    created_at: datetime
    updated_at: datetime


class AccessRequestPage(PageMeta):
    items: list[AccessRequestRead]


class RequestCount(BaseModel):
    status: RequestStatus
    destination_city_id: uuid.UUID
    count: int


class AccessRequestCounts(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "items": [
                    {"status": "approved", "destination_city_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11", "count": 3},
                    {"status": "submitted", "destination_city_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11", "count": 5},
                ],
                "total": 8,
            }
        }
    )
    items: list[RequestCount]
    total: int


class Reason(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"reason": "The route crosses an active front line."}}
    )
    reason: str = Field(min_length=1, max_length=4000, pattern=r"\S")


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=4000)


class ApprovedLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: uuid.UUID
    approved_quantity: float = Field(ge=0)


class Approval(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "lines": [{"line_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11", "approved_quantity": 15}],
                "note": "Surgical kits reduced.",
            }
        },
    )
    lines: list[ApprovedLine] = Field(
        default_factory=list, max_length=500, description="Reductions; lines not named are approved in full."
    )
    note: str | None = Field(None, max_length=4000)


class LineOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: uuid.UUID
    delivered_quantity: float = Field(ge=0)
    removed_quantity: float = Field(0, ge=0)
    removed_at: str | None = Field(None, max_length=200, description="The checkpoint where cargo was removed.")
    removal_reason: str | None = Field(None, max_length=2000)


class Completion(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "outcome": "partially_delivered",
                "lines": [
                    {"line_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10", "delivered_quantity": 4000},
                    {
                        "line_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                        "delivered_quantity": 0,
                        "removed_quantity": 15,
                        "removed_at": "Ramouseh checkpoint",
                        "removal_reason": "Surgical supplies removed by the checkpoint.",
                    },
                ],
                "people_reached": 60000,
            }
        },
    )
    outcome: Outcome
    lines: list[LineOutcome] = Field(max_length=500, description="Every cargo line, once.")
    people_reached: int | None = Field(None, ge=0, le=100_000_000)
    completed_at: Instant | None = Field(None, description="When the convoy delivered or turned back; default now.")
    note: str | None = Field(None, max_length=4000)


# ---- lists, encoded straight from database rows ---------------------------------------
#
# A list of 50 requests spent a third of its time validating what the database had just
# given back (bench/bench_list.py). Lists encode their rows with orjson instead, field by
# field in AccessRequestRead's order; tests/test_access_requests.py checks the bytes are
# AccessRequestPage.model_dump_json's. A value orjson cannot encode (no API input carries
# one, but a row written by other means may hold an integer beyond 64 bits) makes the
# caller fall back to the models.

_READ_FIELDS = tuple(AccessRequestRead.model_fields)
_LINE_FIELDS = tuple(CargoLineRead.model_fields)
# A request's representation is the same for everyone who may see it but for these fields, which
# depend on the viewer, the moment or the pause (in the representation's order). The bytes around
# them, the segments, are what a list keeps per request version.
PER_VIEW = tuple(name for name in _READ_FIELDS if name in ("pause_flag", "overdue", "allowed_actions"))
assert PER_VIEW == ("pause_flag", "overdue", "allowed_actions"), "access_request_page_json puts them in this order"
_STORED = tuple(name for name in _READ_FIELDS if name not in PER_VIEW and name != "cargo_lines")
_MARK = orjson.Fragment(b"\x00")  # no encoded value holds a NUL byte: orjson escapes one in a string as \u0000


@functools.cache
def _picker(fields: tuple[str, ...], names: tuple[str, ...]) -> Callable[[Any], tuple]:
    """Takes ``names``' values, in that order, from a tuple laid out as ``fields``: one C call
    per row where a lookup by name costs a microsecond per field, most of a list's encoding."""
    return itemgetter(*(fields.index(name) for name in names))


def access_request_segments(row: Any, lines: list[Any]) -> tuple[bytes, ...] | None:
    """A request's representation, from its row and its cargo lines' rows, as the bytes before,
    between and after its PER_VIEW values; None where orjson cannot encode a value, for the
    caller to fall back to the models."""
    values = dict(zip(_STORED, _picker(row._fields, _STORED)(row), strict=True))
    pick_line = _picker(lines[0]._fields, _LINE_FIELDS) if lines else None
    values["cargo_lines"] = [dict(zip(_LINE_FIELDS, pick_line(line), strict=True)) for line in lines]
    for name in PER_VIEW:
        values[name] = _MARK
    try:
        encoded = orjson.dumps({name: values[name] for name in _READ_FIELDS}, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return None
    return tuple(encoded.split(b"\x00"))


def access_request_page_json(
    items: list[tuple[tuple[bytes, ...], bytes, bytes, bytes]], next_cursor: str | None
) -> bytes | None:
    """``items``: each request's segments and its PER_VIEW values, encoded: the pause flag, overdue and
    the allowed actions."""
    encoded = [
        orjson.Fragment(b"".join((before, flag, between, overdue, then, actions, after)))
        for (before, between, then, after), flag, overdue, actions in items
    ]
    fields = {"next_cursor": next_cursor, "items": encoded}
    return orjson.dumps({name: fields[name] for name in AccessRequestPage.model_fields})
