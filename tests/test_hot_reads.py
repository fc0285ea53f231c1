"""The hot reads on every poll: the statement that answers a poll's two questions at once,
and PostgreSQL's connection lender."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import create_engine, text

from aidaccess.clock import utcnow
from auth.roles import OrganizationKind, Role, Scope
from db.hot import PostgresHotReads
from tests.conftest import PG_URL, plan_nodes
from workflow import access

TYPES = access.PICTURE_ENTITY_TYPES


def _claims(services, headers: dict[str, str]):
    return services.codec.decode_access(headers["Authorization"].removeprefix("Bearer "))


def _both_ways(hot, kind: str, claims, city_id):
    """The combined statement's answer, and the separate statements' answer, at the same instant."""
    now = utcnow()
    if kind == "user":
        combined = hot.user_and_picture_inputs(claims.subject_id, claims.session_id, claims.jti, TYPES, now, city_id)
        principal = hot.user(claims.subject_id, claims.session_id, claims.jti)
    else:
        combined = hot.service_account_and_picture_inputs(claims.subject_id, claims.jti, TYPES, now, city_id)
        principal = hot.service_account(claims.subject_id, claims.jti)

    async def run():
        return await combined, (await principal, await hot.picture_inputs(TYPES, now, city_id))

    return asyncio.run(run())


def _new_city(client, headers: dict[str, str]) -> uuid.UUID:
    city = client.post(
        "/v1/cities",
        json={
            "name": "Hotville",
            "name_ar": "تست",
            "aliases": [],
            "pcode": f"C{uuid.uuid4().int % 900000 + 100000}",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.5,
            "longitude": 36.3,
            "population": 10,
        },
        headers=headers,
    )
    assert city.status_code == 201, city.text
    return uuid.UUID(city.json()["id"])


def test_one_statement_answers_a_poll_as_the_two_separate_statements_do(world, client, services):
    """Who the token names (live, logged out, revoked, deactivated, unknown; a person or a
    service account) and the picture's inputs (all cities, one city, an unknown city)."""
    cities = [None, _new_city(client, world.headers(world.user(Role.coordinator))), uuid.uuid4()]
    organization = world.org(OrganizationKind.ngo)
    partner = world.user(Role.partner, organization)
    account = world.service_account(organization, [Scope.read])
    admin = world.headers(world.user(Role.admin))

    live_user = _claims(services, world.headers(partner))
    revoked = world.login(partner)
    assert client.post("/v1/auth/revoke", data={"token": revoked["access_token"]}).status_code == 200
    revoked_user = _claims(services, {"Authorization": f"Bearer {revoked['access_token']}"})
    live_account = _claims(services, world.service_headers(account))
    seen = []
    for kind, claims in (("user", live_user), ("user", revoked_user), ("service_account", live_account)):
        for city_id in cities:
            combined, separate = _both_ways(services.hot, kind, claims, city_id)
            assert combined == separate
            seen.append(combined)
    # The cases differ where they should, so equality above compared something.
    assert seen[0][0].token_revoked is False and seen[3][0].token_revoked is True
    assert [inputs.city_exists for _, inputs in seen[:3]] == [
        False,
        True,
        False,
    ]  # no city asked for, this one, an unknown one
    assert seen[6][0].live is True

    unknown = dataclasses.replace(live_user, subject_id=uuid.uuid4())
    combined, separate = _both_ways(services.hot, "user", unknown, None)
    assert combined == separate and combined[0] is None

    assert client.patch(f"/v1/users/{partner.id}", json={"active": False}, headers=admin).status_code == 200
    combined, separate = _both_ways(services.hot, "user", live_user, None)
    assert combined == separate and combined[0].active is False

    assert client.delete(f"/v1/service-accounts/{account['id']}", headers=admin).status_code == 204
    combined, separate = _both_ways(services.hot, "service_account", live_account, cities[1])
    assert combined == separate and combined[0].live is False


# ---- PostgreSQL's connection lender ---------------------------------------------------

postgres_only = pytest.mark.skipif(not PG_URL, reason="the lender is PostgreSQL's")


def _server(sql: str, **params):  # noqa: ANN202
    """One statement on a connection of the test's own, beside the lender's."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        admin.dispose()


async def _until(sql: str, **params) -> None:
    """Polls the server's own state until the statement says true (yielding between looks)."""
    while not _server(sql, **params):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def _lender(url: str, size: int) -> AsyncIterator[PostgresHotReads]:
    hot = PostgresHotReads(url, max_size=size)
    try:
        yield hot
    finally:
        await hot.close()


async def _pid(hot: PostgresHotReads) -> int:
    """The server process behind the connection the lender lends next."""
    return (await hot._fetch("SELECT pg_backend_pid()", {}))[0]


@postgres_only
def test_the_lender_never_opens_more_connections_than_its_size(database_url):
    async def run():
        async with _lender(database_url, 3) as hot:
            # Three pass the semaphore and connect before any returns; the other seventeen wait.
            rows = await asyncio.gather(*[hot._fetch("SELECT pg_backend_pid()", {}) for _ in range(20)])
            return {row[0] for row in rows}, len(hot._idle)

    pids, idle = asyncio.run(run())
    assert len(pids) == 3  # all three used, never a fourth
    assert idle == 3


@postgres_only
def test_a_connection_the_server_dropped_is_replaced_without_failing_the_read(database_url):
    async def run():
        async with _lender(database_url, 1) as hot:
            first = await _pid(hot)
            assert _server("SELECT pg_terminate_backend(:pid)", pid=first)
            # Terminated means gone from pg_stat_activity: wait on that state, not on a clock.
            await _until("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid", pid=first)
            second = await _pid(hot)
            return first, second

    first, second = asyncio.run(run())
    assert second != first


SLOW = "SELECT pg_sleep(30), 'interrupted'"


@postgres_only
def test_a_failed_or_interrupted_query_never_lends_its_connection_again(database_url):
    import psycopg

    async def run():
        async with _lender(database_url, 1) as hot:
            before = await _pid(hot)
            with pytest.raises(psycopg.errors.DivisionByZero):
                await hot._fetch("SELECT 1 / 0", {})
            after_error = await _pid(hot)

            # Interrupted mid-query: cancelled once the server shows the statement running.
            task = asyncio.create_task(hot._fetch(SLOW, {}))
            await _until(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = :query AND state = 'active'", query=SLOW
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            after_cancel = await _pid(hot)
            return before, after_error, after_cancel, len(hot._idle)

    before, after_error, after_cancel, idle = asyncio.run(run())
    assert len({before, after_error, after_cancel}) == 3
    assert idle == 1


# ---- polls in flight together share a statement (PostgreSQL) --------------------------


class _SharedOnTheTestConnection(PostgresHotReads):
    """The shared statements on the test's own connection (its data is not committed, so the
    lender's connections could not see it). Records the polls each statement was sent for. Given
    ``hold``, a statement that has left waits until it is set, as if the server were slow to answer."""

    def __init__(self, connection) -> None:
        super().__init__(PG_URL or "postgresql://unused")
        self._connection = connection
        self.sent: list[list[str | None]] = []
        self.hold: asyncio.Event | None = None
        self.failure: BaseException | None = None

    async def _lend(self, sql, depart, fetch):
        params = depart()
        self.sent.append(params["jtis"])
        if self.hold is not None:
            await self.hold.wait()
        if self.failure is not None:
            raise self.failure
        cursor = self._connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()


@postgres_only
def test_polls_in_flight_together_share_one_statement_of_each_kind_and_each_gets_its_own_answer(
    world, client, services, connection
):
    """The same cases as above (live, revoked, deactivated, unknown; person or service account;
    all cities, one city, an unknown city), asked all at once: one statement per kind of
    question, and every poll's answer is what its own statement gives."""
    admin = world.headers(world.user(Role.admin))
    city = _new_city(client, world.headers(world.user(Role.coordinator)))
    organization = world.org(OrganizationKind.ngo)
    partner, leaver = world.user(Role.partner, organization), world.user(Role.partner, organization)
    live_user, leaver_claims = _claims(services, world.headers(partner)), _claims(services, world.headers(leaver))
    revoked = world.login(partner)
    assert client.post("/v1/auth/revoke", data={"token": revoked["access_token"]}).status_code == 200
    revoked_user = _claims(services, {"Authorization": f"Bearer {revoked['access_token']}"})
    assert client.patch(f"/v1/users/{leaver.id}", json={"active": False}, headers=admin).status_code == 200
    unknown_user = dataclasses.replace(live_user, subject_id=uuid.uuid4(), jti="unknown")
    live, deleted = (world.service_account(organization, [Scope.read]) for _ in range(2))
    live_account, deleted_account = (
        _claims(services, world.service_headers(live)),
        _claims(services, world.service_headers(deleted)),
    )
    assert client.delete(f"/v1/service-accounts/{deleted['id']}", headers=admin).status_code == 204

    now = utcnow()
    users, accounts, cities = (
        (live_user, revoked_user, leaver_claims, unknown_user),
        (live_account, deleted_account),
        (None, city, uuid.uuid4()),
    )

    def polls(hot):
        asked = [
            hot.user_and_picture_inputs(u.subject_id, u.session_id, u.jti, TYPES, now, c) for u in users for c in cities
        ]
        asked += [
            hot.service_account_and_picture_inputs(a.subject_id, a.jti, TYPES, now, c) for a in accounts for c in cities
        ]
        asked += [hot.user(u.subject_id, u.session_id, u.jti) for u in users]
        asked += [hot.service_account(a.subject_id, a.jti) for a in accounts]
        asked += [hot.picture_inputs(TYPES, now, c) for c in cities]
        asked += [hot.user(live_user.subject_id, live_user.session_id, live_user.jti)]  # the same poll twice
        return asked

    async def all_at_once(hot):
        return await asyncio.gather(*polls(hot))

    async def one_by_one(hot):
        return [await poll for poll in polls(hot)]

    shared = _SharedOnTheTestConnection(connection)
    answers = asyncio.run(all_at_once(shared))
    assert answers == asyncio.run(one_by_one(services.hot))  # the test's hot reads: one statement per poll
    # Five kinds of question, five statements; the repeated poll is asked once.
    assert sorted(len(jtis) for jtis in shared.sent) == [2, 3, 4, 6, 12]
    # The cases differ where they should, so the equality compared something.
    principals = [answer[0] for answer in answers[:18]]
    assert [p.token_revoked for p in principals[:6]] == [False] * 3 + [True] * 3
    assert [p.active for p in principals[6:9]] == [False] * 3 and principals[9:12] == [None] * 3
    assert [p.live for p in principals[12:18]] == [True] * 3 + [False] * 3
    assert [answer[1].city_exists for answer in answers[:3]] == [False, True, False]


def _a_partner_polling(world, services, connection):  # noqa: ANN001, ANN202
    """A partner, the stand-in lender, and how to start a poll of theirs (``who am I``) as a given jti."""
    partner = world.user(Role.partner)
    claims = _claims(services, world.headers(partner))
    shared = _SharedOnTheTestConnection(connection)

    def poll(jti: str) -> asyncio.Task:
        return asyncio.create_task(shared.user(claims.subject_id, claims.session_id, jti))

    return partner, shared, poll


@postgres_only
def test_a_poll_never_gets_an_answer_read_before_it_arrived(world, services, connection):
    """A statement answers only the polls that boarded before it was sent; polls arriving while
    it is in the air board the next one, which leaves when the first has landed."""
    partner, shared, poll = _a_partner_polling(world, services, connection)

    async def run():
        shared.hold = asyncio.Event()
        first = poll("first")
        while not shared.sent and not first.done():  # until the first statement has left
            await asyncio.sleep(0)
        later = [poll("second"), poll("third")]
        for _ in range(10):  # every chance to leave early, or to take the late polls aboard
            await asyncio.sleep(0)
        in_the_air = list(shared.sent)
        shared.hold.set()
        return in_the_air, await asyncio.gather(first, *later)

    in_the_air, answers = asyncio.run(run())
    assert in_the_air == [["first"]]
    assert shared.sent == [["first"], ["second", "third"]]
    assert all(answer is not None and answer.email == partner.email for answer in answers)


@postgres_only
def test_a_poll_that_leaves_or_fails_takes_no_other_poll_with_it(world, services, connection):
    """A poll cancelled (its client went away) while its statement is in the air: the others
    still get their answers. A statement that fails: each of its polls raises its own
    OperationalError (the API's 503), and the next poll gets a statement of its own."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    partner, shared, poll = _a_partner_polling(world, services, connection)

    async def run():
        shared.hold = asyncio.Event()
        leaving, staying = poll("leaving"), poll("staying")
        while not shared.sent and not staying.done():
            await asyncio.sleep(0)
        leaving.cancel()
        shared.hold.set()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        kept = await staying

        shared.failure = psycopg.OperationalError("the server went away")
        failing = [poll("a"), poll("b")]
        errors = await asyncio.gather(*failing, return_exceptions=True)
        shared.failure = None
        after = await poll("after")
        return kept, errors, after

    kept, errors, after = asyncio.run(run())
    assert kept is not None and kept.email == partner.email
    assert all(isinstance(error, OperationalError) for error in errors)
    assert errors[0] is not errors[1]
    assert after is not None and after.email == partner.email
    assert shared.sent == [["leaving", "staying"], ["a", "b"], ["after"]]


# ---- a database that cannot answer ----------------------------------------------------


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_authenticated_requests_get_503_when_the_hot_reads_cannot_reach_the_database(
    engine, settings, migrated_database, connection, world, tmp_path
):
    """Every authenticated request starts with a hot read (who the token names). When that read
    cannot reach the database (the server down, the file unreadable), the answer is the same
    503 problem as for any other unavailable read, with Retry-After: not a 500, on the fast path
    or off it."""
    from fastapi.testclient import TestClient

    from aidaccess.services import build_services
    from api.app import create_app
    from db.hot import SqliteHotReads
    from tests.conftest import FAST_HASHER, PASSWORD, TransactionalDatabase

    unreachable = (
        PostgresHotReads("postgresql+psycopg://nobody@127.0.0.1:1/none")
        if engine == "postgresql"
        else SqliteHotReads(str(tmp_path))  # a directory: SQLite cannot open it
    )
    services = build_services(
        settings, database=TransactionalDatabase(migrated_database, connection), hot=unreachable, hasher=FAST_HASHER
    )
    user = world.user(Role.coordinator)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        login = client.post(
            "/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text  # signing in reads through the ORM, not the hot reads
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for path in ("/v1/me", "/v1/access-snapshot", "/v1/cities", "/v1/me?early=no"):
            response = client.get(path, headers=headers)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "1"


@postgres_only
def test_the_pictures_entity_type_probes_read_their_index_whatever_the_statistics_say(connection, database_url):
    """Statistics taken when city events were most of the trail, then 5,000 newer events of
    another type, at PostgreSQL's default random_page_cost: every probe of the picture's statement
    still reads ix_audit_event_type_id, never a walk of pk_audit_event filtered on the type."""
    insert = text(
        "INSERT INTO audit_event SELECT m.top + g, now(), 'system', NULL, NULL, NULL, t.name, g::text, 'created', "
        "NULL, NULL, '{}'::jsonb, NULL, NULL, md5(t.name || g), md5('h' || t.name || g) || md5(t.name || g) "
        "FROM (SELECT coalesce(max(id), 0) AS top FROM audit_event) AS m, (SELECT CAST(:entity_type AS text) AS name) AS t, "
        "generate_series(1, :count) AS g"
    )
    connection.execute(insert, {"entity_type": "city", "count": 300})
    connection.execute(text("ANALYZE audit_event"))  # in the test's transaction: rolled back with it
    connection.execute(insert, {"entity_type": "access_request", "count": 5000})
    connection.execute(text("SET LOCAL random_page_cost = 4"))

    def plan(sql: str, params: dict) -> list[dict]:
        explained = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).scalar_one()
        return plan_nodes(explained[0]["Plan"])

    hot = PostgresHotReads(database_url)
    nodes = plan(hot._picture_sql(TYPES), hot._picture_params(utcnow(), None))  # noqa: SLF001
    on_the_trail = [
        (n.get("Index Name"), n.get("Index Cond", "")) for n in nodes if n.get("Relation Name") == "audit_event"
    ]
    probes = [index for index, condition in on_the_trail if "entity_type >=" in condition]
    assert probes == ["ix_audit_event_type_id"] * len(TYPES), on_the_trail
    assert "pk_audit_event" not in [index for index, _ in on_the_trail], on_the_trail
    # The probe as it was written before (max(id) where the type is equal): what this test guards against.
    before = plan("SELECT max(a.id) FROM audit_event a WHERE a.entity_type = 'city'", {})
    assert "pk_audit_event" in [n.get("Index Name") for n in before]
