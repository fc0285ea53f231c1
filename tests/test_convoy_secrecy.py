"""Convoy timing never reaches a caller who may not read the convoy finer than the taskforce's
calendar day: not through the picture or the snapshot (any ``as_of``, any format), their ETags,
the counts, or anything else on the public surface (SECURITY.md, "Convoy timing")."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from auth.roles import OrganizationKind, Role, Scope
from db.models import AccessRequest
from tests.conftest import ARRANGER
from workflow.audit import record_event

ZONE = ZoneInfo("Asia/Damascus")
# Today, mid-afternoon in Damascus (UTC+3).
NOW = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
# Another organization's convoy, at instants an attacker would like to learn.
APPROVED = datetime(2026, 3, 7, 14, 37, 11, tzinfo=UTC)
DEPARTS = datetime(2026, 3, 9, 6, 13, 5, tzinfo=UTC)
DISPATCHED = datetime(2026, 3, 9, 6, 41, 0, tzinfo=UTC)
ARRIVES = datetime(2026, 3, 9, 15, 2, 0, tzinfo=UTC)
DELIVERED = datetime(2026, 3, 9, 16, 29, 44, tzinfo=UTC)
# Approved later and departing after today: upcoming at "now".
LATER_APPROVED = datetime(2026, 3, 8, 19, 5, 0, tzinfo=UTC)
LATER_DEPARTS = datetime(2026, 3, 12, 4, 0, 0, tzinfo=UTC)


def _instant_texts(moment: datetime) -> set[str]:
    """How an instant could show in a body: to the second or minute, in UTC or local time."""
    texts = set()
    for zone in (UTC, ZONE):
        local = moment.astimezone(zone)
        texts |= {local.strftime("%H:%M:%S"), local.strftime("T%H:%M"), local.isoformat()[:16]}
    return texts


SECRET_INSTANTS = (APPROVED, DEPARTS, DISPATCHED, ARRIVES, DELIVERED, LATER_APPROVED, LATER_DEPARTS)


@pytest.fixture
def scene(world, frozen_clock):
    frozen_clock.now = NOW
    owner = world.org(OrganizationKind.un_agency, "Owner agency")
    other = world.org(OrganizationKind.ngo, "Other NGO")
    secretariat = world.org(OrganizationKind.secretariat, "Secretariat")
    coordinator = world.user(Role.coordinator, secretariat)
    coordinator_headers = world.headers(coordinator)
    created = world.client.post(
        "/v1/cities",
        json={
            "name": "Madaya",
            "name_ar": "مضايا",
            "pcode": f"C{uuid.uuid4().int % 90000 + 10000}",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.69,
            "longitude": 36.1,
        },
        headers=coordinator_headers,
    )
    assert created.status_code == 201, created.text
    city = created.json()["id"]

    def convoy(**stamps) -> AccessRequest:
        return AccessRequest(
            organization_id=owner.id,
            created_by="tests",
            destination_city_id=uuid.UUID(city),
            origin_name="Damascus",
            route=[{"kind": "checkpoint", "name": "Secret ridge"}],
            contact={"name": "Convoy lead", "phone": "+963-0000"},
            notes="Night route",
            trucks=7,
            people_targeted=4000,
            submitted_at=APPROVED - timedelta(days=1),
            created_at=APPROVED - timedelta(days=2),
            **stamps,
        )

    delivered = convoy(
        status="delivered",
        outcome="delivered",
        approved_at=APPROVED,
        decided_at=APPROVED,
        planned_departure=DEPARTS,
        planned_arrival=ARRIVES,
        dispatched_at=DISPATCHED,
        completed_at=DELIVERED,
        updated_at=DELIVERED,
    )
    upcoming = convoy(
        status="approved",
        approved_at=LATER_APPROVED,
        decided_at=LATER_APPROVED,
        planned_departure=LATER_DEPARTS,
        planned_arrival=LATER_DEPARTS + timedelta(hours=5),
        updated_at=LATER_APPROVED,
    )
    world.session.add_all([delivered, upcoming])
    world.session.commit()
    # Their audit trail, each event at its instant (counts read the states then from it).
    for request, steps in (
        (
            delivered,
            [
                (APPROVED - timedelta(days=2), "created", None, "draft"),
                (APPROVED - timedelta(days=1), "submitted", "draft", "submitted"),
                (APPROVED, "approved", "submitted", "approved"),
                (DISPATCHED, "dispatched", "approved", "dispatched"),
                (DELIVERED, "completed", "dispatched", "delivered"),
            ],
        ),
        (
            upcoming,
            [
                (APPROVED - timedelta(days=2), "created", None, "draft"),
                (APPROVED - timedelta(days=1), "submitted", "draft", "submitted"),
                (LATER_APPROVED, "approved", "submitted", "approved"),
            ],
        ),
    ):
        for when, action, before, after in steps:
            frozen_clock.now = when
            record_event(
                world.session,
                actor=ARRANGER,
                entity_type="access_request",
                entity_id=request.id,
                action=action,
                from_state=before,
                to_state=after,
            )
            world.session.commit()
    frozen_clock.now = NOW
    admin = world.user(Role.admin, secretariat)
    readers = {
        "partner_other": world.user(Role.partner, other),
        "observer": world.user(Role.observer),
        "admin": admin,
    }
    service = world.service_account(other, [Scope.read], admin)
    return {
        "city": city,
        "owner": owner,
        "delivered": delivered,
        "upcoming": upcoming,
        "coordinator": coordinator,
        "readers": readers,
        "service": service,
        "world": world,
        "clock": frozen_clock,
    }


def _callers(scene) -> dict[str, dict[str, str]]:
    """Fresh tokens (the tests move the clock) for each caller who may not read the convoys."""
    world = scene["world"]
    headers = {name: world.headers(user) for name, user in scene["readers"].items()}
    headers["service_other"] = world.service_headers(scene["service"])
    return headers


def _hours(start: datetime, end: datetime, step: timedelta = timedelta(minutes=97)):
    moment = start
    while moment <= end:
        yield moment
        moment += step


def test_bisecting_as_of_learns_nothing_finer_than_the_day(scene):
    client, city = scene["world"].client, scene["city"]
    coordinator = scene["world"].headers(scene["coordinator"])
    moments = list(_hours(APPROVED - timedelta(days=1), NOW + timedelta(days=3)))
    for name, headers in _callers(scene).items():
        by_day: dict = {}
        snapshots: dict = {}
        for moment in moments:
            params = {"as_of": moment.isoformat()}
            picture = client.get(f"/v1/cities/{city}/access", params=params, headers=headers)
            assert picture.status_code == 200, (name, picture.text)
            day = moment.astimezone(ZONE).date()
            by_day.setdefault(day, set()).add(picture.content)
            for fmt in ("hxl", "geojson"):
                snapshot = client.get("/v1/access-snapshot", params={**params, "format": fmt}, headers=headers)
                snapshots.setdefault((fmt, day), set()).add(snapshot.content)
            text = picture.text
            for instant in SECRET_INSTANTS:
                assert not any(t in text for t in _instant_texts(instant)), (name, instant, text)
        # Within a day, every moment gets the same picture: bisecting as_of stops at the day.
        assert all(len(bodies) == 1 for bodies in by_day.values()), (name, {d: len(b) for d, b in by_day.items()})
        assert all(len(bodies) == 1 for bodies in snapshots.values()), name
        # And the day is what it learns: a count moves on the day after an approval or a departure, and
        # no day after today is answered with more than today's start knows.
        counts = {
            day.isoformat(): json.loads(next(iter(bodies)))["convoys"]["upcoming_count"]
            for day, bodies in by_day.items()
        }
        assert counts == {
            "2026-03-06": 0,
            "2026-03-07": 0,
            "2026-03-08": 1,
            "2026-03-09": 2,
            "2026-03-10": 1,
            "2026-03-11": 1,
            "2026-03-12": 1,
            "2026-03-13": 1,
        }, name
    # A coordinator, who reads every convoy, gets the instant.
    just_before = client.get(
        f"/v1/cities/{city}/access",
        params={"as_of": (LATER_APPROVED - timedelta(seconds=1)).isoformat()},
        headers=coordinator,
    )
    at = client.get(f"/v1/cities/{city}/access", params={"as_of": LATER_APPROVED.isoformat()}, headers=coordinator)
    assert just_before.json()["convoys"]["upcoming_count"] == 1 and at.json()["convoys"]["upcoming_count"] == 2


def test_the_last_delivery_is_given_by_its_day_to_who_may_not_read_it(scene):
    client, city = scene["world"].client, scene["city"]
    for name, headers in _callers(scene).items():
        last = client.get(f"/v1/cities/{city}/access", headers=headers).json()["last_delivery"]
        assert last == {
            "delivered_at": None,
            "delivered_on": "2026-03-09",
            "outcome": "delivered",
            "access_request_id": None,
        }, name
        row = client.get("/v1/access-snapshot", params={"format": "hxl"}, headers=headers).text.splitlines()
        header, values = row[0].split(","), next(r for r in row[2:] if city in r).split(",")
        assert (
            values[header.index("last_delivery_at")] == "" and values[header.index("last_delivery_on")] == "2026-03-09"
        )
    coordinator = scene["world"].headers(scene["coordinator"])
    last = client.get(f"/v1/cities/{city}/access", headers=coordinator).json()["last_delivery"]
    assert last["delivered_at"] == "2026-03-09T16:29:44Z" and last["access_request_id"] == str(scene["delivered"].id)


def test_a_late_report_reaches_the_others_only_from_the_next_day(scene):
    """An outcome reported today for a delivery of yesterday: who may not read it sees it from
    tomorrow, so the report's instant does not show either."""
    session, client, city, clock = scene["world"].session, scene["world"].client, scene["city"], scene["clock"]
    upcoming = scene["upcoming"]
    upcoming.status, upcoming.outcome = "delivered", "delivered"
    upcoming.dispatched_at, upcoming.completed_at, upcoming.updated_at = (
        LATER_APPROVED + timedelta(hours=1),
        NOW - timedelta(hours=20),
        NOW,
    )
    session.add(upcoming)
    session.commit()
    observer = _callers(scene)["observer"]
    assert (
        client.get(f"/v1/cities/{city}/access", headers=observer).json()["last_delivery"]["delivered_on"]
        == "2026-03-09"
    )
    clock.advance(hours=13)  # after midnight in Damascus
    observer = _callers(scene)["observer"]
    assert (
        client.get(f"/v1/cities/{city}/access", headers=observer).json()["last_delivery"]["delivered_on"]
        == "2026-03-09"
    )
    assert client.get(f"/v1/cities/{city}/access", headers=observer).json()["days_since_last_delivery"] == 2


def test_polled_etags_do_not_move_at_a_convoys_instant(scene):
    """A poll without as_of: an approval or a departure of another organization's convoy moves
    no ETag of a caller who may not read it, and moves the coordinator's."""
    world, client, city, clock = scene["world"], scene["world"].client, scene["city"], scene["clock"]
    callers = _callers(scene)
    coordinator = world.headers(scene["coordinator"])

    def etags() -> dict[str, tuple[str, ...]]:
        found = {}
        for name, headers in {**callers, "coordinator": coordinator}.items():
            found[name] = (
                client.get(f"/v1/cities/{city}/access", headers=headers).headers["etag"],
                *(
                    client.get("/v1/access-snapshot", params={"format": fmt}, headers=headers).headers["etag"]
                    for fmt in ("json", "hxl", "geojson")
                ),
            )
        return found

    partner = world.headers(world.user(Role.partner, scene["owner"]))  # a user: a write every picture shows
    before = etags()
    # Another convoy of the owner is approved now (through the workflow, with its audit event).
    body = {
        "destination_city_id": city,
        "origin_name": "Damascus",
        "route": [],
        "trucks": 2,
        "people_targeted": 10,
        "planned_departure": (NOW + timedelta(days=4)).isoformat(),
        "planned_arrival": (NOW + timedelta(days=4, hours=3)).isoformat(),
        "contact": {"name": "Lead"},
        "cargo_lines": [{"sector": "food", "item": "Rice", "quantity": 5, "unit": "MT"}],
    }
    created = client.post("/v1/access-requests", json=body, headers=partner)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    assert client.post(f"/v1/access-requests/{request_id}/submit", headers=partner).status_code == 200
    approved = client.post(f"/v1/access-requests/{request_id}/approve", json={}, headers=coordinator)
    assert approved.status_code == 200, approved.text
    after = etags()
    assert after["coordinator"] != before["coordinator"]
    for name in callers:
        assert after[name] == before[name], name
    # The upcoming convoy departs (within the day, in Damascus): the same.
    clock.now = LATER_DEPARTS - timedelta(minutes=1)
    callers = _callers(scene)
    coordinator = world.headers(scene["coordinator"])
    before = etags()
    clock.now = LATER_DEPARTS + timedelta(minutes=1)
    callers = _callers(scene)
    coordinator = world.headers(scene["coordinator"])
    after = etags()
    assert after["coordinator"] != before["coordinator"]
    for name in callers:
        assert after[name] == before[name], name


def test_observers_count_requests_as_they_stood_at_the_start_of_the_day(scene):
    world, client = scene["world"], scene["world"].client
    observer = _callers(scene)["observer"]

    def counts(**params) -> dict[str, int]:
        response = client.get("/v1/access-requests/counts", params=params, headers=observer)
        assert response.status_code == 200, response.text
        return {item["status"]: item["count"] for item in response.json()["items"]}

    assert counts() == {"approved": 1, "delivered": 1}
    # Departure bounds go to the start of their day: bisecting them stops at the day.
    day = DEPARTS.astimezone(ZONE).replace(hour=0, minute=0, second=0)
    for minutes in range(0, 24 * 60, 37):
        bound = (day + timedelta(minutes=minutes)).isoformat()
        assert counts(departure_from=bound) == {"approved": 1, "delivered": 1}
        assert counts(departure_to=bound) == {}
    # The upcoming convoy is dispatched now: the observer's counts stand until tomorrow.
    upcoming = scene["upcoming"]
    partner = world.headers(world.user(Role.partner, scene["owner"]))
    version = client.get(f"/v1/access-requests/{upcoming.id}", headers=partner).json()["version"]
    dispatched = client.post(
        f"/v1/access-requests/{upcoming.id}/dispatch", json={}, headers={**partner, "If-Match": f'"{version}"'}
    )
    assert dispatched.status_code == 200, dispatched.text
    assert counts() == {"approved": 1, "delivered": 1}
    assert counts(status="approved") == {"approved": 1}
    scene["clock"].advance(hours=13)
    observer = _callers(scene)["observer"]
    assert counts() == {"dispatched": 1, "delivered": 1}
    # A partner counts its own organization's requests, which it reads: at the instant.
    own = client.get(
        "/v1/access-requests/counts", headers=world.headers(world.user(Role.partner, scene["owner"]))
    ).json()
    assert {i["status"]: i["count"] for i in own["items"]} == {"dispatched": 1, "delivered": 1}


# ---- the whole public surface, as each caller who may not read the convoy ----------------

_SECRETS = ("Secret ridge", "Insulin-7", "Convoy lead", "+963-5555", "Night route", "Ambush at the ridge")


def _time_forms(moment: datetime) -> set[str]:
    """How an instant would show, to the minute or finer, in UTC or in the taskforce's zone."""
    forms = set()
    for zone in (UTC, ZONE):
        local = moment.astimezone(zone)
        forms |= {local.strftime("%Y-%m-%dT%H:%M"), local.strftime("%Y%m%dT%H%M"), local.strftime("%H:%M:%S")}
    return forms


def _fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_nothing_on_the_public_surface_describes_or_times_a_convoy_to_who_may_not_read_it(world, frozen_clock):
    """Every GET of the contract (with the convoy's, its city's, pause's and violation's ids; the
    snapshot in each format; the feed to its end; the calendar; the audit trail, per entity type),
    and the convoy's actions, as another organization's partner and service account, an observer
    and an admin: no route, cargo, contact, notes or violation text, and no instant of the convoy
    (created, submitted, approved, dispatched, departure, arrival) to the minute."""
    client = world.client
    app_contract = client.get("/openapi.json").json()
    frozen_clock.now = datetime(2026, 5, 4, 6, 0, 0, tzinfo=UTC)
    owner, other = world.org(OrganizationKind.un_agency, "Owner agency"), world.org(OrganizationKind.ngo, "Other NGO")
    secretariat = world.org(OrganizationKind.secretariat, "Secretariat")
    world.org(OrganizationKind.co_chair_delegation, "Delegation")
    partner_user, coordinator_user = world.user(Role.partner, owner), world.user(Role.coordinator, secretariat)
    admin_user = world.user(Role.admin, secretariat)
    callers_users = {
        "partner_other": world.user(Role.partner, other),
        "observer": world.user(Role.observer),
        "admin": admin_user,
    }
    service = world.service_account(other, [Scope.read], admin_user)
    coordinator = world.headers(coordinator_user)
    city = client.post(
        "/v1/cities",
        json={
            "name": "Kafraya",
            "pcode": "C4111",
            "adm1_pcode": "SY07",
            "adm1_name": "Idleb",
            "latitude": 35.9,
            "longitude": 36.6,
        },
        headers=coordinator,
    ).json()["id"]
    pause = client.post(
        "/v1/pauses",
        json={
            "city_ids": [city],
            "starts_at": "2026-05-20T06:00:00+03:00",
            "ends_at": "2026-05-22T06:00:00+03:00",
            "purpose": "Evacuations",
        },
        headers=coordinator,
    ).json()
    departs, arrives = datetime(2026, 5, 11, 3, 41, 17, tzinfo=UTC), datetime(2026, 5, 11, 9, 27, 53, tzinfo=UTC)
    steps = {}

    def at(moment: datetime, name: str) -> dict[str, str]:
        # Signed in a few minutes before (a sign-in is the user's own event, which admins see), then the step.
        frozen_clock.now = moment - timedelta(minutes=4)
        headers = world.headers(partner_user) if name != "approved" else world.headers(coordinator_user)
        frozen_clock.now = steps[name] = moment
        return headers

    partner = at(datetime(2026, 5, 5, 13, 7, 29, tzinfo=UTC), "created")
    convoy = client.post(
        "/v1/access-requests",
        json={
            "destination_city_id": city,
            "origin_name": "Hama",
            "trucks": 9,
            "people_targeted": 7000,
            "route": [{"kind": "checkpoint", "name": "Secret ridge"}],
            "contact": {"name": "Convoy lead", "phone": "+963-5555"},
            "notes": "Night route",
            "planned_departure": departs.isoformat(),
            "planned_arrival": arrives.isoformat(),
            "cargo_lines": [{"sector": "health", "item": "Insulin-7", "quantity": 40, "unit": "boxes"}],
        },
        headers=partner,
    ).json()
    partner = at(datetime(2026, 5, 6, 8, 52, 11, tzinfo=UTC), "submitted")
    assert client.post(f"/v1/access-requests/{convoy['id']}/submit", headers=partner).status_code == 200
    approver = at(datetime(2026, 5, 7, 16, 23, 47, tzinfo=UTC), "approved")
    assert client.post(f"/v1/access-requests/{convoy['id']}/approve", json={}, headers=approver).status_code == 200
    partner = at(datetime(2026, 5, 11, 3, 44, 2, tzinfo=UTC), "dispatched")
    assert client.post(f"/v1/access-requests/{convoy['id']}/dispatch", json={}, headers=partner).status_code == 200
    violation = client.post(
        "/v1/violations",
        json={
            "access_request_id": convoy["id"],
            "category": "violence_against_personnel_and_assets",
            "severity": 4,
            "occurred_at": "2026-05-11T05:12:00+03:00",
            "place": "Secret ridge",
            "description": "Ambush at the ridge",
        },
        headers=partner,
    ).json()
    assert "id" in pause and "id" in violation, (pause, violation)
    frozen_clock.now = datetime(2026, 5, 12, 10, 0, 0, tzinfo=UTC)  # the next day: the convoy is yesterday's news
    instants = {form for moment in (*steps.values(), departs, arrives) for form in _time_forms(moment)}
    ids = {
        "city_id": city,
        "request_id": convoy["id"],
        "pause_id": pause["id"],
        "violation_id": violation["id"],
        "organization_id": str(owner.id),
        "user_id": str(partner_user.id),
        "webhook_id": str(uuid.uuid4()),
    }

    def check(name: str, where: str, text: str) -> None:
        for secret in _SECRETS:
            assert secret not in text, (name, where, secret)
        for form in instants:
            assert form not in text, (name, where, form)

    walked = 0
    for name in [*callers_users, "service_other"]:
        headers = world.service_headers(service) if name == "service_other" else world.headers(callers_users[name])
        issued = client.post("/v1/pauses/calendar-token", headers=headers)
        calendar = issued.json()["token"] if issued.status_code == 200 else "not-a-token"  # service accounts have none
        for path, operations in app_contract["paths"].items():
            if "get" not in operations:
                continue
            url = _fill(path, ids)
            variants = [{}]
            if path == "/v1/access-snapshot":
                variants = [{"format": f} for f in ("json", "hxl", "geojson")] + [
                    {"as_of": "2026-05-11T03:42:00+00:00", "format": "hxl"}
                ]
            elif path == "/v1/cities/{city_id}/access":
                variants = [{}, {"as_of": "2026-05-11T03:42:00+00:00"}, {"as_of": "2026-05-07T16:24:00+00:00"}]
            elif path == "/v1/access-requests/counts":
                variants = [
                    {},
                    {"departure_from": "2026-05-11T03:41:00+00:00"},
                    {"departure_to": "2026-05-11T03:42:00+00:00"},
                ]
            elif path == "/v1/pauses/calendar.ics":
                variants = [{"token": calendar}]
            elif path == "/v1/audit":
                variants = [
                    {"limit": 200},
                    {"limit": 200, "entity_type": "access_request"},
                    {"limit": 200, "entity_type": "violation"},
                    {"entity_id": convoy["id"]},
                ]
            elif path == "/v1/events":
                variants = [{"limit": 500}]
            for params in variants:
                response = client.get(url, params=params, headers=headers)
                assert response.status_code < 500, (name, url, params, response.text)
                check(
                    name, f"{url} {params}", response.text + " ".join(f"{k}:{v}" for k, v in response.headers.items())
                )
                walked += 1
        # The convoy's own addresses answer as an id that does not exist.
        for suffix in ("", "/history"):
            hidden = client.get(f"/v1/access-requests/{convoy['id']}{suffix}", headers=headers)
            unknown = client.get(f"/v1/access-requests/{uuid.uuid4()}{suffix}", headers=headers)
            assert hidden.status_code == unknown.status_code and hidden.json()["detail"] == unknown.json()["detail"], (
                name
            )
        for action in ("submit", "approve", "dispatch", "cancel", "complete"):
            hidden = client.post(f"/v1/access-requests/{convoy['id']}/{action}", json={}, headers=headers)
            unknown = client.post(f"/v1/access-requests/{uuid.uuid4()}/{action}", json={}, headers=headers)
            assert hidden.status_code == unknown.status_code and hidden.json().get("detail") == unknown.json().get(
                "detail"
            ), (name, action)
            check(name, action, hidden.text)
    assert walked > 4 * 30
    # The walk would see them: the owner's partner reads the route and the exact departure.
    owner_view = client.get(f"/v1/access-requests/{convoy['id']}", headers=world.headers(partner_user)).text
    assert "Secret ridge" in owner_view and "2026-05-11T03:41:17Z" in owner_view


def test_pauses_are_shown_at_the_instant_to_everyone(scene):
    """Only convoys go by the day: a pause that started an hour ago is active for every caller now."""
    from db.models import Pause, PauseCity

    session, client, city = scene["world"].session, scene["world"].client, scene["city"]
    pause = Pause(
        status="approved",
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=47),
        purpose="Evacuations",
        proposed_by="tests",
        approved_at=NOW - timedelta(days=4),
    )
    session.add(pause)
    session.flush()
    session.add(PauseCity(pause_id=pause.id, city_id=uuid.UUID(city), starts_at=pause.starts_at, ends_at=pause.ends_at))
    session.commit()
    for name, headers in _callers(scene).items():
        pauses = client.get(f"/v1/cities/{city}/access", headers=headers).json()["pauses"]
        assert [p["id"] for p in pauses["active"]] == [str(pause.id)] and pauses["upcoming"] == [], name
        before = client.get(
            f"/v1/cities/{city}/access", params={"as_of": (NOW - timedelta(hours=2)).isoformat()}, headers=headers
        )
        assert [p["id"] for p in before.json()["pauses"]["upcoming"]] == [str(pause.id)], name
