"""Engines and the request's unit of work.

SQLite: WAL (readers never wait for the writer), foreign keys on, a busy timeout,
and write transactions that start with ``BEGIN IMMEDIATE`` so two writers queue on
the busy timeout instead of failing when one upgrades a read lock.
PostgreSQL: psycopg 3, a pool sized to the work it serves and no overflow
(overflow connections would be opened and closed under load).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from sqlalchemy import Engine, Uuid, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from aidaccess.db.types import SQLiteUuid, json_loads

WRITE_OPTION = "aidaccess_write"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# How long a write waits for its turn in its admission place before giving the place up. In one
# process under load the wait is one other write (~2 ms, nothing else running); longer means the
# writer ahead waits on a lock held elsewhere (another process, the audit chain), and the reads
# must not wait with it. A write keeping its place in normal waits is what keeps writes from
# falling behind reads (mix p99 at 64 connections, SQLite: 93-125 ms keeping it, 274-403 giving it up at once).
TURN_PATIENCE_SECONDS = 0.05


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
    # (an audit entity type, a city) walks the whole history. The hot version probe fell
    # into exactly this (0.7 -> 270 ms at 1,000,000 events, bench/bench_growth.py); the ORM's
    # statements take parameters like it. Planning each time costs a fraction of a ms.
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True, json_deserializer=json_loads,
                         connect_args={"prepare_threshold": None})


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
        self, *, impatient: Callable[[], AbstractAsyncContextManager] | None = None, patience: float = TURN_PATIENCE_SECONDS
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
        return Session(self._write_engine if write else self.engine, expire_on_commit=False)

    def dispose(self) -> None:
        self.engine.dispose()
