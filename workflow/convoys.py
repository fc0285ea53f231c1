"""What the access picture reads of convoys: those upcoming at a moment, and the last delivery."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, literal, literal_column, or_, select
from sqlmodel import Session, col

from db.models import IN_FLIGHT_RANGE, AccessRequest, City
from db.types import UTCDateTime
from workflow.access_requests import Outcome
from workflow.common import AnyRow, AnySelect

# A picture lists at most this many upcoming convoys per city, the soonest; its count counts
# them all. Any reader chooses the moment, and history can hold thousands upcoming at one
# past moment (bench_growth: 31,250 at once, 2.4-3.8 s per snapshot before this bound).
CONVOYS_LISTED_PER_CITY = 100

_CONVOY_COLUMNS = (
    col(AccessRequest.id),
    col(AccessRequest.destination_city_id),
    col(AccessRequest.organization_id),
    col(AccessRequest.planned_departure),
    col(AccessRequest.planned_arrival),
    col(AccessRequest.trucks),
)


def _upcoming_at(stmt: AnySelect, session: Session, city_ids: Sequence[uuid.UUID] | None, as_of: datetime) -> AnySelect:
    """Approved by ``as_of``, neither dispatched nor cancelled by then, departing after it."""
    stmt = stmt.where(
        col(AccessRequest.approved_at) <= as_of,
        or_(col(AccessRequest.dispatched_at).is_(None), col(AccessRequest.dispatched_at) > as_of),
        or_(col(AccessRequest.cancelled_at).is_(None), col(AccessRequest.cancelled_at) > as_of),
        col(AccessRequest.planned_departure) > as_of,
    )
    if session.get_bind().dialect.name == "postgresql":
        # The same rows (approved by as_of and departing after it: the range contains as_of), said
        # the way ix_access_request_in_flight can answer: its cost follows the answer, not how much
        # history departs after as_of.
        stmt = stmt.where(literal_column(IN_FLIGHT_RANGE).bool_op("@>")(literal(as_of, UTCDateTime)))
    if city_ids is not None:
        stmt = stmt.where(col(AccessRequest.destination_city_id).in_(city_ids))
    return stmt


def upcoming_convoy_counts(
    session: Session, city_ids: Sequence[uuid.UUID] | None, as_of: datetime
) -> dict[uuid.UUID, int]:
    """Per city, how many convoys were upcoming at ``as_of``, of every organization."""
    stmt = _upcoming_at(select(col(AccessRequest.destination_city_id), func.count()), session, city_ids, as_of)
    return dict(session.execute(stmt.group_by(col(AccessRequest.destination_city_id))).all())


def upcoming_convoys(
    session: Session,
    city_ids: Sequence[uuid.UUID] | None,
    as_of: datetime,
    *,
    per_city: int,
    organization_id: uuid.UUID | None = None,
) -> list[AnyRow]:
    """The soonest ``per_city`` convoys of each city upcoming at ``as_of`` (rows of
    ``_CONVOY_COLUMNS``, by departure, then id), so the answer is bounded by the cities, not by
    history. ``organization_id``: that organization's only; None: every organization's."""
    stmt = _upcoming_at(select(*_CONVOY_COLUMNS), session, city_ids, as_of)
    if organization_id is not None:
        stmt = stmt.where(col(AccessRequest.organization_id) == organization_id)
    rank = func.row_number().over(
        partition_by=col(AccessRequest.destination_city_id),
        order_by=(col(AccessRequest.planned_departure), col(AccessRequest.id)),
    )
    ranked = stmt.add_columns(rank.label("rank")).subquery()
    return list(
        session.execute(
            select(*(column for column in ranked.c if column.key != "rank"))  # the convoy's columns
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
        select(col(AccessRequest.id))
        .where(
            col(AccessRequest.destination_city_id) == col(City.id),
            col(AccessRequest.completed_at) <= as_of,
            col(AccessRequest.outcome).in_([Outcome.delivered.value, Outcome.partially_delivered.value]),
            *([col(AccessRequest.updated_at) <= recorded_by] if recorded_by is not None else []),
        )
        .order_by(col(AccessRequest.completed_at).desc(), col(AccessRequest.id).desc())
        .limit(1)
        .correlate(City)
        .scalar_subquery()
    )
    per_city = select(latest).select_from(City)
    if city_ids is not None:
        per_city = per_city.where(col(City.id).in_(city_ids))
    rows = session.execute(select(AccessRequest).where(col(AccessRequest.id).in_(per_city))).scalars()
    return {r.destination_city_id: r for r in rows}
