"""Engines and the request's unit of work.

SQLite: WAL (readers never wait for the writer), foreign keys on, a busy timeout,
and write transactions that start with ``BEGIN IMMEDIATE`` so two writers queue on
the busy timeout instead of failing when one upgrades a read lock.
PostgreSQL: psycopg 3, a pool sized to the work it serves and no overflow
(overflow connections would be opened and closed under load).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from sqlalchemy import Engine, Uuid, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlmodel import Session

from db.migrations import current_revision, head_revision
from db.types import SQLiteUuid, json_loads

WRITE_OPTION = "aidaccess_write"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# How long a write waits for its turn in its admission place before giving the place up. In one
# process the wait is one other write; longer means the writer ahead waits on a lock held
# elsewhere (another process, the audit chain), and the reads must not wait with it. A write that
# keeps its place through normal waits does not fall behind the reads.
TURN_PATIENCE_SECONDS = 0.05
# PostgreSQL: a pooled connection back in the pool for longer than this is pinged before it is
# lent again (a server restart, an idle timeout on the way may have dropped it); one back sooner
# is lent as it is. Pinging every checkout (pool_pre_ping) was a round trip per unit of work.
PING_IDLE_SECONDS = 1.0


# Planner settings for every connection of the app's to PostgreSQL. random_page_cost 1.1, not the
# default 4 (a disk's seek): the data is in memory or on SSD. With 4, on a table not analysed since
# it grew (autovacuum off, or before its first run), a page of an organisation's requests was a
# bitmap scan of all of the organisation's rows and a sort, growing with them, instead of reading
# its first 50 rows from the index in order.
POSTGRESQL_PLANNER_OPTIONS = "-c random_page_cost=1.1"


def postgresql_options(url: str, *extra: str) -> str:
    """The ``options`` a PostgreSQL connection of the app's sends: the URL's own, if it has any, last,
    so an operator's setting wins over ours."""
    given = make_url(url).query.get("options")
    given = given[-1] if isinstance(given, tuple) else given
    return " ".join([POSTGRESQL_PLANNER_OPTIONS, *extra, *([given] if given else [])])


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            json_deserializer=json_loads,
            pool_size=pool_size,
            max_overflow=0,
        )
        _configure_sqlite(engine)
        return engine
    # No server-side prepared statements (psycopg prepares after 5 runs): PostgreSQL may
    # then switch to a generic plan that cannot see the parameters, which for a skewed one
    # (an audit entity type, a city) walks the whole history; the hot version probe fell into
    # exactly this (docs/performance.md, "Growth"). Planning each time costs far less.
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        json_deserializer=json_loads,
        connect_args={"prepare_threshold": None, "options": postgresql_options(url)},
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, for connections idle longer than PING_IDLE_SECONDS only. Under load every
    connection is back within milliseconds, and its ping was one round trip in every unit of work
    (of a create's eight). A connection dropped within the second before it is lent fails that
    unit of work as a drop during it would (503, nothing written); the drop invalidates the pool,
    so the connections lent after it are new ones."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _lent(dbapi_connection, record, _proxy) -> None:
        # record.info lives as long as its DBAPI connection: a new connection carries no time and is not pinged.
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool invalidates this connection and lends another (a new one, if need be).
            raise DisconnectionError("the pooled connection did not answer its ping") from exc


def _configure_sqlite(engine: Engine) -> None:
    # This engine's dialect reads ids with SQLiteUuid (its own copy of the table: others keep theirs).
    engine.dialect.colspecs = {**engine.dialect.colspecs, Uuid: SQLiteUuid}

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (savepoints need it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _read_only(engine: Engine) -> Engine:
    """PostgreSQL, for units of work that only read: autocommit, so no BEGIN and no ROLLBACK around
    their statements (two round trips of a list's five). Nothing is lost by it: at READ COMMITTED
    each statement of a transaction reads its own snapshot anyway. A statement that is not a query
    is refused: in autocommit it would commit on its own, not with the unit of work."""
    reading = engine.execution_options(isolation_level="AUTOCOMMIT")

    @event.listens_for(reading, "before_cursor_execute")
    def _queries_only(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip()[:6].upper() != "SELECT":
            raise RuntimeError(f"a read-only unit of work may only query: {statement[:60]!r}")

    return reading


def default_writers(pool_size: int) -> int:
    """Half the pool, at least one. Measured (PostgreSQL, bench_load's saturated mix, 1 worker, pool
    of 20, alternating runs): 10 writers against 20 halved the lists' latency at the same throughput;
    5 halved it too but gave about a tenth less throughput (less of the writes' work overlapped)."""
    return max(1, pool_size // 2)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class Database:
    """An engine and the gate that keeps request units of work within its pool."""

    def __init__(self, url: str, *, pool_size: int = 20, writers: int | None = None) -> None:
        self.url = url
        self.pool_size = pool_size
        self.engine = make_engine(url, pool_size=pool_size)
        self._write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self._read_engine = self.engine if is_sqlite(self.engine) else _read_only(self.engine)
        self._slots: asyncio.Semaphore | None = None
        self._writer_slots: asyncio.Semaphore | None = None
        self.writers = 1 if is_sqlite(self.engine) else min(pool_size, writers or default_writers(pool_size))
        self.writes_waiting = 0  # for their turn (writer_turn); a gauge in /metrics

    @property
    def slots(self) -> asyncio.Semaphore:
        # Created on first use, inside the running event loop.
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.pool_size)
        return self._slots

    @property
    def writer_slots(self) -> asyncio.Semaphore:
        """Units of work that write, at most ``writers`` at once; the rest queue here, in order,
        before they take a slot. Every write appends to the one audit chain, so writes take
        turns in the database anyway (SQLite: its one writer; PostgreSQL: the chain's lock).
        SQLite: one, so writers queue here instead of in SQLite's busy handler, which sleeps in
        growing steps (up to 100 ms) and turns contention into seconds of tail latency.
        PostgreSQL: half the pool by default, so the part of a write before the chain's lock still
        overlaps, while writers waiting for that lock (behind one that is slow, or stuck) can never
        hold every slot and stop the reads."""
        if self._writer_slots is None:
            self._writer_slots = asyncio.Semaphore(self.writers)
        return self._writer_slots

    @asynccontextmanager
    async def writer_turn(
        self,
        *,
        impatient: Callable[[], AbstractAsyncContextManager] | None = None,
        patience: float = TURN_PATIENCE_SECONDS,
    ) -> AsyncIterator[None]:
        """One of the ``writers`` turns, waited for in order on the event loop; past ``patience``
        seconds, inside ``impatient()`` (the API's: out of the request's admission place)."""
        slots = self.writer_slots
        self.writes_waiting += 1
        try:
            if impatient is None or not slots.locked():
                await slots.acquire()
            else:
                acquiring = asyncio.ensure_future(slots.acquire())  # keeps its place in line throughout
                try:
                    try:
                        await asyncio.wait_for(asyncio.shield(acquiring), patience)
                    except TimeoutError:
                        async with impatient():
                            await acquiring
                except BaseException:
                    if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
                        slots.release()  # the turn came, then the wait was cancelled: give it back
                    else:
                        acquiring.cancel()
                    raise
        finally:
            self.writes_waiting -= 1
        try:
            yield
        finally:
            slots.release()

    def session(self, *, write: bool) -> Session:
        return Session(self._write_engine if write else self._read_engine, expire_on_commit=False)

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): the database answers and its schema is at the migrations' head (the head's
        name when ready). Any failure to connect means not ready; its type is enough to act on."""
        try:
            with self.engine.connect() as connection:
                current = current_revision(connection)
        except Exception as exc:
            return False, f"database unreachable ({type(exc).__name__})"
        head = head_revision()
        if current != head:
            return False, f"database schema at {current or 'nothing'}, code expects {head}: run 'aidaccess db upgrade'"
        return True, head

    def dispose(self) -> None:
        self.engine.dispose()
