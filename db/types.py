"""Column types shared by every table."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import UTC, datetime

import orjson
from sqlalchemy import DateTime, Uuid
from sqlalchemy.types import TypeDecorator

_UUID, _new, _set, _SAFE_UNKNOWN = uuid.UUID, object.__new__, object.__setattr__, uuid.SafeUUID.unknown
_from_iso = datetime.fromisoformat


def _as_utc(value: datetime) -> datetime:
    """A naive value is UTC (SQLite keeps no offset); an aware one is converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A run of 19 digits may be an integer past 64 bits, which orjson reads as a float.
_LONG_NUMBER = re.compile(r"\d{19}")


def json_loads(text: str | bytes) -> object:
    """A JSON column's value as ``json.loads`` reads it (both engines': SQLite's text, psycopg's JSONB),
    by orjson where the two agree: each request row of a list carries two, and ``json.loads`` was a
    twentieth of a list of 50's CPU. Where they may not (NaN, which orjson refuses; integers past 64
    bits, which it reads as floats): ``json.loads``."""
    if isinstance(text, bytes):
        text = text.decode()
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both engines.

    SQLite keeps no offset, so values are normalised to UTC on the way in and marked
    UTC on the way out; a naive value is a bug upstream and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        return None if value is None else _as_utc(value)

    def result_processor(self, dialect, coltype):  # noqa: ANN001, ANN201
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # SQLite hands back the text SQLAlchemy wrote ("2026-11-24 09:30:00.000000"): the same
        # parse as SQLAlchemy's, and UTC, in one call instead of its reader and then this decorator's.
        def process(value: str | None) -> datetime | None:
            return None if value is None else _as_utc(_from_iso(value))

        return process


class SQLiteUuid(Uuid):
    """``Uuid`` as SQLite keeps it (32 hex digits), read back without ``uuid.UUID.__init__``'s
    parsing: a list of 50 requests reads ~350 ids, and that parsing was its largest cost.
    Anything else (written by other means: dashes, braces, a sign) takes the checked constructor."""

    def result_processor(self, dialect, coltype):  # noqa: ANN001, ANN201
        if not self.as_uuid:
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> uuid.UUID | None:
            if value is None:
                return None
            if len(value) != 32 or value[0] == "-":
                return _UUID(value)
            parsed = _new(_UUID)
            _set(parsed, "int", int(value, 16))
            _set(parsed, "is_safe", _SAFE_UNKNOWN)
            return parsed

        return process


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7), so ids sort by creation for keyset paging."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = (rand >> 68) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = ((ms & ((1 << 48) - 1)) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)
