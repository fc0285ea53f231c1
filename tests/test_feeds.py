"""Feed tokens (issue 36): the snapshot as a URL for tools that send no header, read as an observer
reads it, listed and revoked by its owner, ended with its owner's sign-ins; and the integrators'
guide's feed example run as written against a real server."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import httpx
import hxl
import pytest

from auth.roles import OrganizationKind, Role, Scope
from tests.server import PASSWORD, aidaccess, cli_environment, login, running_server
from tests.test_access_requests import _body as request_body
from tests.test_cities import _city_body, _designation
from workflow import webhooks

GUIDE = Path(__file__).resolve().parents[1] / "openapi" / "INTEGRATORS.md"


@pytest.fixture
def feed_world(world, client):  # noqa: ANN001, ANN201
    coordinator_user = world.user(Role.coordinator)
    coordinator = world.headers(coordinator_user)
    city = client.post("/v1/cities", json=_city_body(name="Aleppo", name_ar="حلب"), headers=coordinator).json()
    client.post(f"/v1/cities/{city['id']}/designations", json=_designation("besieged"), headers=coordinator)
    ngo = world.org(OrganizationKind.ngo)
    partner = world.headers(world.user(Role.partner, ngo))
    convoy = client.post("/v1/access-requests", json=request_body(city["id"]), headers=partner).json()
    client.post(f"/v1/access-requests/{convoy['id']}/submit", headers=partner)
    assert client.post(f"/v1/access-requests/{convoy['id']}/approve", json={}, headers=coordinator).status_code == 200
    return {"coordinator_user": coordinator_user, "coordinator": coordinator, "city": city, "convoy": convoy}


def test_a_feed_token_reads_the_snapshot_in_every_format_as_an_observer(client, world, feed_world, frozen_clock):
    frozen_clock.advance(days=1)  # an observer counts the approved convoy from the next day's start
    coordinator = world.headers(feed_world["coordinator_user"])
    created = client.post("/v1/feed-tokens", json={"name": "Power BI"}, headers=coordinator)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("feed_") and created.json()["urls"]["hxl"].endswith(f"?token={token}&format=hxl")
    as_coordinator = client.get("/v1/access-snapshot", headers=coordinator).json()["cities"][0]["convoys"]
    assert [c["id"] for c in as_coordinator["upcoming"]] == [feed_world["convoy"]["id"]]
    # No header at all: the token in the URL.
    fed = client.get("/v1/access-snapshot", params={"token": token})
    assert fed.status_code == 200
    convoys = fed.json()["cities"][0]["convoys"]
    assert convoys["upcoming"] is None and convoys["upcoming_count"] == 1  # counts, as an observer; never the convoy
    assert feed_world["convoy"]["id"] not in fed.text
    assert (
        client.get(
            "/v1/access-snapshot", params={"token": token}, headers={"If-None-Match": fed.headers["etag"]}
        ).status_code
        == 304
    )
    csv = client.get("/v1/access-snapshot", params={"token": token, "format": "hxl", "bom": "true"})
    assert csv.content.startswith(b"\xef\xbb\xbf")
    rows = list(hxl.data(io.BytesIO(csv.content[3:])))
    assert rows[0].get("#loc+name") == "Aleppo" and rows[0].get("#access+type") == "besieged"
    geojson = client.get("/v1/access-snapshot", params={"token": token, "format": "geojson"})
    assert geojson.json()["type"] == "FeatureCollection"
    # The snapshot only: it opens nothing else.
    for path in (
        "/v1/me",
        "/v1/cities",
        f"/v1/access-requests/{feed_world['convoy']['id']}",
        f"/v1/cities/{feed_world['city']['id']}/access",
    ):
        assert client.get(path, params={"token": token}).status_code == 401, path
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_owner_lists_and_revokes_and_nobody_else_can(client, world, feed_world, audit_count):
    coordinator = feed_world["coordinator"]
    first = client.post("/v1/feed-tokens", json={"name": "HXL Proxy"}, headers=coordinator).json()
    second = client.post("/v1/feed-tokens", json={"name": "QGIS"}, headers=coordinator).json()
    other = world.headers(world.user(Role.co_chair))
    theirs = client.post("/v1/feed-tokens", json={"name": "Theirs"}, headers=other).json()
    listed = client.get("/v1/feed-tokens", headers=coordinator)
    assert [t["name"] for t in listed.json()] == ["QGIS", "HXL Proxy"]
    assert first["token"] not in listed.text and theirs["id"] not in listed.text
    # Another person's token is not found, and keeps working.
    assert client.delete(f"/v1/feed-tokens/{theirs['id']}", headers=coordinator).status_code == 404
    assert client.get("/v1/access-snapshot", params={"token": theirs["token"]}).status_code == 200
    before = audit_count()
    assert client.delete(f"/v1/feed-tokens/{first['id']}", headers=coordinator).status_code == 204
    assert audit_count() == before + 1
    refused = client.get("/v1/access-snapshot", params={"token": first["token"]})
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/access-snapshot", params={"token": second["token"]}).status_code == 200
    assert [t["revoked_at"] is not None for t in client.get("/v1/feed-tokens", headers=coordinator).json()] == [
        False,
        True,
    ]
    assert client.get("/v1/access-snapshot", params={"token": "feed_" + "x" * 43}).status_code == 401


def test_a_password_reset_or_deactivation_of_the_owner_ends_it(client, world, feed_world):
    admin = world.headers(world.user(Role.admin))
    owner = world.user(Role.observer)
    token = client.post("/v1/feed-tokens", json={"name": "Excel"}, headers=world.headers(owner)).json()["token"]
    assert client.get("/v1/access-snapshot", params={"token": token}).status_code == 200
    assert (
        client.patch(f"/v1/users/{owner.id}", json={"password": "another-long-password"}, headers=admin).status_code
        == 200
    )
    assert client.get("/v1/access-snapshot", params={"token": token}).status_code == 401
    signed_in = {"Authorization": f"Bearer {world.login(owner, 'another-long-password')['access_token']}"}
    later = client.post("/v1/feed-tokens", json={"name": "Excel again"}, headers=signed_in).json()
    assert client.get("/v1/access-snapshot", params={"token": later["token"]}).status_code == 200
    assert client.patch(f"/v1/users/{owner.id}", json={"active": False}, headers=admin).status_code == 200
    assert client.get("/v1/access-snapshot", params={"token": later["token"]}).status_code == 401


def test_service_accounts_use_their_own_tokens(client, world):
    ngo = world.org(OrganizationKind.ngo)
    account = world.service_headers(world.service_account(ngo, [Scope.read]))
    assert client.post("/v1/feed-tokens", json={"name": "Mine"}, headers=account).status_code == 403


@pytest.mark.e2e
def test_every_python_example_of_the_guide_runs_as_written(fresh_database, tmp_path):
    """openapi/INTEGRATORS.md's Python, every block in order, run as written against a real server with
    what a reader supplies around it (their credentials, their cursor store): a service account's
    token, paging every city, the feed token libhxl fetches itself (no header), a create retried with
    one Idempotency-Key, the change feed's loop, the webhook check."""
    token, every_city, feed, create_once, follow, webhook_check = re.findall(
        r"```python\n(.*?)```", GUIDE.read_text(), re.S
    )
    env = cli_environment(fresh_database.url, tmp_path)
    assert aidaccess(env, "db", "upgrade").returncode == 0
    assert aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    account = aidaccess(
        env,
        "service-accounts",
        "create",
        "Guide",
        "--org",
        "World Food Programme",
        "--scope",
        "read",
        "--scope",
        "requests:write",
    )
    client_id = account.stdout.split("client_id: ")[1].split()[0]
    client_secret = account.stdout.split("client_secret: ")[1].split()[0]

    class EndOfExample(Exception):
        pass

    class Clock:  # the feed's loop sleeps when nothing is new: here it ends instead
        @staticmethod
        def sleep(_seconds: float) -> None:
            raise EndOfExample

    handled, saved = [], []
    with running_server(env) as (base, _process):
        observer = login(base, "observer@aidaccess.example")
        feed_token = httpx.post(f"{base}/v1/feed-tokens", json={"name": "libhxl"}, headers=observer).json()["token"]
        run = {"BASE": base, "CLIENT_ID": client_id, "CLIENT_SECRET": client_secret, "FEED_TOKEN": feed_token}

        def example(code: str) -> None:
            exec(compile(code, str(GUIDE), "exec"), run)  # noqa: S102 - the guide's own examples

        example(token)
        example(every_city)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {run['token']()}"}) as client:
            cities = list(run["every_city"](client))
            assert len(cities) == 14
            example(feed)
            aleppo = next(c["id"] for c in cities if c["name"] == "Aleppo")
            run.update(client=client, body=request_body(aleppo))
            example(create_once)
            assert run["response"].status_code == 201
            run.update(load_cursor=lambda: None, handle=handled.append, save_cursor=saved.append, time=Clock)
            with pytest.raises(EndOfExample):
                example(follow)
        snapshot = httpx.get(f"{base}/v1/access-snapshot", headers=observer).json()["cities"]
    expected = sorted(
        c["city"]["name"] for c in snapshot if c["designation"] and c["designation"]["status"] == "besieged"
    )
    assert "Madaya" in expected and sorted(run["besieged"]) == expected
    assert "access_request.created" in {event["type"] for event in handled} and saved[-1] == saved[-2]
    example(webhook_check)
    namespace = run
    # The guide's webhook check accepts what the worker signs, and nothing else.
    secret, body = webhooks.new_secret(), b'{"type":"pause.approved"}'
    stamp = str(int(time.time()))
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": stamp,
        "webhook-signature": webhooks.sign(secret, "msg_1", int(stamp), body.decode()),
    }
    assert namespace["verify"](secret, headers, body)
    assert not namespace["verify"](secret, headers, body.replace(b"approved", b"denied"))
