"""What the access picture reads of convoys: those upcoming at a moment, and the last delivery."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, Select, func, literal, literal_column, or_, select
from sqlmodel import Session

from db.models import IN_FLIGHT_RANGE, AccessRequest, City
from db.types import UTCDateTime
from workflow.access_requests import Outcome

# A picture lists at most this many upcoming convoys per city, the soonest; its count counts
# them all. Any reader chooses the moment, and history can hold thousands upcoming at one
# past moment (bench_growth: 31,250 at once, 2.4-3.8 s per snapshot before this bound).
CONVOYS_LISTED_PER_CITY = 100

_CONVOY_COLUMNS = (
    AccessRequest.id,
    AccessRequest.destination_city_id,
    AccessRequest.organization_id,
    AccessRequest.planned_departure,
    AccessRequest.planned_arrival,
    AccessRequest.trucks,
)


def _upcoming_at(stmt: Select, session: Session, city_ids: Sequence[uuid.UUID] | None, as_of: datetime) -> Select:
    """Approved by ``as_of``, neither dispatched nor cancelled by then, departing after it."""
    stmt = stmt.where(
        AccessRequest.approved_at <= as_of,
        or_(AccessRequest.dispatched_at.is_(None), AccessRequest.dispatched_at > as_of),
        or_(AccessRequest.cancelled_at.is_(None), AccessRequest.cancelled_at > as_of),
        AccessRequest.planned_departure > as_of,
    )
    if session.get_bind().dialect.name == "postgresql":
        # The same rows (approved by as_of and departing after it: the range contains as_of), said
        # the way ix_access_request_in_flight can answer: its cost follows the answer, not how much
        # history departs after as_of.
        stmt = stmt.where(literal_column(IN_FLIGHT_RANGE).bool_op("@>")(literal(as_of, UTCDateTime)))
    if city_ids is not None:
        stmt = stmt.where(AccessRequest.destination_city_id.in_(city_ids))
    return stmt


def upcoming_convoy_counts(
    session: Session, city_ids: Sequence[uuid.UUID] | None, as_of: datetime
) -> dict[uuid.UUID, int]:
    """Per city, how many convoys were upcoming at ``as_of``, of every organization."""
    stmt = _upcoming_at(select(AccessRequest.destination_city_id, func.count()), session, city_ids, as_of)
    return dict(session.execute(stmt.group_by(AccessRequest.destination_city_id)).all())


def upcoming_convoys(
    session: Session,
    city_ids: Sequence[uuid.UUID] | None,
    as_of: datetime,
    *,
    per_city: int,
    organization_id: uuid.UUID | None = None,
) -> list[Row]:
    """The soonest ``per_city`` convoys of each city upcoming at ``as_of`` (rows of
    ``_CONVOY_COLUMNS``, by departure, then id), so the answer is bounded by the cities, not by
    history. ``organization_id``: that organization's only; None: every organization's."""
    stmt = _upcoming_at(select(*_CONVOY_COLUMNS), session, city_ids, as_of)
    if organization_id is not None:
        stmt = stmt.where(AccessRequest.organization_id == organization_id)
    rank = func.row_number().over(
        partition_by=AccessRequest.destination_city_id, order_by=(AccessRequest.planned_departure, AccessRequest.id)
    )
    ranked = stmt.add_columns(rank.label("rank")).subquery()
    return list(
        session.execute(
            select(*(ranked.c[column.key] for column in _CONVOY_COLUMNS))
            .where(ranked.c.rank <= per_city)
            .order_by(ranked.c.planned_departure, ranked.c.id)
        )
    )


def last_deliveries(
    session: Session, city_ids: Sequence[uuid.UUID] | None, as_of: datetime, *, recorded_by: datetime | None = None
) -> dict[uuid.UUID, AccessRequest]:
    """Per city, the latest request completed with something delivered by ``as_of``;
    ``recorded_by``: of those whose outcome was reported by then (an outcome may be reported
    late, with a past ``completed_at``; a completed request is never written again, so its
    ``updated_at`` is when its outcome was reported).

    One ordered index walk per city back from ``as_of`` (ix_access_request_city_completed,
    or ix_access_request_completed where deliveries are dense), stopping at the first
    delivery: the cost does not grow with the history, as a window over every past
    delivery of the city did.
    """
    latest = (
        select(AccessRequest.id)
        .where(
            AccessRequest.destination_city_id == City.id,
            AccessRequest.completed_at <= as_of,
            AccessRequest.outcome.in_([Outcome.delivered.value, Outcome.partially_delivered.value]),
            *([AccessRequest.updated_at <= recorded_by] if recorded_by is not None else []),
        )
        .order_by(AccessRequest.completed_at.desc(), AccessRequest.id.desc())
        .limit(1)
        .correlate(City)
        .scalar_subquery()
    )
    per_city = select(latest).select_from(City)
    if city_ids is not None:
        per_city = per_city.where(City.id.in_(city_ids))
    rows = session.execute(select(AccessRequest).where(AccessRequest.id.in_(per_city))).scalars()
    return {r.destination_city_id: r for r in rows}
