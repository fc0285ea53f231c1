"""Health, readiness, metrics and settings."""

from __future__ import annotations

import secrets
import stat

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from aidaccess.services import build_services
from aidaccess.settings import DEFAULT_SECRET_KEY, ConfigurationError, Environment, Settings
from api.app import create_app
from db import migrations
from tests.conftest import FAST_HASHER, TEST_AUDIT_KEY, TEST_SECRET


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["migration"] == migrations.head_revision()


def test_readyz_is_503_until_the_database_is_migrated(fresh_database, tmp_path):
    settings = Settings(
        _env_file=None,
        secret_key=TEST_SECRET,
        audit_key=TEST_AUDIT_KEY,
        data_dir=tmp_path,
        database_url=fresh_database.url,
    )
    services = build_services(settings, hasher=FAST_HASHER)
    with TestClient(
        create_app(services=services), raise_server_exceptions=False, client=("127.0.0.1", 50000)
    ) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert "aidaccess db upgrade" in response.json()["detail"]
        migrations.upgrade(fresh_database.url)
        assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path):
    settings = Settings(
        _env_file=None,
        secret_key=TEST_SECRET,
        audit_key=TEST_AUDIT_KEY,
        data_dir=tmp_path,
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1",
    )
    with TestClient(
        create_app(services=build_services(settings, hasher=FAST_HASHER)),
        raise_server_exceptions=False,
        client=("127.0.0.1", 50000),
    ) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "unreachable" in response.json()["detail"]


@pytest.mark.parametrize(
    "access, address, authorization, readable",
    [
        ("local", "127.0.0.1", None, True),
        ("local", "::1", None, True),
        ("local", "203.0.113.7", None, False),
        ("local", "10.1.2.3", "Bearer x", False),
        ("off", "127.0.0.1", None, False),
        ("token", "203.0.113.7", "Bearer metrics-token-0123456789abcdefghijklmnopqrstuv", True),
        ("token", "127.0.0.1", None, False),
        ("token", "203.0.113.7", "Bearer wrong", False),
        ("token", "203.0.113.7", "Basic metrics-token-0123456789abcdefghijklmnopqrstuv", False),
    ],
)
def test_metrics_answer_only_whom_the_configuration_names(tmp_path, access, address, authorization, readable):
    settings = Settings(
        _env_file=None,
        secret_key=TEST_SECRET,
        audit_key=TEST_AUDIT_KEY,
        data_dir=tmp_path,
        metrics=access,
        metrics_token="metrics-token-0123456789abcdefghijklmnopqrstuv" if access == "token" else None,
    )
    with TestClient(
        create_app(services=build_services(settings, hasher=FAST_HASHER)),
        raise_server_exceptions=False,
        client=(address, 50000),
    ) as client:
        response = client.get("/metrics", headers={"Authorization": authorization} if authorization else {})
        assert response.status_code == (200 if readable else 404), response.text
        assert ("aidaccess_http_requests_total" in response.text) == readable


def test_metrics_count_requests_by_route_template(client, world):
    from auth.roles import Role

    headers = world.headers(world.user(Role.admin))
    client.get("/v1/users/00000000-0000-7000-8000-000000000000", headers=headers)
    text = client.get("/metrics").text
    assert 'aidaccess_http_requests_total{method="GET",route="/v1/users/{user_id}",status="404"} 1.0' in text
    assert "aidaccess_http_request_duration_seconds_bucket" in text
    assert "00000000-0000-7000" not in text


def test_docs_are_served_without_a_cdn(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn" not in html.lower() and "googleapis" not in html
    assert "/static/docs/swagger-ui-bundle.js" in client.get("/docs").text
    assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/docs/redoc.standalone.js").status_code == 200


# ---- settings ------------------------------------------------------------------------


def test_production_refuses_the_default_secret():
    settings = Settings(_env_file=None, env=Environment.production)
    assert settings.secret_key == DEFAULT_SECRET_KEY
    with pytest.raises(ConfigurationError, match="AIDACCESS_SECRET_KEY"):
        settings.check_production_ready()
    with pytest.raises(ConfigurationError):
        create_app(settings)


def test_production_refuses_a_short_secret():
    with pytest.raises(ConfigurationError, match="at least 32"):
        Settings(_env_file=None, env=Environment.production, secret_key="short-secret").check_production_ready()
    audit_key = secrets.token_urlsafe(48)
    Settings(
        _env_file=None, env=Environment.production, secret_key=secrets.token_urlsafe(48), audit_key=audit_key
    ).check_production_ready()
    Settings(
        _env_file=None, env=Environment.production, secret_key=secrets.token_hex(16), audit_key=audit_key
    ).check_production_ready()


def test_production_needs_an_audit_key_of_its_own():
    secret = secrets.token_urlsafe(48)
    with pytest.raises(ConfigurationError, match="AIDACCESS_AUDIT_KEY is not set"):
        Settings(_env_file=None, env=Environment.production, secret_key=secret).check_production_ready()
    with pytest.raises(ConfigurationError, match="must differ"):
        Settings(
            _env_file=None, env=Environment.production, secret_key=secret, audit_key=secret
        ).check_production_ready()
    with pytest.raises(ConfigurationError, match="AIDACCESS_AUDIT_KEY is too predictable"):
        Settings(
            _env_file=None, env=Environment.production, secret_key=secret, audit_key="k" * 48
        ).check_production_ready()


@pytest.mark.parametrize("weak", [" " * 32, "s" * 40, "ab" * 20, "passwordpasswordpasswordpassword"])
def test_production_refuses_a_secret_with_too_little_entropy(weak):
    with pytest.raises(ConfigurationError, match="too predictable"):
        Settings(_env_file=None, env=Environment.production, secret_key=weak).check_production_ready()
    Settings(_env_file=None, secret_key=weak).check_production_ready()  # development takes what it is given


@pytest.mark.parametrize(
    "variable, value",
    [
        ("AIDACCESS_ENV", "Production"),
        ("AIDACCESS_CORS_ORIGINS", "*"),
        ("AIDACCESS_METRICS", "token"),
        ("AIDACCESS_ACCESS_TOKEN_MINUTES", "sixty"),
    ],
)
def test_a_setting_that_cannot_be_used_is_a_clear_message_and_exit_3(tmp_path, variable, value):
    from tests.server import aidaccess, cli_environment

    env = {**cli_environment(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path), variable: value}
    # Every command reads the settings the same way (cli._settings, and cli.main for the rest): all three
    # kinds are tried with one variable, one command with the others.
    commands = (
        (("db", "upgrade"), ("serve", "--port", "1"), ("openapi",))
        if variable == "AIDACCESS_ENV"
        else (("db", "upgrade"),)
    )
    for command in commands:
        result = aidaccess(env, *command)
        assert result.returncode == 3, (command, result.stderr)
        assert "Traceback" not in result.stderr and f"aidaccess: invalid configuration: {variable}" in result.stderr, (
            result.stderr
        )


def test_development_keeps_a_random_private_key_in_the_data_directory(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    key = settings.signing_key()
    assert key != DEFAULT_SECRET_KEY and len(key) >= 32
    assert Settings(_env_file=None, data_dir=tmp_path).signing_key() == key
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


@pytest.mark.parametrize("minutes", [0, 16, 60])
def test_access_tokens_live_15_minutes_at_most(minutes):
    with pytest.raises(ValidationError):
        Settings(_env_file=None, access_token_minutes=minutes)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AIDACCESS_DATABASE_URL", "postgresql://u@h:5432/d")
    monkeypatch.setenv("AIDACCESS_ACCESS_TOKEN_MINUTES", "5")
    settings = Settings(_env_file=None)
    assert settings.resolved_database_url == "postgresql+psycopg://u@h:5432/d"
    assert settings.access_token_minutes == 5
    monkeypatch.setenv("AIDACCESS_DATABASE_URL", "mysql://u@h/d")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_the_access_log_line_is_the_same_written_directly_or_through_logging(monkeypatch):
    """Under `aidaccess serve` the access log writes its line straight to the logging handler;
    the line must be exactly what logging and JsonFormatter would have written."""
    import io
    import json
    import logging
    import re

    from aidaccess import logs
    from aidaccess.context import request_id_var

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    level = root.level
    root.setLevel(logging.INFO)  # setLevel: it also clears the loggers' enabled-for caches
    monkeypatch.setattr(logs, "_handler", handler)
    token = request_id_var.set("req-1")
    try:
        with monkeypatch.context() as direct_only:
            direct_only.setattr(logs.access_log, "info", lambda *a, **k: pytest.fail("went through logging"))
            logs.log_request("GET", "/v1/me", "/v1/me", 200, 1.25)
        monkeypatch.setattr(logs, "_handler", None)  # as in tests or an embedding app
        logs.log_request("GET", "/v1/me", "/v1/me", 200, 1.25)
        root.setLevel(logging.WARNING)
        logs.log_request("GET", "/v1/me", "/v1/me", 200, 1.25)  # not enabled: nothing at all
    finally:
        request_id_var.reset(token)
        root.setLevel(level)
    direct, routed = [json.loads(line) for line in stream.getvalue().splitlines()]
    for entry in (direct, routed):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry.pop("time"))
    assert list(direct.items()) == list(routed.items())
    assert direct == {
        "level": "info",
        "logger": "aidaccess.access",
        "message": "request",
        "request_id": "req-1",
        "method": "GET",
        "path": "/v1/me",
        "route": "/v1/me",
        "status": 200,
        "duration_ms": 1.25,
    }


@pytest.mark.parametrize(
    ("url", "configured", "expected"),
    [
        (None, None, 4),  # the SQLite file
        ("sqlite:////tmp/elsewhere.sqlite3", None, 4),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess", None, 20),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess", 7, 7),
        (None, 12, 12),
    ],
)
def test_the_pool_size_follows_the_engine_unless_configured(tmp_path, url, configured, expected):
    settings = Settings(
        _env_file=None,
        secret_key=TEST_SECRET,
        audit_key=TEST_AUDIT_KEY,
        data_dir=tmp_path,
        database_url=url,
        db_pool_size=configured,
    )
    assert settings.resolved_db_pool_size == expected


@pytest.mark.parametrize(
    ("url", "pool_size", "configured", "expected"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess", 20, None, 10),  # half the pool
        ("postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess", 3, None, 1),  # at least one
        ("postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess", 20, 8, 8),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess", 4, 9, 4),  # never more than the pool
        ("sqlite:///{tmp}/turns.sqlite3", 4, 3, 1),  # SQLite has one writer, whatever is configured
    ],
)
def test_writes_take_turns_within_the_pool(tmp_path, url, pool_size, configured, expected):
    from db.engine import Database

    database = Database(url.format(tmp=tmp_path), pool_size=pool_size, writers=configured)
    try:
        assert database.writers == expected
    finally:
        database.dispose()


def test_metrics_show_the_writes_waiting_for_their_turn(client, app):
    app.state.services.database.writes_waiting = 3
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "aidaccess_writes_waiting 3.0" in metrics.text
