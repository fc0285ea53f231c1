"""Admin API: the authorization matrix and validation of organizations, users and service accounts."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from auth.roles import OrganizationKind, Role, Scope
from db.models import ServiceAccount, User
from tests.conftest import PASSWORD

CALLERS = ["anonymous", *[r.value for r in Role], "service_read", "service_write"]


def _caller_headers(world, caller: str, organization) -> dict[str, str]:
    """Headers for a caller of the given kind, a member of ``organization`` where the kind fits."""
    if caller == "anonymous":
        return {}
    if caller.startswith("service"):
        scopes = [Scope.read] if caller == "service_read" else [Scope.read, Scope.requests_write]
        return world.service_headers(world.service_account(organization, scopes))
    role = Role(caller)
    fits = {
        Role.partner: OrganizationKind.ngo,
        Role.coordinator: OrganizationKind.secretariat,
        Role.admin: OrganizationKind.secretariat,
        Role.co_chair: OrganizationKind.co_chair_delegation,
        Role.observer: OrganizationKind.observer,
    }[role]
    home = organization if organization.kind == fits else world.org(fits)
    return world.headers(world.user(role, home))


def _actions(world, target_org):
    """(name, method, path, body) for every admin action, aimed at ``target_org``."""
    member = world.user(Role.partner if target_org.kind == "ngo" else Role.coordinator, target_org)
    secretariat = target_org if target_org.kind == "secretariat" else world.org(OrganizationKind.secretariat)
    account = world.service_account(target_org, [Scope.read])
    suffix = uuid.uuid4().hex[:6]
    return [
        ("list organizations", "GET", "/v1/organizations", None),
        ("create organization", "POST", "/v1/organizations", {"name": f"New NGO {suffix}", "kind": "ngo"}),
        ("get organization", "GET", f"/v1/organizations/{target_org.id}", None),
        ("update organization", "PATCH", f"/v1/organizations/{target_org.id}", {"name": f"Renamed {suffix}"}),
        ("list users", "GET", "/v1/users", None),
        (
            "create user",
            "POST",
            "/v1/users",
            {
                "email": f"new-{suffix}@example.org",
                "full_name": "New Person",
                "organization_id": str(secretariat.id),
                "role": "coordinator",
                "password": PASSWORD,
            },
        ),
        ("get user", "GET", f"/v1/users/{member.id}", None),
        ("update user", "PATCH", f"/v1/users/{member.id}", {"full_name": "Renamed Person"}),
        ("list service accounts", "GET", "/v1/service-accounts", None),
        (
            "create service account",
            "POST",
            "/v1/service-accounts",
            {"name": "dash", "organization_id": str(target_org.id)},
        ),
        ("delete service account", "DELETE", f"/v1/service-accounts/{account['id']}", None),
        ("read audit", "GET", "/v1/audit", None),
        ("read me", "GET", "/v1/me", None),
    ]


ADMIN_SUCCESS = {"GET": 200, "POST": 201, "PATCH": 200, "DELETE": 204}


def _expected(caller: str, action: str, method: str) -> int:
    if caller == "anonymous":
        return 401
    if action == "read me":
        return 200
    if action == "read audit":
        return 200 if caller in ("coordinator", "admin") else 403
    return ADMIN_SUCCESS[method] if caller == "admin" else 403


@pytest.mark.parametrize("target", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
def test_admin_authorization_matrix(world, client, audit_count, caller, target):
    caller_org = world.org(OrganizationKind.secretariat if caller in ("admin", "coordinator") else OrganizationKind.ngo)
    headers = _caller_headers(world, caller, caller_org)
    target_org = caller_org if target == "own" else world.org(OrganizationKind.ngo)
    failures = []
    for name, method, path, body in _actions(world, target_org):
        before = audit_count()
        response = client.request(method, path, json=body, headers=headers)
        expected = _expected(caller, name, method)
        if response.status_code != expected:
            failures.append(
                f"{caller} {name} ({target} org): {response.status_code} != {expected}: {response.text[:200]}"
            )
            continue
        if expected >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            assert audit_count() == before, f"{caller} {name}: a refused request wrote an audit event"
        elif method != "GET":
            assert audit_count() == before + 1, f"{caller} {name}: a write without exactly one audit event"
    assert not failures, "\n".join(failures)


# ---- organizations --------------------------------------------------------------------


@pytest.fixture
def admin_headers(world):
    return world.headers(world.user(Role.admin))


def test_organization_names_are_unique_regardless_of_case(client, admin_headers, audit_count):
    assert (
        client.post("/v1/organizations", json={"name": "Mercy Corps", "kind": "ngo"}, headers=admin_headers).status_code
        == 201
    )
    before = audit_count()
    duplicate = client.post(
        "/v1/organizations", json={"name": "  mercy   CORPS ", "kind": "ngo"}, headers=admin_headers
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["type"] == "urn:aidaccess:problem:conflict"
    assert audit_count() == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "X", "kind": "militia"}, "body.kind"),
        ({"name": "", "kind": "ngo"}, "body.name"),
        ({"name": "   ", "kind": "ngo"}, "body.name"),
        ({"kind": "ngo"}, "body.name"),
        ({"name": "X" * 201, "kind": "ngo"}, "body.name"),
        ({"name": "X", "kind": "ngo", "extra": 1}, "body.extra"),
        ({"name": 5, "kind": "ngo"}, "body.name"),
    ],
)
def test_invalid_organization_is_422_naming_the_field(client, admin_headers, audit_count, body, field):
    before = audit_count()
    response = client.post("/v1/organizations", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert audit_count() == before


def test_changing_an_organizations_kind_must_fit_its_members(world, client, admin_headers):
    secretariat = world.org(OrganizationKind.secretariat)
    world.user(Role.coordinator, secretariat)
    response = client.patch(f"/v1/organizations/{secretariat.id}", json={"kind": "ngo"}, headers=admin_headers)
    assert response.status_code == 409
    assert "coordinator" in response.json()["detail"]
    empty = world.org(OrganizationKind.ngo)
    assert (
        client.patch(f"/v1/organizations/{empty.id}", json={"kind": "un_agency"}, headers=admin_headers).json()["kind"]
        == "un_agency"
    )


@pytest.mark.parametrize("changes", [{"name": None}, {"kind": None}, {"name": None, "kind": "un_agency"}])
def test_an_organization_edit_never_removes_its_name_or_kind(world, client, admin_headers, audit_count, changes):
    # null removes a value in every edit (as for requests, pauses and cities); these two every organization needs
    _assert_edit_refused(
        client, admin_headers, audit_count, f"/v1/organizations/{world.org(OrganizationKind.ngo).id}", changes
    )


def _assert_edit_refused(client, headers, audit_count, url: str, changes: dict) -> None:
    """A 422 naming the first field of ``changes``, nothing audited, the record as it was."""
    before, read = audit_count(), client.get(url, headers=headers).json()
    response = client.patch(url, json=changes, headers=headers)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [f"body.{next(iter(changes))}"]
    assert audit_count() == before
    assert client.get(url, headers=headers).json() == read


def test_unknown_organization_is_404(client, admin_headers):
    response = client.get(f"/v1/organizations/{uuid.uuid4()}", headers=admin_headers)
    assert response.status_code == 404
    assert client.get("/v1/organizations/not-a-uuid", headers=admin_headers).status_code == 422


def test_organizations_paginate_with_cursors_and_filter(world, client, admin_headers):
    created = {world.org(OrganizationKind.observer, f"Observer {i}").id for i in range(5)}
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "kind": "observer"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/organizations", params=params, headers=admin_headers).json()
        seen += [o["id"] for o in page["items"]]
        assert len(page["items"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {uuid.UUID(i) for i in seen} == created
    assert len(seen) == len(set(seen))
    assert client.get("/v1/organizations", params={"cursor": "garbage"}, headers=admin_headers).status_code == 422
    assert client.get("/v1/organizations", params={"limit": 0}, headers=admin_headers).status_code == 422
    assert client.get("/v1/organizations", params={"limit": 201}, headers=admin_headers).status_code == 422
    found = client.get("/v1/organizations", params={"q": "OBSERVER 3"}, headers=admin_headers).json()["items"]
    assert [o["name"] for o in found] == ["Observer 3"]


# ---- users ---------------------------------------------------------------------------


def _user_body(organization, **overrides):
    body = {
        "email": f"u-{uuid.uuid4().hex[:8]}@example.org",
        "full_name": "Some One",
        "organization_id": str(organization.id),
        "role": "partner",
        "password": PASSWORD,
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    "role, kind, ok",
    [
        ("partner", "un_agency", True),
        ("partner", "ngo", True),
        ("partner", "red_cross_red_crescent", True),
        ("partner", "secretariat", False),
        ("coordinator", "secretariat", True),
        ("coordinator", "ngo", False),
        ("co_chair", "co_chair_delegation", True),
        ("co_chair", "secretariat", False),
        ("observer", "observer", True),
        ("observer", "ngo", False),
        ("admin", "secretariat", True),
        ("admin", "ngo", False),
    ],
)
def test_a_role_must_fit_the_organizations_kind(world, client, admin_headers, audit_count, role, kind, ok):
    organization = world.org(OrganizationKind(kind))
    before = audit_count()
    response = client.post("/v1/users", json=_user_body(organization, role=role), headers=admin_headers)
    if ok:
        assert response.status_code == 201, response.text
        assert response.json()["role"] == role
    else:
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "body.role"
        assert audit_count() == before


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"email": "not-an-email"}, "body.email"),
        ({"email": "a@b"}, "body.email"),
        ({"password": "short"}, "body.password"),
        ({"role": "superuser"}, "body.role"),
        ({"organization_id": "nope"}, "body.organization_id"),
        ({"full_name": ""}, "body.full_name"),
    ],
)
def test_invalid_user_is_422_with_nothing_written(world, client, admin_headers, audit_count, session, overrides, field):
    organization = world.org(OrganizationKind.ngo)
    before = audit_count()
    body = _user_body(organization, **overrides)
    response = client.post("/v1/users", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert audit_count() == before
    assert session.execute(select(User).where(User.email == str(body["email"]).lower())).first() is None


def test_unknown_organization_for_a_user_is_422(client, admin_headers):
    response = client.post("/v1/users", json=_user_body(type("O", (), {"id": uuid.uuid4()})()), headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.organization_id"


def test_emails_are_unique_regardless_of_case(world, client, admin_headers, audit_count):
    organization = world.org(OrganizationKind.ngo)
    assert (
        client.post(
            "/v1/users", json=_user_body(organization, email="Dup@Example.org"), headers=admin_headers
        ).status_code
        == 201
    )
    before = audit_count()
    response = client.post("/v1/users", json=_user_body(organization, email="dup@example.ORG"), headers=admin_headers)
    assert response.status_code == 409
    assert audit_count() == before


def test_user_responses_never_carry_the_password_or_its_hash(world, client, admin_headers):
    organization = world.org(OrganizationKind.ngo)
    created = client.post("/v1/users", json=_user_body(organization), headers=admin_headers)
    text = created.text + client.get(f"/v1/users/{created.json()['id']}", headers=admin_headers).text
    assert PASSWORD not in text and "argon2" not in text and "password" not in text


def test_admins_cannot_lock_themselves_out(world, client):
    admin = world.user(Role.admin)
    headers = world.headers(admin)
    assert client.patch(f"/v1/users/{admin.id}", json={"active": False}, headers=headers).status_code == 409
    assert client.patch(f"/v1/users/{admin.id}", json={"role": "coordinator"}, headers=headers).status_code == 409


@pytest.mark.parametrize(
    "changes",
    [
        {"full_name": None},
        {"organization_id": None},
        {"role": None},
        {"active": None},
        {"password": None},
        {"role": None, "full_name": "Renamed"},
    ],
)
def test_a_user_edit_never_removes_what_a_user_needs(world, client, admin_headers, audit_count, changes):
    user = world.user(Role.partner)
    _assert_edit_refused(client, admin_headers, audit_count, f"/v1/users/{user.id}", changes)
    world.login(user)  # the password is the one it was


def test_role_change_must_fit_and_takes_effect_at_once(world, client, admin_headers):
    secretariat = world.org(OrganizationKind.secretariat)
    user = world.user(Role.coordinator, secretariat)
    token_headers = world.headers(user)
    assert client.get("/v1/audit", headers=token_headers).status_code == 200
    assert client.patch(f"/v1/users/{user.id}", json={"role": "partner"}, headers=admin_headers).status_code == 422
    assert client.patch(f"/v1/users/{user.id}", json={"role": "admin"}, headers=admin_headers).json()["role"] == "admin"
    # The same token now acts with the new role.
    assert client.get("/v1/me", headers=token_headers).json()["role"] == "admin"


def test_password_reset_signs_the_user_out_and_the_new_password_works(world, client, admin_headers):
    user = world.user(Role.partner)
    old = world.login(user)
    response = client.patch(f"/v1/users/{user.id}", json={"password": "a-brand-new-password"}, headers=admin_headers)
    assert response.status_code == 200
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {old['access_token']}"}).status_code == 401
    world.login(user, "a-brand-new-password")


def test_deactivation_is_audited_with_from_and_to_state(world, client, admin_headers):
    user = world.user(Role.partner)
    client.patch(f"/v1/users/{user.id}", json={"active": False}, headers=admin_headers)
    events = client.get(
        "/v1/audit", params={"entity_type": "user", "entity_id": str(user.id)}, headers=admin_headers
    ).json()["items"]
    assert [(e["action"], e["from_state"], e["to_state"]) for e in events] == [
        ("created", None, "active"),
        ("deactivated", "active", "inactive"),
    ]
    assert events[-1]["changes"] == {"active": {"from": True, "to": False}}
    assert events[-1]["request_id"]


def test_users_filter_by_organization_role_and_active(world, client, admin_headers):
    organization = world.org(OrganizationKind.ngo)
    a = world.user(Role.partner, organization)
    b = world.user(Role.partner, organization)
    client.patch(f"/v1/users/{b.id}", json={"active": False}, headers=admin_headers)
    listed = client.get(
        "/v1/users", params={"organization_id": str(organization.id), "active": "true"}, headers=admin_headers
    ).json()
    assert [u["id"] for u in listed["items"]] == [str(a.id)]
    by_q = client.get("/v1/users", params={"q": a.email.upper()}, headers=admin_headers).json()["items"]
    assert [u["id"] for u in by_q] == [str(a.id)]


# ---- service accounts ----------------------------------------------------------------


def test_service_account_secret_is_shown_once_and_stored_hashed(world, client, admin_headers, session):
    organization = world.org(OrganizationKind.un_agency)
    created = client.post(
        "/v1/service-accounts", json={"name": "dash", "organization_id": str(organization.id)}, headers=admin_headers
    )
    assert created.status_code == 201
    body = created.json()
    assert body["scopes"] == ["read"]  # read-only unless an admin grants more
    secret = body["client_secret"]
    listed = client.get("/v1/service-accounts", headers=admin_headers).text
    assert secret not in listed and "client_secret" not in listed
    stored = session.execute(select(ServiceAccount).where(ServiceAccount.client_id == body["client_id"])).scalar_one()
    assert stored.secret_hash != secret and stored.secret_hash.startswith("$argon2")
    audit = client.get("/v1/audit", params={"entity_id": body["id"]}, headers=admin_headers).text
    assert secret not in audit


def test_service_account_with_unknown_scope_is_422(world, client, admin_headers):
    organization = world.org(OrganizationKind.un_agency)
    response = client.post(
        "/v1/service-accounts",
        json={"name": "d", "organization_id": str(organization.id), "scopes": ["admin"]},
        headers=admin_headers,
    )
    assert response.status_code == 422


def test_deleting_a_service_account_twice_is_404(world, client, admin_headers):
    account = world.service_account(world.org(OrganizationKind.ngo), [Scope.read])
    assert client.delete(f"/v1/service-accounts/{account['id']}", headers=admin_headers).status_code == 204
    assert client.delete(f"/v1/service-accounts/{account['id']}", headers=admin_headers).status_code == 404
    assert account["id"] not in client.get("/v1/service-accounts", headers=admin_headers).text


def test_a_password_of_too_few_different_characters_is_refused_when_set_and_reset(world, client, admin_headers):
    organization = world.org(OrganizationKind.ngo)
    body = {
        "email": "simple@example.org",
        "full_name": "Simple",
        "organization_id": str(organization.id),
        "role": "partner",
        "password": "a" * 16,
    }
    created = client.post("/v1/users", json=body, headers=admin_headers)
    assert created.status_code == 422
    assert created.json()["errors"] == [
        {"field": "body.password", "message": "A password needs at least 5 different characters.", "code": "too_simple"}
    ]
    user = world.user(Role.partner, organization)
    reset = client.patch(f"/v1/users/{user.id}", json={"password": "12121212121212"}, headers=admin_headers)
    assert reset.status_code == 422 and reset.json()["errors"][0]["code"] == "too_simple"
