"""PostgreSQL connections as the app opens them: read-only units of work, the ping of idle
connections, and the planner settings every connection carries."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from auth.roles import OrganizationKind, Role
from db import engine as engine_module
from db.engine import Database
from db.hot import PostgresHotReads
from tests.conftest import PG_URL, plan_nodes

postgres_only = pytest.mark.skipif(not PG_URL, reason="PostgreSQL's connections")


@pytest.fixture
def database(fresh_database):
    from db import migrations

    migrations.upgrade(fresh_database.url)
    database = Database(fresh_database.url, pool_size=2)
    yield database
    database.dispose()


def _backend_pid(session) -> int:
    return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


@postgres_only
def test_a_read_only_unit_of_work_holds_no_transaction_open(database):
    session = database.session(write=False)
    try:
        pid = _backend_pid(session)
        session.execute(text("SELECT count(*) FROM city")).scalar_one()
        # Seen from another connection: the reader's backend is idle, not idle in a transaction.
        with database.engine.connect() as other:
            state = other.execute(
                text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one()
        assert state == "idle"
    finally:
        session.close()


@postgres_only
def test_a_read_only_unit_of_work_refuses_to_write(database):
    name = f"refused-{uuid.uuid4().hex[:8]}"
    session = database.session(write=False)
    try:
        with pytest.raises(RuntimeError, match="may only query"):
            session.execute(
                text(
                    "INSERT INTO organization (id, name, name_key, kind, created_at, updated_at) VALUES (:id, :name, :name, 'un_agency', now(), now())"
                ),
                {"id": uuid.uuid4(), "name": name},
            )
    finally:
        session.close()
    with database.engine.connect() as check:
        assert (
            check.execute(text("SELECT count(*) FROM organization WHERE name = :name"), {"name": name}).scalar_one()
            == 0
        )


@postgres_only
def test_a_writing_unit_of_work_still_commits_or_rolls_back_as_one(database):
    names = [f"kept-{uuid.uuid4().hex[:8]}", f"dropped-{uuid.uuid4().hex[:8]}"]
    insert = text(
        "INSERT INTO organization (id, name, name_key, kind, created_at, updated_at) VALUES (:id, :name, :name, 'un_agency', now(), now())"
    )
    for name, commit in zip(names, (True, False), strict=True):
        session = database.session(write=True)
        session.execute(insert, {"id": uuid.uuid4(), "name": name})
        session.commit() if commit else session.rollback()
        session.close()
    with database.engine.connect() as check:
        found = (
            check.execute(
                text("SELECT name FROM organization WHERE name IN :names").bindparams(
                    bindparam("names", expanding=True)
                ),
                {"names": names},
            )
            .scalars()
            .all()
        )
    assert found == [names[0]]


def _pooled_record(database):
    """The pool's one idle connection record (pool_size 2, one connection opened so far)."""
    pool = database.engine.pool
    records = list(pool._pool.queue)
    assert len(records) == 1
    return records[0]


@postgres_only
def test_a_connection_back_from_a_unit_of_work_just_now_is_lent_without_a_ping(database, monkeypatch):
    with database.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    pings = []
    real_ping = database.engine.dialect.do_ping
    monkeypatch.setattr(database.engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    with database.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert pings == []


@postgres_only
def test_an_idle_connection_the_server_dropped_is_replaced_before_it_is_lent(database, monkeypatch):
    with database.engine.connect() as connection:
        first = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # Idle for longer than PING_IDLE_SECONDS: its return time moved back, instead of waiting that long.
    record = _pooled_record(database)
    record.info["returned_at"] -= engine_module.PING_IDLE_SECONDS + 1
    admin = create_engine(database.url, poolclass=NullPool)  # not one of the pool's own connections
    try:
        with admin.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
    finally:
        admin.dispose()
    pings = []
    real_ping = database.engine.dialect.do_ping
    monkeypatch.setattr(database.engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    # The terminated backend is gone from the server (or dies as its ping arrives); either way the
    # ping fails and the unit of work gets a new connection instead of an error.
    session = database.session(write=False)
    try:
        second = _backend_pid(session)
    finally:
        session.close()
    assert len(pings) == 1
    assert second != first


def test_the_planner_options_put_ours_first_and_keep_the_operators():
    assert engine_module.postgresql_options("postgresql+psycopg://u@h/db") == "-c random_page_cost=1.1"
    given = "postgresql+psycopg://u@h/db?options=-c%20work_mem%3D8MB"
    assert engine_module.postgresql_options(given, "-c x=1") == "-c random_page_cost=1.1 -c x=1 -c work_mem=8MB"


@postgres_only
def test_every_connection_of_the_app_plans_for_memory_and_keeps_the_urls_options(fresh_database):
    url = (
        make_url(fresh_database.url)
        .update_query_dict({"options": "-c work_mem=7MB"})
        .render_as_string(hide_password=False)
    )
    database = Database(url, pool_size=1)
    hot = PostgresHotReads(url, max_size=1)

    async def hot_settings():
        try:
            return await hot._fetch(
                "SELECT current_setting('random_page_cost'), current_setting('plan_cache_mode'), current_setting('work_mem')",
                {},
            )
        finally:
            await hot.close()

    try:
        for write in (False, True):
            session = database.session(write=write)
            try:
                row = session.execute(
                    text("SELECT current_setting('random_page_cost'), current_setting('work_mem')")
                ).one()
            finally:
                session.close()
            assert tuple(row) == ("1.1", "7MB")
        assert asyncio.run(hot_settings()) == ("1.1", "force_generic_plan", "7MB")
    finally:
        database.dispose()


@postgres_only
def test_a_page_of_an_organisations_requests_reads_its_index_in_order_on_a_table_never_analysed(
    world, client, connection
):
    """3,000 requests of one organisation on a table the planner has no statistics of since they
    came (autovacuum off, or before its first run): the first page reads 50 rows from
    ix_access_request_org_id in order, not all 3,000 and a sort, as it did with the planner's
    default random_page_cost."""
    from sqlalchemy import event

    from tests.test_access_requests import _body

    coordinator = world.headers(world.user(Role.coordinator))
    city = client.post(
        "/v1/cities",
        json={
            "name": "Madaya",
            "pcode": "C2450",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.69,
            "longitude": 36.10,
        },
        headers=coordinator,
    ).json()["id"]
    partner = world.headers(world.user(Role.partner, world.org(OrganizationKind.un_agency, "WFP")))
    created = client.post("/v1/access-requests", json=_body(city), headers=partner)
    assert created.status_code == 201, created.text
    connection.execute(
        text(
            "INSERT INTO access_request SELECT (json_populate_record(r, json_build_object('id', gen_random_uuid()))).* "
            "FROM access_request r, generate_series(1, 3000) WHERE r.id = :id"
        ),
        {"id": uuid.UUID(created.json()["id"])},
    )

    seen = []

    def keep(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "FROM access_request WHERE access_request.organization_id" in " ".join(statement.split()):
            seen.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", keep)
    try:
        page = client.get("/v1/access-requests", params={"limit": 50}, headers=partner)
    finally:
        event.remove(connection, "before_cursor_execute", keep)
    assert page.status_code == 200 and len(page.json()["items"]) == 50
    assert len(seen) == 1
    statement, parameters = seen[0]

    def plan() -> list[dict]:
        explained = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
        return plan_nodes(explained[0]["Plan"])

    nodes = plan()
    assert [n.get("Index Name") for n in nodes if n["Node Type"] == "Index Scan"] == ["ix_access_request_org_id"]
    assert not {"Sort", "Bitmap Heap Scan"} & {n["Node Type"] for n in nodes}
    # The same statement with PostgreSQL's default cost of a random page: the plan this test guards against.
    with connection.begin_nested() as default_costs:
        connection.exec_driver_sql("SET LOCAL random_page_cost = 4")
        assert {"Sort", "Bitmap Heap Scan"} <= {n["Node Type"] for n in plan()}
        default_costs.rollback()
