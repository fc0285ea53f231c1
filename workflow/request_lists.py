"""Reading access requests in numbers: lists, counts, the export and a request's history.

Every read checks ``auth.policy`` first; a partner or a service account reads its own
organization's requests only (``convoy_visibility``).
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, or_, select, tuple_
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col

from aidaccess.clock import day_start, utcnow
from auth.policy import (
    Action,
    ConvoyVisibility,
    can,
    can_count_requests,
    can_list_requests,
    convoy_moment,
    convoy_visibility,
)
from auth.principal import Principal
from db.models import AccessRequest, AuditEvent, CargoLine, City, Organization, table_of
from workflow.access_requests import ENTITY, AccessRequestRow, CargoLineRow, RequestStatus, get_access_request
from workflow.common import AnyRow, AnySelect, PageRequest, read_rows
from workflow.errors import Forbidden

# Built once: a statement is immutable, and building one over every column per request showed in
# a list's profile.
_CARGO_LINE_ROWS = select(*table_of(CargoLine).columns)
_REQUEST_ROWS = select(*table_of(AccessRequest).columns)
# Whole statements built once also keep their cache key, which SQLAlchemy otherwise derives again
# for each statement built anew.
_LINES_OF = _CARGO_LINE_ROWS.where(col(CargoLine.access_request_id).in_(bindparam("ids", expanding=True))).order_by(
    col(CargoLine.access_request_id), col(CargoLine.position)
)
# What a list reads of each request it shows besides the representation, which its endpoint keeps
# by (id, version, updated_at) (api.routers.access_requests): the key, what the fields computed per
# viewer read (status, organization, review deadline, pause), and its sort's columns for the cursor
# (sort_value). Each timestamp read is parsed, a microsecond or two per row.
LISTED_COLUMNS = ("id", "version", "updated_at", "status", "organization_id", "review_due_at", "pause_id")


def _listed_rows(sort: SortKey) -> AnySelect:
    sort_columns = {SortKey.departure: ("planned_departure",), SortKey.submitted_at: ("submitted_at", "created_at")}
    return select(*(table_of(AccessRequest).c[name] for name in (*LISTED_COLUMNS, *sort_columns.get(sort, ()))))


_ROWS_OF = _REQUEST_ROWS.where(col(AccessRequest.id).in_(bindparam("ids", expanding=True)))


def cargo_line_rows(session: Session, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[CargoLineRow]]:
    """The cargo lines of these requests, in their order, for showing."""
    lines: dict[uuid.UUID, list[CargoLineRow]] = {rid: [] for rid in request_ids}
    if request_ids:
        for line in read_rows(session, _LINES_OF, {"ids": list(request_ids)}):
            lines[line.access_request_id].append(CargoLineRow._make(line))
    return lines


def access_request_rows(session: Session, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AccessRequestRow]:
    """Whole rows of requests a list has just found visible to its caller (no check of its own), by id."""
    if not request_ids:
        return {}
    return {row.id: AccessRequestRow._make(row) for row in read_rows(session, _ROWS_OF, {"ids": list(request_ids)})}


# Which filters a list is given (RequestFilters.shape): its statement depends on nothing else.
FilterShape = tuple[bool, bool, bool, bool, bool, bool | None]


@dataclass(frozen=True)
class RequestFilters:
    statuses: Sequence[RequestStatus] = ()
    destination_city_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    departure_from: datetime | None = None
    departure_to: datetime | None = None
    overdue: bool | None = None

    def shape(self) -> FilterShape:
        """Which filters are given: all a list's statement depends on (their values are bound)."""
        return (
            bool(self.statuses),
            self.destination_city_id is not None,
            self.organization_id is not None,
            self.departure_from is not None,
            self.departure_to is not None,
            self.overdue,
        )


class SortKey(StrEnum):
    created = "created"
    submitted_at = "submitted_at"
    departure = "departure"


# Lists and counts bind every value they filter on, so their statements depend only on which
# filters a request gives (and the sort and direction): each such statement is built once
# (_list_statement, _count_statement) and keeps its cache key.


def _restricted(actor: Principal) -> bool:
    return convoy_visibility(actor) == ConvoyVisibility.own_organization


def _visible(stmt: AnySelect, restricted: bool) -> AnySelect:
    return stmt.where(col(AccessRequest.organization_id) == bindparam("viewer_organization_id")) if restricted else stmt


def _filtered(stmt: AnySelect, shape: FilterShape) -> AnySelect:
    """``shape``: RequestFilters.shape(); the values are bound by _values."""
    statuses, destination, organization, departure_from, departure_to, overdue = shape
    if statuses:
        stmt = stmt.where(col(AccessRequest.status).in_(bindparam("statuses", expanding=True)))
    if destination:
        stmt = stmt.where(col(AccessRequest.destination_city_id) == bindparam("destination_city_id"))
    if organization:
        stmt = stmt.where(col(AccessRequest.organization_id) == bindparam("organization_id"))
    if departure_from:
        stmt = stmt.where(col(AccessRequest.planned_departure) >= bindparam("departure_from"))
    if departure_to:
        stmt = stmt.where(col(AccessRequest.planned_departure) < bindparam("departure_to"))
    if overdue is True:
        stmt = stmt.where(
            col(AccessRequest.status) == RequestStatus.submitted, col(AccessRequest.review_due_at) < bindparam("now")
        )
    elif overdue is False:
        stmt = stmt.where(
            or_(
                col(AccessRequest.status) != RequestStatus.submitted,
                col(AccessRequest.review_due_at) >= bindparam("now"),
            )
        )
    return stmt


def _values(actor: Principal, filters: RequestFilters) -> dict[str, Any]:
    """Every value a list's or a count's statement may bind (a statement takes those it names)."""
    return {
        "viewer_organization_id": actor.organization_id,
        "statuses": [s.value for s in filters.statuses],
        "destination_city_id": filters.destination_city_id,
        "organization_id": filters.organization_id,
        "departure_from": filters.departure_from,
        "departure_to": filters.departure_to,
        "now": utcnow(),
    }


def _sort_column(sort: SortKey) -> ColumnElement[Any] | None:
    if sort == SortKey.departure:
        return table_of(AccessRequest).c.planned_departure
    if sort == SortKey.submitted_at:
        return func.coalesce(col(AccessRequest.submitted_at), col(AccessRequest.created_at))
    return None


@functools.cache
def _list_statement(
    restricted: bool, shape: FilterShape, sort: SortKey, descending: bool, after: bool, listed: bool
) -> AnySelect:
    stmt = _filtered(_visible(_listed_rows(sort) if listed else _REQUEST_ROWS, restricted), shape)
    column = _sort_column(sort)
    after_id = bindparam("after_id", type_=table_of(AccessRequest).c.id.type)
    if column is None:
        if after:
            stmt = stmt.where(col(AccessRequest.id) < after_id if descending else col(AccessRequest.id) > after_id)
        order: list[ColumnElement[Any] | Mapped[Any]] = [
            col(AccessRequest.id).desc() if descending else col(AccessRequest.id)
        ]
    else:
        if after:
            key, bound = (
                tuple_(column, col(AccessRequest.id)),
                tuple_(bindparam("after_key", type_=column.type), after_id),
            )
            stmt = stmt.where(key < bound if descending else key > bound)
        order = [column.desc(), col(AccessRequest.id).desc()] if descending else [column, col(AccessRequest.id)]
    return stmt.order_by(*order).limit(bindparam("page_size"))


@functools.cache
def _count_statement(restricted: bool, shape: FilterShape) -> AnySelect:
    stmt = select(col(AccessRequest.status), col(AccessRequest.destination_city_id), func.count()).group_by(
        col(AccessRequest.status), col(AccessRequest.destination_city_id)
    )
    return _filtered(_visible(stmt, restricted), shape).order_by(col(AccessRequest.status))


def list_access_requests(
    *,
    session: Session,
    actor: Principal,
    filters: RequestFilters,
    page: PageRequest,
    sort: SortKey = SortKey.created,
    descending: bool = False,
    listed: bool = False,
) -> tuple[Sequence[AnyRow], bool]:
    """Keyset pages on (sort key, id): the page after 50,000 rows costs what the first does.

    Rows with the table's columns, not ORM instances: a list is only read, and its endpoint
    encodes the rows as they are (schemas.access_requests.access_request_segments). ``listed``:
    rows with LISTED_COLUMNS and the sort's (sort_value reads them) only.
    """
    decision = can_list_requests(actor)
    if not decision:
        raise Forbidden(decision.reason)
    stmt = _list_statement(_restricted(actor), filters.shape(), sort, descending, page.after is not None, listed)
    values = _values(actor, filters)
    values["page_size"] = page.limit + 1
    if page.after is not None:
        values["after_key"], values["after_id"] = page.after
    rows = read_rows(session, stmt, values).all()
    return rows[: page.limit], len(rows) > page.limit


def sort_value(request: AccessRequest | AnyRow, sort: SortKey) -> Any:
    if sort == SortKey.departure:
        return request.planned_departure
    if sort == SortKey.submitted_at:
        return request.submitted_at or request.created_at
    return None


def count_access_requests(
    *, session: Session, actor: Principal, filters: RequestFilters
) -> list[tuple[str, uuid.UUID, int]]:
    """(status, destination city, count): what observers may know of convoys.

    Counted at auth.policy.convoy_moment: for a caller who counts convoys it may not read (an
    observer), as the requests stood at the start of today in the taskforce's time zone, with the
    departure bounds taken to the start of their days, so no count moves at a convoy's instant.
    """
    decision = can_count_requests(actor)
    if not decision:
        raise Forbidden(decision.reason)
    restricted = _restricted(actor)
    now = utcnow()
    moment = convoy_moment(actor, now, now, own_organization_only=restricted)
    values = _values(actor, filters)
    if moment == now:
        stmt = _count_statement(restricted, filters.shape())
        return [(status, city_id, count) for status, city_id, count in session.execute(stmt, values)]
    values["now"] = moment
    for bound in ("departure_from", "departure_to"):
        if values[bound] is not None:
            values[bound] = day_start(values[bound])
    return _counts_as_they_stood(session, restricted, filters, values, moment)


def _counts_as_they_stood(
    session: Session, restricted: bool, filters: RequestFilters, values: dict[str, Any], moment: datetime
) -> list[tuple[str, uuid.UUID, int]]:
    """Counts by the status each request had at ``moment``. Requests not written since are counted
    in the database as they are; the few written since take their status then from the audit trail."""
    counts: dict[tuple[str, uuid.UUID], int] = defaultdict(int)
    unchanged = _filtered(
        _visible(
            select(col(AccessRequest.status), col(AccessRequest.destination_city_id), func.count())
            .where(col(AccessRequest.updated_at) < bindparam("moment"))
            .group_by(col(AccessRequest.status), col(AccessRequest.destination_city_id)),
            restricted,
        ),
        filters.shape(),
    )
    for status, city_id, count in session.execute(unchanged, {**values, "moment": moment}):
        counts[(status, city_id)] += count
    # Written since: filtered on everything but the status (and overdue, which depends on it).
    statuses, destination, organization, departure_from, departure_to, _ = filters.shape()
    changed = _filtered(
        _visible(
            select(
                col(AccessRequest.id), col(AccessRequest.destination_city_id), col(AccessRequest.review_due_at)
            ).where(
                col(AccessRequest.updated_at) >= bindparam("moment"),
                col(AccessRequest.created_at) < bindparam("moment"),
            ),
            restricted,
        ),
        (False, destination, organization, departure_from, departure_to, None),
    )
    since = session.execute(changed, {**values, "moment": moment}).all()
    if since:
        ids = [str(row.id) for row in since]
        latest = (
            select(col(AuditEvent.entity_id), func.max(col(AuditEvent.id)).label("id"))
            .where(
                col(AuditEvent.entity_type) == ENTITY,
                col(AuditEvent.entity_id).in_(ids),
                col(AuditEvent.to_state).is_not(None),
                col(AuditEvent.occurred_at) < moment,
            )
            .group_by(col(AuditEvent.entity_id))
            .subquery()
        )
        status_then = dict(
            session.execute(
                select(col(AuditEvent.entity_id), col(AuditEvent.to_state)).join(
                    latest, col(AuditEvent.id) == latest.c.id
                )
            ).all()
        )
        wanted = set(values["statuses"])
        for row in since:
            status = status_then.get(str(row.id))
            if status is None or (wanted and status not in wanted):
                continue
            overdue = status == RequestStatus.submitted and row.review_due_at is not None and row.review_due_at < moment
            if filters.overdue is not None and overdue != filters.overdue:
                continue
            counts[(status, row.destination_city_id)] += 1
    return [
        (status, city_id, count) for (status, city_id), count in sorted(counts.items(), key=lambda item: item[0][0])
    ]


def history(*, session: Session, actor: Principal, request_id: uuid.UUID) -> list[AuditEvent]:
    request = get_access_request(session=session, actor=actor, request_id=request_id)
    return list(
        session.execute(
            select(AuditEvent)
            .where(col(AuditEvent.entity_type) == ENTITY, col(AuditEvent.entity_id) == str(request.id))
            .order_by(col(AuditEvent.id))
        ).scalars()
    )


@dataclass(frozen=True)
class ExportLine:
    """A row of the export: a cargo line with its request, the requesting organization and the destination."""

    request: AccessRequestRow
    line: CargoLineRow
    organization: str
    destination: str
    destination_pcode: str


def export_lines(*, session: Session, actor: Principal, filters: RequestFilters, limit: int) -> list[ExportLine]:
    """Every cargo line of the first ``limit`` requests matching ``filters``, in the list's order."""
    decision = can(actor, Action.export_access_requests)
    if not decision:
        raise Forbidden(decision.reason)
    requests, _ = list_access_requests(session=session, actor=actor, filters=filters, page=PageRequest(limit=limit))
    lines = cargo_line_rows(session, [r.id for r in requests])
    names = dict(session.execute(select(col(Organization.id), col(Organization.name))).all())
    cities = {c.id: c for c in session.execute(select(col(City.id), col(City.name), col(City.pcode))).all()}
    exported = []
    for request in map(AccessRequestRow._make, requests):
        city = cities.get(request.destination_city_id)
        for line in lines[request.id]:
            exported.append(
                ExportLine(
                    request,
                    line,
                    names.get(request.organization_id, ""),
                    city.name if city else "",
                    city.pcode if city else "",
                )
            )
    return exported
