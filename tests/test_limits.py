"""Per-principal write rate limits and CORS (issue 7, item 6)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from aidaccess.settings import Settings
from api.app import create_app
from auth.roles import Role
from tests.conftest import World
from tests.test_cities import _city_body


@pytest.fixture
def limited(settings, services, session, frozen_clock):  # noqa: ANN001, ANN201
    """An app whose principals may write 3 at once, then one every 10 seconds."""
    services.settings = settings.model_copy(update={"write_rate_per_minute": 6, "write_burst": 3})
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client, World(session=session, client=client)


def test_writes_beyond_the_burst_are_429_with_retry_after_and_nothing_written(limited, frozen_clock, audit_count):
    client, world = limited
    coordinator = world.headers(world.user(Role.coordinator))
    left = []
    for _ in range(3):
        created = client.post("/v1/cities", json=_city_body(), headers=coordinator)
        assert created.status_code == 201
        # The IETF HTTPAPI draft's headers: a burst of 3 per 30 s; what is left now, and when all of it is back.
        assert created.headers["ratelimit-policy"] == '"writes";q=3;w=30'
        left.append(created.headers["ratelimit"])
    assert left == ['"writes";r=2;t=10', '"writes";r=1;t=20', '"writes";r=0;t=30']
    before = audit_count()
    refused = client.post("/v1/cities", json=_city_body(name="Refused"), headers=coordinator)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["ratelimit"] == '"writes";r=0;t=30'
    assert "ratelimit" not in client.get("/v1/cities", headers=coordinator).headers  # reads are not counted
    assert refused.json()["type"] == "urn:aidaccess:problem:too-many-requests"
    assert audit_count() == before
    assert client.get("/v1/cities", params={"q": "Refused"}, headers=coordinator).json()["items"] == []
    # Reads are never limited.
    for _ in range(10):
        assert client.get("/v1/cities", headers=coordinator).status_code == 200
    frozen_clock.advance(seconds=9)
    assert client.post("/v1/cities", json=_city_body(), headers=coordinator).status_code == 429
    frozen_clock.advance(seconds=1)
    assert client.post("/v1/cities", json=_city_body(), headers=coordinator).status_code == 201
    # One write regained, not a whole burst.
    assert client.post("/v1/cities", json=_city_body(), headers=coordinator).status_code == 429


def test_the_limit_is_per_principal_and_failed_writes_count(limited):
    client, world = limited
    noisy = world.headers(world.user(Role.coordinator))
    quiet = world.headers(world.user(Role.coordinator))
    for _ in range(3):
        # Invalid bodies are refused (422) but still use the allowance.
        assert client.post("/v1/cities", json=_city_body(latitude=500), headers=noisy).status_code == 422
    assert client.post("/v1/cities", json=_city_body(), headers=noisy).status_code == 429
    assert client.post("/v1/cities", json=_city_body(), headers=quiet).status_code == 201


def test_the_limit_can_be_turned_off(settings, services, session, frozen_clock):
    services.settings = settings.model_copy(update={"write_rate_per_minute": 0, "write_burst": 1})
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        world = World(session=session, client=client)
        coordinator = world.headers(world.user(Role.coordinator))
        for _ in range(5):
            assert client.post("/v1/cities", json=_city_body(), headers=coordinator).status_code == 201


def test_every_authenticated_write_declares_429(app):
    schema = app.openapi()
    writes = [
        (path, method)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"post", "put", "patch", "delete"} and operation.get("security")
    ]
    assert len(writes) > 20
    missing = [w for w in writes if "429" not in schema["paths"][w[0]][w[1]]["responses"]]
    assert missing == []


# ---- CORS -----------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://dashboard.example.org",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


def test_cors_is_off_unless_configured(client):
    preflight = client.options("/v1/cities", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    response = client.get("/healthz", headers={"Origin": "https://dashboard.example.org"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_the_configured_origins(settings, services):
    services.settings = settings.model_copy(update={"cors_origins": "https://dashboard.example.org"})
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        preflight = client.options("/v1/cities", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://dashboard.example.org"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in preflight.headers
        # The preflight answer carries the security headers and a request id like any other.
        assert preflight.headers["x-content-type-options"] == "nosniff"
        assert preflight.headers["x-request-id"]
        response = client.get("/healthz", headers={"Origin": "https://dashboard.example.org"})
        assert response.headers["access-control-allow-origin"] == "https://dashboard.example.org"
        assert "etag" in response.headers["access-control-expose-headers"].lower()

        other = client.options("/v1/cities", headers={**PREFLIGHT, "Origin": "https://evil.example.net"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        response = client.get("/healthz", headers={"Origin": "https://evil.example.net"})
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("value", ["*", "dashboard.example.org", "https://x.example.org/path", "javascript:alert(1)"])
def test_cors_origins_must_be_named_origins(value):
    with pytest.raises(ValueError):
        Settings(_env_file=None, cors_origins=value)


def test_cors_origins_are_normalised():
    settings = Settings(_env_file=None, cors_origins=" https://a.example.org/ , http://localhost:3000")
    assert settings.cors_origin_list == ["https://a.example.org", "http://localhost:3000"]
