"""A real database per run (SQLite file, or PostgreSQL when AIDACCESS_TEST_DATABASE_URL is set),
its schema built by the migrations; one rolled-back transaction per test."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from aidaccess import clock
from aidaccess.services import build_services
from aidaccess.settings import Settings
from api.app import create_app
from auth.passwords import PasswordHasher
from auth.roles import OrganizationKind, Role, Scope
from db import migrations
from db.engine import Database
from db.hot import ConnectionHotReads
from db.models import Organization, User
from workflow import audit
from workflow.admin import create_organization, create_user
from workflow.audit import Actor

PG_URL = os.environ.get("AIDACCESS_TEST_DATABASE_URL") or None
if PG_URL and PG_URL.startswith(("postgresql://", "postgres://")):
    PG_URL = "postgresql+psycopg://" + PG_URL.split("://", 1)[1]
PASSWORD = "a-long-test-password"
TEST_SECRET = "test-secret-" + "x" * 40
TEST_AUDIT_KEY = "test-audit-key-" + "y" * 40
# Sessions the tests open themselves append sealed events too (services.build_services sets it again).
audit.set_seal_key(TEST_AUDIT_KEY)
# Cheap Argon2 for tests; production parameters are tested in test_passwords.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def plan_nodes(plan: dict) -> list[dict]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan, depth first."""
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    """A failed test's report carries the tails of the servers still running for it (a fixture's)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        from tests.server import RUNNING_LOGS, log_tail

        for number, log in enumerate(RUNNING_LOGS, 1):
            report.sections.append((f"server {number} log (last 4 KiB)", log_tail(log)))


def pytest_report_header(config) -> str:  # noqa: ANN001
    if PG_URL:
        return f"aidaccess database: PostgreSQL ({make_url(PG_URL).render_as_string(hide_password=True)})"
    return "aidaccess database: SQLite (PostgreSQL skipped: AIDACCESS_TEST_DATABASE_URL is not set)"


@dataclass
class FreshDatabase:
    """An empty database of the engine under test, dropped afterwards."""

    url: str


def _create_pg_database(base_url: str) -> str:
    """A new database beside the one the URL names (which is only connected to, never written)."""
    name = f"aidaccess_t_{secrets.token_hex(4)}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[FreshDatabase]:
    if PG_URL:
        url = _create_pg_database(PG_URL)
        try:
            yield FreshDatabase(url)
        finally:
            _drop_pg_database(url)
    else:
        yield FreshDatabase(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PG_URL:
        url = _create_pg_database(PG_URL)
        try:
            yield url
        finally:
            _drop_pg_database(url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> Iterator[Database]:
    migrations.upgrade(database_url)
    database = Database(database_url, pool_size=2)
    yield database
    database.dispose()


class TransactionalDatabase(Database):
    """Every session joins the test's open transaction through a savepoint, so a request's
    commit and rollback behave as in production and the test still leaves nothing behind."""

    def __init__(self, database: Database, connection: Connection) -> None:
        self.url = database.url
        self.pool_size = database.pool_size
        self.engine = database.engine
        self._slots = None
        self._writer_slots = None
        self.writers = 0  # tests run one request at a time
        self.writes_waiting = 0
        self.connection = connection

    def session(self, *, write: bool) -> Session:  # noqa: ARG002
        return Session(bind=self.connection, join_transaction_mode="create_savepoint", expire_on_commit=False)

    def dispose(self) -> None:
        return None


@pytest.fixture
def connection(migrated_database: Database) -> Iterator[Connection]:
    with migrated_database.engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Write rate limits off: many tests write more than a burst in one frozen instant;
    # tests/test_limits.py turns them on.
    return Settings(
        _env_file=None,
        secret_key=TEST_SECRET,
        audit_key=TEST_AUDIT_KEY,
        data_dir=tmp_path,
        database_url=None,
        write_rate_per_minute=0,
    )


@pytest.fixture
def services(settings: Settings, migrated_database: Database, connection: Connection):  # noqa: ANN201
    return build_services(
        settings,
        database=TransactionalDatabase(migrated_database, connection),
        hot=ConnectionHotReads(connection),
        hasher=FAST_HASHER,
    )


@pytest.fixture
def app(services):  # noqa: ANN001, ANN201
    return create_app(services=services)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # noqa: ANN001
    # A client on this machine, as a local Prometheus agent is (AIDACCESS_METRICS=local, the default).
    with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000)) as test_client:
        yield test_client


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    """For arranging and inspecting data directly, inside the test's transaction."""
    with Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False) as db:
        yield db


class FrozenClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen_clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    clock.set_clock(frozen)
    try:
        yield frozen
    finally:
        clock.set_clock(None)


# ---- arranging the world -------------------------------------------------------------

ARRANGER = Actor.system("tests")


@dataclass
class World:
    session: Session
    client: TestClient

    def org(self, kind: OrganizationKind, name: str | None = None) -> Organization:
        organization = create_organization(
            session=self.session, actor=ARRANGER, name=name or f"{kind.value} {uuid.uuid4().hex[:8]}", kind=kind
        )
        self.session.commit()
        return organization

    def user(self, role: Role, organization: Organization | None = None, *, email: str | None = None) -> User:
        if organization is None:
            kind = {
                Role.partner: OrganizationKind.ngo,
                Role.coordinator: OrganizationKind.secretariat,
                Role.admin: OrganizationKind.secretariat,
                Role.co_chair: OrganizationKind.co_chair_delegation,
                Role.observer: OrganizationKind.observer,
            }[role]
            organization = self.org(kind)
        user = create_user(
            session=self.session,
            actor=ARRANGER,
            hasher=FAST_HASHER,
            email=email or f"{role.value}-{uuid.uuid4().hex[:8]}@example.org",
            full_name=f"Test {role.value}",
            organization_id=organization.id,
            role=role,
            password=PASSWORD,
        )
        self.session.commit()
        return user

    def login(self, user: User, password: str = PASSWORD) -> dict:
        response = self.client.post(
            "/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": password}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def headers(self, user: User) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.login(user)['access_token']}"}

    def service_account(self, organization: Organization, scopes: list[Scope], admin: User | None = None) -> dict:
        admin = admin or self.user(Role.admin)
        response = self.client.post(
            "/v1/service-accounts",
            json={"name": "integration", "organization_id": str(organization.id), "scopes": [s.value for s in scopes]},
            headers=self.headers(admin),
        )
        assert response.status_code == 201, response.text
        return response.json()

    def service_headers(self, account: dict) -> dict[str, str]:
        response = self.client.post(
            "/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": account["client_id"],
                "client_secret": account["client_secret"],
            },
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def world(session: Session, client: TestClient) -> World:
    return World(session=session, client=client)


@pytest.fixture
def audit_count(session: Session) -> Callable[[], int]:
    from sqlalchemy import func, select

    from db.models import AuditEvent

    def count() -> int:
        session.expire_all()
        return session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()

    return count


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ANN201
    """Schemathesis cases run per role (tests/test_fuzz.py), for the record."""
    import sys

    fuzz = sys.modules.get("tests.test_fuzz")
    if fuzz is not None and fuzz.CASES:
        counts = ", ".join(f"{role} {fuzz.CASES[role]}" for role in fuzz.ROLES)
        terminalreporter.write_line(f"schemathesis cases per role: {counts} (total {sum(fuzz.CASES.values())})")
    if fuzz is not None and fuzz.STEPS:
        steps = sum(fuzz.STEPS.values())
        succeeded = sum(n for key, n in fuzz.STEPS.items() if key.endswith(("200", "201", "204")))
        deep = sorted(
            {
                key.rsplit(" ", 1)[0]
                for key, n in fuzz.STEPS.items()
                if key.endswith(("200", "201", "204")) and "{" in key
            }
        )
        terminalreporter.write_line(
            f"schemathesis chains: {steps} calls, {succeeded} succeeded; operations on a chained entity that succeeded: {len(deep)}"
        )
        if config.getoption("verbose") > 0:
            for key in sorted(fuzz.STEPS):
                terminalreporter.write_line(f"  {fuzz.STEPS[key]:5} {key}")
