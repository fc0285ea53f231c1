"""Column types: what SQLite hands back is read into the values the rest of the code expects."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Uuid, cast, literal_column, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from db.engine import make_engine
from db.models import JSONType
from db.types import SQLiteUuid, UTCDateTime, json_loads, uuid7


def _reader(type_, dialect):  # noqa: ANN001, ANN202
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def test_a_sqlite_engine_reads_ids_with_the_fast_reader_and_others_do_not(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'types.sqlite3'}")
    try:
        assert isinstance(Uuid().dialect_impl(engine.dialect), SQLiteUuid)
        # Only this engine's dialect: a plain SQLite dialect keeps SQLAlchemy's own reader.
        assert not isinstance(Uuid().dialect_impl(sqlite.dialect()), SQLiteUuid)
    finally:
        engine.dispose()


@pytest.mark.parametrize("value", [uuid7(), uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)])
def test_sqlite_ids_read_back_equal_hash_alike_and_print_alike(value):
    read = _reader(SQLiteUuid(), sqlite.dialect())(value.hex)
    assert type(read) is uuid.UUID
    assert read == value and hash(read) == hash(value) and {value: 1}[read] == 1
    assert str(read) == str(value) and read.hex == value.hex and read.version == value.version
    assert read.is_safe == uuid.SafeUUID.unknown


def test_sqlite_ids_written_by_other_means_take_the_checked_reader():
    reader = _reader(SQLiteUuid(), sqlite.dialect())
    value = uuid.uuid4()
    assert reader(str(value)) == value  # 36 characters, with dashes
    assert reader("{" + str(value) + "}") == value
    assert reader(None) is None
    for garbage in ("not an id", "-" + "f" * 31, "g" * 32):
        with pytest.raises(ValueError):
            reader(garbage)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-11-24 09:30:00.123456", datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)),
        ("2026-11-24 09:30:00", datetime(2026, 11, 24, 9, 30, tzinfo=UTC)),
        ("2026-11-24T09:30:00.000001", datetime(2026, 11, 24, 9, 30, 0, 1, tzinfo=UTC)),
        ("2026-11-24 11:30:00+02:00", datetime(2026, 11, 24, 9, 30, tzinfo=UTC)),
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
    ],
)
def test_sqlite_times_read_back_as_aware_utc(stored, expected):
    read = _reader(UTCDateTime(), sqlite.dialect())(stored)
    assert read == expected and read.tzinfo is UTC


def test_sqlite_times_read_back_what_was_written():
    dialect = sqlite.dialect()
    written = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    value = datetime(2026, 11, 24, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=3)))
    assert _reader(UTCDateTime(), dialect)(written(value)) == value
    assert _reader(UTCDateTime(), dialect)(None) is None


def test_postgresql_times_keep_the_decorators_reading():
    reader = _reader(UTCDateTime(), postgresql.dialect())
    eastern = datetime(2026, 11, 24, 4, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert reader(eastern) == eastern and reader(eastern).tzinfo is UTC
    assert reader(datetime(2026, 11, 24, 9, 30)).tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "Lead", "phone": "+963 11 000"}',
        '[{"name": "Checkpoint 3", "lat": 33.51, "lon": 36.29}]',
        "[]",
        "{}",
        '{"a": 1, "a": 2}',
        "123456789012345678901234567890",
        "-9223372036854775809",
        "9223372036854775807",
        '{"trucks": 10000000000000000000}',
        "[NaN, Infinity, -Infinity]",
        "[1e400]",
        '"\\ud800"',
        "0.1234567890123456789",
    ],
)
def test_json_columns_read_back_as_json_loads_reads_them(text):
    """SQLite's JSON columns are read by orjson where it agrees with json.loads, by json.loads where it may not."""
    read = json_loads(text)
    assert repr(read) == repr(json.loads(text))
    assert type(read) is type(json.loads(text))


@pytest.mark.parametrize("value", [{"n": 123456789012345678901234567890}, {"n": 1.5, "s": "x", "l": [None, True]}])
def test_json_columns_read_back_what_was_written(connection, value):
    """On either engine: SQLite hands back the text, psycopg decodes PostgreSQL's JSONB with the
    loader the engine gives it."""
    text = literal_column(f"'{json.dumps(value)}'")  # as it is stored (a bound value would be encoded again)
    column = type_coerce(text, JSONType) if connection.dialect.name == "sqlite" else cast(text, JSONType)
    read = connection.execute(select(column)).scalar_one()
    assert read == value
    assert {key: type(item) for key, item in read.items()} == {key: type(item) for key, item in value.items()}
