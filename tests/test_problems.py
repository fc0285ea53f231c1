"""Every error is an RFC 9457 problem with a stable type, and changes nothing."""

import pytest
from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session
from starlette.responses import JSONResponse, Response

from api.deps import CurrentPrincipal, DbSession, UnitOfWorkRoute
from api.schemas.admin import OrganizationRead
from auth.roles import OrganizationKind, Role
from db.models import Organization
from workflow.admin import create_organization


@pytest.fixture
def admin_headers(world):
    return world.headers(world.user(Role.admin))


def _is_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:aidaccess:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_malformed_json_is_422_and_writes_nothing(client, admin_headers, audit_count):
    before = audit_count()
    response = client.post(
        "/v1/organizations", content=b'{"name": "x", ', headers={**admin_headers, "content-type": "application/json"}
    )
    body = _is_problem(response, 422, "validation-error")
    assert body["errors"][0]["field"] == "body"
    assert audit_count() == before


def test_wrong_types_are_422_naming_each_field(client, admin_headers, audit_count):
    before = audit_count()
    response = client.post(
        "/v1/users",
        json={"email": 12, "full_name": [], "organization_id": 5, "role": True, "password": None},
        headers=admin_headers,
    )
    body = _is_problem(response, 422, "validation-error")
    assert {e["field"] for e in body["errors"]} >= {
        "body.email",
        "body.full_name",
        "body.organization_id",
        "body.role",
        "body.password",
    }
    assert audit_count() == before


def test_oversized_body_is_413_and_writes_nothing(client, admin_headers, audit_count, settings):
    before = audit_count()
    huge = b'{"name": "' + b"x" * (settings.max_body_bytes + 10) + b'", "kind": "ngo"}'
    response = client.post(
        "/v1/organizations", content=huge, headers={**admin_headers, "content-type": "application/json"}
    )
    _is_problem(response, 413, "content-too-large")
    assert audit_count() == before


def test_oversized_streamed_body_without_a_length_is_413(client, admin_headers, audit_count, settings):
    before = audit_count()

    def chunks():
        yield b'{"name": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'", "kind": "ngo"}'

    response = client.post(
        "/v1/organizations", content=chunks(), headers={**admin_headers, "content-type": "application/json"}
    )
    _is_problem(response, 413, "content-too-large")
    assert audit_count() == before


def test_naive_datetime_is_422(client, admin_headers):
    response = client.get("/v1/audit", params={"occurred_after": "2026-01-01T10:00:00"}, headers=admin_headers)
    body = _is_problem(response, 422, "validation-error")
    assert body["errors"][0]["field"] == "query.occurred_after"
    ok = client.get("/v1/audit", params={"occurred_after": "2026-01-01T10:00:00+03:00"}, headers=admin_headers)
    assert ok.status_code == 200


def test_unknown_route_and_wrong_method_are_problems(client):
    _is_problem(client.get("/v1/no-such-thing"), 404, "not-found")
    _is_problem(client.put("/v1/me"), 405, "method-not-allowed")


def test_forbidden_is_a_problem_with_a_reason(world, client):
    body = _is_problem(client.get("/v1/users", headers=world.headers(world.user(Role.partner))), 403, "forbidden")
    assert "partner" in body["detail"]


def test_conflict_is_a_problem(world, client, admin_headers):
    world.org(OrganizationKind.ngo, "Same Name")
    _is_problem(
        client.post("/v1/organizations", json={"name": "Same Name", "kind": "ngo"}, headers=admin_headers),
        409,
        "conflict",
    )


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_security_headers_on_every_response(client):
    for response in (client.get("/healthz"), client.get("/v1/me"), client.get("/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"


def test_an_unexpected_error_is_a_500_problem_without_a_stack_trace(app, client, caplog):
    router = APIRouter()

    @router.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.include_router(router)
    response = client.get("/v1/boom")
    body = _is_problem(response, 500, "internal-error")
    assert "hunter2" not in response.text and "Traceback" not in response.text and "RuntimeError" not in response.text
    assert body["request_id"]


def test_a_failing_request_rolls_back_everything_it_wrote(app, client, world, audit_count, session):
    """The unit of work: a write followed by an error in the same request leaves nothing."""
    router = APIRouter()

    @router.post("/v1/half-write")
    def half_write(db: DbSession, principal: CurrentPrincipal) -> None:
        create_organization(session=db, actor=principal, name="Half Written", kind=OrganizationKind.ngo)
        raise RuntimeError("after the write")

    app.include_router(router)
    headers = world.headers(world.user(Role.admin))
    before = audit_count()
    assert client.post("/v1/half-write", headers=headers).status_code == 500
    assert audit_count() == before
    assert session.execute(select(Organization).where(Organization.name == "Half Written")).first() is None


def test_a_commit_that_fails_in_the_endpoints_thread_is_a_problem_with_nothing_written(
    app, client, world, audit_count, session, monkeypatch
):
    """A plain-def endpoint answering with a Response commits in its own thread (UnitOfWorkRoute): a
    commit that fails there is answered like one that fails anywhere, and nothing is written."""
    router = APIRouter(route_class=UnitOfWorkRoute)

    @router.post("/v1/commit-fails")
    def commit_fails(db: DbSession, principal: CurrentPrincipal) -> Response:
        create_organization(session=db, actor=principal, name="Never Committed", kind=OrganizationKind.ngo)
        return JSONResponse({"ok": True})

    app.include_router(router)
    headers = world.headers(world.user(Role.admin))
    before = audit_count()

    def failing_commit(self) -> None:  # noqa: ANN001
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    response = client.post("/v1/commit-fails", headers=headers)
    monkeypatch.undo()
    _is_problem(response, 503, "service-unavailable")
    assert audit_count() == before
    assert session.execute(select(Organization).where(Organization.name == "Never Committed")).first() is None


def test_an_answer_that_fails_to_serialize_writes_nothing(app, client, world, audit_count, session):
    """A plain-def endpoint answering with a value for FastAPI to serialize is committed after that
    (UnitOfWorkRoute commits only encoded responses in the endpoint's thread)."""
    router = APIRouter(route_class=UnitOfWorkRoute)

    @router.post("/v1/answer-fails", response_model=OrganizationRead)
    def answer_fails(db: DbSession, principal: CurrentPrincipal) -> dict:
        create_organization(session=db, actor=principal, name="Badly Answered", kind=OrganizationKind.ngo)
        return {"name": "no id, no kind"}

    app.include_router(router)
    headers = world.headers(world.user(Role.admin))
    before = audit_count()
    _is_problem(client.post("/v1/answer-fails", headers=headers), 500, "internal-error")
    assert audit_count() == before
    assert session.execute(select(Organization).where(Organization.name == "Badly Answered")).first() is None


@pytest.mark.parametrize("where", ["json", "json split across chunks", "query", "form", "path"])
def test_the_nul_character_is_refused_everywhere_with_nothing_written(client, admin_headers, audit_count, where):
    """PostgreSQL cannot store U+0000 (found by schemathesis as a 500 there) and SQLite can:
    refused at the edge, the same on both engines."""
    before = audit_count()
    if where == "json":
        response = client.post(
            "/v1/organizations", json={"name": "Null\u0000 NGO", "kind": "ngo"}, headers=admin_headers
        )
    elif where == "json split across chunks":

        def chunks():
            yield b'{"name": "Null\\u00'
            yield b'00 NGO", "kind": "ngo"}'

        response = client.post(
            "/v1/organizations", content=chunks(), headers={**admin_headers, "content-type": "application/json"}
        )
    elif where == "query":
        response = client.get("/v1/cities", params={"q": "Dum\u0000a"}, headers=admin_headers)
    elif where == "form":
        response = client.post(
            "/v1/auth/token", data={"grant_type": "password", "username": "a\u0000@example.org", "password": "x"}
        )
    else:
        response = client.get("/v1/cities/%00/access", headers=admin_headers)
    _is_problem(response, 422, "validation-error")
    assert "NUL" in response.json()["detail"]
    assert audit_count() == before


def test_text_that_only_looks_like_a_nul_escape_is_kept(client, admin_headers):
    # A backslash followed by "u0000" is ordinary text: JSON sends it as \\u0000.
    response = client.post(
        "/v1/organizations", json={"name": "Backslash \\u0000 NGO", "kind": "ngo"}, headers=admin_headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Backslash \\u0000 NGO"


_OUT_OF_RANGE = [
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00",
    "1899-12-31T23:00:00+00:00",
    "2200-01-01T00:00:00Z",
]
_NOT_TEXT = ["-1", "1700000000", "1700000000.5", "2016-09-12", "2016-09-12T19:00+03:00x"]


@pytest.fixture
def time_world(world):
    coordinator = world.headers(world.user(Role.coordinator))
    partner = world.headers(world.user(Role.partner))
    city = world.client.post(
        "/v1/cities",
        json={
            "name": "Zabadani",
            "pcode": "C2464",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.72,
            "longitude": 36.1,
        },
        headers=coordinator,
    ).json()["id"]
    return {"coordinator": coordinator, "partner": partner, "city": city}


@pytest.mark.parametrize("value", _OUT_OF_RANGE + _NOT_TEXT)
def test_times_out_of_range_or_not_rfc3339_text_are_422_naming_the_field(client, time_world, audit_count, value):
    """Instants that overflow when converted to UTC were 500s; numbers were taken as seconds since 1970."""
    coordinator, partner, city = time_world["coordinator"], time_world["partner"], time_world["city"]
    reads = [
        (f"/v1/cities/{city}/access", "as_of", coordinator),
        ("/v1/access-snapshot", "as_of", coordinator),
        ("/v1/access-requests", "departure_from", coordinator),
        ("/v1/access-requests/counts", "departure_to", partner),
        ("/v1/pauses", "active_at", coordinator),
        ("/v1/audit", "occurred_after", coordinator),
        ("/v1/audit", "occurred_before", coordinator),
    ]
    for path, name, headers in reads:
        body = _is_problem(client.get(path, params={name: value}, headers=headers), 422, "validation-error")
        assert [e["field"] for e in body["errors"]] == [f"query.{name}"], (path, body)
    before = audit_count()
    designation = {
        "status": "besieged",
        "besieged_by": "ISIL",
        "severity": 5,
        "effective_from": value,
        "reason": "Encircled",
    }
    body = _is_problem(
        client.post(f"/v1/cities/{city}/designations", json=designation, headers=coordinator), 422, "validation-error"
    )
    assert [e["field"] for e in body["errors"]] == ["body.effective_from"]
    request = {
        "destination_city_id": city,
        "origin_name": "Damascus",
        "trucks": 1,
        "people_targeted": 1,
        "contact": {"name": "Lead"},
        "planned_departure": "2030-01-01T06:00:00+03:00",
        "planned_arrival": value,
        "cargo_lines": [{"sector": "food", "item": "Rice", "quantity": 1, "unit": "MT"}],
    }
    body = _is_problem(client.post("/v1/access-requests", json=request, headers=partner), 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body.planned_arrival"]
    assert audit_count() == before


def test_a_json_number_is_not_a_time(client, time_world):
    designation = {"status": "accessible", "severity": 0, "effective_from": 1700000000, "reason": "Open"}
    body = _is_problem(
        client.post(
            f"/v1/cities/{time_world['city']}/designations", json=designation, headers=time_world["coordinator"]
        ),
        422,
        "validation-error",
    )
    assert [e["field"] for e in body["errors"]] == ["body.effective_from"]
    fine = client.get(
        "/v1/access-snapshot", params={"as_of": "2016-09-12 19:00:00.123456+03:00"}, headers=time_world["coordinator"]
    )
    assert fine.status_code == 200


def test_a_forged_cursor_with_a_time_out_of_range_or_naive_is_422(client, time_world):
    from api.pagination import encode_cursor

    for moment in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2016-01-01T00:00:00"):
        cursor = encode_cursor([moment, "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f"])
        for path, params in (
            (f"/v1/cities/{time_world['city']}/designations", {}),
            ("/v1/access-requests", {"sort": "departure"}),
        ):
            body = _is_problem(
                client.get(path, params={**params, "cursor": cursor}, headers=time_world["coordinator"]),
                422,
                "validation-error",
            )
            assert body["errors"][0]["field"] == "query.cursor", (path, moment)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None])
def test_a_json_body_under_another_content_type_is_415_and_writes_nothing(
    client, admin_headers, audit_count, content_type
):
    before = audit_count()
    headers = {**admin_headers, **({"Content-Type": content_type} if content_type else {})}
    response = client.post("/v1/organizations", content=b'{"name": "Relief NGO", "kind": "ngo"}', headers=headers)
    if content_type is None:
        # httpx sends no Content-Type for raw bytes: a body of no declared type is not JSON either.
        assert "content-type" not in {k.lower() for k in response.request.headers}
    _is_problem(response, 415, "unsupported-media-type")
    assert "Content-Type: application/json" in response.json()["detail"]
    assert audit_count() == before
    # JSON under its own names is taken; the OAuth 2.0 endpoints stay form-encoded.
    assert (
        client.post(
            "/v1/organizations",
            content=b'{"name": "Relief NGO", "kind": "ngo"}',
            headers={**admin_headers, "Content-Type": "application/json; charset=utf-8"},
        ).status_code
        == 201
    )
    assert (
        client.post("/v1/auth/token", data={"grant_type": "password"}).status_code == 422
    )  # a form, asked for its fields


def test_the_contract_declares_415_and_the_service_accounts_scopes(app):
    schema = app.openapi()
    assert "415" in schema["paths"]["/v1/organizations"]["post"]["responses"]
    assert "415" not in schema["paths"]["/v1/auth/token"]["post"]["responses"]
    flows = schema["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert set(flows["clientCredentials"]["scopes"]) == {"read", "requests:write"}
    assert "pause.endorsed" in schema["components"]["schemas"]["EventType"]["enum"]
