"""Loading the principal behind a verified token, on every authenticated request.

This is the hottest query in the service, so it bypasses the ORM: one indexed read
that also answers whether the login was revoked and whether the token was. SQLite
runs it on the event loop over its own read-only connection (a local read costs less
than a threadpool hop); PostgreSQL runs it on an async psycopg pool, so the event loop
never blocks and no threadpool thread ever waits for a connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

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


def _sql(template: str, style: str) -> str:
    names = {"sid": "sid", "jti": "jti", "id": "id"}
    if style == "named":
        return template.format(**{k: f":{v}" for k, v in names.items()})
    return template.format(**{k: f"%({v})s" for k, v in names.items()})


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
    scopes: list[str]
    live: bool
    organization_id: uuid.UUID
    organization_name: str
    organization_kind: str
    token_revoked: bool


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
    scopes = row[2]
    if isinstance(scopes, str):
        scopes = json.loads(scopes)
    return ServiceAccountRow(
        client_id=row[0],
        name=row[1],
        scopes=list(scopes or []),
        live=bool(row[3]),
        organization_id=_as_uuid(row[4]),
        organization_name=row[5],
        organization_kind=row[6],
        token_revoked=bool(row[7]),
    )


class PrincipalStore(Protocol):
    async def user(self, user_id: uuid.UUID, session_id: uuid.UUID | None, jti: str) -> UserRow | None: ...

    async def service_account(self, account_id: uuid.UUID, jti: str) -> ServiceAccountRow | None: ...

    async def close(self) -> None: ...


class SqlitePrincipalStore:
    """One read-only connection, used only from the event loop thread."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._user_sql = _sql(_USER_SQL, "named")
        self._account_sql = _sql(_SERVICE_ACCOUNT_SQL, "named")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    async def user(self, user_id: uuid.UUID, session_id: uuid.UUID | None, jti: str) -> UserRow | None:
        params = {"id": user_id.hex, "sid": session_id.hex if session_id else None, "jti": jti}
        return _user_row(self._connection().execute(self._user_sql, params).fetchone())

    async def service_account(self, account_id: uuid.UUID, jti: str) -> ServiceAccountRow | None:
        params = {"id": account_id.hex, "jti": jti, "sid": None}
        return _service_account_row(self._connection().execute(self._account_sql, params).fetchone())

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresPrincipalStore:
    def __init__(self, url: str, *, max_size: int = 8) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self._conninfo = parsed.render_as_string(hide_password=False)
        self._max_size = max_size
        self._pool = None
        self._lock = asyncio.Lock()
        self._user_sql = _sql(_USER_SQL, "pyformat")
        self._account_sql = _sql(_SERVICE_ACCOUNT_SQL, "pyformat")

    async def _get_pool(self):  # noqa: ANN202
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    from psycopg_pool import AsyncConnectionPool

                    pool = AsyncConnectionPool(
                        self._conninfo,
                        min_size=1,
                        max_size=self._max_size,
                        kwargs={"autocommit": True, "prepare_threshold": 0},
                        open=False,
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool

    async def _fetch(self, sql: str, params: dict) -> tuple | None:
        pool = await self._get_pool()
        async with pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()

    async def user(self, user_id: uuid.UUID, session_id: uuid.UUID | None, jti: str) -> UserRow | None:
        return _user_row(await self._fetch(self._user_sql, {"id": user_id, "sid": session_id, "jti": jti}))

    async def service_account(self, account_id: uuid.UUID, jti: str) -> ServiceAccountRow | None:
        return _service_account_row(await self._fetch(self._account_sql, {"id": account_id, "jti": jti, "sid": None}))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class ConnectionPrincipalStore:
    """Reads through a given SQLAlchemy connection: tests, whose data lives in an open transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._named = connection.dialect.name == "sqlite"

    def _run(self, template: str, params: dict) -> tuple | None:
        dbapi = self._connection.connection.dbapi_connection
        cursor = dbapi.cursor()
        try:
            cursor.execute(_sql(template, "named" if self._named else "pyformat"), params)
            return cursor.fetchone()
        finally:
            cursor.close()

    def _key(self, value: uuid.UUID | None) -> Any:
        if value is None:
            return None
        return value.hex if self._named else value

    async def user(self, user_id: uuid.UUID, session_id: uuid.UUID | None, jti: str) -> UserRow | None:
        params = {"id": self._key(user_id), "sid": self._key(session_id), "jti": jti}
        return _user_row(self._run(_USER_SQL, params))

    async def service_account(self, account_id: uuid.UUID, jti: str) -> ServiceAccountRow | None:
        params = {"id": self._key(account_id), "jti": jti, "sid": None}
        return _service_account_row(self._run(_SERVICE_ACCOUNT_SQL, params))

    async def close(self) -> None:
        return None


def principal_store_for(url: str) -> PrincipalStore:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqlitePrincipalStore(parsed.database or ":memory:")
    return PostgresPrincipalStore(url)
