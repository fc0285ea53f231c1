"""The access picture of a city, and of every city at once (the snapshot).

Everything is answered from history at a moment (``as_of``, default now): the
designation effective then, how long the city has been in that status, pauses and
convoys around that moment, the last delivery before it. Day counts are calendar days
in the taskforce's time zone, so a picture only changes when data changes, a dated boundary
passes, or the date turns; that is what the version (the ETag) is made of. Convoys are taken
at auth.policy.convoy_moment: the moment asked, or, for a caller who may not read every
convoy, the start of its day as recorded by then.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from aidaccess.clock import local_date, utcnow
from auth.policy import Action, ConvoyVisibility, convoy_moment, convoy_visibility, sees_every_convoy
from auth.principal import Principal
from db.hot import PictureInputs
from db.models import AccessRequest, City, Designation, Organization, Pause, User, table_of
from workflow.cities import DesignationStatus, not_corrected
from workflow.common import AnyRow, AnySelect, require
from workflow.convoys import CONVOYS_LISTED_PER_CITY, last_deliveries, upcoming_convoy_counts, upcoming_convoys
from workflow.errors import NotFound
from workflow.pauses import pauses_for_cities

# Entity types whose writes can change a picture (pauses and access requests join later).
# Any write to these changes a picture's version (users, organizations: names shown); access
# requests count only when they enter or leave a state a picture shows (db.models.CONVOY_STATES).
PICTURE_ENTITY_TYPES = ("city", "user", "organization", "pause")


@dataclass(frozen=True)
class DesignationView:
    id: uuid.UUID
    status: str
    besieged_by: str | None
    severity: int
    effective_from: datetime
    reason: str
    source: str | None
    decided_by_id: uuid.UUID | None
    decided_by_name: str | None
    corrects_id: uuid.UUID | None
    recorded_at: datetime


@dataclass
class AccessPicture:
    city: AnyRow
    as_of: datetime
    designation: DesignationView | None
    status_since: datetime | None
    days_in_status: int | None
    pauses_active: list[Any] = field(default_factory=list)
    pauses_upcoming: list[Any] = field(default_factory=list)
    convoys_upcoming_count: int = 0
    convoys_upcoming: list[Any] | None = None  # None: the caller may see counts only
    convoys_upcoming_truncated: bool = False  # the caller may read more than are listed
    last_delivery: Any | None = None
    days_since_last_delivery: int | None = None


def _calendar_days(later: datetime, earlier: datetime) -> int:
    """Calendar days in the taskforce's time zone."""
    return (local_date(later) - local_date(earlier)).days


def _timelines(
    session: Session, as_of: datetime, city_ids: list[uuid.UUID] | None
) -> dict[uuid.UUID, list[DesignationView]]:
    """Per city, the designations in force up to ``as_of``, newest first."""
    stmt: AnySelect = (
        select(
            col(Designation.id),
            col(Designation.city_id),
            col(Designation.status),
            col(Designation.besieged_by),
            col(Designation.severity),
            col(Designation.effective_from),
            col(Designation.reason),
            col(Designation.source),
            col(Designation.decided_by_id),
            col(User.full_name).label("decided_by_name"),
            col(Designation.corrects_id),
            col(Designation.recorded_at),
        )
        .outerjoin(User, col(User.id) == col(Designation.decided_by_id))
        .where(col(Designation.effective_from) <= as_of, not_corrected())
        .order_by(
            col(Designation.city_id),
            col(Designation.effective_from).desc(),
            col(Designation.recorded_at).desc(),
            col(Designation.id).desc(),
        )
    )
    if city_ids is not None:
        stmt = stmt.where(col(Designation.city_id).in_(city_ids))
    timelines: dict[uuid.UUID, list[DesignationView]] = defaultdict(list)
    for row in session.execute(stmt):
        values = row._asdict()
        city_id = values.pop("city_id")
        timelines[city_id].append(DesignationView(**values))
    return timelines


@dataclass(frozen=True)
class ConvoyView:
    id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str
    planned_departure: datetime
    planned_arrival: datetime
    trucks: int


@dataclass(frozen=True)
class DeliveryView:
    delivered_at: datetime | None  # None: the caller may not read the convoy, and gets its day only
    delivered_on: date
    outcome: str
    access_request_id: uuid.UUID | None


@dataclass(frozen=True)
class _Viewer:
    """All a picture reads of who is asking: its rendering and its version take the caller from here."""

    visibility: ConvoyVisibility
    organization_id: uuid.UUID | None  # only where it decides what is seen (own organization's convoys)
    exact: bool  # the caller reads every convoy: convoys at the moment asked, as recorded since
    convoys_at: datetime  # auth.policy.convoy_moment: when convoys are taken, for this caller

    def sees(self, organization_id: uuid.UUID) -> bool:
        if self.visibility == ConvoyVisibility.all:
            return True
        return self.visibility == ConvoyVisibility.own_organization and organization_id == self.organization_id


@dataclass(frozen=True)
class PauseView:
    id: uuid.UUID
    status: str  # "active" or "approved" (upcoming)
    starts_at: datetime
    ends_at: datetime
    purpose: str


@dataclass
class _Convoys:
    counts: dict[uuid.UUID, int]
    listed: dict[uuid.UUID, list[AnyRow]]  # up to one more than are listed, to tell that there are more
    last: dict[uuid.UUID, AccessRequest]
    organization_names: dict[uuid.UUID, str]
    pauses: dict[uuid.UUID, tuple[list[Pause], list[Pause]]]


def _convoys(session: Session, city_ids: list[uuid.UUID] | None, moment: datetime, viewer: _Viewer) -> _Convoys:
    """Convoys at the viewer's convoy moment; pauses, which every caller reads, at ``moment`` itself."""
    # Only what the viewer may read is fetched and bounded, so a partner's own convoys are listed
    # however many of other organizations' depart before them. One more than are listed tells
    # that there are more.
    bound = CONVOYS_LISTED_PER_CITY + 1
    as_of = viewer.convoys_at
    rows: list[AnyRow] = []
    if viewer.visibility == ConvoyVisibility.all:
        rows = upcoming_convoys(session, city_ids, as_of, per_city=bound)
    elif viewer.visibility == ConvoyVisibility.own_organization and viewer.organization_id is not None:
        rows = upcoming_convoys(session, city_ids, as_of, per_city=bound, organization_id=viewer.organization_id)
    listed: dict[uuid.UUID, list[AnyRow]] = defaultdict(list)
    for row in rows:
        listed[row.destination_city_id].append(row)
    last = last_deliveries(session, city_ids, as_of, recorded_by=None if viewer.exact else as_of)
    organization_ids = {r.organization_id for rs in listed.values() for r in rs}
    names = (
        dict(
            session.execute(
                select(col(Organization.id), col(Organization.name)).where(col(Organization.id).in_(organization_ids))
            ).all()
        )
        if organization_ids
        else {}
    )
    return _Convoys(
        upcoming_convoy_counts(session, city_ids, as_of),
        listed,
        last,
        names,
        pauses_for_cities(session, city_ids, moment),
    )


def _picture(
    city: AnyRow, timeline: list[DesignationView], as_of: datetime, viewer: _Viewer, convoys: _Convoys
) -> AccessPicture:
    current = timeline[0] if timeline else None
    since = None
    if current is not None:
        since = current.effective_from
        for earlier in timeline[1:]:
            if earlier.status != current.status:
                break
            since = earlier.effective_from
    listed = convoys.listed.get(city.id, [])
    last = convoys.last.get(city.id)
    active_pauses, upcoming_pauses = convoys.pauses.get(city.id, ([], []))
    return AccessPicture(
        city=city,
        as_of=as_of,
        designation=current,
        status_since=since,
        days_in_status=_calendar_days(as_of, since) if since else None,
        pauses_active=[PauseView(p.id, "active", p.starts_at, p.ends_at, p.purpose) for p in active_pauses],
        pauses_upcoming=[PauseView(p.id, "approved", p.starts_at, p.ends_at, p.purpose) for p in upcoming_pauses],
        convoys_upcoming_count=convoys.counts.get(city.id, 0),
        convoys_upcoming=None
        if viewer.visibility == ConvoyVisibility.none
        else [
            ConvoyView(
                r.id,
                r.organization_id,
                convoys.organization_names.get(r.organization_id, ""),
                r.planned_departure,
                r.planned_arrival,
                r.trucks,
            )
            for r in listed[:CONVOYS_LISTED_PER_CITY]
            if viewer.sees(r.organization_id)  # sees(): the query filtered already
        ],
        convoys_upcoming_truncated=len(listed) > CONVOYS_LISTED_PER_CITY,
        last_delivery=_delivery_view(last, viewer) if last else None,
        days_since_last_delivery=_calendar_days(as_of, _completed(last)[0]) if last else None,
    )


def _completed(request: AccessRequest) -> tuple[datetime, str]:
    """When a delivery was completed and its outcome: last_deliveries reads only requests with both."""
    assert request.completed_at is not None and request.outcome is not None, request.id
    return request.completed_at, request.outcome


def _delivery_view(request: AccessRequest, viewer: _Viewer) -> DeliveryView:
    readable = viewer.sees(request.organization_id)
    completed_at, outcome = _completed(request)
    return DeliveryView(
        completed_at if readable else None,
        local_date(completed_at),
        outcome,
        request.id if readable else None,
    )


_CITY_COLUMNS = [c for c in table_of(City).c if c.name not in ("search_text", "created_at", "updated_at")]


def _viewer_kind(actor: Principal) -> tuple[ConvoyVisibility, uuid.UUID | None, bool]:
    """The viewer but for the convoy moment: what a version holds of the caller (the moment it
    holds as the date and the boundary, or ``as_of``)."""
    visibility = convoy_visibility(actor)
    organization = actor.organization_id if visibility == ConvoyVisibility.own_organization else None
    return visibility, organization, sees_every_convoy(actor)


def _viewer(actor: Principal, moment: datetime) -> _Viewer:
    return _Viewer(*_viewer_kind(actor), convoys_at=convoy_moment(actor, moment, utcnow()))


def access_picture(
    *, session: Session, actor: Principal, city_id: uuid.UUID, as_of: datetime | None = None
) -> AccessPicture:
    require(actor, Action.read_cities)
    moment = as_of or utcnow()
    city = session.execute(select(*_CITY_COLUMNS).where(col(City.id) == city_id)).first()
    if city is None:
        raise NotFound("No such city.")
    timeline = _timelines(session, moment, [city_id]).get(city_id, [])
    viewer = _viewer(actor, moment)
    return _picture(city, timeline, moment, viewer, _convoys(session, [city_id], moment, viewer))


def access_snapshot(
    *,
    session: Session,
    actor: Principal,
    as_of: datetime | None = None,
    adm1_pcode: str | None = None,
    designation: DesignationStatus | None = None,
) -> list[AccessPicture]:
    require(actor, Action.read_cities)
    moment = as_of or utcnow()
    stmt = select(*_CITY_COLUMNS).order_by(col(City.name), col(City.id))
    if adm1_pcode:
        stmt = stmt.where(col(City.adm1_pcode) == adm1_pcode)
    cities = session.execute(stmt).all()
    city_ids = None if not adm1_pcode else [c.id for c in cities]
    timelines = _timelines(session, moment, city_ids)
    viewer = _viewer(actor, moment)
    convoys = _convoys(session, city_ids, moment, viewer)
    pictures = [_picture(city, timelines.get(city.id, []), moment, viewer, convoys) for city in cities]
    if designation is not None:
        pictures = [p for p in pictures if p.designation is not None and p.designation.status == designation.value]
    return pictures


# The representation's generation, part of every version: a copy kept under an ETag of an
# earlier shape is then sent again rather than revalidated (2: convoys.upcoming_truncated; 3: convoys
# as of the day for who may not read them all, last_delivery.delivered_on, days in the taskforce's zone).
REPRESENTATION = 3


# Versions by what they are made of: a poll's is usually the one before it's, until a write, a
# boundary or the date moves it (docs/performance.md, "What the machinery buys").
_VERSIONS: dict[tuple[Any, ...], str] = {}
_VERSIONS_KEPT = 4096


def picture_version(*, actor: Principal, inputs: PictureInputs, as_of: datetime | None, scope: str) -> str:
    """A key that changes whenever the picture could: a write to anything it shows, a
    dated boundary passing (for "now"), the taskforce's date turning, or who is asking.

    For a caller who may not read every convoy the picture takes convoys as they stood at the
    start of the day (auth.policy.convoy_moment), so convoy events and departures are left out
    of its version: it moves with the date instead, never at a convoy's instant.

    Pure: the inputs come from two index probes (db.hot), so a poll that ends in 304
    touches neither the ORM nor a thread.
    """
    require(actor, Action.read_cities)
    now = utcnow()
    kind = _viewer_kind(actor)  # the moment is not computed: a poll's hot path
    visibility, organization, exact = kind
    if exact:
        latest_write, latest_boundary = inputs.latest_write, inputs.latest_boundary
    else:
        latest_write, latest_boundary = inputs.latest_write_without_convoys, inputs.latest_boundary_without_convoys
    today = local_date(now)
    # as_of as written: its offset is part of the version, as it always was. "now" or "at" keeps
    # the two kinds of moment apart in the memo's key as in the version's material.
    when, point = ("now", latest_boundary) if as_of is None else ("at", as_of.isoformat())
    key = (REPRESENTATION, latest_write, when, today, point, kind, scope)
    version = _VERSIONS.get(key)
    if version is None:
        viewer = f"{visibility.value}:{organization or '-'}:{int(exact)}"
        material = f"{REPRESENTATION}|{latest_write}|{when}:{today.isoformat()}:{point}|{viewer}|{scope}"
        version = hashlib.sha256(material.encode()).hexdigest()[:32]
        if len(_VERSIONS) >= _VERSIONS_KEPT:
            _VERSIONS.clear()
        _VERSIONS[key] = version
    return version
