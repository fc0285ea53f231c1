"""Humanitarian pauses and violations: the tables, the 2016 Aleppo story, the calendar."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest

from auth.roles import OrganizationKind, Role, Scope
from db.models import Pause


@pytest.fixture
def cast(world, client):
    secretariat = world.org(OrganizationKind.secretariat, "Secretariat")
    alpha = world.org(OrganizationKind.co_chair_delegation, "Delegation Alpha")
    bravo = world.org(OrganizationKind.co_chair_delegation, "Delegation Bravo")
    wfp = world.org(OrganizationKind.un_agency, "WFP")
    sarc = world.org(OrganizationKind.red_cross_red_crescent, "SARC")
    admin = world.user(Role.admin, secretariat)
    people = {
        "coordinator": world.headers(world.user(Role.coordinator, secretariat)),
        "alpha": world.headers(world.user(Role.co_chair, alpha)),
        "bravo": world.headers(world.user(Role.co_chair, bravo)),
        "partner": world.headers(world.user(Role.partner, wfp)),
        "partner_other": world.headers(world.user(Role.partner, sarc)),
        "observer": world.headers(world.user(Role.observer)),
        "admin": world.headers(admin),
        "service": world.service_headers(world.service_account(wfp, [Scope.read, Scope.requests_write], admin)),
    }
    city = client.post(
        "/v1/cities",
        json={
            "name": "Aleppo",
            "name_ar": "حلب",
            "pcode": "C1007",
            "adm1_pcode": "SY02",
            "adm1_name": "Aleppo",
            "latitude": 36.2,
            "longitude": 37.14,
        },
        headers=people["coordinator"],
    ).json()
    people["city"] = city["id"]
    people["wfp"] = wfp
    people["delegations"] = {"alpha": str(alpha.id), "bravo": str(bravo.id)}
    return people


def _propose(client, cast, frozen_clock, *, days_ahead=4, hours=48, **extra):
    start = frozen_clock.now + timedelta(days=days_ahead)
    body = {
        "city_ids": [cast["city"]],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=hours)).isoformat(),
        "purpose": "48-hour pause for medical evacuations",
        "terms": "No shelling",
    } | extra
    response = client.post("/v1/pauses", json=body, headers=cast["coordinator"])
    assert response.status_code == 201, response.text
    return response.json()


def _endorse(client, headers, pause, decision="endorse", revision=None):
    return client.post(
        f"/v1/pauses/{pause['id']}/endorsements",
        json={"decision": decision, "revision": revision or pause["revision"]},
        headers=headers,
    )


# ---- the transition table ------------------------------------------------------------

STATES = ["proposed", "approved", "suspended", "terminated", "withdrawn"]
ALLOWED_FROM = {
    "revise": {"proposed"},
    "endorsements": {"proposed"},
    "approve": {"proposed"},
    "withdraw": {"proposed"},
    "suspend": {"approved"},
    "resume": {"suspended"},
    "terminate": {"approved", "suspended"},
    "acknowledgements": {"proposed", "approved", "suspended"},
}
MAY = {action: {"coordinator"} for action in ALLOWED_FROM} | {"endorsements": {"alpha", "bravo"}}
CALLERS = ["coordinator", "alpha", "partner", "observer", "admin", "service"]


def _call(client, headers, pause, action, frozen_clock):
    base = f"/v1/pauses/{pause['id']}"
    if action == "revise":
        # The version read: the matrix is about who and when, not about a stale version (test_etag_and_if_match).
        return client.patch(
            base, json={"purpose": "Revised purpose"}, headers={**headers, "If-Match": f'"{pause["version"]}"'}
        )
    body = {
        "endorsements": {"decision": "endorse", "revision": pause["revision"]},
        "suspend": {"reason": "Shelling"},
        "terminate": {"reason": "Collapsed"},
        "acknowledgements": {
            "party": "Armed group",
            "response": "accepted",
            "responded_at": frozen_clock.now.isoformat(),
        },
    }.get(action)
    return client.post(f"{base}/{action}", json=body, headers=headers)


@pytest.mark.parametrize("state", STATES)
def test_pause_transition_table(client, session, cast, frozen_clock, state, audit_count):
    failures = []
    for index, (action, caller) in enumerate(itertools.product(ALLOWED_FROM, CALLERS)):
        # A window of its own: the database refuses two pauses in force for one city that overlap.
        pause = _propose(client, cast, frozen_clock, days_ahead=30 + 3 * index)
        if action == "approve" and state == "proposed":
            for delegation in ("alpha", "bravo"):
                assert _endorse(client, cast[delegation], pause).status_code == 201
        row = session.get(Pause, uuid.UUID(pause["id"]))
        session.refresh(row)
        row.status = state
        if state != "proposed":
            row.approved_at = frozen_clock.now
        session.add(row)
        session.commit()
        pause = client.get(f"/v1/pauses/{pause['id']}", headers=cast["coordinator"]).json()
        before = audit_count()
        response = _call(client, cast[caller], pause, action, frozen_clock)
        if caller not in MAY[action]:
            expected = 403
        elif state not in ALLOWED_FROM[action]:
            expected = 409
        else:
            expected = 201 if action in ("endorsements", "acknowledgements") else 200
        if response.status_code != expected:
            failures.append(
                f"{caller} {action} from {state}: {response.status_code} != {expected}: {response.text[:160]}"
            )
        elif expected >= 400:
            assert audit_count() == before
        else:
            assert audit_count() == before + 1
    assert not failures, "\n".join(failures)


def test_reading_pauses_is_open_to_every_role_but_nothing_to_anonymous(client, cast, frozen_clock):
    pause = _propose(client, cast, frozen_clock)
    for caller in ("coordinator", "alpha", "partner", "observer", "admin", "service"):
        assert client.get(f"/v1/pauses/{pause['id']}", headers=cast[caller]).status_code == 200, caller
        assert pause["id"] in [p["id"] for p in client.get("/v1/pauses", headers=cast[caller]).json()["items"]]
    assert client.get(f"/v1/pauses/{pause['id']}").status_code == 401
    assert client.get(f"/v1/pauses/{uuid.uuid4()}", headers=cast["partner"]).status_code == 404


# ---- bad input -----------------------------------------------------------------------


def test_invalid_windows_are_422_with_nothing_written(client, cast, frozen_clock, audit_count):
    start = frozen_clock.now + timedelta(days=4)
    before = audit_count()
    for starts, ends, field in [
        (start, start - timedelta(hours=1), "body.ends_at"),
        (start, start + timedelta(days=7, seconds=1), "body.ends_at"),
        (start.replace(tzinfo=None), start + timedelta(hours=2), "body.starts_at"),
    ]:
        response = client.post(
            "/v1/pauses",
            json={
                "city_ids": [cast["city"]],
                "starts_at": starts.isoformat(),
                "ends_at": ends.isoformat(),
                "purpose": "x",
            },
            headers=cast["coordinator"],
        )
        assert response.status_code == 422 and field in [e["field"] for e in response.json()["errors"]], response.text
    unknown = client.post(
        "/v1/pauses",
        json={
            "city_ids": [str(uuid.uuid4())],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "purpose": "x",
        },
        headers=cast["coordinator"],
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.city_ids"
    assert audit_count() == before


def test_endorsement_rules(client, world, cast, frozen_clock, audit_count):
    pause = _propose(client, cast, frozen_clock)
    outsider = world.headers(
        world.user(Role.co_chair, world.org(OrganizationKind.co_chair_delegation, "Late Delegation"))
    )
    before = audit_count()
    assert _endorse(client, outsider, pause).status_code == 403  # its delegation is not required
    other = client.post(
        f"/v1/pauses/{pause['id']}/endorsements",
        json={"decision": "endorse", "revision": 1, "delegation_id": cast["delegations"]["bravo"]},
        headers=cast["alpha"],
    )
    assert other.status_code == 422  # speaking for another delegation
    assert _endorse(client, cast["alpha"], pause, revision=2).status_code == 409  # no such revision yet
    assert audit_count() == before
    assert _endorse(client, cast["alpha"], pause).status_code == 201
    twice = _endorse(client, cast["alpha"], pause)
    assert twice.status_code == 409 and "already" in twice.json()["detail"]
    changed = _endorse(client, cast["alpha"], pause, "object")
    assert changed.status_code == 201
    body = changed.json()
    assert [d["decision"] for d in body["delegations"]] == ["object", "pending"]
    assert [e["decision"] for e in body["endorsements"]] == ["endorse", "object"]  # the history is kept


def test_approval_needs_every_delegation_on_the_current_revision(client, cast, frozen_clock):
    pause = _propose(client, cast, frozen_clock)
    _endorse(client, cast["alpha"], pause)
    missing = client.post(f"/v1/pauses/{pause['id']}/approve", headers=cast["coordinator"])
    assert missing.status_code == 409
    assert missing.json()["missing_delegations"] == [cast["delegations"]["bravo"]]
    assert "Delegation Bravo" in missing.json()["detail"]
    _endorse(client, cast["bravo"], pause)
    revised = client.patch(
        f"/v1/pauses/{pause['id']}",
        json={"terms": "No shelling; no air strikes"},
        headers={**cast["coordinator"], "If-Match": "*"},
    ).json()
    assert revised["revision"] == 2 and [d["decision"] for d in revised["delegations"]] == ["pending", "pending"]
    stale = client.post(f"/v1/pauses/{pause['id']}/approve", headers=cast["coordinator"])
    assert stale.status_code == 409 and len(stale.json()["missing_delegations"]) == 2
    assert _endorse(client, cast["alpha"], revised, revision=1).status_code == 409
    _endorse(client, cast["alpha"], revised)
    _endorse(client, cast["bravo"], revised)
    approved = client.post(f"/v1/pauses/{pause['id']}/approve", headers=cast["coordinator"])
    assert approved.status_code == 200 and approved.json()["status"] == "approved"


def test_approval_respects_the_notice_and_overlaps(client, cast, frozen_clock):
    soon = _propose(client, cast, frozen_clock, days_ahead=2)
    for d in ("alpha", "bravo"):
        _endorse(client, cast[d], soon)
    late = client.post(f"/v1/pauses/{soon['id']}/approve", headers=cast["coordinator"])
    assert late.status_code == 409 and "72 hours" in late.json()["detail"]
    first = _propose(client, cast, frozen_clock, days_ahead=10)
    second = _propose(client, cast, frozen_clock, days_ahead=11)
    for pause in (first, second):
        for d in ("alpha", "bravo"):
            _endorse(client, cast[d], pause)
    assert client.post(f"/v1/pauses/{first['id']}/approve", headers=cast["coordinator"]).status_code == 200
    overlap = client.post(f"/v1/pauses/{second['id']}/approve", headers=cast["coordinator"])
    assert overlap.status_code == 409 and overlap.json()["overlapping_pause_id"] == first["id"]


def test_suspend_and_terminate_need_a_reason(client, cast, frozen_clock):
    pause = _propose(client, cast, frozen_clock)
    for d in ("alpha", "bravo"):
        _endorse(client, cast[d], pause)
    client.post(f"/v1/pauses/{pause['id']}/approve", headers=cast["coordinator"])
    for action in ("suspend", "terminate"):
        assert (
            client.post(
                f"/v1/pauses/{pause['id']}/{action}", json={"reason": " "}, headers=cast["coordinator"]
            ).status_code
            == 422
        )
        assert (
            client.post(f"/v1/pauses/{pause['id']}/{action}", json={}, headers=cast["coordinator"]).status_code == 422
        )


# ---- the 2016 Aleppo story -----------------------------------------------------------


def test_the_aleppo_story(client, world, cast, frozen_clock):
    coordinator = cast["coordinator"]
    pause = _propose(client, cast, frozen_clock, days_ahead=4)
    revised = client.patch(
        f"/v1/pauses/{pause['id']}",
        json={"ends_at": (frozen_clock.now + timedelta(days=5)).isoformat()},
        headers={**coordinator, "If-Match": "*"},
    ).json()
    assert revised["revision"] == 2
    for d in ("alpha", "bravo"):
        assert _endorse(client, cast[d], revised).status_code == 201
    approved = client.post(f"/v1/pauses/{pause['id']}/approve", headers=coordinator).json()
    assert approved["status"] == "approved" and approved["display_status"] == "approved"
    upcoming = client.get(f"/v1/cities/{cast['city']}/access", headers=coordinator).json()["pauses"]
    assert upcoming["active"] == [] and [p["id"] for p in upcoming["upcoming"]] == [pause["id"]]
    snapshot = client.get("/v1/access-snapshot", params={"format": "hxl"}, headers=coordinator).content.decode()
    assert "#indicator+num+pauses_upcoming" in snapshot and ",1," in snapshot.splitlines()[2]
    ack = client.post(
        f"/v1/pauses/{pause['id']}/acknowledgements",
        json={
            "party": "Government of Syria",
            "response": "accepted",
            "responded_at": frozen_clock.now.isoformat(),
            "through": "Delegation Alpha",
        },
        headers=coordinator,
    )
    assert ack.status_code == 201
    # A convoy relying on the pause travels inside its window.
    starts = frozen_clock.now + timedelta(days=4)
    convoy = {
        "destination_city_id": cast["city"],
        "origin_name": "Bab al-Salameh",
        "pause_id": pause["id"],
        "planned_departure": (starts + timedelta(hours=2)).isoformat(),
        "planned_arrival": (starts + timedelta(hours=10)).isoformat(),
        "trucks": 20,
        "people_targeted": 40000,
        "contact": {"name": "Lead"},
        "cargo_lines": [{"sector": "health", "item": "Trauma kits", "quantity": 50, "unit": "kits"}],
    }
    outside = client.post(
        "/v1/access-requests",
        json={**convoy, "planned_departure": (starts - timedelta(hours=1)).isoformat()},
        headers=cast["partner"],
    ).json()
    refused = client.post(f"/v1/access-requests/{outside['id']}/submit", headers=cast["partner"])
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.planned_departure"
    request = client.post("/v1/access-requests", json=convoy, headers=cast["partner"]).json()
    assert client.post(f"/v1/access-requests/{request['id']}/submit", headers=cast["partner"]).status_code == 200
    assert client.post(f"/v1/access-requests/{request['id']}/approve", headers=coordinator).status_code == 200
    # The clock reaches the start: active, with no job running.
    frozen_clock.now = starts + timedelta(minutes=30)
    # (the clock moved past the first tokens' lifetime: sign in again)
    coordinator = world.headers(world.user(Role.coordinator))
    partner = world.headers(world.user(Role.partner, cast["wfp"]))
    partner_other = world.headers(world.user(Role.partner))
    assert client.get(f"/v1/pauses/{pause['id']}", headers=coordinator).json()["display_status"] == "active"
    active = client.get("/v1/pauses", params={"active_at": frozen_clock.now.isoformat()}, headers=coordinator).json()[
        "items"
    ]
    assert [p["id"] for p in active] == [pause["id"]]
    assert (
        client.get(
            "/v1/pauses", params={"active_at": (starts - timedelta(minutes=1)).isoformat()}, headers=coordinator
        ).json()["items"]
        == []
    )
    picture = client.get(f"/v1/cities/{cast['city']}/access", headers=coordinator).json()
    assert [p["id"] for p in picture["pauses"]["active"]] == [pause["id"]] and picture["pauses"]["active"][0][
        "status"
    ] == "active"
    # A violation is reported by the partner and verified: the suspension is offered, not taken.
    reported = client.post(
        "/v1/violations",
        json={
            "pause_id": pause["id"],
            "access_request_id": request["id"],
            "category": "hostilities",
            "occurred_at": frozen_clock.now.isoformat(),
            "place": "Castello road",
            "description": "Shelling near the convoy",
            "severity": 4,
        },
        headers=partner,
    )
    assert reported.status_code == 201, reported.text
    violation = reported.json()
    assert violation["status"] == "reported" and violation["first_response_at"] is None
    unanswered = client.get("/v1/violations", params={"unanswered": "true"}, headers=coordinator).json()["items"]
    assert [v["id"] for v in unanswered] == [violation["id"]]
    frozen_clock.advance(minutes=7)
    verified = client.post(f"/v1/violations/{violation['id']}/verify", headers=coordinator).json()
    assert verified["status"] == "verified" and verified["response_seconds"] == 7 * 60
    assert verified["suggested_actions"] == [
        {"action": "suspend_pause", "href": f"/v1/pauses/{pause['id']}/suspend", "method": "POST"}
    ]
    assert (
        client.get(f"/v1/pauses/{pause['id']}", headers=coordinator).json()["status"] == "approved"
    )  # not suspended by itself
    # Listed before the suspension: the requests' encodings are kept, their flags are not (a pause's
    # state does not move a request's version).
    listed = client.get("/v1/access-requests", headers=partner).json()["items"]
    assert {item["id"]: item["pause_flag"] for item in listed} == {request["id"]: None, outside["id"]: None}
    suspended = client.post(
        f"/v1/pauses/{pause['id']}/suspend",
        json={"reason": "Verified shelling", "violation_id": violation["id"]},
        headers=coordinator,
    ).json()
    assert suspended["status"] == "suspended"
    # Every convoy still on its way that relies on it, drafts included.
    assert {r["id"] for r in suspended["affected_requests"]} == {request["id"], outside["id"]}
    assert client.get(f"/v1/access-requests/{request['id']}", headers=partner).json()["pause_flag"] == "pause_suspended"
    listed = client.get("/v1/access-requests", headers=partner).json()["items"]
    assert {item["id"]: item["pause_flag"] for item in listed} == {
        request["id"]: "pause_suspended",
        outside["id"]: "pause_suspended",
    }
    assert client.get(f"/v1/pauses/{pause['id']}", headers=partner_other).json()["affected_requests"] == []
    assert (
        client.get("/v1/pauses", params={"active_at": frozen_clock.now.isoformat()}, headers=coordinator).json()[
            "items"
        ]
        == []
    )
    resumed = client.post(f"/v1/pauses/{pause['id']}/resume", headers=coordinator).json()
    assert resumed["status"] == "approved" and resumed["display_status"] == "active"
    assert client.get(f"/v1/access-requests/{request['id']}", headers=partner).json()["pause_flag"] is None
    listed = client.get("/v1/access-requests", headers=partner).json()["items"]
    assert {item["id"]: item["pause_flag"] for item in listed} == {request["id"]: None, outside["id"]: None}
    frozen_clock.now = starts + timedelta(days=3)
    coordinator = world.headers(world.user(Role.coordinator))
    assert client.get(f"/v1/pauses/{pause['id']}", headers=coordinator).json()["display_status"] == "completed"
    history = client.get(
        "/v1/audit", params={"entity_type": "pause", "entity_id": pause["id"]}, headers=coordinator
    ).json()["items"]
    assert [e["action"] for e in history] == [
        "proposed",
        "revised",
        "endorsed",
        "endorsed",
        "approved",
        "acknowledgement_recorded",
        "suspended",
        "resumed",
    ]


# ---- violations ----------------------------------------------------------------------


def test_violation_rules(client, cast, frozen_clock):
    base = {
        "city_id": cast["city"],
        "category": "movement_restrictions",
        "occurred_at": frozen_clock.now.isoformat(),
        "description": "Checkpoint closed",
        "severity": 2,
    }
    assert (
        client.post(
            "/v1/violations",
            json={**base, "occurred_at": (frozen_clock.now + timedelta(hours=1)).isoformat()},
            headers=cast["partner"],
        ).status_code
        == 422
    )
    assert (
        client.post("/v1/violations", json={**base, "category": "bad_weather"}, headers=cast["partner"]).status_code
        == 422
    )
    assert (
        client.post(
            "/v1/violations", json={k: v for k, v in base.items() if k != "city_id"}, headers=cast["partner"]
        ).status_code
        == 422
    )
    for caller in ("observer", "admin", "service"):
        assert client.post("/v1/violations", json=base, headers=cast[caller]).status_code == 403, caller
    mine = client.post("/v1/violations", json=base, headers=cast["partner"]).json()
    theirs = client.post("/v1/violations", json=base, headers=cast["alpha"]).json()
    assert client.get(f"/v1/violations/{theirs['id']}", headers=cast["partner"]).status_code == 404
    assert [v["id"] for v in client.get("/v1/violations", headers=cast["partner"]).json()["items"]] == [mine["id"]]
    assert len(client.get("/v1/violations", headers=cast["alpha"]).json()["items"]) == 2
    assert client.get("/v1/violations", headers=cast["observer"]).status_code == 403
    assert client.post(f"/v1/violations/{mine['id']}/verify", headers=cast["partner"]).status_code == 403
    assert client.post(f"/v1/violations/{mine['id']}/dismiss", json={}, headers=cast["coordinator"]).status_code == 422
    assert client.post(f"/v1/violations/{mine['id']}/resolve", headers=cast["coordinator"]).status_code == 409
    dismissed = client.post(
        f"/v1/violations/{mine['id']}/dismiss", json={"reason": "Duplicate"}, headers=cast["coordinator"]
    )
    assert dismissed.json()["status"] == "dismissed"
    # A partner reports against its own organization's requests only.
    request = client.post(
        "/v1/access-requests",
        json={
            "destination_city_id": cast["city"],
            "origin_name": "X",
            "planned_departure": (frozen_clock.now + timedelta(days=3)).isoformat(),
            "planned_arrival": (frozen_clock.now + timedelta(days=3, hours=2)).isoformat(),
            "trucks": 1,
            "people_targeted": 1,
            "contact": {"name": "L"},
            "cargo_lines": [{"sector": "food", "item": "Rice", "quantity": 1, "unit": "MT"}],
        },
        headers=cast["partner_other"],
    ).json()
    foreign = client.post("/v1/violations", json={**base, "access_request_id": request["id"]}, headers=cast["partner"])
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["field"] == "body.access_request_id"
    about_theirs = client.post(
        "/v1/violations", json={**base, "access_request_id": request["id"]}, headers=cast["coordinator"]
    ).json()
    assert client.get(f"/v1/violations/{about_theirs['id']}", headers=cast["partner_other"]).status_code == 200
    filtered = client.get(
        "/v1/violations",
        params={"category": "movement_restrictions", "status": "reported"},
        headers=cast["coordinator"],
    ).json()
    assert {v["id"] for v in filtered["items"]} == {theirs["id"], about_theirs["id"]}


# ---- the calendar --------------------------------------------------------------------


def test_the_calendar_feed(client, world, cast, frozen_clock):
    # A bare carriage return (or line feed) in a text must not end its line and start a forged property.
    kept = _propose(
        client,
        cast,
        frozen_clock,
        days_ahead=5,
        purpose="A long purpose\rEND:VEVENT\rBEGIN:VEVENT\rSUMMARY:Forged\nX\x0b " + "x" * 200,
    )
    ended = _propose(client, cast, frozen_clock, days_ahead=20)
    for pause in (kept, ended):
        for d in ("alpha", "bravo"):
            _endorse(client, cast[d], pause)
        assert client.post(f"/v1/pauses/{pause['id']}/approve", headers=cast["coordinator"]).status_code == 200
    client.post(f"/v1/pauses/{ended['id']}/terminate", json={"reason": "Talks collapsed"}, headers=cast["coordinator"])
    never = _propose(client, cast, frozen_clock, days_ahead=40)
    observer_user = world.user(Role.observer)
    headers = world.headers(observer_user)
    issued = client.post("/v1/pauses/calendar-token", headers=headers).json()
    token = issued["token"]
    assert issued["url"].endswith(f"/v1/pauses/calendar.ics?token={token}")
    feed = client.get("/v1/pauses/calendar.ics", params={"token": token, "city_id": cast["city"]})
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    text = feed.content.decode()
    assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert "\r" not in text.replace("\r\n", "") and "\n" not in text.replace("\r\n", "") and "\x0b" not in text
    unfolded = text.replace("\r\n ", "").split("\r\n")
    assert unfolded.count("BEGIN:VEVENT") == 2 and not any(line.startswith("SUMMARY:Forged") for line in unfolded)
    assert f"UID:pause-{kept['id']}@aidaccess" in text and f"UID:pause-{ended['id']}@aidaccess" in text
    assert never["id"] not in text
    events = text.split("\r\nBEGIN:VEVENT\r\n")[1:]
    status = {e.split("UID:pause-")[1][:36]: ("STATUS:CANCELLED" in e) for e in events}
    assert status == {kept["id"]: False, ended["id"]: True}
    assert "DTSTART:" in events[0] and events[0].split("DTSTART:")[1][15] == "Z"
    # Each event names its city: in the summary, as its location (both names), and as a point.
    first = events[0].replace("\r\n ", "").split("\r\n")
    assert "SUMMARY:Humanitarian pause: Aleppo" in first
    assert "LOCATION:Aleppo (حلب)" in first
    assert "GEO:36.200000;37.140000" in first
    # The calendar token reads the calendar and nothing else; an access token does not read the calendar.
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    access = headers["Authorization"].split()[1]
    assert client.get("/v1/pauses/calendar.ics", params={"token": access}).status_code == 401
    assert client.get("/v1/pauses/calendar.ics").status_code == 422
    admin = world.headers(world.user(Role.admin))
    client.patch(f"/v1/users/{observer_user.id}", json={"active": False}, headers=admin)
    assert client.get("/v1/pauses/calendar.ics", params={"token": token}).status_code == 401


def test_a_calendar_token_ends_when_revoked_or_the_password_reset_or_the_account_deactivated(
    client, world, audit_count, frozen_clock
):
    from tests.conftest import PASSWORD

    admin = world.headers(world.user(Role.admin))
    user = world.user(Role.observer)

    def token() -> str:
        headers = {"Authorization": f"Bearer {world.login(user, password)['access_token']}"}
        return client.post("/v1/pauses/calendar-token", headers=headers).json()["token"]

    def works(calendar: str) -> bool:
        code = client.get("/v1/pauses/calendar.ics", params={"token": calendar}).status_code
        assert code in (200, 401)
        return code == 200

    password = PASSWORD
    revoked, kept = token(), token()
    before = audit_count()
    assert client.post("/v1/auth/revoke", data={"token": revoked}).status_code == 200
    assert not works(revoked) and works(kept)
    assert audit_count() == before + 1  # the revocation is on the trail
    password = "a-brand-new-password-2026"
    assert client.patch(f"/v1/users/{user.id}", json={"password": password}, headers=admin).status_code == 200
    assert not works(kept)
    frozen_clock.advance(
        seconds=1
    )  # tokens carry their issue time to the second; one of the reset's second is refused too
    fresh = token()
    assert works(fresh)
    assert client.patch(f"/v1/users/{user.id}", json={"active": False}, headers=admin).status_code == 200
    assert not works(fresh)
    assert client.patch(f"/v1/users/{user.id}", json={"active": True}, headers=admin).status_code == 200
    assert not works(fresh)  # reactivated, the account gets new tokens; the old ones stay ended
    frozen_clock.advance(seconds=1)
    assert works(token())


@pytest.mark.postgres_only
def test_the_database_refuses_two_pauses_in_force_that_overlap_for_one_city(client, session, cast, frozen_clock):
    """Whatever writes them: the exclusion constraint (alembic 0009) over the pause's cities and
    window, for pauses approved, active or suspended; one that ends early frees its window."""
    from sqlalchemy.exc import IntegrityError

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time; the approval's check guards it there")
    first, second = (
        session.get(Pause, uuid.UUID(_propose(client, cast, frozen_clock, days_ahead=d)["id"])) for d in (10, 11)
    )
    first.status = "suspended"
    session.add(first)
    session.commit()
    second.status = "approved"
    session.add(second)
    with pytest.raises(IntegrityError, match="pause_city_no_overlap"):
        session.commit()
    session.rollback()
    first.status = "terminated"
    session.add(first)
    session.commit()
    second.status = "approved"
    session.add(second)
    session.commit()
    assert session.get(Pause, second.id).status == "approved"
