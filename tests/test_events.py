"""The change feed: what each caller sees, and a cursor that never skips or repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auth.roles import OrganizationKind, Role, Scope
from workflow.events import public_event_id


def _all(client, headers, **params):
    events, cursor = [], None
    while True:
        query = {"limit": 3, **params} | ({"after": cursor} if cursor else {})
        response = client.get("/v1/events", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["items"]
        if not page["items"]:
            return events, page["next_cursor"]
        cursor = page["next_cursor"]


@pytest.fixture
def story(world, client):
    secretariat = world.org(OrganizationKind.secretariat, "Secretariat")
    wfp, sarc = world.org(OrganizationKind.un_agency, "WFP"), world.org(OrganizationKind.ngo, "MSF")
    admin_user = world.user(Role.admin, secretariat)
    h = {
        "coordinator": world.headers(world.user(Role.coordinator, secretariat)),
        "partner": world.headers(world.user(Role.partner, wfp)),
        "partner_other": world.headers(world.user(Role.partner, sarc)),
        "observer": world.headers(world.user(Role.observer)),
        "admin": world.headers(admin_user),
        "service": world.service_headers(world.service_account(wfp, [Scope.read], admin_user)),
        "co_chair": world.headers(world.user(Role.co_chair)),
    }
    city = client.post(
        "/v1/cities",
        json={
            "name": "Homs",
            "pcode": "C2528",
            "adm1_pcode": "SY04",
            "adm1_name": "Homs",
            "latitude": 34.7,
            "longitude": 36.7,
        },
        headers=h["coordinator"],
    ).json()
    client.post(
        f"/v1/cities/{city['id']}/designations",
        json={
            "status": "hard_to_reach",
            "severity": 3,
            "effective_from": "2016-01-01T00:00:00+02:00",
            "reason": "Front line",
        },
        headers=h["coordinator"],
    )
    departure = datetime.now(UTC) + timedelta(days=9)
    body = {
        "destination_city_id": city["id"],
        "origin_name": "Damascus",
        "planned_departure": departure.isoformat(),
        "planned_arrival": (departure + timedelta(hours=4)).isoformat(),
        "trucks": 3,
        "people_targeted": 100,
        "contact": {"name": "L"},
        "cargo_lines": [{"sector": "food", "item": "Rice", "quantity": 5, "unit": "MT"}],
    }
    mine = client.post("/v1/access-requests", json=body, headers=h["partner"]).json()
    client.post(f"/v1/access-requests/{mine['id']}/submit", headers=h["partner"])
    theirs = client.post("/v1/access-requests", json=body, headers=h["partner_other"]).json()
    start = datetime.now(UTC) + timedelta(days=5)
    client.post(
        "/v1/pauses",
        json={
            "city_ids": [city["id"]],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=48)).isoformat(),
            "purpose": "Evacuation",
        },
        headers=h["coordinator"],
    )
    client.post(
        "/v1/violations",
        json={
            "access_request_id": theirs["id"],
            "category": "impediments_to_entry",
            "occurred_at": datetime.now(UTC).isoformat(),
            "description": "Turned away",
            "severity": 2,
        },
        headers=h["partner_other"],
    )
    client.post("/v1/organizations", json={"name": "New Donor", "kind": "observer"}, headers=h["admin"])
    return h, mine, theirs


EXPECTED = {
    "coordinator": {
        "city.created",
        "city.designation_changed",
        "access_request.created",
        "access_request.submitted",
        "pause.proposed",
        "violation.reported",
    },
    "co_chair": {
        "city.created",
        "city.designation_changed",
        "access_request.created",
        "access_request.submitted",
        "pause.proposed",
        "violation.reported",
    },
    "partner": {
        "city.created",
        "city.designation_changed",
        "access_request.created",
        "access_request.submitted",
        "pause.proposed",
    },
    "service": {
        "city.created",
        "city.designation_changed",
        "access_request.created",
        "access_request.submitted",
        "pause.proposed",
    },
    "partner_other": {
        "city.created",
        "city.designation_changed",
        "access_request.created",
        "pause.proposed",
        "violation.reported",
    },
    "observer": {"city.created", "city.designation_changed", "pause.proposed"},
}


@pytest.mark.parametrize("caller", list(EXPECTED) + ["admin"])
def test_each_caller_sees_what_it_may_read(client, story, caller):
    headers, mine, theirs = story
    events, _ = _all(client, headers[caller])
    types = {e["type"] for e in events}
    if caller == "admin":
        assert "organization.created" in types and "user.created" in types
        assert not any(t.startswith(("access_request.", "violation.")) for t in types)
        return
    assert types == EXPECTED[caller], caller
    request_ids = {e["entity_id"] for e in events if e["entity_type"] == "access_request"}
    if caller in ("partner", "service"):
        assert request_ids == {mine["id"]}
    if caller == "partner_other":
        assert request_ids == {theirs["id"]}


def test_the_cursor_never_skips_or_repeats(client, story):
    headers, mine, _ = story
    coordinator = headers["coordinator"]
    events, cursor = _all(client, coordinator)
    names = [e["id"] for e in events]
    assert len(names) == len(set(names))
    audit = [
        e
        for e in client.get("/v1/audit", params={"limit": 200}, headers=coordinator).json()["items"]
        if e["entity_type"] in ("city", "access_request", "pause", "violation")
    ]
    assert names == [public_event_id(e["id"]) for e in audit]  # every one, in the trail's order
    # Nothing new: nothing, and the same cursor.
    again = client.get("/v1/events", params={"after": cursor}, headers=coordinator).json()
    assert again == {"items": [], "next_cursor": cursor}
    client.post(f"/v1/access-requests/{mine['id']}/approve", json={}, headers=coordinator)
    new = client.get("/v1/events", params={"after": cursor}, headers=coordinator).json()["items"]
    assert [(e["type"], e["entity_id"], e["state"]) for e in new] == [
        ("access_request.approved", mine["id"], "approved")
    ]


def test_types_filter_and_bad_input(client, story):
    headers, _, _ = story
    only = client.get(
        "/v1/events", params={"types": ["pause.proposed", "city.designation_changed"]}, headers=headers["coordinator"]
    ).json()
    assert {e["type"] for e in only["items"]} == {"pause.proposed", "city.designation_changed"}
    # An unknown type is refused naming the known ones (the contract lists them too, as an enum).
    unknown = client.get("/v1/events", params={"types": "pause.exploded"}, headers=headers["coordinator"]).json()[
        "errors"
    ][0]
    assert unknown["field"] == "query.types.0" and "'pause.endorsed'" in unknown["message"]
    bad = client.get("/v1/events", params={"after": "not-a-cursor"}, headers=headers["coordinator"])
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.after"
    assert client.get("/v1/events").status_code == 401


def test_events_are_named_without_their_places_in_the_trail(client, story):
    """Consecutive ids would count, by their gaps, the events a caller may not see between two it may."""
    headers, _mine, _theirs = story
    events, _ = _all(client, headers["partner_other"])
    assert events and all(not e["id"].isdigit() and len(e["id"]) == 28 for e in events)
    again, _ = _all(client, headers["partner_other"])
    assert [e["id"] for e in again] == [e["id"] for e in events]  # stable: a name, not a nonce
    resumed = client.get("/v1/events", params={"after": events[0]["id"]}, headers=headers["partner_other"]).json()[
        "items"
    ]
    assert [e["id"] for e in resumed] == [e["id"] for e in events[1:]][: len(resumed)]
    assert (
        client.get("/v1/events", params={"after": "0"}, headers=headers["partner_other"]).json()["items"][0]
        == events[0]
    )
    assert client.get("/v1/events", params={"after": "12"}, headers=headers["partner_other"]).status_code == 422


@pytest.fixture
def late_evening(frozen_clock):
    """Five to midnight in Damascus (UTC+3), so that a test can see the taskforce's day end."""
    frozen_clock.now = datetime(2026, 3, 10, 20, 55, tzinfo=UTC)
    return frozen_clock


def test_the_cursor_does_not_move_at_the_instant_of_an_event_the_caller_may_not_see(late_evening, client, story, world):
    """Another organization's request is submitted: the partner's cursor stays where it was (a cursor
    that moved would time the event to the poll) until an event it may see comes, or the day is over."""
    headers, mine, theirs = story
    _, cursor = _all(client, headers["partner"])
    other = world.headers(
        world.user(Role.partner, world.org(OrganizationKind.ngo, "Quiet NGO"))
    )  # an organization: admins' only
    body = {
        "destination_city_id": theirs["destination_city_id"],
        "origin_name": "Damascus",
        "trucks": 1,
        "people_targeted": 1,
        "planned_departure": (late_evening.now + timedelta(days=9)).isoformat(),
        "planned_arrival": (late_evening.now + timedelta(days=9, hours=3)).isoformat(),
        "contact": {"name": "Lead"},
        "cargo_lines": [{"sector": "food", "item": "Rice", "quantity": 1, "unit": "MT"}],
    }
    hidden = client.post("/v1/access-requests", json=body, headers=other).json()
    assert client.post(f"/v1/access-requests/{hidden['id']}/submit", headers=other).status_code == 200
    nothing = client.get("/v1/events", params={"after": cursor}, headers=headers["partner"]).json()
    assert nothing == {"items": [], "next_cursor": cursor}
    # An event it may see: the cursor moves to it (past the hidden ones before it).
    assert (
        client.post(
            f"/v1/access-requests/{mine['id']}/cancel", json={"reason": "Road closed"}, headers=headers["partner"]
        ).status_code
        == 200
    )
    seen = client.get("/v1/events", params={"after": cursor}, headers=headers["partner"]).json()
    assert [e["type"] for e in seen["items"]] == ["access_request.cancelled"] and seen["next_cursor"] == seen["items"][
        0
    ]["id"]
    # Hidden again, then the day ends: only then does the cursor pass it.
    assert (
        client.post(f"/v1/access-requests/{hidden['id']}/cancel", json={"reason": "x"}, headers=other).status_code
        == 200
    )
    cursor = seen["next_cursor"]
    assert (
        client.get("/v1/events", params={"after": cursor}, headers=headers["partner"]).json()["next_cursor"] == cursor
    )
    late_evening.advance(minutes=7)  # two minutes past midnight: the hidden events' day is over
    passed = client.get("/v1/events", params={"after": cursor}, headers=headers["partner"]).json()
    assert passed["items"] == [] and passed["next_cursor"] != cursor
    assert (
        client.get("/v1/events", params={"after": passed["next_cursor"]}, headers=headers["partner"]).json()["items"]
        == []
    )
