"""The operators' command, run as operators run it, and a real server process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL
from tests.server import free_port, wait_ready

PASSWORD = "operator-password-123"


@pytest.fixture
def cli_env(fresh_database, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDACCESS_")}
    env.update(
        AIDACCESS_DATABASE_URL=fresh_database.url,
        AIDACCESS_DATA_DIR=str(tmp_path / "data"),
        AIDACCESS_ARGON2_TIME_COST="1",
        AIDACCESS_ARGON2_MEMORY_KIB="1024",
        AIDACCESS_ARGON2_PARALLELISM="1",
    )
    return env


def aidaccess(env, *args, stdin: str | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "aidaccess", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_operator_story(cli_env, fresh_database, tmp_path):
    result = aidaccess(cli_env, "orgs", "create", "Secretariat", "--kind", "secretariat")
    assert result.returncode == 4 and "aidaccess db upgrade" in result.stderr  # not migrated yet

    assert aidaccess(cli_env, "db", "upgrade").returncode == 0
    assert aidaccess(cli_env, "orgs", "create", "Secretariat", "--kind", "secretariat").returncode == 0
    duplicate = aidaccess(cli_env, "orgs", "create", "secretariat", "--kind", "secretariat")
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr
    bad_kind = aidaccess(cli_env, "orgs", "create", "X", "--kind", "militia")
    assert bad_kind.returncode == 2 and "'militia' is not one of" in bad_kind.stderr

    created = aidaccess(
        cli_env,
        "users",
        "create",
        "Ops@Example.org",
        "--org",
        "Secretariat",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    no_stdin_flag = aidaccess(cli_env, "users", "create", "x@example.org", "--org", "Secretariat", "--role", "admin")
    assert no_stdin_flag.returncode == 2
    unknown_org = aidaccess(
        cli_env,
        "users",
        "create",
        "y@example.org",
        "--org",
        "Nope",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert unknown_org.returncode == 1 and "no organization named" in unknown_org.stderr
    misfit = aidaccess(
        cli_env,
        "users",
        "create",
        "z@example.org",
        "--org",
        "Secretariat",
        "--role",
        "co_chair",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert misfit.returncode == 1 and "co_chair role" in misfit.stderr

    first = aidaccess(cli_env, "seed", "demo")
    assert first.returncode == 0, first.stderr
    assert "6 organizations, 7 users, 14 cities, 15 designations" in first.stdout
    assert "coordinator@aidaccess.example" in first.stdout  # the demo passwords, shown once
    again = aidaccess(cli_env, "seed", "demo")
    assert "0 organizations, 0 users, 0 cities, 0 designations" in again.stdout
    assert "aidaccess.example" not in again.stdout

    verified = aidaccess(cli_env, "audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout
    worker = aidaccess(cli_env, "worker", "--once")
    assert worker.returncode == 0 and "attempted 0 deliveries" in worker.stdout

    engine = create_engine(fresh_database.url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        else:
            connection.execute(text("DROP TRIGGER audit_event_no_update"))
        connection.execute(text("UPDATE audit_event SET actor_label = 'someone else' WHERE id = 5"))
    engine.dispose()
    tampered = aidaccess(cli_env, "audit", "verify")
    assert tampered.returncode == 5
    assert "event 5" in tampered.stderr


def test_openapi_command_prints_the_contract(cli_env):
    result = aidaccess(cli_env, "openapi")
    assert result.returncode == 0
    assert "/v1/auth/token" in json.loads(result.stdout)["paths"]


def test_serve_refuses_production_with_the_default_secret(cli_env):
    result = aidaccess({**cli_env, "AIDACCESS_ENV": "production"}, "serve", "--port", "1")
    assert result.returncode == 3
    assert "AIDACCESS_SECRET_KEY" in result.stderr


@pytest.mark.e2e
def test_a_real_server_authenticates_and_stops_a_deactivated_users_tokens_at_once(cli_env, tmp_path):
    """Runs the production principal lookup (SQLite on the event loop, or the async
    PostgreSQL pool), which the in-process tests replace with their transaction."""
    assert aidaccess(cli_env, "db", "upgrade").returncode == 0
    assert aidaccess(cli_env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    port = free_port()
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - a pipe nobody reads would fill and block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "aidaccess", "serve", "--port", str(port)],
        env=cli_env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)

        def login(email):
            response = httpx.post(
                f"{base}/v1/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            return {"Authorization": f"Bearer {response.json()['access_token']}"}

        admin = login("admin@aidaccess.example")
        partner = login("partner.wfp@aidaccess.example")
        me = httpx.get(f"{base}/v1/me", headers=partner)
        assert me.status_code == 200 and me.json()["role"] == "partner"
        assert me.headers["x-request-id"]
        assert (
            httpx.patch(f"{base}/v1/users/{me.json()['id']}", json={"active": False}, headers=admin).status_code == 200
        )
        assert httpx.get(f"{base}/v1/me", headers=partner).status_code == 401
        assert httpx.get(f"{base}/docs").status_code == 200
        # The snapshot's ETag comes from the production hot reads too.
        coordinator = login("coordinator@aidaccess.example")
        snapshot = httpx.get(f"{base}/v1/access-snapshot", headers=coordinator)
        assert snapshot.status_code == 200 and snapshot.json()["count"] == 14
        etag = snapshot.headers["etag"]
        assert (
            httpx.get(f"{base}/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag}).status_code == 304
        )
        madaya = next(c for c in snapshot.json()["cities"] if c["city"]["pcode"] == "C2450")
        designated = httpx.post(
            f"{base}/v1/cities/{madaya['city']['id']}/designations",
            json={
                "status": "accessible",
                "severity": 1,
                "effective_from": "2017-04-14T00:00:00+03:00",
                "reason": "Evacuation agreement",
            },
            headers=coordinator,
        )
        assert designated.status_code == 201, designated.text
        assert (
            httpx.get(f"{base}/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag}).status_code == 200
        )
        picture = httpx.get(f"{base}/v1/cities/{madaya['city']['id']}/access", headers=coordinator)
        assert picture.json()["designation"]["status"] == "accessible"
        assert httpx.get(f"{base}/v1/cities/{uuid.uuid4()}/access", headers=coordinator).status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    stderr = log_path.read_text()
    # Logs are JSON lines with request ids, and never carry a token or a password.
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/v1/me" and line.get("request_id") for line in lines)
    assert PASSWORD not in stderr and "Bearer" not in stderr and "eyJ" not in stderr


def test_report_header_names_the_engine():
    # The suite says which database it ran on, so a run that skipped PostgreSQL says so.
    from tests.conftest import pytest_report_header

    header = pytest_report_header(None)
    assert ("PostgreSQL" in header) and (("skipped" in header) == (PG_URL is None))


@pytest.mark.e2e
def test_a_backup_taken_while_the_server_writes_restores_with_an_intact_chain(cli_env, fresh_database, tmp_path):
    import threading

    from tests.server import PASSWORD as SERVER_PASSWORD
    from tests.server import login, running_server

    if not fresh_database.url.startswith("sqlite"):
        refused = aidaccess(cli_env, "db", "backup", str(tmp_path / "copy.sqlite3"))
        assert refused.returncode == 2 and "pg_dump" in refused.stderr
        return
    assert aidaccess(cli_env, "db", "upgrade").returncode == 0
    assert aidaccess(cli_env, "seed", "demo", "--password-stdin", stdin=SERVER_PASSWORD).returncode == 0
    with running_server(cli_env) as (base, _process):
        coordinator = login(base, "coordinator@aidaccess.example")
        city = httpx.get(f"{base}/v1/cities", params={"q": "homs"}, headers=coordinator).json()["items"][0]["id"]
        stop, writing = threading.Event(), threading.Event()
        written = []

        def write() -> None:
            while not stop.is_set():
                response = httpx.post(
                    f"{base}/v1/cities/{city}/designations",
                    json={
                        "status": "accessible",
                        "severity": 1,
                        "effective_from": "2016-01-01T00:00:00+02:00",
                        "reason": "w",
                    },
                    headers=coordinator,
                    timeout=30,
                )
                written.append(response.status_code)
                if len(written) >= 3:
                    writing.set()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            assert writing.wait(timeout=30), "the writer did not get going"
            backup = aidaccess(cli_env, "db", "backup", str(tmp_path / "copy.sqlite3"))
        finally:
            stop.set()
            writer.join(timeout=60)
    assert backup.returncode == 0, backup.stderr
    restored = {**cli_env, "AIDACCESS_DATABASE_URL": f"sqlite:///{tmp_path / 'copy.sqlite3'}"}
    verified = aidaccess(restored, "audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stderr
    assert set(written) == {201}
    assert aidaccess(cli_env, "db", "backup", str(tmp_path / "copy.sqlite3")).returncode == 2  # never overwrites


def test_the_cli_validates_with_the_apis_schemas_and_rules(cli_env, fresh_database):
    """What the API refuses with a 422, the CLI refuses with the same words, exit 1, nothing written."""
    assert aidaccess(cli_env, "db", "upgrade").returncode == 0
    empty = aidaccess(cli_env, "orgs", "create", "", "--kind", "ngo")
    assert empty.returncode == 1 and "name: String should have at least 1 character" in empty.stderr
    blank = aidaccess(cli_env, "orgs", "create", "   ", "--kind", "ngo")
    assert blank.returncode == 1 and "name: String should match pattern" in blank.stderr
    assert aidaccess(cli_env, "orgs", "create", "Secretariat", "--kind", "secretariat").returncode == 0
    not_email = aidaccess(
        cli_env,
        "users",
        "create",
        "not-an-email",
        "--org",
        "Secretariat",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert not_email.returncode == 1 and "email: value is not a valid email address" in not_email.stderr
    short = aidaccess(
        cli_env,
        "users",
        "create",
        "a@example.org",
        "--org",
        "Secretariat",
        "--role",
        "admin",
        "--password-stdin",
        stdin="short",
    )
    assert short.returncode == 1 and "password: String should have at least 12 characters" in short.stderr
    simple = aidaccess(
        cli_env,
        "users",
        "create",
        "a@example.org",
        "--org",
        "Secretariat",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a" * 16,
    )
    assert simple.returncode == 1 and "at least 5 different characters" in simple.stderr
    engine = create_engine(fresh_database.url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM organization")).scalar_one() == 1
        assert connection.execute(text("SELECT count(*) FROM user_account")).scalar_one() == 0
    engine.dispose()


def test_version_is_the_packages(cli_env):
    from importlib.metadata import version

    result = aidaccess(cli_env, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"aidaccess {version('aidaccess')}"


def test_an_operator_lists_deactivates_resets_and_creates_service_accounts(cli_env, fresh_database):
    assert aidaccess(cli_env, "db", "upgrade").returncode == 0
    assert aidaccess(cli_env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    orgs = aidaccess(cli_env, "orgs", "list", "--kind", "co_chair_delegation")
    assert orgs.returncode == 0
    assert [line.split("\t")[2] for line in orgs.stdout.splitlines()] == [
        "Co-chair Delegation Alpha",
        "Co-chair Delegation Bravo",
    ]
    users = aidaccess(cli_env, "users", "list", "--org", "World Food Programme")
    assert users.stdout.splitlines()[0].split("\t")[1:] == [
        "partner.wfp@aidaccess.example",
        "partner",
        "active",
        "World Food Programme",
    ]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "aidaccess", "serve", "--port", str(port)],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)

        def token(email: str, password: str = PASSWORD) -> httpx.Response:
            return httpx.post(
                f"{base}/v1/auth/token", data={"grant_type": "password", "username": email, "password": password}
            )

        partner = token("partner.wfp@aidaccess.example").json()["access_token"]
        reset = aidaccess(
            cli_env,
            "users",
            "reset-password",
            "partner.wfp@aidaccess.example",
            "--password-stdin",
            stdin="a-new-operator-password",
        )
        assert reset.returncode == 0, reset.stderr
        assert "a-new-operator-password" not in reset.stdout + reset.stderr
        # Signed out everywhere; the new password works, the old one does not.
        assert httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {partner}"}).status_code == 401
        assert token("partner.wfp@aidaccess.example").status_code == 401
        assert token("partner.wfp@aidaccess.example", "a-new-operator-password").status_code == 200
        weak = aidaccess(
            cli_env, "users", "reset-password", "partner.wfp@aidaccess.example", "--password-stdin", stdin="b" * 20
        )
        assert weak.returncode == 1 and "different characters" in weak.stderr

        observer = token("observer@aidaccess.example").json()["access_token"]
        assert aidaccess(cli_env, "users", "deactivate", "observer@aidaccess.example").returncode == 0
        assert httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {observer}"}).status_code == 401
        listed = aidaccess(cli_env, "users", "list", "--role", "observer").stdout
        assert "\tinactive\t" in listed
        assert aidaccess(cli_env, "users", "deactivate", "nobody@example.org").returncode == 1

        created = aidaccess(
            cli_env,
            "service-accounts",
            "create",
            "Dashboard",
            "--org",
            "World Food Programme",
            "--scope",
            "read",
            "--scope",
            "requests:write",
        )
        assert created.returncode == 0, created.stderr
        client_id = created.stdout.split("client_id: ")[1].split()[0]
        secret = created.stdout.split("client_secret: ")[1].split()[0]
        granted = httpx.post(
            f"{base}/v1/auth/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        assert granted.status_code == 200 and set(granted.json()["scope"].split()) == {"read", "requests:write"}
        bad_scope = aidaccess(
            cli_env, "service-accounts", "create", "X", "--org", "World Food Programme", "--scope", "admin"
        )
        assert bad_scope.returncode == 2
    finally:
        server.terminate()
        server.wait(timeout=20)
    events = create_engine(fresh_database.url)
    with events.connect() as connection:
        actions = connection.execute(
            text(
                "SELECT actor_label, action FROM audit_event WHERE actor_label LIKE 'aidaccess %' "
                "AND entity_type IN ('user', 'service_account') ORDER BY id"
            )
        ).all()
    events.dispose()
    assert [tuple(row) for row in actions][-3:] == [
        ("aidaccess users reset-password", "updated"),
        ("aidaccess users deactivate", "deactivated"),
        ("aidaccess service-accounts create", "created"),
    ]


def test_downgrade_to_base_asks_first(cli_env, fresh_database):
    assert aidaccess(cli_env, "db", "upgrade").returncode == 0
    refused = aidaccess(cli_env, "db", "downgrade", "base", stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert aidaccess(cli_env, "orgs", "list").returncode == 0  # still migrated
    assert aidaccess(cli_env, "db", "downgrade", "base", "--yes").returncode == 0
    assert aidaccess(cli_env, "orgs", "list").returncode == 4  # not migrated any more
