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
        [sys.executable, "-m", "aidaccess", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_operator_story(cli_env, fresh_database, tmp_path):
    result = aidaccess(cli_env, "orgs", "create", "Secretariat", "--kind", "secretariat")
    assert result.returncode == 4 and "aidaccess db upgrade" in result.stderr  # not migrated yet

    assert aidaccess(cli_env, "db", "upgrade").returncode == 0
    assert aidaccess(cli_env, "orgs", "create", "Secretariat", "--kind", "secretariat").returncode == 0
    duplicate = aidaccess(cli_env, "orgs", "create", "secretariat", "--kind", "secretariat")
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr
    bad_kind = aidaccess(cli_env, "orgs", "create", "X", "--kind", "militia")
    assert bad_kind.returncode == 2 and "unknown kind" in bad_kind.stderr

    created = aidaccess(cli_env, "users", "create", "Ops@Example.org", "--org", "Secretariat", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    no_stdin_flag = aidaccess(cli_env, "users", "create", "x@example.org", "--org", "Secretariat", "--role", "admin")
    assert no_stdin_flag.returncode == 2
    unknown_org = aidaccess(cli_env, "users", "create", "y@example.org", "--org", "Nope", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert unknown_org.returncode == 1 and "no organization named" in unknown_org.stderr
    misfit = aidaccess(cli_env, "users", "create", "z@example.org", "--org", "Secretariat", "--role", "co_chair", "--password-stdin", stdin=PASSWORD)
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
        [sys.executable, "-m", "aidaccess", "serve", "--port", str(port)], env=cli_env, stdout=log, stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)

        def login(email):
            response = httpx.post(f"{base}/v1/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD})
            assert response.status_code == 200, response.text
            return {"Authorization": f"Bearer {response.json()['access_token']}"}

        admin = login("admin@aidaccess.example")
        partner = login("partner.wfp@aidaccess.example")
        me = httpx.get(f"{base}/v1/me", headers=partner)
        assert me.status_code == 200 and me.json()["role"] == "partner"
        assert me.headers["x-request-id"]
        assert httpx.patch(f"{base}/v1/users/{me.json()['id']}", json={"active": False}, headers=admin).status_code == 200
        assert httpx.get(f"{base}/v1/me", headers=partner).status_code == 401
        assert httpx.get(f"{base}/docs").status_code == 200
        # The snapshot's ETag comes from the production hot reads too.
        coordinator = login("coordinator@aidaccess.example")
        snapshot = httpx.get(f"{base}/v1/access-snapshot", headers=coordinator)
        assert snapshot.status_code == 200 and snapshot.json()["count"] == 14
        etag = snapshot.headers["etag"]
        assert httpx.get(f"{base}/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag}).status_code == 304
        madaya = next(c for c in snapshot.json()["cities"] if c["city"]["pcode"] == "C2450")
        designated = httpx.post(
            f"{base}/v1/cities/{madaya['city']['id']}/designations",
            json={"status": "accessible", "severity": 1, "effective_from": "2017-04-14T00:00:00+03:00", "reason": "Evacuation agreement"},
            headers=coordinator,
        )
        assert designated.status_code == 201, designated.text
        assert httpx.get(f"{base}/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag}).status_code == 200
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
                response = httpx.post(f"{base}/v1/cities/{city}/designations", json={
                    "status": "accessible", "severity": 1, "effective_from": "2016-01-01T00:00:00+02:00", "reason": "w"},
                    headers=coordinator, timeout=30)
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
