"""Cities, designations, the access picture and the snapshot."""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import hxl
import pytest

from api.representations import BodyCache
from auth.roles import OrganizationKind, Role, Scope
from tests.conftest import ARRANGER, FAST_HASHER


def _city_body(**overrides):
    body = {
        "name": "Testville",
        "name_ar": "تست",
        "aliases": ["Test Town"],
        "pcode": f"C{uuid.uuid4().int % 900000 + 100000}",
        "adm1_pcode": "SY03",
        "adm1_name": "Rural Damascus",
        "latitude": 33.5,
        "longitude": 36.3,
        "population": 1000,
    }
    body.update(overrides)
    return body


def _designation(status="besieged", when="2016-01-01T00:00:00+02:00", **overrides):
    body = {
        "status": status,
        "besieged_by": "Someone" if status == "besieged" else None,
        "severity": 4,
        "effective_from": when,
        "reason": "Field report",
        "source": "Test source",
    }
    body.update(overrides)
    return body


@pytest.fixture
def coordinator(world):
    return world.headers(world.user(Role.coordinator))


@pytest.fixture
def city(client, coordinator):
    response = client.post(
        "/v1/cities", json=_city_body(name="Douma", name_ar="دوما", aliases=["Duma"]), headers=coordinator
    )
    assert response.status_code == 201, response.text
    return response.json()


# ---- authorization matrix ------------------------------------------------------------

CALLERS = ["anonymous", "partner", "coordinator", "co_chair", "observer", "admin", "service_read", "service_write_only"]
READS = ["list cities", "get city", "list designations", "access picture", "snapshot"]


def _headers_for(world, caller):
    if caller == "anonymous":
        return {}
    if caller.startswith("service"):
        scopes = [Scope.read] if caller == "service_read" else [Scope.requests_write]
        return world.service_headers(world.service_account(world.org(OrganizationKind.ngo), scopes))
    return world.headers(world.user(Role(caller)))


def _expected(caller, action):
    if caller == "anonymous":
        return 401
    if action in READS:
        return 403 if caller == "service_write_only" else 200
    if action in ("create city", "update city"):
        return {"create city": 201, "update city": 200}[action] if caller in ("coordinator", "admin") else 403
    if action == "create designation":
        return 201 if caller == "coordinator" else 403
    raise AssertionError(action)


@pytest.mark.parametrize("caller", CALLERS)
def test_cities_authorization_matrix(world, client, city, audit_count, caller):
    headers = _headers_for(world, caller)
    actions = [
        ("list cities", "GET", "/v1/cities", None),
        ("get city", "GET", f"/v1/cities/{city['id']}", None),
        ("list designations", "GET", f"/v1/cities/{city['id']}/designations", None),
        ("access picture", "GET", f"/v1/cities/{city['id']}/access", None),
        ("snapshot", "GET", "/v1/access-snapshot", None),
        ("create city", "POST", "/v1/cities", _city_body()),
        ("update city", "PATCH", f"/v1/cities/{city['id']}", {"population": 4242}),
        ("create designation", "POST", f"/v1/cities/{city['id']}/designations", _designation()),
    ]
    failures = []
    for name, method, path, body in actions:
        before = audit_count()
        response = client.request(method, path, json=body, headers=headers)
        expected = _expected(caller, name)
        if response.status_code != expected:
            failures.append(f"{caller} {name}: {response.status_code} != {expected}")
        elif expected >= 400 or method == "GET":
            assert audit_count() == before, f"{caller} {name} wrote"
        else:
            assert audit_count() == before + 1, f"{caller} {name}: not exactly one audit event"
    assert not failures, "\n".join(failures)


# ---- cities --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"pcode": "1007"}, "body.pcode"),
        ({"pcode": "C10"}, "body.pcode"),
        ({"pcode": "SY02"}, "body.pcode"),
        ({"adm1_pcode": "SY2"}, "body.adm1_pcode"),
        ({"adm1_pcode": "C1007"}, "body.adm1_pcode"),
        ({"latitude": 91}, "body.latitude"),
        ({"latitude": -90.5}, "body.latitude"),
        ({"longitude": 181}, "body.longitude"),
        ({"population": -1}, "body.population"),
        ({"name": ""}, "body.name"),
        ({"latitude": "north"}, "body.latitude"),
    ],
)
def test_invalid_city_is_422_naming_the_field(client, coordinator, audit_count, overrides, field):
    before = audit_count()
    response = client.post("/v1/cities", json=_city_body(**overrides), headers=coordinator)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert audit_count() == before


def test_duplicate_pcode_is_409(client, coordinator, city, audit_count):
    before = audit_count()
    response = client.post("/v1/cities", json=_city_body(pcode=city["pcode"]), headers=coordinator)
    assert response.status_code == 409
    assert response.json()["type"] == "urn:aidaccess:problem:conflict"
    other = client.post("/v1/cities", json=_city_body(), headers=coordinator).json()
    assert (
        client.patch(f"/v1/cities/{other['id']}", json={"pcode": city["pcode"]}, headers=coordinator).status_code == 409
    )
    assert audit_count() == before + 1


def test_unknown_city_is_404_everywhere(client, coordinator):
    missing = uuid.uuid4()
    for method, path, body in [
        ("GET", f"/v1/cities/{missing}", None),
        ("PATCH", f"/v1/cities/{missing}", {"population": 1}),
        ("GET", f"/v1/cities/{missing}/designations", None),
        ("POST", f"/v1/cities/{missing}/designations", _designation()),
        ("GET", f"/v1/cities/{missing}/access", None),
    ]:
        response = client.request(method, path, json=body, headers=coordinator)
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.headers["content-type"] == "application/problem+json"


def test_city_edits_are_audited_with_before_and_after(client, coordinator, city, world):
    response = client.patch(
        f"/v1/cities/{city['id']}",
        json={"population": 250000, "aliases": ["Duma", "Douma al-Sham"]},
        headers=coordinator,
    )
    assert response.status_code == 200
    admin = world.headers(world.user(Role.admin))
    events = client.get("/v1/audit", params={"entity_type": "city", "entity_id": city["id"]}, headers=admin).json()[
        "items"
    ]
    assert events[-1]["action"] == "updated"
    assert events[-1]["changes"]["population"] == {"from": 1000, "to": 250000}
    assert events[-1]["changes"]["aliases"]["to"] == ["Duma", "Douma al-Sham"]


def test_a_city_field_cannot_be_removed(client, coordinator, city):
    response = client.patch(f"/v1/cities/{city['id']}", json={"name": None}, headers=coordinator)
    assert response.status_code == 422


@pytest.mark.parametrize("q", ["duma", "DUMA", "douma", "دوما", "C", "ouma"])
def test_search_finds_a_city_by_any_name_in_either_script(client, coordinator, city, q):
    if q == "C":
        q = city["pcode"]
    found = client.get("/v1/cities", params={"q": q}, headers=coordinator).json()["items"]
    assert city["id"] in [c["id"] for c in found]


def test_search_folds_punctuation_accents_and_arabic_letter_forms(client, coordinator):
    fuah = client.post(
        "/v1/cities", json=_city_body(name="Al-Fu'ah", name_ar="الفوعة", aliases=["Foah", "Fua"]), headers=coordinator
    ).json()
    for q in ("alfuah", "fu'ah", "AL FU AH", "الفوعه", "فوعة", "Al-Fúah"):
        found = [c["id"] for c in client.get("/v1/cities", params={"q": q}, headers=coordinator).json()["items"]]
        assert fuah["id"] in found, q
    assert client.get("/v1/cities", params={"q": "xyzzy"}, headers=coordinator).json()["items"] == []
    assert client.get("/v1/cities", params={"q": "--"}, headers=coordinator).status_code == 422


def test_cities_list_alphabetically_with_cursors_and_filters(client, coordinator):
    names = ["Zeta", "Alpha", "Mike", "Bravo", "Kilo"]
    for name in names:
        client.post(
            "/v1/cities", json=_city_body(name=name, adm1_pcode="SY09", adm1_name="Deir-ez-Zor"), headers=coordinator
        )
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "adm1_pcode": "SY09"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/cities", params=params, headers=coordinator).json()
        seen += [c["name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(names)
    assert client.get("/v1/cities", params={"adm1_pcode": "SY9"}, headers=coordinator).status_code == 422
    assert client.get("/v1/cities", params={"cursor": "bm9wZQ"}, headers=coordinator).status_code == 422


# ---- designations --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, field",
    [
        (_designation(besieged_by=None), "body.besieged_by"),
        (_designation(besieged_by="   "), "body.besieged_by"),
        (_designation(status="accessible", besieged_by="Someone"), "body.besieged_by"),
        (_designation(effective_from="2016-01-01T00:00:00"), "body.effective_from"),
        (_designation(severity=6), "body.severity"),
        (_designation(severity=-1), "body.severity"),
        (_designation(reason=""), "body.reason"),
        (_designation(status="open"), "body.status"),
        ({k: v for k, v in _designation().items() if k != "reason"}, "body.reason"),
        (_designation(corrects_id=str(uuid.uuid4())), "body.corrects_id"),
    ],
)
def test_invalid_designation_is_422_with_nothing_written(client, coordinator, city, audit_count, body, field):
    before = audit_count()
    response = client.post(f"/v1/cities/{city['id']}/designations", json=body, headers=coordinator)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert audit_count() == before
    assert client.get(f"/v1/cities/{city['id']}/designations", headers=coordinator).json()["items"] == []


def _designate(client, headers, city_id, **kwargs):
    response = client.post(f"/v1/cities/{city_id}/designations", json=_designation(**kwargs), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _picture(client, headers, city_id, as_of=None):
    params = {"as_of": as_of} if as_of else {}
    response = client.get(f"/v1/cities/{city_id}/access", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_as_of_is_answered_from_history(client, coordinator, city):
    _designate(client, coordinator, city["id"], status="accessible", when="2016-01-01T00:00:00+00:00", severity=1)
    _designate(client, coordinator, city["id"], status="hard_to_reach", when="2016-03-01T00:00:00+00:00", severity=3)
    _designate(
        client,
        coordinator,
        city["id"],
        status="besieged",
        when="2016-07-17T00:00:00+03:00",
        severity=5,
        besieged_by="GoS",
    )
    expectations = {
        "2015-12-31T23:59:59+00:00": None,
        "2016-02-01T12:00:00+00:00": "accessible",
        "2016-03-01T00:00:00+00:00": "hard_to_reach",  # effective from that very moment
        "2016-07-16T21:00:00+00:00": "besieged",  # = 2016-07-17T00:00:00+03:00
        "2016-07-16T20:59:59+00:00": "hard_to_reach",
        "2017-01-01T00:00:00+02:00": "besieged",
    }
    for as_of, status in expectations.items():
        picture = _picture(client, coordinator, city["id"], as_of)
        assert (picture["designation"] or {}).get("status") == status, as_of
    current = _picture(client, coordinator, city["id"])
    assert current["designation"]["status"] == "besieged" and current["designation"]["besieged_by"] == "GoS"
    assert current["status_since"] == "2016-07-16T21:00:00Z"
    listed = client.get("/v1/cities", params={"designation": "besieged"}, headers=coordinator).json()["items"]
    assert city["id"] in [c["id"] for c in listed]
    assert [c for c in listed if c["id"] == city["id"]][0]["current_designation"]["status"] == "besieged"
    assert city["id"] not in [
        c["id"]
        for c in client.get("/v1/cities", params={"designation": "accessible"}, headers=coordinator).json()["items"]
    ]


def test_status_since_spans_a_run_of_the_same_status_and_days_count_calendar_days(client, coordinator, city):
    _designate(client, coordinator, city["id"], status="besieged", when="2016-01-10T10:00:00+00:00", severity=3)
    _designate(client, coordinator, city["id"], status="besieged", when="2016-02-01T00:00:00+00:00", severity=5)
    picture = _picture(client, coordinator, city["id"], "2016-02-05T22:30:00+00:00")
    assert picture["designation"]["severity"] == 5
    assert picture["status_since"] == "2016-01-10T10:00:00Z"
    # Calendar days in the taskforce's time zone: 22:30 UTC is already 6 February in Damascus (UTC+2).
    assert picture["days_in_status"] == (datetime(2016, 2, 6) - datetime(2016, 1, 10)).days
    assert _picture(client, coordinator, city["id"], "2016-02-05T21:59:00+00:00")["days_in_status"] == 26


def test_a_future_designation_takes_effect_by_the_clock(client, coordinator, city, frozen_clock):
    _designate(
        client, coordinator, city["id"], status="hard_to_reach", when=(frozen_clock.now - timedelta(days=1)).isoformat()
    )
    _designate(
        client,
        coordinator,
        city["id"],
        status="accessible",
        when=(frozen_clock.now + timedelta(minutes=5)).isoformat(),
        severity=1,
    )
    assert _picture(client, coordinator, city["id"])["designation"]["status"] == "hard_to_reach"
    frozen_clock.advance(minutes=5)
    assert _picture(client, coordinator, city["id"])["designation"]["status"] == "accessible"


def test_a_correction_replaces_what_it_corrects_and_history_keeps_both(client, coordinator, city, audit_count):
    wrong = _designate(client, coordinator, city["id"], status="besieged", when="2016-01-01T00:00:00+00:00", severity=5)
    fixed = _designate(
        client,
        coordinator,
        city["id"],
        status="hard_to_reach",
        when="2016-01-01T00:00:00+00:00",
        severity=3,
        corrects_id=wrong["id"],
    )
    assert fixed["corrects_id"] == wrong["id"]
    assert (
        _picture(client, coordinator, city["id"], "2016-06-01T00:00:00+00:00")["designation"]["status"]
        == "hard_to_reach"
    )
    history = client.get(f"/v1/cities/{city['id']}/designations", headers=coordinator).json()["items"]
    by_id = {d["id"]: d for d in history}
    assert by_id[wrong["id"]]["corrected_by_id"] == fixed["id"]
    assert by_id[fixed["id"]]["corrected_by_id"] is None
    before = audit_count()
    again = client.post(
        f"/v1/cities/{city['id']}/designations", json=_designation(corrects_id=wrong["id"]), headers=coordinator
    )
    assert again.status_code == 409 and again.json()["corrected_by"] == fixed["id"]
    assert audit_count() == before


def test_a_correction_must_name_a_designation_of_the_same_city(client, coordinator, city):
    other = client.post("/v1/cities", json=_city_body(), headers=coordinator).json()
    theirs = _designate(client, coordinator, other["id"])
    response = client.post(
        f"/v1/cities/{city['id']}/designations", json=_designation(corrects_id=theirs["id"]), headers=coordinator
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body.corrects_id"


def test_designations_are_audited_with_from_and_to_state(world, client, coordinator, city):
    _designate(client, coordinator, city["id"], status="hard_to_reach", when="2016-01-01T00:00:00+00:00")
    _designate(client, coordinator, city["id"], status="besieged", when="2016-02-01T00:00:00+00:00")
    admin = world.headers(world.user(Role.admin))
    events = [
        e
        for e in client.get("/v1/audit", params={"entity_id": city["id"]}, headers=admin).json()["items"]
        if e["action"] == "designation_recorded"
    ]
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "hard_to_reach"),
        ("hard_to_reach", "besieged"),
    ]
    assert events[-1]["reason"] == "Field report"


def test_designation_history_is_newest_first_and_pages(client, coordinator, city):
    for month in range(1, 6):
        _designate(client, coordinator, city["id"], when=f"2016-0{month}-01T00:00:00+00:00")
    first = client.get(f"/v1/cities/{city['id']}/designations", params={"limit": 3}, headers=coordinator).json()
    second = client.get(
        f"/v1/cities/{city['id']}/designations",
        params={"limit": 3, "cursor": first["next_cursor"]},
        headers=coordinator,
    ).json()
    months = [d["effective_from"][:7] for d in first["items"] + second["items"]]
    assert months == ["2016-05", "2016-04", "2016-03", "2016-02", "2016-01"]
    assert second["next_cursor"] is None


def test_naive_as_of_is_422(client, coordinator, city):
    for path in (f"/v1/cities/{city['id']}/access", "/v1/access-snapshot"):
        response = client.get(path, params={"as_of": "2016-05-01T00:00:00"}, headers=coordinator)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "query.as_of"


# ---- the picture ---------------------------------------------------------------------


def test_picture_shape_and_observers_see_convoy_counts_only(world, client, coordinator, city):
    _designate(client, coordinator, city["id"])
    picture = _picture(client, coordinator, city["id"])
    assert picture["city"]["pcode"] == city["pcode"]
    assert picture["pauses"] == {"active": [], "upcoming": []}
    assert picture["convoys"] == {"upcoming_count": 0, "upcoming": [], "upcoming_truncated": False}
    assert picture["last_delivery"] is None and picture["days_since_last_delivery"] is None
    observer = _picture(client, world.headers(world.user(Role.observer)), city["id"])
    assert observer["convoys"] == {"upcoming_count": 0, "upcoming": None, "upcoming_truncated": False}


# ---- the snapshot --------------------------------------------------------------------


@pytest.fixture
def demo(session):
    from db.seed import seed_demo

    seed_demo(session, hasher=FAST_HASHER, password="a-long-test-password")
    session.commit()


def test_demo_snapshot_has_the_2016_designations(client, coordinator, demo):
    snapshot = client.get(
        "/v1/access-snapshot", params={"as_of": "2016-09-01T00:00:00+03:00"}, headers=coordinator
    ).json()
    status = {c["city"]["name"]: (c["designation"] or {}).get("status") for c in snapshot["cities"]}
    for besieged in (
        "Madaya",
        "Zabadani",
        "Al-Fu'ah",
        "Kafraya",
        "Daraya",
        "Moadamiyeh",
        "Douma",
        "Deir ez-Zor",
        "Aleppo",
    ):
        assert status[besieged] == "besieged", besieged
    assert status["Damascus"] == "accessible"
    early = client.get("/v1/access-snapshot", params={"as_of": "2016-03-01T00:00:00+02:00"}, headers=coordinator).json()
    assert {c["city"]["name"]: c["designation"]["status"] for c in early["cities"]}["Aleppo"] == "hard_to_reach"
    assert snapshot["count"] == 14 and snapshot["as_of"] == "2016-08-31T21:00:00Z"
    assert all(c["designation"]["source"] for c in snapshot["cities"])


def test_snapshot_filters_by_governorate_and_designation(client, coordinator, demo):
    rural_damascus = client.get("/v1/access-snapshot", params={"adm1_pcode": "SY03"}, headers=coordinator).json()
    assert {c["city"]["adm1_pcode"] for c in rural_damascus["cities"]} == {"SY03"} and rural_damascus["count"] == 5
    hard = client.get("/v1/access-snapshot", params={"designation": "hard_to_reach"}, headers=coordinator).json()
    assert {c["city"]["name"] for c in hard["cities"]} == {"Jarablus", "Idlib", "Raqqa"}


def test_snapshot_hxl_is_read_back_by_libhxl(client, coordinator, demo):
    response = client.get(
        "/v1/access-snapshot", params={"format": "hxl", "as_of": "2016-09-01T00:00:00+00:00"}, headers=coordinator
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    dataset = hxl.data(io.BytesIO(response.content))
    tags = [column.display_tag for column in dataset.columns]
    for tag in (
        "#loc+name",
        "#adm4+code",
        "#adm1+code",
        "#adm1+name",
        "#geo+lat",
        "#geo+lon",
        "#access+type",
        "#severity",
        "#date+start",
    ):
        assert tag in tags, tag
    rows = {row.get("#adm4+code"): row for row in dataset}
    assert len(rows) == 14
    assert rows["C2450"].get("#loc+name") == "Madaya"
    assert rows["C2450"].get("#access+type") == "besieged"
    assert rows["C1007"].get("#loc+name+i_ar") == "حلب"
    assert float(rows["C1007"].get("#geo+lat")) == pytest.approx(36.20311)
    assert dataset.columns[tags.index("#access+type")].header == "access_status"


def test_csv_with_a_byte_order_mark_on_request_for_excel(client, coordinator, demo):
    plain = client.get("/v1/access-snapshot", params={"format": "hxl"}, headers=coordinator)
    marked = client.get("/v1/access-snapshot", params={"format": "hxl", "bom": "true"}, headers=coordinator)
    assert not plain.content.startswith(b"\xef\xbb\xbf")
    assert marked.content == b"\xef\xbb\xbf" + plain.content
    assert "حلب".encode() in marked.content
    # Other bytes, another tag; each revalidates as itself.
    assert marked.headers["etag"] != plain.headers["etag"]
    assert (
        client.get(
            "/v1/access-snapshot",
            params={"format": "hxl", "bom": "true"},
            headers={**coordinator, "If-None-Match": marked.headers["etag"]},
        ).status_code
        == 304
    )
    assert (
        client.get(
            "/v1/access-snapshot",
            params={"format": "hxl"},
            headers={**coordinator, "If-None-Match": marked.headers["etag"]},
        ).status_code
        == 200
    )
    # JSON has no byte order mark to carry.
    assert client.get("/v1/access-snapshot", params={"bom": "true"}, headers=coordinator).content.startswith(b"{")
    exported = client.get("/v1/access-requests", params={"bom": "true"}, headers={**coordinator, "Accept": "text/csv"})
    assert exported.content.startswith(b"\xef\xbb\xbfrequest_id,")


def test_snapshot_geojson_is_a_feature_collection_of_points_lon_lat(client, coordinator, demo):
    response = client.get("/v1/access-snapshot", headers={**coordinator, "Accept": "application/geo+json"})
    assert response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 14
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        longitude, latitude = feature["geometry"]["coordinates"]
        assert 35 < longitude < 43 and 32 < latitude < 38  # Syria: RFC 7946 order, longitude first
        assert isinstance(feature["properties"], dict) and feature["id"] == feature["properties"]["city_id"]
    aleppo = next(f for f in collection["features"] if f["properties"]["pcode"] == "C1007")
    assert aleppo["geometry"]["coordinates"] == [37.14087, 36.20311]


@pytest.mark.parametrize(
    "accept, media",
    [
        ("text/csv", "text/csv"),
        ("application/geo+json", "application/geo+json"),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        ("text/html;q=0.9, text/csv;q=0.8", "text/csv"),
        ("application/geo+json;q=0.5, application/json", "application/json"),
    ],
)
def test_snapshot_negotiates_by_accept(client, coordinator, accept, media):
    response = client.get("/v1/access-snapshot", headers={**coordinator, "Accept": accept})
    assert response.status_code == 200 and response.headers["content-type"].startswith(media)


def test_snapshot_refuses_unknown_formats(client, coordinator):
    assert client.get("/v1/access-snapshot", params={"format": "xlsx"}, headers=coordinator).status_code == 422
    refused = client.get("/v1/access-snapshot", headers={**coordinator, "Accept": "image/png"})
    assert refused.status_code == 406 and refused.headers["content-type"] == "application/problem+json"


def test_snapshot_etag_gives_304_until_something_changes(world, client, coordinator, city, frozen_clock):
    first = client.get("/v1/access-snapshot", headers=coordinator)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get("/v1/access-snapshot", headers=coordinator)
    assert again.headers["etag"] == etag and again.content == first.content
    not_modified = client.get("/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b"" and not_modified.headers["etag"] == etag
    # Another format is another representation: another ETag.
    assert client.get("/v1/access-snapshot", params={"format": "hxl"}, headers=coordinator).headers["etag"] != etag
    # A designation effective later changes what the snapshot says only when that time comes...
    _designate(
        client, coordinator, city["id"], status="besieged", when=(frozen_clock.now + timedelta(minutes=5)).isoformat()
    )
    recorded = client.get("/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag})
    assert recorded.status_code == 200  # a write may change it: revalidated
    etag = recorded.headers["etag"]
    assert client.get("/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag}).status_code == 304
    frozen_clock.advance(minutes=5)
    changed = client.get("/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag})
    assert changed.status_code == 200
    picture = next(c for c in changed.json()["cities"] if c["city"]["id"] == city["id"])
    assert picture["designation"]["status"] == "besieged"


def test_snapshot_etag_differs_by_what_the_caller_may_see(world, client, coordinator):
    observer = world.headers(world.user(Role.observer))
    assert (
        client.get("/v1/access-snapshot", headers=observer).headers["etag"]
        != client.get("/v1/access-snapshot", headers=coordinator).headers["etag"]
    )


def test_a_new_shape_of_the_picture_is_a_new_etag(client, coordinator, city, monkeypatch):
    """A client holding a picture of an earlier shape gets the new one, not a 304."""
    from workflow import access

    first = client.get(f"/v1/cities/{city['id']}/access", headers=coordinator)
    etag = first.headers["etag"]
    assert (
        client.get(f"/v1/cities/{city['id']}/access", headers={**coordinator, "If-None-Match": etag}).status_code == 304
    )
    monkeypatch.setattr(access, "REPRESENTATION", access.REPRESENTATION + 1)
    again = client.get(f"/v1/cities/{city['id']}/access", headers={**coordinator, "If-None-Match": etag})
    assert again.status_code == 200 and again.headers["etag"] != etag


def test_access_picture_etag_and_304(client, coordinator, city):
    first = client.get(f"/v1/cities/{city['id']}/access", headers=coordinator)
    etag = first.headers["etag"]
    assert (
        client.get(f"/v1/cities/{city['id']}/access", headers={**coordinator, "If-None-Match": etag}).status_code == 304
    )
    _designate(client, coordinator, city["id"])
    assert (
        client.get(f"/v1/cities/{city['id']}/access", headers={**coordinator, "If-None-Match": etag}).status_code == 200
    )


def test_snapshot_as_of_is_history_not_current_rows(client, coordinator, city):
    _designate(client, coordinator, city["id"], status="hard_to_reach", when="2016-01-01T00:00:00+00:00", severity=2)
    _designate(client, coordinator, city["id"], status="besieged", when="2016-06-01T00:00:00+00:00")
    snapshot = client.get(
        "/v1/access-snapshot", params={"as_of": "2016-03-01T00:00:00+00:00"}, headers=coordinator
    ).json()
    picture = next(c for c in snapshot["cities"] if c["city"]["id"] == city["id"])
    assert picture["designation"]["status"] == "hard_to_reach"
    assert picture["days_in_status"] == 60


# ---- upcoming convoys at any moment (workflow.upcoming_convoys) -----------------------------

_T0 = datetime(2020, 1, 1, tzinfo=UTC)


def _convoy(world, organization, city_id, *, approved, departs, dispatched=None, cancelled=None):
    from db.models import AccessRequest

    def day(n):
        return None if n is None else _T0 + timedelta(days=n)

    request = AccessRequest(
        organization_id=organization.id,
        created_by="tests",
        destination_city_id=uuid.UUID(city_id),
        origin_name="Warehouse",
        planned_departure=day(departs),
        planned_arrival=day(departs) + timedelta(hours=6),
        trucks=3,
        people_targeted=100,
        status="approved",
        approved_at=day(approved),
        decided_at=day(approved),
        dispatched_at=day(dispatched),
        cancelled_at=day(cancelled),
    )
    world.session.add(request)
    world.session.commit()
    return request.id


def test_upcoming_convoys_at_any_moment_are_those_approved_and_not_yet_departed(world, city):
    """From approval (included) to departure (excluded), unless dispatched or cancelled by then;
    never for a request approved after its planned departure. On PostgreSQL the query also says it
    as a range (ix_access_request_in_flight): the answers must be the same as the plain conditions'."""
    from workflow.convoys import upcoming_convoys

    ngo, to = world.org(OrganizationKind.ngo), city["id"]
    a = _convoy(world, ngo, to, approved=1, departs=5)
    late = _convoy(world, ngo, to, approved=10, departs=3)  # approved after it was to leave
    c = _convoy(world, ngo, to, approved=2, departs=9, cancelled=4)
    d = _convoy(world, ngo, to, approved=2, departs=8.5, dispatched=8)
    _convoy(world, ngo, to, approved=None, departs=6)  # never approved
    expected = {0: [], 1: [a], 3: [a, d, c], 4: [a, d], 5: [d], 7.9: [d], 8: [], 9.5: [], 10: [], 400: []}
    for day, ids in expected.items():
        found = [
            r.id
            for r in upcoming_convoys(world.session, [uuid.UUID(city["id"])], _T0 + timedelta(days=day), per_city=5)
        ]
        assert found == ids, (day, found, ids)
    assert late not in {r.id for r in upcoming_convoys(world.session, None, _T0 + timedelta(days=4), per_city=5)}


def test_a_picture_lists_the_soonest_convoys_the_caller_may_read_and_counts_them_all(world, client, coordinator, city):
    """At most CONVOYS_LISTED_PER_CITY listed (history can hold thousands upcoming at one past
    moment, and any reader picks the moment); the count is every organization's; the bound
    applies to what the caller may read, so a partner's own convoys are listed however many of
    others' leave first; ``upcoming_truncated`` says when more could have been listed."""
    from db.models import AccessRequest
    from workflow.convoys import CONVOYS_LISTED_PER_CITY as bound

    busy, late = world.org(OrganizationKind.un_agency), world.org(OrganizationKind.ngo)

    def convoy(organization, departs_day):
        departs = _T0 + timedelta(days=departs_day)
        return AccessRequest(
            organization_id=organization.id,
            created_by="tests",
            destination_city_id=uuid.UUID(city["id"]),
            origin_name="Warehouse",
            planned_departure=departs,
            planned_arrival=departs + timedelta(hours=6),
            trucks=3,
            people_targeted=100,
            status="approved",
            approved_at=_T0 + timedelta(days=1),
            decided_at=_T0 + timedelta(days=1),
        )

    # One more than the bound, leaving first: the evening before (21:00 UTC, 23:00 in Damascus), so that
    # a partner, who gets convoys as they stood at the start of the taskforce's day, sees it gone the next day.
    busy_ids = [convoy(busy, 9 + 21 / 24)] + [convoy(busy, 10 + i / 100) for i in range(bound)]
    late_ids = [convoy(late, 20), convoy(late, 21)]
    world.session.add_all([*busy_ids, *late_ids])
    world.session.commit()
    busy_ids, late_ids = [str(r.id) for r in busy_ids], [str(r.id) for r in late_ids]
    moment = (_T0 + timedelta(days=5)).isoformat()
    total = bound + 3

    def convoys(headers, as_of=moment):
        return _picture(client, headers, city["id"], as_of=as_of)["convoys"]

    seen = convoys(coordinator)
    assert seen["upcoming_count"] == total and seen["upcoming_truncated"] is True
    assert [c["id"] for c in seen["upcoming"]] == busy_ids[:bound]
    snapshot = client.get("/v1/access-snapshot", params={"as_of": moment}, headers=coordinator).json()
    assert next(c for c in snapshot["cities"] if c["city"]["id"] == city["id"])["convoys"] == seen

    late_partner = convoys(world.headers(world.user(Role.partner, late)))
    assert late_partner == {"upcoming_count": total, "upcoming": late_partner["upcoming"], "upcoming_truncated": False}
    assert [c["id"] for c in late_partner["upcoming"]] == late_ids
    busy_partner = world.headers(world.user(Role.partner, busy))
    mine = convoys(busy_partner)
    assert [c["id"] for c in mine["upcoming"]] == busy_ids[:bound] and mine["upcoming_truncated"] is True
    # Once the first has left, exactly the bound remain: all listed, nothing more to say.
    after_first = (_T0 + timedelta(days=10, minutes=1)).isoformat()
    mine = convoys(busy_partner, after_first)
    assert [c["id"] for c in mine["upcoming"]] == busy_ids[1:] and mine["upcoming_truncated"] is False
    assert mine["upcoming_count"] == total - 1
    assert convoys(world.headers(world.user(Role.observer))) == {
        "upcoming_count": total,
        "upcoming": None,
        "upcoming_truncated": False,
    }


def test_upcoming_convoys_deep_in_history_are_found_from_the_in_flight_index(session, city):
    """PostgreSQL: the statement names the range exactly as the index does, so a moment deep in
    history costs what its answer costs (at 1,000,000 requests: 243 ms -> 0.06 ms, bench_growth)."""
    from sqlalchemy import event

    from workflow.convoys import upcoming_convoy_counts, upcoming_convoys

    connection = session.connection()
    if connection.dialect.name != "postgresql":
        pytest.skip("SQLite has no range type; its moments use the departure index")
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        statements.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        # Each statement a picture sends about upcoming convoys: bounded per city (for a city, for
        # one organization), counted.
        upcoming_convoys(session, [uuid.UUID(city["id"])], _T0, per_city=3)
        upcoming_convoys(session, None, _T0, per_city=3, organization_id=uuid.uuid4())
        upcoming_convoy_counts(session, None, _T0)
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    assert len(statements) == 3
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    for statement, parameters in statements:
        plan = " ".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
        assert "ix_access_request_in_flight" in plan, plan


def test_seed_is_idempotent_for_designations(session):
    from db.seed import seed_demo

    first = seed_demo(session, hasher=FAST_HASHER, password="a-long-test-password")
    second = seed_demo(session, hasher=FAST_HASHER, password="a-long-test-password")
    assert (first.cities_created, first.designations_created) == (14, 15)
    assert (second.cities_created, second.designations_created) == (0, 0)
    assert ARRANGER.type == "system"
    _ = UTC, csv


# ---- the fast path for polls (api.fastpath) ---------------------------------------------


def _answered_early(client) -> dict[str, float]:
    counts = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("aidaccess_cached_reads_total{"):
            status = line.split('status="')[1].split('"')[0]
            counts[status] = float(line.rsplit(" ", 1)[1])
    return counts


def _same_headers(a, b) -> None:
    ignore = {"x-request-id", "date"}
    assert {k: v for k, v in a.headers.items() if k not in ignore} == {
        k: v for k, v in b.headers.items() if k not in ignore
    }


def test_polls_are_answered_before_routing_exactly_as_the_endpoints_answer(client, coordinator, city):
    """The fast path and the endpoints call the same functions (api.reads): the same bytes and headers."""
    picture_path = f"/v1/cities/{city['id']}/access"
    early_snapshot = client.get("/v1/access-snapshot", headers=coordinator)
    early_picture = client.get(picture_path, headers=coordinator)
    assert _answered_early(client) == {"200": 2.0}
    # Any query string goes the long way, through routing; these two change nothing in the answer.
    routed_snapshot = client.get("/v1/access-snapshot", params={"format": "json"}, headers=coordinator)
    routed_picture = client.get(picture_path, params={"routed": "1"}, headers=coordinator)
    assert _answered_early(client) == {"200": 2.0}
    for routed, early in ((routed_snapshot, early_snapshot), (routed_picture, early_picture)):
        assert early.status_code == 200 and early.content == routed.content
        _same_headers(routed, early)
    # A 304 from the fast path carries what the endpoint's 304 carries.
    etag = routed_snapshot.headers["etag"]
    early = client.get("/v1/access-snapshot", headers={**coordinator, "If-None-Match": etag})
    routed = client.get(
        "/v1/access-snapshot", params={"format": "json"}, headers={**coordinator, "If-None-Match": etag}
    )
    assert early.status_code == routed.status_code == 304
    _same_headers(early, routed)
    assert _answered_early(client) == {"200": 2.0, "304": 1.0}
    # The metrics name the route either way.
    assert 'route="/v1/cities/{city_id}/access",status="200"' in client.get("/metrics").text


@pytest.mark.parametrize("case", ["no token", "bad token", "unknown city", "not acceptable", "format query"])
def test_anything_unusual_goes_the_long_way(client, coordinator, city, case):
    path, headers, params = "/v1/access-snapshot", dict(coordinator), {}
    if case == "no token":
        headers = {}
    elif case == "bad token":
        headers = {"Authorization": "Bearer not-a-token"}
    elif case == "unknown city":
        path = f"/v1/cities/{uuid.uuid4()}/access"
    elif case == "not acceptable":
        headers["Accept"] = "image/png"
    elif case == "format query":
        params = {"format": "hxl"}
    client.get(path, headers=coordinator, params=params)  # warm whatever can be cached
    before = _answered_early(client)
    response = client.get(path, headers={**headers, "If-None-Match": "*"}, params=params)
    expected = {"no token": 401, "bad token": 401, "unknown city": 404, "not acceptable": 406, "format query": 304}[
        case
    ]
    assert response.status_code == expected
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
    assert _answered_early(client) == before


def test_sqlite_picture_versions_are_remembered_only_until_a_commit_or_a_dated_boundary(tmp_path, frozen_clock):
    """The real SQLite hot reads remember a picture's version inputs; the memo must agree
    with a fresh read at every moment: after a commit, and from the very moment a dated change
    takes effect with nothing committed at all. Read alone and with a principal (as polls read it)."""
    import asyncio
    import uuid

    from sqlalchemy import select

    from aidaccess.services import build_services
    from aidaccess.settings import Settings
    from db import migrations
    from db.hot import SqliteHotReads
    from db.models import City
    from db.seed import seed_demo
    from tests.conftest import TEST_AUDIT_KEY, TEST_SECRET
    from workflow.access import PICTURE_ENTITY_TYPES
    from workflow.cities import record_designation

    path = tmp_path / "memo.sqlite3"
    migrations.upgrade(f"sqlite:///{path}")
    services = build_services(
        Settings(
            _env_file=None,
            secret_key=TEST_SECRET,
            audit_key=TEST_AUDIT_KEY,
            data_dir=tmp_path,
            database_url=f"sqlite:///{path}",
        ),
        hasher=FAST_HASHER,
    )
    remembered = services.hot
    assert isinstance(remembered, SqliteHotReads)

    def designate(city_id, effective_from, status="hard_to_reach"):
        with services.database.session(write=True) as session:
            record_designation(
                session=session,
                actor=ARRANGER,
                city_id=city_id,
                data={"status": status, "severity": 3, "effective_from": effective_from, "reason": "Test."},
            )
            session.commit()

    with services.database.session(write=True) as session:
        seed_demo(session, hasher=FAST_HASHER, password="a-long-test-password")
        session.commit()
        city_id = session.execute(select(City.id).limit(1)).scalar_one()
    start = frozen_clock()
    designate(city_id, start + timedelta(hours=1))

    nobody = uuid.uuid4()

    def inputs(hot, city, with_principal):
        if with_principal:  # one look at the database's version for both memos
            principal, found = asyncio.run(
                hot.user_and_picture_inputs(nobody, None, "jti", PICTURE_ENTITY_TYPES, frozen_clock(), city)
            )
            assert principal is None
            return found
        return asyncio.run(hot.picture_inputs(PICTURE_ENTITY_TYPES, frozen_clock(), city))

    def agrees(city, with_principal):
        memo = inputs(remembered, city, with_principal)
        assert memo == inputs(SqliteHotReads(str(path)), city, with_principal)
        return memo

    try:
        for city, with_principal in ((None, False), (city_id, False), (None, True), (city_id, True)):
            first = agrees(city, with_principal)
            frozen_clock.advance(minutes=30)
            assert agrees(city, with_principal) is first  # nothing changed: answered from the memo
            frozen_clock.advance(microseconds=30 * 60 * 1_000_000 - 1)
            assert agrees(city, with_principal) is first  # a microsecond before the designation takes effect
            frozen_clock.advance(microseconds=1)  # it takes effect now; nothing was committed
            passed = agrees(city, with_principal)
            assert passed.latest_boundary != first.latest_boundary
            designate(city_id, start - timedelta(minutes=5), status="accessible" if city else "hard_to_reach")
            committed = agrees(city, with_principal)
            assert committed.latest_write > passed.latest_write
            frozen_clock.now = start  # the next round starts before the boundary again
            designate(city_id, start + timedelta(hours=1))
    finally:
        asyncio.run(remembered.close())
        services.database.dispose()


def test_a_deactivated_account_gets_no_early_answer(client, world, session, city):
    from db.models import User

    user = world.user(Role.coordinator)
    headers = world.headers(user)
    etag = client.get("/v1/access-snapshot", headers=headers).headers["etag"]
    assert client.get("/v1/access-snapshot", headers={**headers, "If-None-Match": etag}).status_code == 304
    session.get(User, user.id).active = False
    session.commit()
    refused = client.get("/v1/access-snapshot", headers={**headers, "If-None-Match": etag})
    assert refused.status_code == 401
    assert client.get("/v1/access-snapshot", headers=headers).status_code == 401


# ---- one rendering per ETag at a time (BodyCache.get_or_render) -------------------------


def _in_a_loop(scenario) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(10):  # a waiter never woken fails the test instead of stalling the suite
            await scenario()

    asyncio.run(bounded())


class _Rendering:
    """A rendering held until released, counting how often it was asked for."""

    def __init__(self, body: bytes = b"rendered", fails: bool = False) -> None:
        self.calls, self.body, self.fails, self.release = 0, body, fails, asyncio.Event()

    async def __call__(self) -> bytes:
        self.calls += 1
        await self.release.wait()
        if self.fails:
            raise RuntimeError("the database went away")
        return self.body


async def _settled() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_misses_of_one_etag_while_it_renders_share_one_rendering():
    async def scenario() -> None:
        cache, rendering, other_rendering = BodyCache(size=8), _Rendering(), _Rendering(b"other")
        misses = [asyncio.create_task(cache.get_or_render('"e1"', rendering)) for _ in range(10)]
        other = asyncio.create_task(cache.get_or_render('"e2"', other_rendering))
        await _settled()
        assert rendering.calls == 1 and not any(task.done() for task in misses)
        assert other_rendering.calls == 1  # another ETag does not wait for this one's rendering
        rendering.release.set()
        assert await asyncio.gather(*misses) == [b"rendered"] * 10
        assert cache.get('"e1"') == b"rendered"
        assert await cache.get_or_render('"e1"', rendering) == b"rendered" and rendering.calls == 1  # kept
        other_rendering.release.set()
        assert await other == b"other"

    _in_a_loop(scenario)


def test_a_failed_rendering_fails_its_own_request_and_each_waiter_renders_for_itself():
    async def scenario() -> None:
        cache, failing = BodyCache(size=8), _Rendering(fails=True)
        first = asyncio.create_task(cache.get_or_render('"e"', failing))
        await _settled()
        retry = _Rendering(b"second try")
        retry.release.set()
        waiters = [asyncio.create_task(cache.get_or_render('"e"', retry)) for _ in range(3)]
        await _settled()
        failing.release.set()
        with pytest.raises(RuntimeError):
            await first
        assert await asyncio.gather(*waiters) == [b"second try"] * 3
        assert (failing.calls, retry.calls) == (1, 3)

    _in_a_loop(scenario)


def test_a_cancelled_rendering_leaves_its_waiters_to_render_and_a_cancelled_waiter_leaves_the_rendering():
    async def scenario() -> None:
        cache, held = BodyCache(size=8), _Rendering()
        first = asyncio.create_task(cache.get_or_render('"e"', held))
        await _settled()
        impatient = asyncio.create_task(cache.get_or_render('"e"', held))
        patient = asyncio.create_task(cache.get_or_render('"e"', held))
        await _settled()
        impatient.cancel()  # a waiter gives up: the rendering goes on for the others
        await _settled()
        assert impatient.cancelled() and not patient.done() and held.calls == 1
        first.cancel()  # the rendering request itself goes away: its waiter renders for itself
        await _settled()
        assert first.cancelled() and held.calls == 2
        held.release.set()
        assert await patient == b"rendered"

    _in_a_loop(scenario)


def test_pollers_that_miss_together_get_one_rendering_of_the_snapshot(client, coordinator, city, monkeypatch):
    """Through the app: eight polls of the snapshot on an empty cache, made at once, render it once."""
    from workflow import access

    cache, pollers = client.app.state.snapshot_cache, 8
    entered, release, renders = threading.Semaphore(0), threading.Event(), []
    real_render, real_snapshot = cache.get_or_render, access.access_snapshot

    async def counted(key, render):
        entered.release()
        return await real_render(key, render)

    def held_snapshot(**kwargs):
        renders.append(1)
        assert release.wait(10)
        return real_snapshot(**kwargs)

    monkeypatch.setattr(cache, "get_or_render", counted)
    monkeypatch.setattr(access, "access_snapshot", held_snapshot)
    with ThreadPoolExecutor(pollers) as pool:
        polls = [pool.submit(client.get, "/v1/access-snapshot", headers=coordinator) for _ in range(pollers)]
        for _ in range(pollers):  # every poll is at the cache, and one of them is rendering
            assert entered.acquire(timeout=10)
        release.set()
        answers = [poll.result(timeout=10) for poll in polls]
    assert len(renders) == 1
    assert {(a.status_code, a.headers["etag"], a.content) for a in answers} == {
        (200, answers[0].headers["etag"], answers[0].content)
    }
