"""Hot reads: the queries on every authenticated request and every polled snapshot.

They bypass the ORM and the threadpool. SQLite runs them on the event loop over one
read-only connection of their own (a local indexed read costs less than a thread hop);
PostgreSQL runs them on async psycopg connections, so the event loop never blocks and no
threadpool thread ever waits for a connection. The SQL is shared; only the driver and
how ids and times are passed differ. A database that cannot answer raises SQLAlchemy's
``OperationalError``, as the ORM's reads do, so the API answers 503 for either.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from db.engine import postgresql_options
from db.models import CONVOY_EVENT_CONDITION

R = TypeVar("R")

_USER_SQL = """
SELECT u.email, u.full_name, u.role, u.active, u.organization_id, o.name, o.kind,
       (SELECT s.revoked_at IS NULL FROM auth_session s WHERE s.id = {sid} AND s.user_id = u.id),
       EXISTS (SELECT 1 FROM revoked_token r WHERE r.jti = {jti})
FROM user_account u JOIN organization o ON o.id = u.organization_id
WHERE u.id = {id}
"""

_SERVICE_ACCOUNT_SQL = """
SELECT a.client_id, a.name, a.scopes, a.deleted_at IS NULL, a.organization_id, o.name, o.kind,
       EXISTS (SELECT 1 FROM revoked_token r WHERE r.jti = {jti})
FROM service_account a JOIN organization o ON o.id = a.organization_id
WHERE a.id = {id}
"""

# Each subquery is one index probe (ix_audit_event_type_id, ix_audit_event_convoy,
# ix_designation_effective_from, ix_access_request_departure, ix_pause_starts, ix_pause_ends).
_PICTURE_SQL = """
SELECT {latest_writes},
       ({convoy_probe}),
       (SELECT max(d.effective_from) FROM designation d WHERE d.effective_from <= {now}),
       (SELECT max(r.planned_departure) FROM access_request r WHERE r.planned_departure <= {now}),
       (SELECT max(p.starts_at) FROM pause p WHERE p.starts_at <= {now}),
       (SELECT max(p.ends_at) FROM pause p WHERE p.ends_at <= {now}),
       (SELECT count(*) FROM city c WHERE c.id = {city_id})
"""


def convoy_probe_sql(*, sqlite: bool) -> str:
    """The newest access request event that can change a picture, from the partial index.

    SQLite's planner prefers ix_audit_event_type_id on small tables and would then walk
    every draft and review back to the last convoy event; INDEXED BY pins the partial
    index (and fails loudly if its condition ever stops matching). PostgreSQL picks it by cost.
    """
    hint = "INDEXED BY ix_audit_event_convoy " if sqlite else ""
    return f"SELECT max(a.id) FROM audit_event a {hint}WHERE {CONVOY_EVENT_CONDITION}"


def _entity_type_probe(entity_type: str) -> str:
    """The newest event of one entity type, read from ix_audit_event_type_id whatever the planner's
    statistics say.

    A range on the type, ordered by (type, id): only that index gives the order, so the probe reads
    one entry of it. Written as ``max(id) WHERE entity_type = 't'``, the equality lets the planner
    drop the type from the order, and pk_audit_event gives it too: with statistics from when the
    type was common, PostgreSQL then walked pk_audit_event backwards, filtering on the type, a cost
    that grows with the trail (docs/performance.md, "Measurements behind the code")."""
    return (
        f"(SELECT a.id FROM audit_event a WHERE a.entity_type >= '{entity_type}' AND a.entity_type <= '{entity_type}' "
        "ORDER BY a.entity_type DESC, a.id DESC LIMIT 1)"
    )


# The earliest dated change after now: until it passes, _PICTURE_SQL's boundaries stay the same.
_NEXT_BOUNDARY_SQL = """
SELECT min(x) FROM (
    SELECT min(d.effective_from) AS x FROM designation d WHERE d.effective_from > :now
    UNION ALL SELECT min(r.planned_departure) FROM access_request r WHERE r.planned_departure > :now
    UNION ALL SELECT min(p.starts_at) FROM pause p WHERE p.starts_at > :now
    UNION ALL SELECT min(p.ends_at) FROM pause p WHERE p.ends_at > :now
)
"""


@dataclass(frozen=True, slots=True)
class UserRow:
    email: str
    full_name: str
    role: str
    active: bool
    organization_id: uuid.UUID
    organization_name: str
    organization_kind: str
    session_live: bool
    token_revoked: bool


@dataclass(frozen=True, slots=True)
class ServiceAccountRow:
    client_id: str
    name: str
    scopes: tuple[str, ...]
    live: bool
    organization_id: uuid.UUID
    organization_name: str
    organization_kind: str
    token_revoked: bool


@dataclass(frozen=True, slots=True)
class PictureInputs:
    """What an access picture's version is made of (see workflow.access)."""

    latest_write: int
    latest_boundary: str  # the latest dated changes at or before now (designations, departures, pauses)
    city_exists: bool
    # The same without convoys (their events, their departures): what a picture taken for a caller
    # who may not read every convoy is made of (auth.policy.convoy_moment), so its version never
    # moves at a convoy's instant.
    latest_write_without_convoys: int = 0
    latest_boundary_without_convoys: str = ""


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _user_row(row: tuple | None) -> UserRow | None:
    if row is None:
        return None
    return UserRow(
        email=row[0],
        full_name=row[1],
        role=row[2],
        active=bool(row[3]),
        organization_id=_as_uuid(row[4]),
        organization_name=row[5],
        organization_kind=row[6],
        session_live=bool(row[7]),
        token_revoked=bool(row[8]),
    )


def _service_account_row(row: tuple | None) -> ServiceAccountRow | None:
    if row is None:
        return None
    scopes = json.loads(row[2]) if isinstance(row[2], str) else row[2]
    return ServiceAccountRow(
        client_id=row[0],
        name=row[1],
        scopes=tuple(scopes or ()),
        live=bool(row[3]),
        organization_id=_as_uuid(row[4]),
        organization_name=row[5],
        organization_kind=row[6],
        token_revoked=bool(row[7]),
    )


def _picture_inputs(row: tuple, entity_types: Sequence[str]) -> PictureInputs:
    n = len(entity_types) + 1  # and the convoy probe
    writes = [value or 0 for value in row[:n]]
    boundaries = [str(value) if value is not None else "-" for value in row[n : n + 4]]
    designations, _departures, starts, ends = boundaries
    return PictureInputs(
        latest_write=max(writes, default=0),
        latest_boundary="/".join(boundaries),
        city_exists=bool(row[n + 4]),
        latest_write_without_convoys=max(writes[:-1], default=0),
        latest_boundary_without_convoys="/".join((designations, starts, ends)),
    )


def _principal_and_picture_of(
    row: tuple, entity_types: Sequence[str], build: Callable[[tuple | None], R]
) -> tuple[R, PictureInputs]:
    """A combined statement's row: the picture's inputs, then the principal's columns (all NULL: none)."""
    width = len(entity_types) + 6  # the writes, the convoy probe, four boundaries, the city
    principal = row[width:]
    return build(principal if principal[0] is not None else None), _picture_inputs(row, entity_types)


class HotReads:
    """The queries; subclasses supply ``_fetch`` and the parameter style."""

    waits_for_server = False  # True where a read waits on a server's answer (the API steps out of its place then)

    named = True  # sqlite3 ":name" parameters; psycopg takes "%(name)s"

    async def _fetch(self, sql: str, params: dict[str, Any]) -> tuple | None:
        raise NotImplementedError

    async def _fetch_principal(self, template: str, params: dict[str, Any], build: Callable[[tuple | None], R]) -> R:
        """Who a token names, now; engines that can tell cheaply when nothing changed may memoize."""
        return build(await self._fetch(self._sql(template), params))

    def _sql(self, template: str, **extra: str) -> str:
        """The template with its names as parameters, unless ``extra`` says what else they are."""
        key = (template, *sorted(extra.items()))
        statements = self.__dict__.setdefault("_statements", {})
        if key not in statements:

            def param(name: str) -> str:
                return f":{name}" if self.named else f"%({name})s"

            names = {"sid", "jti", "id", "now", "city_id"}
            statements[key] = template.format(**({n: param(n) for n in names} | extra))
        return statements[key]

    def _id(self, value: uuid.UUID | None) -> Any:
        if value is None:
            return None
        return value.hex if self.named else value

    def _time(self, value: datetime) -> Any:
        # As SQLAlchemy stores a UTC time in SQLite: naive, "YYYY-MM-DD HH:MM:SS.ffffff" (isoformat, not
        # strftime: that was a tenth of a 304's CPU, in-process).
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds") if self.named else value

    def _user_params(self, user_id: uuid.UUID, session_id: uuid.UUID | None, jti: str) -> dict[str, Any]:
        return {"id": self._id(user_id), "sid": self._id(session_id), "jti": jti}

    def _account_params(self, account_id: uuid.UUID, jti: str) -> dict[str, Any]:
        return {"id": self._id(account_id), "jti": jti}

    async def user(self, user_id: uuid.UUID, session_id: uuid.UUID | None, jti: str) -> UserRow | None:
        return await self._fetch_principal(_USER_SQL, self._user_params(user_id, session_id, jti), _user_row)

    async def service_account(self, account_id: uuid.UUID, jti: str) -> ServiceAccountRow | None:
        return await self._fetch_principal(
            _SERVICE_ACCOUNT_SQL, self._account_params(account_id, jti), _service_account_row
        )

    def _picture_sql(self, entity_types: Sequence[str], **names: str) -> str:
        """Built once per instance and shape, not on every poll.

        The entity types are written into the statement, not bound: with a parameter,
        PostgreSQL's generic plan for a prepared statement (after five runs) cannot tell a
        rare type from a common one and walked the whole audit trail backwards for the
        rare ones (docs/performance.md, "Growth").
        """
        key = (tuple(entity_types), *sorted(names.items()))
        cache = self.__dict__.setdefault("_picture_statements", {})
        if key not in cache:
            for entity_type in entity_types:
                if not re.fullmatch(r"[a-z_]+", entity_type):
                    raise ValueError(f"not an entity type: {entity_type!r}")
            probes = [_entity_type_probe(t) for t in entity_types]
            cache[key] = self._sql(
                _PICTURE_SQL, latest_writes=", ".join(probes), convoy_probe=convoy_probe_sql(sqlite=self.named), **names
            )
        return cache[key]

    async def picture_inputs(
        self, entity_types: Sequence[str], now: datetime, city_id: uuid.UUID | None = None
    ) -> PictureInputs:
        row = await self._fetch(self._picture_sql(entity_types), self._picture_params(now, city_id))
        assert row is not None
        return _picture_inputs(row, entity_types)

    def _picture_params(self, now: datetime, city_id: uuid.UUID | None) -> dict[str, Any]:
        return {"now": self._time(now), "city_id": self._id(city_id)}

    # A poll asks two things, who the token names and whether the picture changed; where each
    # is a server round trip, one statement answers both (docs/performance.md, "Hot reads").

    async def user_and_picture_inputs(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID | None,
        jti: str,
        entity_types: Sequence[str],
        now: datetime,
        city_id: uuid.UUID | None = None,
    ) -> tuple[UserRow | None, PictureInputs]:
        params = self._user_params(user_id, session_id, jti)
        return await self._principal_and_picture(_USER_SQL, params, _user_row, entity_types, now, city_id)

    async def service_account_and_picture_inputs(
        self,
        account_id: uuid.UUID,
        jti: str,
        entity_types: Sequence[str],
        now: datetime,
        city_id: uuid.UUID | None = None,
    ) -> tuple[ServiceAccountRow | None, PictureInputs]:
        params = self._account_params(account_id, jti)
        return await self._principal_and_picture(
            _SERVICE_ACCOUNT_SQL, params, _service_account_row, entity_types, now, city_id
        )

    async def _principal_and_picture(
        self,
        principal_template: str,
        params: dict[str, Any],
        build: Callable[[tuple | None], R],
        entity_types: Sequence[str],
        now: datetime,
        city_id: uuid.UUID | None,
    ) -> tuple[R, PictureInputs]:
        key = (principal_template, tuple(entity_types))
        statements = self.__dict__.setdefault("_combined_statements", {})
        if key not in statements:
            # The picture's row always exists; the principal's may not (LEFT JOIN ... ON true).
            statements[key] = (
                f"SELECT * FROM ({self._picture_sql(entity_types)}) AS p "
                f"LEFT JOIN ({self._sql(principal_template)}) AS q ON true"
            )
        row = await self._fetch(statements[key], {**params, **self._picture_params(now, city_id)})
        assert row is not None
        return _principal_and_picture_of(row, entity_types, build)

    async def close(self) -> None:
        return None


class SqliteHotReads(HotReads):
    """One read-only connection, used only from the event loop thread.

    Principal lookups are remembered until the database changes: ``PRAGMA data_version``
    moves whenever another connection commits (this one never writes), so a deactivation,
    a logout or a revocation is seen by the very next request, as without the memo.
    """

    _MEMO_SIZE = 10_000

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._memo: dict[tuple, Any] = {}
        self._memo_version: int | None = None
        # (statement, city) -> (inputs, the next dated boundary after which they may differ)
        self._picture_memo: dict[tuple, tuple[PictureInputs, str | None]] = {}

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    def _one(self, sql: str, params: dict[str, Any] | None = None) -> tuple | None:
        try:
            return self._connection().execute(sql, params or {}).fetchone()
        except sqlite3.OperationalError as error:  # the file cannot be opened or read, or stays locked
            raise OperationalError(sql, params, error) from error

    async def _fetch(self, sql: str, params: dict[str, Any]) -> tuple | None:
        return self._one(sql, params)

    def _refresh_memos(self) -> None:
        """Every memo emptied if anything was committed since the last look."""
        version = self._one("PRAGMA data_version")[0]
        if (
            version != self._memo_version
            or len(self._memo) >= self._MEMO_SIZE
            or len(self._picture_memo) >= self._MEMO_SIZE
        ):
            self._memo.clear()
            self._picture_memo.clear()
            self._memo_version = version

    async def _fetch_principal(self, template: str, params: dict[str, Any], build: Callable[[tuple | None], R]) -> R:
        self._refresh_memos()
        return self._remembered_principal(template, params, build)

    def _remembered_principal(self, template: str, params: dict[str, Any], build: Callable[[tuple | None], R]) -> R:
        """From the memo, which the caller has just refreshed."""
        key = (template, *params.values())
        if key not in self._memo:
            self._memo[key] = build(self._one(self._sql(template), params))
        return self._memo[key]

    async def picture_inputs(
        self, entity_types: Sequence[str], now: datetime, city_id: uuid.UUID | None = None
    ) -> PictureInputs:
        """Remembered until the database changes or the next dated boundary (a designation taking
        effect, a departure, a pause starting or ending) passes: the inputs are the same until then."""
        self._refresh_memos()
        return await self._remembered_picture_inputs(entity_types, now, city_id)

    async def _remembered_picture_inputs(
        self, entity_types: Sequence[str], now: datetime, city_id: uuid.UUID | None
    ) -> PictureInputs:
        """From the memo, which the caller has just refreshed. The boundary is kept as a time, so a
        hit formats nothing."""
        key = (self._picture_sql(entity_types), city_id)
        remembered = self._picture_memo.get(key)
        if remembered is not None and (remembered[1] is None or now < remembered[1]):
            return remembered[0]
        inputs = await super().picture_inputs(entity_types, now, city_id)
        boundary = self._one(_NEXT_BOUNDARY_SQL, {"now": self._time(now)})[0]
        try:
            next_boundary = None if boundary is None else datetime.fromisoformat(boundary).replace(tzinfo=UTC)
        except (TypeError, ValueError):  # not as SQLAlchemy writes times: asked again on every poll
            return inputs
        self._picture_memo[key] = (inputs, next_boundary)
        return inputs

    async def _principal_and_picture(
        self,
        principal_template: str,
        params: dict[str, Any],
        build: Callable[[tuple | None], R],
        entity_types: Sequence[str],
        now: datetime,
        city_id: uuid.UUID | None,
    ) -> tuple[R, PictureInputs]:
        """Each from its memo, after one look at the database's version (one for both was half a
        poll's reading): on SQLite a poll usually runs no statement but ``PRAGMA data_version``."""
        self._refresh_memos()
        return (
            self._remembered_principal(principal_template, params, build),
            await self._remembered_picture_inputs(entity_types, now, city_id),
        )

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresHotReads(HotReads):
    """A few autocommit connections, each lent to one statement at a time; polls in flight
    together share a statement.

    Not psycopg_pool: lending through it cost about as much CPU as the statement lent for
    (docs/performance.md, "Hot reads").
    A semaphore bounds the connections in use and idle ones wait in a list. A connection
    that fails or is interrupted mid-statement is closed, never lent again; every statement
    is a read, so one that met a connection the server had dropped is retried once on a new
    connection.

    Shared statements: a poll boards the next statement of its kind (who a person is, who
    a service account is, a picture's inputs, or a principal and a picture's inputs); one
    statement of a kind is in the air at a time, and the next boards while it is. A
    statement answers only polls that boarded before it was sent, so every answer is read
    after its poll arrived: exact, as one statement per poll would be. Under load, one
    round trip answers dozens of polls, whoever sends them; when idle, a poll flies at once.
    """

    waits_for_server = True

    named = False

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[Any] = []
        self._boarding: dict[tuple, _Flight] = {}
        self._in_the_air: dict[tuple, asyncio.Lock] = {}

    async def _connect(self) -> Any:
        import psycopg

        # Generic plans: these statements are prepared, and PostgreSQL chose to plan a shared one
        # afresh on every run, four times the cost of running it. Nothing in
        # them needs a parameter's value to plan well: the entity types are written in (see
        # _picture_sql), the times bound the scans of their own indexes, the ids are keys.
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            prepare_threshold=0,
            connect_timeout=10,
            options=postgresql_options(self._conninfo, "-c plan_cache_mode=force_generic_plan"),
        )

    async def _fetch(self, sql: str, params: dict[str, Any]) -> tuple | None:
        """One statement for one caller (the shared ones go through ``_board``)."""
        return await self._lend_translated(sql, lambda: params, _fetch_one)

    async def _lend_translated(self, sql: str, depart: Callable[[], dict[str, Any]], fetch: Callable) -> Any:
        import psycopg

        try:
            return await self._lend(sql, depart, fetch)
        except psycopg.OperationalError as error:  # the server is unreachable or went away twice
            raise OperationalError(sql, None, error) from error

    async def _lend(self, sql: str, depart: Callable[[], dict[str, Any]], fetch: Callable) -> Any:
        """``depart`` gives the parameters at the last moment before the statement is sent."""
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            params = depart()
            try:
                result = await fetch(conn, sql, params)
            except BaseException as error:
                retry = reused and _dropped_by_server(error, conn)  # asked before close(), which can change `broken`
                await _discard(conn)
                if not retry:
                    raise
                conn = await self._connect()
                try:
                    result = await fetch(conn, sql, params)
                except BaseException:
                    await _discard(conn)
                    raise
            self._idle.append(conn)
            return result

    # ---- polls share statements ---------------------------------------------------------

    async def _fetch_principal(self, template: str, params: dict[str, Any], build: Callable[[tuple | None], R]) -> R:
        def answer(row: tuple) -> R:
            return build(row if row[0] is not None else None)

        return await self._board(template, None, (params["id"], params.get("sid"), params["jti"], None), None, answer)

    async def picture_inputs(
        self, entity_types: Sequence[str], now: datetime, city_id: uuid.UUID | None = None
    ) -> PictureInputs:
        def answer(row: tuple) -> PictureInputs:
            return _picture_inputs(row, entity_types)

        return await self._board(None, tuple(entity_types), (None, None, None, city_id), now, answer)

    async def _principal_and_picture(
        self,
        principal_template: str,
        params: dict[str, Any],
        build: Callable[[tuple | None], R],
        entity_types: Sequence[str],
        now: datetime,
        city_id: uuid.UUID | None,
    ) -> tuple[R, PictureInputs]:
        def answer(row: tuple) -> tuple[R, PictureInputs]:
            return _principal_and_picture_of(row, entity_types, build)

        poll = (params["id"], params.get("sid"), params["jti"], city_id)
        return await self._board(principal_template, tuple(entity_types), poll, now, answer)

    async def _board(
        self,
        template: str | None,
        entity_types: tuple[str, ...] | None,
        poll: tuple,
        now: datetime | None,
        answer: Callable[[tuple], R],
    ) -> R:
        """``answer`` of the row for ``poll`` (id, session id, jti, city id), from the next statement of
        its kind. The same poll twice in one statement is one row, and one answer (they are immutable)."""
        kind = (template, entity_types)
        flight = self._boarding.get(kind)
        if flight is None:
            flight = self._boarding[kind] = _Flight()
            flight.task = asyncio.get_running_loop().create_task(self._fly(kind, flight))
        index = flight.board(poll, now)
        try:
            # Shielded: a poll whose client went away leaves; the statement still answers the others.
            rows = await asyncio.shield(flight.rows)
        except OperationalError as error:  # one error, many waiters: each raises its own
            raise OperationalError(error.statement, None, error.orig) from error.orig
        answers = flight.answers
        if index not in answers:
            answers[index] = answer(rows[index])
        return answers[index]

    async def _fly(self, kind: tuple, flight: _Flight) -> None:
        def depart() -> dict[str, Any]:
            del self._boarding[kind]  # from now on, polls of this kind board the next statement
            return flight.parameters()

        try:
            async with self._in_the_air.setdefault(kind, asyncio.Lock()):
                rows = await self._lend_translated(self._shared_sql(*kind), depart, _fetch_all)
        except BaseException as error:
            if self._boarding.get(kind) is flight:
                del self._boarding[kind]
            if isinstance(error, asyncio.CancelledError):
                flight.rows.cancel()
                raise
            flight.rows.set_exception(error)
            flight.rows.exception()  # read here, so a statement whose polls all left logs nothing
            return
        answers: list[tuple] = [()] * len(flight.polls)
        for row in rows:
            answers[row[0] - 1] = row[1:]
        flight.rows.set_result(answers)

    def _shared_sql(self, template: str | None, entity_types: tuple[str, ...] | None) -> str:
        """One row per poll, in the polls' order (``q.ord``): the picture's inputs, then the principal's columns.

        The picture's probes do not depend on the poll, so PostgreSQL runs them once per
        statement (InitPlans); only the city's existence and the principal are per row."""
        key = (template, entity_types)
        statements = self.__dict__.setdefault("_shared_statements", {})
        if key not in statements:
            columns, sources = ["q.ord"], [_POLLS]
            if entity_types is not None:
                columns.append("p.*")
                sources.append(f"CROSS JOIN LATERAL ({self._picture_sql(entity_types, city_id='q.city_id')}) AS p")
            if template is not None:
                columns.append("u.*")
                sources.append(
                    f"LEFT JOIN LATERAL ({self._sql(template, id='q.id', sid='q.sid', jti='q.jti')}) AS u ON true"
                )
            statements[key] = f"SELECT {', '.join(columns)} {' '.join(sources)}"
        return statements[key]

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _discard(conn)


# The polls a shared statement answers, one row each, numbered in the order they boarded.
_POLLS = (
    "FROM unnest(%(ids)s::uuid[], %(sids)s::uuid[], %(jtis)s::text[], %(cities)s::uuid[])"
    " WITH ORDINALITY AS q(id, sid, jti, city_id, ord)"
)


class _Flight:
    """A shared statement not yet sent, and the polls that boarded it (the same poll twice is asked once)."""

    __slots__ = ("answers", "now", "polls", "rows", "task")

    def __init__(self) -> None:
        self.polls: dict[tuple, int] = {}
        self.answers: dict[int, Any] = {}
        self.now: datetime | None = None
        self.rows: asyncio.Future[list[tuple]] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task | None = None  # held, so the loop's weak reference is not the only one

    def board(self, poll: tuple, now: datetime | None) -> int:
        # The latest time any poll asked about: the statement reads the database after all of them arrived.
        if now is not None and (self.now is None or now > self.now):
            self.now = now
        return self.polls.setdefault(poll, len(self.polls))

    def parameters(self) -> dict[str, Any]:
        ids, sids, jtis, cities = (list(column) for column in zip(*self.polls, strict=True))
        return {"ids": ids, "sids": sids, "jtis": jtis, "cities": cities, "now": self.now}


async def _fetch_one(conn: Any, sql: str, params: dict[str, Any]) -> tuple | None:
    cursor = await conn.execute(sql, params, binary=True)
    return await cursor.fetchone()


async def _fetch_all(conn: Any, sql: str, params: dict[str, Any]) -> list[tuple]:
    cursor = await conn.execute(sql, params, binary=True)
    return await cursor.fetchall()


def _dropped_by_server(error: BaseException, conn: Any) -> bool:
    """The connection died under the query (a server restart, an idle timeout), not the query failed."""
    import psycopg

    return isinstance(error, psycopg.OperationalError) and conn.broken


async def _discard(conn: Any) -> None:
    try:
        await conn.close()
    except Exception:  # noqa: BLE001,S110 - already unusable; closing is a courtesy to the server
        pass


class ConnectionHotReads(HotReads):
    """Reads through a given SQLAlchemy connection: tests, whose data lives in an open transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.named = connection.dialect.name == "sqlite"

    async def _fetch(self, sql: str, params: dict[str, Any]) -> tuple | None:
        cursor = self._connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchone()
        finally:
            cursor.close()


def hot_reads_for(url: str) -> HotReads:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqliteHotReads(parsed.database or ":memory:")
    return PostgresHotReads(url)
