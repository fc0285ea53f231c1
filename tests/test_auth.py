"""Authentication: grants, token attacks, refresh rotation and reuse, revocation, throttling."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt
from sqlalchemy import func, select

from auth.roles import OrganizationKind, Role, Scope
from db.models import AuthSession, LoginAttempt, RefreshToken
from tests.conftest import PASSWORD, TEST_AUDIT_KEY, TEST_SECRET
from workflow import identity


def _me(client, token: str):
    return client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})


def _assert_401(response):
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "urn:aidaccess:problem:unauthenticated"


def _claims(**overrides):
    now = int(time.time())
    claims = {
        "iss": "aidaccess",
        "aud": "aidaccess-api",
        "sub": str(uuid.uuid4()),
        "pk": "user",
        "org": str(uuid.uuid4()),
        "role": "admin",
        "scopes": [],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    claims.update(overrides)
    return claims


def _forge(user, **overrides) -> str:
    claims = _claims(sub=str(user.id), org=str(user.organization_id), role=user.role, **overrides)
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


# ---- password grant -----------------------------------------------------------------


def test_password_grant_gives_tokens_and_me_names_the_user(world, client):
    user = world.user(Role.partner)
    tokens = world.login(user)
    assert tokens["token_type"] == "bearer"
    assert 0 < tokens["expires_in"] <= 15 * 60
    assert tokens["refresh_token"]
    claims = jwt.get_unverified_claims(tokens["access_token"])
    for name in ("iss", "aud", "sub", "org", "role", "scopes", "iat", "nbf", "exp", "jti", "typ"):
        assert name in claims
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "HS256"
    me = _me(client, tokens["access_token"]).json()
    assert me["id"] == str(user.id)
    assert me["organization"]["id"] == str(user.organization_id)
    assert me["kind"] == "user"


def test_wrong_password_and_unknown_email_get_the_same_401(world, client):
    user = world.user(Role.partner)
    wrong = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": "nope-nope-nope"}
    )
    unknown = client.post(
        "/v1/auth/token",
        data={"grant_type": "password", "username": "nobody@example.org", "password": "nope-nope-nope"},
    )
    _assert_401(wrong)
    _assert_401(unknown)
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.json()["error"] == unknown.json()["error"] == "invalid_grant"


def test_unknown_email_costs_one_password_verification_like_a_wrong_password(world, client, services, monkeypatch):
    user = world.user(Role.partner)
    calls = []
    hasher = services.hasher
    original_verify, original_burn = hasher.verify, hasher.burn
    monkeypatch.setattr(hasher, "verify", lambda *a: calls.append("verify") or original_verify(*a))
    monkeypatch.setattr(hasher, "burn", lambda *a: calls.append("burn") or original_burn(*a))
    client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": "wrong-password-1"}
    )
    client.post(
        "/v1/auth/token",
        data={"grant_type": "password", "username": "ghost@example.org", "password": "wrong-password-1"},
    )
    assert calls == ["verify", "burn"]


def test_burn_verifies_against_a_real_argon2_hash(services):
    # The dummy hash must cost what a real one does: same algorithm, same parameters.
    real = services.hasher.hash("something long enough")
    dummy = services.hasher._dummy_hash
    assert dummy.split("$")[1:4] == real.split("$")[1:4]


def test_deactivated_user_cannot_sign_in(world, client, session):
    user = world.user(Role.partner)
    user.active = False
    session.add(user)
    session.commit()
    _assert_401(
        client.post("/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": PASSWORD})
    )


def test_email_is_case_insensitive_at_sign_in(world, client):
    user = world.user(Role.partner)
    response = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": user.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "form, field",
    [
        ({"grant_type": "password", "password": "x" * 12}, "body.username"),
        ({"grant_type": "password", "username": "a@b.org"}, "body.password"),
        ({"grant_type": "client_credentials", "client_secret": "x"}, "body.client_id"),
        ({"grant_type": "refresh_token"}, "body.refresh_token"),
        ({"grant_type": "implicit"}, "body.grant_type"),
        ({}, "body.grant_type"),
    ],
)
def test_token_request_missing_fields_is_422_naming_the_field(client, form, field):
    response = client.post("/v1/auth/token", data=form)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


# ---- token attacks ---------------------------------------------------------------------


def test_a_well_formed_token_forged_with_our_key_is_accepted(world, client):
    # The control for the attacks below: the forging helper itself makes valid tokens.
    user = world.user(Role.partner)
    assert _me(client, _forge(user, sid=str(_open_session(world, user)))).status_code == 200


def _open_session(world, user) -> uuid.UUID:
    world.login(user)
    return world.session.execute(select(AuthSession.id).where(AuthSession.user_id == user.id)).scalars().first()


def _none_alg(claims: dict) -> str:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _hs256_raw(claims: dict, key: bytes) -> str:
    """HS256 signed by hand (jose refuses PEM keys as HMAC secrets, an attacker's tool would not)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def test_token_attacks_are_all_401(world, client):
    user = world.user(Role.admin)
    sid = str(_open_session(world, user))
    now = int(time.time())
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    valid = _forge(user, sid=sid)
    header, payload, signature = valid.split(".")
    altered_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    altered_claims["role"] = "admin"
    altered_claims["sub"] = str(uuid.uuid4())
    altered_payload = base64.urlsafe_b64encode(json.dumps(altered_claims).encode()).decode().rstrip("=")
    base = _claims(sub=str(user.id), org=str(user.organization_id), sid=sid)
    attacks = {
        "alg none": _none_alg(base),
        "signed with another key": jwt.encode(base, "another-secret-" + "y" * 40, algorithm="HS256"),
        "public key as HMAC secret": _hs256_raw(base, public_pem),
        "RS256 with an attacker key": jwt.encode(
            base,
            private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            algorithm="RS256",
        ),
        "HS512": jwt.encode(base, TEST_SECRET, algorithm="HS512"),
        "expired": _forge(user, sid=sid, iat=now - 900, nbf=now - 900, exp=now - 1),
        "not yet valid": _forge(user, sid=sid, nbf=now + 3600, exp=now + 7200),
        "issued in the future": _forge(user, sid=sid, iat=now + 3600, exp=now + 7200),
        "wrong audience": _forge(user, sid=sid, aud="someone-else"),
        "wrong issuer": _forge(user, sid=sid, iss="evil"),
        "altered payload": f"{header}.{altered_payload}.{signature}",
        "no exp": jwt.encode({k: v for k, v in base.items() if k != "exp"}, TEST_SECRET, algorithm="HS256"),
        "no iat": jwt.encode({k: v for k, v in base.items() if k != "iat"}, TEST_SECRET, algorithm="HS256"),
        "no sub": jwt.encode({k: v for k, v in base.items() if k != "sub"}, TEST_SECRET, algorithm="HS256"),
        "wrong token type": _forge(user, sid=sid, typ="calendar"),
        "unknown subject": jwt.encode({**base, "sub": str(uuid.uuid4())}, TEST_SECRET, algorithm="HS256"),
        "no session": _forge(user),
        "garbage": "not-a-jwt",
        "refresh token as access token": world.login(user)["refresh_token"],
    }
    for name, token in attacks.items():
        response = _me(client, token)
        assert response.status_code == 401, f"{name}: {response.status_code}"
        _assert_401(response)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_missing_or_malformed_authorization_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    _assert_401(client.get("/v1/me", headers=headers))


def test_deactivated_users_token_stops_working_at_once(world, client):
    admin = world.user(Role.admin)
    user = world.user(Role.partner)
    token = world.login(user)["access_token"]
    assert _me(client, token).status_code == 200
    response = client.patch(f"/v1/users/{user.id}", json={"active": False}, headers=world.headers(admin))
    assert response.status_code == 200, response.text
    _assert_401(_me(client, token))


def test_deleted_service_accounts_token_stops_working_at_once(world, client):
    admin = world.user(Role.admin)
    account = world.service_account(world.org(OrganizationKind.un_agency), [Scope.read], admin)
    headers = world.service_headers(account)
    me = client.get("/v1/me", headers=headers)
    assert me.status_code == 200 and me.json()["kind"] == "service_account" and me.json()["scopes"] == ["read"]
    assert client.delete(f"/v1/service-accounts/{account['id']}", headers=world.headers(admin)).status_code == 204
    _assert_401(client.get("/v1/me", headers=headers))
    # ... and it cannot get a new one.
    again = client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
    )
    _assert_401(again)


def test_an_expired_token_is_refused_by_the_application_clock(world, client, frozen_clock):
    user = world.user(Role.partner)
    token = world.login(user)["access_token"]
    assert _me(client, token).status_code == 200
    frozen_clock.advance(minutes=16)
    _assert_401(_me(client, token))


# ---- client credentials --------------------------------------------------------------


def test_client_credentials_by_form_and_by_basic_auth(world, client):
    account = world.service_account(world.org(OrganizationKind.ngo), [Scope.read, Scope.requests_write])
    by_form = client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
    )
    assert by_form.status_code == 200 and by_form.json()["refresh_token"] is None
    assert set(by_form.json()["scope"].split()) == {"read", "requests:write"}
    basic = base64.b64encode(f"{account['client_id']}:{account['client_secret']}".encode()).decode()
    by_basic = client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert by_basic.status_code == 200 and by_basic.json()["scope"] == "read"
    wrong = client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": account["client_id"], "client_secret": "wrong"},
    )
    _assert_401(wrong)
    assert wrong.json()["error"] == "invalid_client"


def test_client_credentials_cannot_ask_for_scopes_not_granted(world, client):
    account = world.service_account(world.org(OrganizationKind.ngo), [Scope.read])
    response = client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
            "scope": "requests:write",
        },
    )
    _assert_401(response)
    assert response.json()["error"] == "invalid_scope"


# ---- refresh tokens ------------------------------------------------------------------


def _refresh(client, token):
    return client.post("/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": token})


def test_refresh_rotates_and_is_stored_hashed(world, client, session):
    user = world.user(Role.observer)
    first = world.login(user)
    second = _refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert _me(client, second.json()["access_token"]).status_code == 200
    stored = session.execute(select(RefreshToken.token_hash)).scalars().all()
    assert first["refresh_token"] not in stored and second.json()["refresh_token"] not in stored
    assert all(len(h) == 64 for h in stored)


def test_refresh_token_reuse_revokes_the_whole_family(world, client, session):
    user = world.user(Role.partner)
    first = world.login(user)
    second = _refresh(client, first["refresh_token"]).json()
    # An attacker replays the first refresh token.
    replay = _refresh(client, first["refresh_token"])
    _assert_401(replay)
    # Every token of that sign-in is dead: the newest refresh token and its access token.
    _assert_401(_refresh(client, second["refresh_token"]))
    _assert_401(_me(client, second["access_token"]))
    revoked = session.execute(select(AuthSession.revoked_reason).where(AuthSession.user_id == user.id)).scalars().all()
    assert revoked == ["refresh_token_reused"]
    # Another sign-in of the same user is untouched.
    assert _me(client, world.login(user)["access_token"]).status_code == 200


def test_refresh_token_expires(world, client, frozen_clock):
    user = world.user(Role.partner)
    tokens = world.login(user)
    frozen_clock.advance(days=15)
    _assert_401(_refresh(client, tokens["refresh_token"]))


def test_refresh_refused_for_a_deactivated_user(world, client, session):
    user = world.user(Role.partner)
    tokens = world.login(user)
    user.active = False
    session.add(user)
    session.commit()
    _assert_401(_refresh(client, tokens["refresh_token"]))


# ---- revocation ----------------------------------------------------------------------


def test_revoking_a_refresh_token_ends_the_sign_in(world, client):
    user = world.user(Role.partner)
    tokens = world.login(user)
    assert client.post("/v1/auth/revoke", data={"token": tokens["refresh_token"]}).status_code == 200
    _assert_401(_me(client, tokens["access_token"]))
    _assert_401(_refresh(client, tokens["refresh_token"]))


def test_revoking_an_access_token_kills_only_that_token(world, client):
    user = world.user(Role.partner)
    tokens = world.login(user)
    assert (
        client.post(
            "/v1/auth/revoke", data={"token": tokens["access_token"], "token_type_hint": "access_token"}
        ).status_code
        == 200
    )
    _assert_401(_me(client, tokens["access_token"]))
    renewed = _refresh(client, tokens["refresh_token"])
    assert renewed.status_code == 200
    assert _me(client, renewed.json()["access_token"]).status_code == 200


def test_revoking_an_unknown_token_answers_200_and_writes_nothing(client, audit_count):
    before = audit_count()
    assert client.post("/v1/auth/revoke", data={"token": "whatever"}).status_code == 200
    assert audit_count() == before


# ---- throttling ----------------------------------------------------------------------


def _fail_login(client, email):
    return client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": email, "password": "wrong-password!"}
    )


def test_five_failures_lock_the_account_with_retry_after(world, client, session, frozen_clock):
    user = world.user(Role.partner)
    for _ in range(5):
        _assert_401(_fail_login(client, user.email))
        frozen_clock.advance(seconds=10)
    locked = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert locked.headers["content-type"] == "application/problem+json"
    retry_after = int(locked.headers["Retry-After"])
    assert 15 * 60 - 60 <= retry_after <= 15 * 60
    # The state is in the database, so it holds across workers and restarts.
    failures = session.execute(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.account_key == user.email, LoginAttempt.succeeded.is_(False))
    ).scalar_one()
    assert failures == 5
    # Once the window has passed, the right password works again.
    frozen_clock.advance(seconds=retry_after)
    assert (
        client.post(
            "/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": PASSWORD}
        ).status_code
        == 200
    )


def test_a_password_changed_between_its_check_and_the_sign_in_is_checked_again(world, session, services):
    """The check runs before the sign-in's write, outside it; if the password changed in between (a
    reset), the write checks against the new hash: the old password no longer signs in."""
    user = world.user(Role.partner)
    config = services.identity
    stored = identity.stored_password(session=session, config=config, email=user.email)
    checked = identity.check_secret(config=config, stored=stored, secret=PASSWORD)
    assert checked.ok
    user.password_hash = services.hasher.hash("a brand new password 42")
    session.add(user)
    session.flush()
    refused = identity.login_with_password(
        session=session, config=config, checked=checked, password=PASSWORD, client_ip=None
    )
    assert isinstance(refused, identity.AuthRefusal) and refused.error == "invalid_grant"
    # And the other way: checked against the old hash, signed in with the new one.
    stale = identity.check_secret(config=config, stored=stored, secret="a brand new password 42")
    assert not stale.ok
    granted = identity.login_with_password(
        session=session, config=config, checked=stale, password="a brand new password 42", client_ip=None
    )
    assert isinstance(granted, identity.TokenGrant)


def test_four_failures_do_not_lock_and_a_success_resets(world, client, frozen_clock):
    user = world.user(Role.partner)
    for _ in range(4):
        _fail_login(client, user.email)
    world.login(user)
    for _ in range(4):
        _assert_401(_fail_login(client, user.email))
    world.login(user)


def test_unknown_accounts_are_throttled_the_same_way(client):
    for _ in range(5):
        _assert_401(_fail_login(client, "ghost@example.org"))
    assert _fail_login(client, "ghost@example.org").status_code == 429


def test_throttle_survives_a_new_app_instance(world, client, services):
    """Another worker (a new app over the same database) sees the same lock."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    user = world.user(Role.partner)
    for _ in range(5):
        _fail_login(client, user.email)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as other_worker:
        assert _fail_login(other_worker, user.email).status_code == 429


@pytest.mark.skipif(
    bool(__import__("tests.conftest", fromlist=["PG_URL"]).PG_URL), reason="the memo is SQLite's (PRAGMA data_version)"
)
def test_sqlite_principal_memo_sees_every_commit_at_once(tmp_path):
    """The real SQLite hot reads remember principals until the database changes; a
    deactivation, a logout and a revocation, each committed by the app's own write
    connection, are seen by the very next request."""
    from fastapi.testclient import TestClient

    from aidaccess.services import build_services
    from aidaccess.settings import Settings
    from api.app import create_app
    from db import migrations
    from db.hot import SqliteHotReads
    from tests.conftest import FAST_HASHER
    from workflow.admin import create_organization, create_user
    from workflow.audit import Actor

    url = f"sqlite:///{tmp_path / 'memo.sqlite3'}"
    migrations.upgrade(url)
    services = build_services(
        Settings(_env_file=None, secret_key=TEST_SECRET, audit_key=TEST_AUDIT_KEY, data_dir=tmp_path, database_url=url),
        hasher=FAST_HASHER,
    )
    assert isinstance(services.hot, SqliteHotReads)
    actor = Actor.system("tests")
    with services.database.session(write=True) as session:
        orgs = {
            kind: create_organization(session=session, actor=actor, name=kind.value, kind=kind).id
            for kind in (OrganizationKind.secretariat, OrganizationKind.ngo, OrganizationKind.observer)
        }
        home = {
            Role.admin: OrganizationKind.secretariat,
            Role.coordinator: OrganizationKind.secretariat,
            Role.partner: OrganizationKind.ngo,
            Role.observer: OrganizationKind.observer,
        }
        people = {
            role: create_user(
                session=session,
                actor=actor,
                hasher=FAST_HASHER,
                email=f"{role.value}@example.org",
                full_name=role.value,
                organization_id=orgs[kind],
                role=role,
                password=PASSWORD,
            )
            for role, kind in home.items()
        }
        session.commit()
        ids = {role: user.id for role, user in people.items()}

    def login(role):
        response = client.post(
            "/v1/auth/token",
            data={"grant_type": "password", "username": f"{role.value}@example.org", "password": PASSWORD},
        )
        assert response.status_code == 200, response.text
        return response.json()

    with TestClient(create_app(services=services), client=("127.0.0.1", 50000)) as client:
        admin = {"Authorization": f"Bearer {login(Role.admin)['access_token']}"}
        partner = login(Role.partner)["access_token"]
        poll = {"Authorization": f"Bearer {partner}"}
        for _ in range(3):
            assert _me(client, partner).status_code == 200
            assert client.get("/v1/access-snapshot", headers=poll).status_code == 200  # answered before routing
        early = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("aidaccess_cached_reads_total{")
        ]
        assert early == ['aidaccess_cached_reads_total{status="200"} 3.0']
        assert client.patch(f"/v1/users/{ids[Role.partner]}", json={"active": False}, headers=admin).status_code == 200
        _assert_401(_me(client, partner))
        _assert_401(client.get("/v1/access-snapshot", headers=poll))

        coordinator = login(Role.coordinator)
        assert _me(client, coordinator["access_token"]).status_code == 200
        assert client.post("/v1/auth/revoke", data={"token": coordinator["refresh_token"]}).status_code == 200
        _assert_401(_me(client, coordinator["access_token"]))

        observer = login(Role.observer)["access_token"]
        assert _me(client, observer).status_code == 200
        assert client.post("/v1/auth/revoke", data={"token": observer}).status_code == 200
        _assert_401(_me(client, observer))


def test_me_is_answered_before_routing_exactly_as_the_endpoint_answers(client, world, monkeypatch):
    """api.fastpath answers a plain GET /v1/me; with a query string it goes through FastAPI.
    Both must give the same bytes and headers, for a person and for a service account."""
    from types import SimpleNamespace

    import api.fastpath
    from api import reads

    early_calls = []

    async def me(*args):  # noqa: ANN002, ANN202
        early_calls.append(args)
        return await reads.me(*args)

    monkeypatch.setattr(api.fastpath, "reads", SimpleNamespace(me=me, Answer=reads.Answer))
    organization = world.org(OrganizationKind.ngo)
    partner = world.user(Role.partner, organization)
    account = world.service_account(organization, [Scope.read])
    for headers in (world.headers(partner), world.service_headers(account)):
        early = client.get("/v1/me", headers=headers)
        assert len(early_calls) == 1  # answered before routing
        routed = client.get("/v1/me", params={"via": "router"}, headers=headers)
        assert len(early_calls) == 1
        early_calls.clear()
        assert early.status_code == routed.status_code == 200
        assert early.content == routed.content
        ignore = {"x-request-id", "date"}
        assert {k: v for k, v in early.headers.items() if k not in ignore} == {
            k: v for k, v in routed.headers.items() if k not in ignore
        }
    # A refused token is left to the app, which answers 401 as a problem.
    _assert_401(client.get("/v1/me", headers={"Authorization": "Bearer not-a-token"}))
    _assert_401(client.get("/v1/me"))


def test_sign_in_attempts_older_than_the_window_are_pruned(client, session, frozen_clock):
    """A flood of unknown e-mails left a row each, for good; attempts past the throttling window
    count for nothing and are deleted by a later sign-in's write."""
    from sqlalchemy import func, select

    from db.models import LoginAttempt

    def attempts() -> int:
        session.expire_all()
        return session.execute(select(func.count()).select_from(LoginAttempt)).scalar_one()

    def guess(email: str) -> int:
        return client.post(
            "/v1/auth/token", data={"grant_type": "password", "username": email, "password": "wrong-password"}
        ).status_code

    assert [guess(f"nobody{i}@example.org") for i in range(3)] == [401] * 3
    assert attempts() == 3
    frozen_clock.advance(minutes=15, seconds=1)
    assert guess("later@example.org") == 401
    assert attempts() == 1
