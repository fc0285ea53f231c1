"""Webhooks: the outbox written with the change, signed deliveries, retries, visibility, refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from aidaccess import __version__
from auth.roles import OrganizationKind, Role
from db.models import WebhookDelivery
from workflow import webhooks
from workflow.errors import InvalidInput


class Receiver:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.responses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                receiver.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                status = receiver.responses.pop(0) if receiver.responses else 200
                self.send_response(status)
                if status == 302:
                    self.send_header("location", "http://169.254.169.254/latest/meta-data")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def deliver(connection):
    http = httpx.Client(timeout=5, follow_redirects=False)

    def run() -> int:
        return webhooks.run_once(
            lambda: Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False),
            http=http,
            production=False,
        )

    yield run
    http.close()


@pytest.fixture
def world_with_request(world, client):
    secretariat = world.org(OrganizationKind.secretariat, "Secretariat")
    wfp, msf = world.org(OrganizationKind.un_agency, "WFP"), world.org(OrganizationKind.ngo, "MSF")
    coordinator = world.user(Role.coordinator, secretariat)
    h = {
        "coordinator": world.headers(coordinator),
        "coordinator_user": coordinator,
        "partner": world.headers(world.user(Role.partner, wfp)),
        "partner_other": world.headers(world.user(Role.partner, msf)),
        "observer": world.headers(world.user(Role.observer)),
    }
    city = client.post(
        "/v1/cities",
        json={
            "name": "Daraya",
            "pcode": "C2498",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.46,
            "longitude": 36.23,
        },
        headers=h["coordinator"],
    ).json()
    departure = datetime.now(UTC) + timedelta(days=6)
    request = client.post(
        "/v1/access-requests",
        json={
            "destination_city_id": city["id"],
            "origin_name": "Damascus",
            "planned_departure": departure.isoformat(),
            "planned_arrival": (departure + timedelta(hours=3)).isoformat(),
            "trucks": 2,
            "people_targeted": 10,
            "contact": {"name": "L"},
            "cargo_lines": [{"sector": "food", "item": "Flour", "quantity": 1, "unit": "MT"}],
        },
        headers=h["partner"],
    ).json()
    client.post(f"/v1/access-requests/{request['id']}/submit", headers=h["partner"])
    return h, request


def _verify(secret: str, delivery: dict) -> bool:
    headers = delivery["headers"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(
            key, f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{delivery['body']}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    return headers["webhook-signature"] == f"v1,{expected}"


def test_a_delivery_is_signed_and_carries_the_feed_event(client, session, world_with_request, receiver, deliver):
    h, request = world_with_request
    created = client.post(
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["access_request.approved"]}, headers=h["coordinator"]
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and secret not in client.get("/v1/webhooks", headers=h["coordinator"]).text
    client.post(f"/v1/access-requests/{request['id']}/approve", json={}, headers=h["coordinator"])
    # The outbox row exists as soon as the approval committed.
    pending = session.execute(select(WebhookDelivery)).scalars().all()
    assert [(d.event_type, d.status) for d in pending] == [("access_request.approved", "pending")]
    assert deliver() == 1
    assert len(receiver.received) == 1
    delivery = receiver.received[0]
    assert _verify(secret, delivery)
    # The Standard Webhooks reference library verifies it and reads its shape: type, timestamp, data.
    verified = StandardWebhook(secret).verify(delivery["body"], delivery["headers"])
    feed = client.get("/v1/events", params={"types": "access_request.approved"}, headers=h["coordinator"]).json()[
        "items"
    ]
    assert verified == {"type": "access_request.approved", "timestamp": feed[0]["occurred_at"], "data": feed[0]}
    assert delivery["headers"]["user-agent"] == f"aidaccess-webhooks/{__version__}"
    tampered = delivery["body"].replace("approved", "denied")
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(secret).verify(tampered, delivery["headers"])
    listed = client.get(f"/v1/webhooks/{created.json()['id']}/deliveries", headers=h["coordinator"]).json()
    assert listed[0]["status"] == "delivered" and listed[0]["attempts"][0]["status_code"] == 200
    assert deliver() == 0  # nothing twice


def test_failures_are_retried_with_backoff(client, world_with_request, receiver, deliver, frozen_clock):
    h, request = world_with_request
    created = client.post(
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["access_request.approved"]}, headers=h["coordinator"]
    ).json()
    receiver.responses = [500, 302]
    client.post(f"/v1/access-requests/{request['id']}/approve", json={}, headers=h["coordinator"])
    assert deliver() == 1
    assert deliver() == 0  # not due yet: backed off
    frozen_clock.advance(seconds=7)
    assert deliver() == 1  # a redirect is not followed: another failure
    frozen_clock.advance(seconds=13)
    assert deliver() == 1
    assert len(receiver.received) == 3 and all(r["body"] == receiver.received[0]["body"] for r in receiver.received)
    history = client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=h["coordinator"]).json()[0]
    assert [a["status_code"] for a in history["attempts"]] == [500, 302, 200] and history["status"] == "delivered"
    assert client.get("/v1/webhooks", headers=h["coordinator"]).json()[0]["status"] == "active"


def test_giving_up_marks_the_subscription_failing(
    client, session, world_with_request, receiver, deliver, frozen_clock, world
):
    h, request = world_with_request
    client.post(
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["access_request.approved"]}, headers=h["coordinator"]
    )
    receiver.responses = [500] * 100
    client.post(f"/v1/access-requests/{request['id']}/approve", json={}, headers=h["coordinator"])
    attempts = 0
    while deliver():
        attempts += 1
        frozen_clock.advance(hours=2)
    delivery = session.execute(select(WebhookDelivery)).scalar_one()
    session.refresh(delivery)
    assert delivery.status == "abandoned" and 12 <= attempts <= 14  # every 2 h (capped backoff 1 h) over 24 h
    fresh = world.headers(h["coordinator_user"])  # the clock outlived the first token
    listed = client.get("/v1/webhooks", headers=fresh).json()
    assert listed[0]["status"] == "failing" and listed[0]["failing_since"]


def test_a_subscriber_only_gets_what_its_owner_may_read(client, session, world_with_request, receiver, deliver):
    h, request = world_with_request
    for caller in ("partner", "partner_other", "observer"):
        assert (
            client.post(
                "/v1/webhooks",
                json={"url": receiver.url, "event_types": ["access_request.approved", "city.created"]},
                headers=h[caller],
            ).status_code
            == 201
        )
    client.post(f"/v1/access-requests/{request['id']}/approve", json={}, headers=h["coordinator"])
    deliveries = session.execute(select(WebhookDelivery)).scalars().all()
    assert len(deliveries) == 1  # the owning partner's; neither the other partner nor the observer
    assert deliver() == 1


@pytest.mark.parametrize(
    "url, production, code",
    [
        ("http://example.org/hook", False, "https_required"),
        ("http://127.0.0.1:9/hook", True, "https_required"),
        ("https://169.254.169.254/latest", False, "refused_address"),
        ("https://[fe80::1]/x", False, "refused_address"),
        ("https://user:pw@example.org/x", False, "invalid_url"),
        ("ftp://example.org/x", False, "invalid_url"),
        # Not globally routable: shared address space (some clouds' metadata), IPv4 inside IPv6, documentation.
        ("https://100.64.0.1/", True, "refused_address"),
        ("https://100.100.100.200/", True, "refused_address"),
        ("https://[::ffff:10.0.0.1]/", True, "refused_address"),
        ("https://[::ffff:169.254.169.254]/", False, "refused_address"),
        ("https://192.0.2.10/", True, "refused_address"),
        # Host names that are not names (these were 500s).
        ("https://a..b/", False, "invalid_url"),
        ("https://" + "a" * 64 + ".example.org/", False, "invalid_url"),
        ("https://.example.org/", False, "invalid_url"),
        ("https://example.org:99999/", False, "invalid_url"),
    ],
)
def test_refused_urls(url, production, code):
    with pytest.raises(InvalidInput) as refused:
        webhooks.check_url(
            url,
            production=production,
            resolve=lambda host: [host.strip("[]")] if host[0].isdigit() or ":" in host else ["93.184.216.34"],
        )
    assert refused.value.errors[0].code == code


def test_a_delivery_connects_to_the_address_that_was_checked(monkeypatch):
    """DNS may answer differently between the check and the connection (rebinding): the
    connection goes to the address checked, with the host in Host and in TLS's server name."""
    answers = iter([["93.184.216.34"], ["10.0.0.5"]])
    monkeypatch.setattr(webhooks, "_resolve", lambda host: next(answers))
    sent = []

    class Http:
        def post(self, url, **kwargs):  # noqa: ANN001, ANN003, ANN201
            sent.append((url, kwargs))
            return httpx.Response(204)

    claimed = webhooks.Claimed(
        delivery_id=uuid.uuid4(),
        event_id=1,
        url="https://hooks.example.org:8443/in?x=1",
        secret=webhooks.new_secret(),
        body='{"type": "pause.approved", "occurred_at": "2016-10-18T09:12:44Z"}',
    )
    assert webhooks.send(claimed, http=Http(), production=True).status_code == 204
    url, kwargs = sent[0]
    assert url == "https://93.184.216.34:8443/in?x=1"
    assert kwargs["headers"]["host"] == "hooks.example.org:8443" and kwargs["extensions"] == {
        "sni_hostname": "hooks.example.org"
    }
    # The next delivery looks again, and refuses what DNS now answers.
    refused = webhooks.send(claimed, http=Http(), production=True)
    assert refused.status_code is None and refused.error.startswith("refused") and len(sent) == 1


def test_a_host_that_resolves_inside_is_refused_in_production():
    with pytest.raises(InvalidInput):
        webhooks.check_url("https://hooks.example.org/x", production=True, resolve=lambda host: ["10.0.0.5"])
    webhooks.check_url("https://hooks.example.org/x", production=True, resolve=lambda host: ["93.184.216.34"])


def test_bad_subscriptions_are_422_and_others_webhooks_are_404(client, world_with_request, receiver):
    h, _ = world_with_request
    unknown = client.post(
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["nope.nope"]}, headers=h["partner"]
    )
    assert unknown.status_code == 422
    [error] = unknown.json()["errors"]  # the unknown type refused naming the known ones
    assert error["field"] == "body.event_types.0" and "'access_request.approved'" in error["message"]
    assert (
        client.post(
            "/v1/webhooks",
            json={"url": "https://169.254.169.254/", "event_types": ["city.created"]},
            headers=h["partner"],
        ).status_code
        == 422
    )
    for url in ("https://a..b/", "https://" + "a" * 64 + ".org/", "https://é..x/"):
        bad = client.post("/v1/webhooks", json={"url": url, "event_types": ["city.created"]}, headers=h["partner"])
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.url", bad.text
    mine = client.post(
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["city.created"]}, headers=h["partner"]
    ).json()
    assert client.get(f"/v1/webhooks/{mine['id']}/deliveries", headers=h["partner_other"]).status_code == 404
    assert client.delete(f"/v1/webhooks/{mine['id']}", headers=h["partner_other"]).status_code == 404
    assert client.delete(f"/v1/webhooks/{mine['id']}", headers=h["partner"]).status_code == 204
    assert client.get("/v1/webhooks", headers=h["partner"]).json() == []


def test_two_workers_never_deliver_the_same_event_twice(fresh_database, receiver):
    """Real commits: on PostgreSQL the claim skips locked rows; on SQLite claims serialize."""
    from db import migrations
    from db.engine import Database
    from db.models import WebhookSubscription
    from tests.conftest import FAST_HASHER
    from workflow.admin import create_organization, create_user
    from workflow.audit import Actor
    from workflow.cities import create_city

    migrations.upgrade(fresh_database.url)
    database = Database(fresh_database.url, pool_size=4)
    actor = Actor.system("tests")
    with database.session(write=True) as session:
        secretariat = create_organization(
            session=session, actor=actor, name="Secretariat", kind=OrganizationKind.secretariat
        )
        owner = create_user(
            session=session,
            actor=actor,
            hasher=FAST_HASHER,
            email="c@example.org",
            full_name="C",
            organization_id=secretariat.id,
            role=Role.coordinator,
            password="a-long-test-password",
        )
        session.add(
            WebhookSubscription(
                owner_type="user",
                owner_id=owner.id,
                organization_id=secretariat.id,
                url=receiver.url,
                event_types=["city.created"],
                secret=webhooks.new_secret(),
            )
        )
        session.commit()
    with database.session(write=True) as session:
        for i in range(40):
            create_city(
                session=session,
                actor=actor,
                data={
                    "name": f"Town {i}",
                    "pcode": f"C{500000 + i}",
                    "adm1_pcode": "SY01",
                    "adm1_name": "Damascus",
                    "latitude": 33.5,
                    "longitude": 36.3,
                },
            )
        session.commit()

    def work() -> None:
        with httpx.Client(timeout=5, follow_redirects=False) as http:
            while webhooks.run_once(lambda: database.session(write=True), http=http, production=False, limit=3):
                pass

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    database.dispose()
    events = [json.loads(r["body"])["data"]["id"] for r in receiver.received]
    assert len(events) == 40 and len(set(events)) == 40


def test_a_slow_subscriber_holds_up_no_other(client, world_with_request, deliver):
    """One subscriber hangs until released; the other is delivered meanwhile."""
    h, request = world_with_request
    release, fast_received = threading.Event(), threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            release.wait(timeout=30)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:  # noqa: ANN002
            return None

    class Fast(Slow):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            fast_received.set()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    servers = [HTTPServer(("127.0.0.1", 0), handler) for handler in (Slow, Fast)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for server in servers:
            client.post(
                "/v1/webhooks",
                json={"url": f"http://127.0.0.1:{server.server_port}/h", "event_types": ["access_request.approved"]},
                headers=h["coordinator"],
            )
        client.post(f"/v1/access-requests/{request['id']}/approve", json={}, headers=h["coordinator"])
        worker = threading.Thread(target=deliver)
        worker.start()
        assert fast_received.wait(timeout=20), "the fast subscriber waited for the slow one"
        release.set()
        worker.join(timeout=30)
    finally:
        release.set()
        for server in servers:
            server.shutdown()
            server.server_close()
