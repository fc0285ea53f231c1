"""The console (issue 35) through the test client: signing in and out, CSRF, the board's 304, forms
validated by the API's schemas, the workflow's refusals in words, Arabic, and secrecy on every page.
The same story in a real browser is tests/test_console_browser.py."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aidaccess import clock
from aidaccess.clock import utcnow
from api.console.web import CONTENT_SECURITY_POLICY, SESSION_COOKIE
from auth.roles import OrganizationKind, Role
from db.models import AccessRequest, AuditEvent, AuthSession
from tests.conftest import PASSWORD
from tests.test_access_requests import _body as request_body
from tests.test_cities import _city_body, _designation

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "api" / "console"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client, user, password: str = PASSWORD):  # noqa: ANN001, ANN201
    client.cookies.clear()
    form = client.get("/sign-in")
    assert form.status_code == 200
    response = client.post(
        "/sign-in",
        data={"username": user.email, "password": password, "csrf": csrf_of(form.text), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return response


@pytest.fixture
def aleppo(world, client):  # noqa: ANN001, ANN201
    coordinator = world.headers(world.user(Role.coordinator))
    city = client.post(
        "/v1/cities", json=_city_body(name="Aleppo", name_ar="حلب", latitude=36.2, longitude=37.15), headers=coordinator
    ).json()
    response = client.post(f"/v1/cities/{city['id']}/designations", json=_designation("besieged"), headers=coordinator)
    assert response.status_code == 201, response.text
    return city


# ---- signing in and out ------------------------------------------------------------------------


def test_a_page_without_a_sign_in_sends_to_the_form(client):
    response = client.get("/requests", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/requests"


def test_sign_in_sets_a_strict_http_only_cookie_and_is_audited(world, client, session):
    user = world.user(Role.observer)
    response = sign_in(client, user)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # development; production sets it (test_secure_cookie_in_production)
    event = (
        session.execute(select(AuditEvent).where(AuditEvent.action == "signed_in").order_by(AuditEvent.id.desc()))
        .scalars()
        .first()
    )
    assert event.actor_id == str(user.id) and event.changes["via"] == "console"
    assert client.get("/").status_code == 200


def test_secure_cookie_in_production(world, app, services):
    user = world.user(Role.observer)
    object.__setattr__(services.settings, "env", "production")
    try:
        with TestClient(app, base_url="https://testserver", client=("127.0.0.1", 50000)) as secure:
            response = sign_in(secure, user)
    finally:
        object.__setattr__(services.settings, "env", "development")
    assert all("Secure" in c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))


def test_a_wrong_password_is_refused_and_throttled_like_the_token_endpoint(world, client):
    user = world.user(Role.partner)
    statuses = []
    for _ in range(6):
        form = client.get("/sign-in")
        response = client.post(
            "/sign-in", data={"username": user.email, "password": "wrong-password", "csrf": csrf_of(form.text)}
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert "Retry-After" in response.headers
    # The same account's counter as the token endpoint's: it is locked there too.
    token = client.post("/v1/auth/token", data={"grant_type": "password", "username": user.email, "password": PASSWORD})
    assert token.status_code == 429


def test_sign_in_without_its_csrf_value_is_refused(world, client, audit_count):
    user = world.user(Role.partner)
    client.get("/sign-in")
    before = audit_count()
    response = client.post("/sign-in", data={"username": user.email, "password": PASSWORD, "csrf": "forged"})
    assert response.status_code == 403
    assert audit_count() == before


def test_next_never_leaves_the_site(world, client):
    user = world.user(Role.observer)
    form = client.get("/sign-in")
    for target in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/\r\nSet-Cookie: x=1",
    ):
        response = client.post(
            "/sign-in",
            data={"username": user.email, "password": PASSWORD, "csrf": csrf_of(form.text), "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/", target
        client.cookies.clear()
        form = client.get("/sign-in")


def test_sign_out_ends_the_login_at_once(world, client, session):
    user = world.user(Role.partner)
    sign_in(client, user)
    token = client.cookies.get(SESSION_COOKIE)
    board = client.get("/")
    response = client.post("/sign-out", data={"csrf": csrf_of(board.text)}, follow_redirects=False)
    assert response.status_code == 303
    revoked = session.execute(select(AuthSession).where(AuthSession.user_id == user.id)).scalars().one()
    session.refresh(revoked)
    assert revoked.revoked_reason == "signed_out"
    # The old cookie, replayed, no longer opens anything.
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_deactivation_ends_the_cookie_at_once(world, client):
    user = world.user(Role.partner)
    admin = world.headers(world.user(Role.admin))
    sign_in(client, user)
    assert client.get("/").status_code == 200
    cookie = client.cookies.get(SESSION_COOKIE)
    response = client.patch(f"/v1/users/{user.id}", json={"active": False}, headers=admin)
    assert response.status_code == 200, response.text
    client.cookies.set(SESSION_COOKIE, cookie)
    assert client.get("/", follow_redirects=False).status_code == 303


# ---- the board ------------------------------------------------------------------------------------


def test_the_board_shows_the_map_and_table_and_answers_304_when_unchanged(world, client, aleppo):
    sign_in(client, world.user(Role.observer))
    board = client.get("/")
    assert board.status_code == 200
    assert "Aleppo" in board.text and 'class="city besieged"' in board.text and "<svg" in board.text
    assert board.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    etag = board.headers["ETag"]
    again = client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # A designation changes the board: no 304.
    coordinator = world.headers(world.user(Role.coordinator))
    client.post(
        f"/v1/cities/{aleppo['id']}/designations",
        json=_designation("accessible", when="2016-06-01T00:00:00+03:00"),
        headers=coordinator,
    )
    changed = client.get("/", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and 'class="city accessible"' in changed.text


def test_the_board_in_arabic_is_right_to_left_with_arabic_names_and_remembered(world, client, aleppo):
    sign_in(client, world.user(Role.observer))
    board = client.get("/?lang=ar")
    assert '<html lang="ar" dir="rtl">' in board.text
    assert "حلب" in board.text and "لوحة الوصول" in board.text and "محاصرة" in board.text
    assert "Aleppo" not in board.text
    later = client.get("/cities/" + aleppo["id"])
    assert '<html lang="ar" dir="rtl">' in later.text and "سجل التصنيف" in later.text
    english = client.get("/?lang=en")
    assert '<html lang="en" dir="ltr">' in english.text and "Aleppo" in english.text


def test_the_boards_tag_differs_by_language(world, client, aleppo):
    sign_in(client, world.user(Role.observer))
    english = client.get("/?lang=en").headers["ETag"]
    arabic = client.get("/?lang=ar").headers["ETag"]
    assert english != arabic
    assert client.get("/?lang=en", headers={"If-None-Match": arabic}).status_code == 200


def test_observers_get_counts_and_no_convoy(world, client, aleppo):
    ngo = world.org(OrganizationKind.ngo)
    partner = world.headers(world.user(Role.partner, ngo))
    created = client.post("/v1/access-requests", json=request_body(aleppo["id"]), headers=partner).json()
    client.post(f"/v1/access-requests/{created['id']}/submit", headers=partner)
    sign_in(client, world.user(Role.observer))
    board = client.get("/")
    assert "Access requests by city and status" in board.text
    for page in ("/", f"/cities/{aleppo['id']}"):
        assert created["id"] not in client.get(page).text
    assert client.get(f"/requests/{created['id']}").status_code == 404
    assert client.get("/requests").status_code == 403


# ---- forms ----------------------------------------------------------------------------------------


def _request_form(aleppo, **overrides):  # noqa: ANN001, ANN202
    departure = (utcnow() + timedelta(days=3)).astimezone(clock.zone())
    form = {
        "destination_city_id": aleppo["id"],
        "origin_name": "Damascus warehouse",
        "planned_departure": departure.strftime("%Y-%m-%dT%H:%M"),
        "planned_arrival": (departure + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M"),
        "trucks": "40",
        "people_targeted": "80000",
        "contact-name": "Convoy lead",
        "route-0-kind": "checkpoint",
        "route-0-name": "Ramouseh",
        "route-0-controlled_by": "GoS",
        "cargo_lines-0-sector": "food",
        "cargo_lines-0-item": "Food rations",
        "cargo_lines-0-quantity": "4000",
        "cargo_lines-0-unit": "rations",
        "cargo_lines-1-sector": "health",
        "cargo_lines-1-item": "Surgical kits",
        "cargo_lines-1-quantity": "20",
        "cargo_lines-1-unit": "kits",
        "do": "save",
    }
    form.update(overrides)
    return form


def _count(session, model) -> int:  # noqa: ANN001
    session.expire_all()
    return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_bad_form_shows_each_error_beside_its_field_and_writes_nothing(world, client, session, aleppo, audit_count):
    sign_in(client, world.user(Role.partner))
    page = client.get("/requests/new")
    before, events = _count(session, AccessRequest), audit_count()
    response = client.post(
        "/requests/new",
        data=_request_form(
            aleppo, csrf=csrf_of(page.text), trucks="many", **{"contact-name": "", "cargo_lines-1-quantity": "-3"}
        ),
    )
    assert response.status_code == 422
    assert 'id="trucks-error">Enter a whole number.' in response.text
    assert 'id="contact-name-error">This field is required.' in response.text
    assert 'id="cargo_lines-1-quantity-error">Enter a number above zero.' in response.text
    assert 'value="Surgical kits"' in response.text  # what was typed is kept
    assert _count(session, AccessRequest) == before and audit_count() == events


def test_a_workflow_refusal_is_shown_beside_its_field(world, client, session, aleppo):
    sign_in(client, world.user(Role.partner))
    page = client.get("/requests/new")
    response = client.post("/requests/new", data=_request_form(aleppo, csrf=csrf_of(page.text), origin_name=""))
    assert response.status_code == 422
    assert 'id="origin_name-error">Name the origin' in response.text


def test_rows_are_added_and_removed_on_the_page_without_writing(world, client, session, aleppo):
    sign_in(client, world.user(Role.partner))
    page = client.get("/requests/new")
    before = _count(session, AccessRequest)
    added = client.post("/requests/new", data=_request_form(aleppo, csrf=csrf_of(page.text), do="add-line"))
    assert added.status_code == 200 and 'name="cargo_lines-2-item"' in added.text
    removed = client.post("/requests/new", data=_request_form(aleppo, csrf=csrf_of(page.text), do="remove-line-0"))
    assert 'value="Food rations"' not in removed.text and 'value="Surgical kits"' in removed.text
    assert _count(session, AccessRequest) == before


def test_a_post_without_the_logins_csrf_token_is_refused_and_changes_nothing(
    world, client, session, aleppo, audit_count
):
    sign_in(client, world.user(Role.partner))
    other = client.get("/requests/new").text  # a token of this login, tried below from another
    sign_in(client, world.user(Role.partner))
    before, events = _count(session, AccessRequest), audit_count()
    for token in (None, "0" * 64, csrf_of(other)):
        data = _request_form(aleppo)
        if token:
            data["csrf"] = token
        assert client.post("/requests/new", data=data).status_code == 403
    assert client.post("/sign-out", data={}).status_code == 403
    assert _count(session, AccessRequest) == before and audit_count() == events
    assert client.get("/").status_code == 200  # still signed in


def test_a_stale_form_is_explained_with_the_current_state(world, client, aleppo):
    ngo = world.org(OrganizationKind.ngo)
    user = world.user(Role.partner, ngo)
    partner = world.headers(user)
    created = client.post("/v1/access-requests", json=request_body(aleppo["id"]), headers=partner).json()
    sign_in(client, user)
    page = client.get(f"/requests/{created['id']}")
    # Someone else edits it meanwhile.
    assert (
        client.patch(
            f"/v1/access-requests/{created['id']}", json={"trucks": 9}, headers={**partner, "If-Match": "*"}
        ).status_code
        == 200
    )
    response = client.post(
        f"/requests/{created['id']}/submit", data={"csrf": csrf_of(page.text), "version": str(created["version"])}
    )
    assert response.status_code == 412
    assert "Someone changed this request after you opened it" in response.text
    assert "<dd>9</dd>" in response.text  # the state as it stands now


def test_the_partner_files_and_the_coordinator_approves_with_one_line_reduced(world, client, session, aleppo):
    ngo = world.org(OrganizationKind.ngo)
    partner = world.user(Role.partner, ngo)
    sign_in(client, partner)
    page = client.get("/requests/new")
    response = client.post("/requests/new", data=_request_form(aleppo, csrf=csrf_of(page.text)), follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    detail = client.get(location)
    assert "Submit for review" in detail.text
    version = re.search(r'name="version" value="(\d+)"', detail.text).group(1)
    assert (
        client.post(
            f"{location}/submit", data={"csrf": csrf_of(detail.text), "version": version}, follow_redirects=False
        ).status_code
        == 303
    )

    sign_in(client, world.user(Role.coordinator))
    queue = client.get("/queue")
    assert location in queue.text
    review = client.get(location)
    lines = re.findall(r'name="(approved-[0-9a-f-]+)" inputmode="decimal" size="8" value="([\d.]+)"', review.text)
    assert len(lines) == 2
    form = {
        "csrf": csrf_of(review.text),
        "version": re.search(r'name="version" value="(\d+)"', review.text).group(1),
        lines[1][0]: "15",
        "note": "Surgical kits reduced.",
    }
    assert client.post(f"{location}/approve", data=form, follow_redirects=False).status_code == 303

    sign_in(client, partner)
    seen = client.get(location)
    assert "Approved" in seen.text and "15 kits" in seen.text and "Surgical kits reduced." in seen.text
    event = (
        session.execute(select(AuditEvent).where(AuditEvent.action == "approved").order_by(AuditEvent.id.desc()))
        .scalars()
        .first()
    )
    assert event.entity_id == location.rsplit("/", 1)[1]


def test_co_chairs_see_what_changed_since_the_revision_they_decided_on(world, client, aleppo):
    coordinator_user = world.user(Role.coordinator)
    coordinator = world.headers(coordinator_user)
    chair = world.user(Role.co_chair)
    starts = utcnow() + timedelta(days=2)
    pause = client.post(
        "/v1/pauses",
        json={
            "city_ids": [aleppo["id"]],
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=48)).isoformat(),
            "purpose": "Medical evacuations",
        },
        headers=coordinator,
    ).json()
    sign_in(client, chair)
    page = client.get(f"/pauses/{pause['id']}")
    assert "has not decided on any revision yet" in page.text
    assert (
        client.post(
            f"/pauses/{pause['id']}/endorse", data={"csrf": csrf_of(page.text), "revision": "1"}, follow_redirects=False
        ).status_code
        == 303
    )
    current = client.get(f"/v1/pauses/{pause['id']}", headers=coordinator).headers["ETag"]
    revised = client.patch(
        f"/v1/pauses/{pause['id']}",
        json={"purpose": "Medical evacuations and food"},
        headers={**coordinator, "If-Match": current},
    )
    assert revised.status_code == 200, revised.text
    page = client.get(f"/pauses/{pause['id']}")
    assert "Changed since revision 1" in page.text
    assert "<del>Medical evacuations</del> → <ins>Medical evacuations and food</ins>" in page.text
    # A decision on the old revision is refused in words, nothing recorded.
    stale = client.post(f"/pauses/{pause['id']}/object", data={"csrf": csrf_of(page.text), "revision": "1"})
    assert stale.status_code == 409 and "revision 1 was replaced" in stale.text


# ---- secrecy, headers, the catalog ---------------------------------------------------------------


def test_a_partner_never_sees_another_organizations_convoy_on_any_page(world, client, aleppo):
    """Every page, as each role, after another organization's convoy is approved: its id, route,
    contact and notes appear only for those the API shows them to."""
    ngo, other_ngo = world.org(OrganizationKind.ngo), world.org(OrganizationKind.ngo)
    owner = world.user(Role.partner, ngo)
    owner_headers = world.headers(owner)
    coordinator = world.headers(world.user(Role.coordinator))
    secret = request_body(
        aleppo["id"],
        notes="SECRET-NOTE",
        contact={"name": "SECRET-CONTACT"},
        route=[{"kind": "checkpoint", "name": "SECRET-CHECKPOINT"}],
    )
    created = client.post("/v1/access-requests", json=secret, headers=owner_headers).json()
    client.post(f"/v1/access-requests/{created['id']}/submit", headers=owner_headers)
    approved = client.post(f"/v1/access-requests/{created['id']}/approve", json={}, headers=coordinator)
    assert approved.status_code == 200, approved.text
    marks = (created["id"], "SECRET-NOTE", "SECRET-CONTACT", "SECRET-CHECKPOINT")
    pages = [
        "/",
        f"/cities/{aleppo['id']}",
        "/requests",
        "/requests?status=approved",
        "/queue",
        "/pauses",
        "/violations",
        f"/requests/{created['id']}",
        f"/requests/{created['id']}/edit",
        "/requests/new",
        "/pauses/new",
    ]
    for role, organization in ((Role.partner, other_ngo), (Role.observer, None), (Role.admin, None)):
        sign_in(client, world.user(role, organization))
        for path in pages:
            text = client.get(path).text
            assert not any(mark in text for mark in marks), (role, path)
    sign_in(client, owner)
    assert all(mark in client.get(f"/requests/{created['id']}").text for mark in marks)


def test_every_template_is_free_of_inline_script_and_style():
    for template in (CONSOLE / "templates").glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"\sstyle=|\son[a-z]+=", text), template.name


def test_pages_carry_the_consoles_policy_and_assets_are_served(world, client):
    page = client.get("/sign-in")
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    for asset in re.findall(r'(?:href|src)="(/static/console/[^"]+)"', page.text):
        response = client.get(asset)
        assert response.status_code == 200, asset
    assert "default-src 'none'" in client.get("/v1/me").headers["Content-Security-Policy"]


def test_every_message_is_in_the_arabic_catalog(tmp_path):
    template = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(CONSOLE / "babel.cfg"),
            "-k",
            "N_",
            "-k",
            "say",
            "--no-location",
            "-o",
            str(template),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wanted = {m.id for m in read_po(template.open("rb")) if m.id}
    with (CONSOLE / "locale" / "ar" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        arabic = {m.id: m.string for m in read_po(source, locale="ar") if m.id}
    assert len(wanted) > 150
    assert not wanted - arabic.keys(), sorted(wanted - arabic.keys())
    assert not [m for m in wanted if not arabic[m]]


# ---- the coordinator's pauses and violations, the partner's edits -------------------------------


def _pause_form(aleppo, starts, **overrides):  # noqa: ANN001, ANN202
    local = starts.astimezone(clock.zone())
    form = {
        "city_ids": [aleppo["id"]],
        "starts_at": local.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (local + timedelta(hours=48)).strftime("%Y-%m-%dT%H:%M"),
        "purpose": "Medical evacuations",
        "terms": "",
    }
    form.update(overrides)
    return form


def _actions_of(session, entity_id: str) -> list[str]:  # noqa: ANN001
    session.expire_all()
    return list(
        session.execute(
            select(AuditEvent.action).where(AuditEvent.entity_id == entity_id).order_by(AuditEvent.id)
        ).scalars()
    )


def test_a_coordinator_runs_a_pause_through_its_life_on_the_pages(world, client, session, aleppo):
    coordinator = world.user(Role.coordinator)
    chairs = [world.user(Role.co_chair) for _ in range(2)]
    chair_headers = [world.headers(chair) for chair in chairs]
    starts = utcnow() + timedelta(days=4)
    sign_in(client, coordinator)
    page = client.get("/pauses/new")
    # Bad input: no city, an end before the start; each error beside its field, nothing written.
    bad = client.post(
        "/pauses/new", data=_pause_form(aleppo, starts, csrf=csrf_of(page.text), city_ids=[], purpose=" ")
    )
    assert bad.status_code == 422
    assert 'id="city_ids-error">' in bad.text and 'id="purpose-error">This field is required.' in bad.text
    proposed = client.post(
        "/pauses/new", data=_pause_form(aleppo, starts, csrf=csrf_of(page.text)), follow_redirects=False
    )
    assert proposed.status_code == 303, proposed.text
    path = proposed.headers["location"]
    pause_id = path.rsplit("/", 1)[1]
    # Revise it: the form comes filled in, and the revision is 2.
    form = client.get(f"{path}/revise")
    assert 'value="Medical evacuations"' not in form.text and ">Medical evacuations</textarea>" in form.text
    version = re.search(r'name="version" value="(\d+)"', form.text).group(1)
    revised = client.post(
        f"{path}/revise",
        data=_pause_form(
            aleppo, starts, csrf=csrf_of(form.text), version=version, purpose="Medical evacuations and food"
        ),
        follow_redirects=False,
    )
    assert revised.status_code == 303, revised.text
    # The same revise form, sent again with its old version, is stale: 412 in words.
    stale = client.post(
        f"{path}/revise", data=_pause_form(aleppo, starts, csrf=csrf_of(form.text), version=version, purpose="Other")
    )
    assert (
        stale.status_code == 412
        and "The pause changed after you opened it" in stale.text
        and "revision 2" in stale.text
    )
    for headers in chair_headers:
        response = client.post(
            f"/v1/pauses/{pause_id}/endorsements", json={"decision": "endorse", "revision": 2}, headers=headers
        )
        assert response.status_code == 201, response.text

    def act(action: str, **data: str) -> None:
        current = client.get(path)
        version = re.search(r'name="version" value="(\d+)"', current.text).group(1)
        response = client.post(
            f"{path}/{action}", data={"csrf": csrf_of(current.text), "version": version, **data}, follow_redirects=False
        )
        assert response.status_code == 303, (action, response.text)

    act("approve")
    refused = client.get(path)
    no_reason = client.post(f"{path}/suspend", data={"csrf": csrf_of(refused.text), "version": "0", "reason": " "})
    assert no_reason.status_code == 422 and 'id="suspend-reason-error">This field is required.' in no_reason.text
    act("suspend", reason="Shelling at the crossing")
    act("resume")
    act("terminate", reason="Fighting resumed")
    assert "Terminated" in client.get(path).text
    assert _actions_of(session, pause_id) == [
        "proposed",
        "revised",
        "endorsed",
        "endorsed",
        "approved",
        "suspended",
        "resumed",
        "terminated",
    ]


def test_a_coordinator_follows_up_violations_on_the_page(world, client, session, aleppo):
    reporter = world.headers(world.user(Role.co_chair))
    reported = client.post(
        "/v1/violations",
        json={
            "city_id": aleppo["id"],
            "category": "hostilities",
            "occurred_at": utcnow().isoformat(),
            "place": "Castello road",
            "description": "Shelling near the crossing.",
            "severity": 4,
        },
        headers=reporter,
    )
    assert reported.status_code == 201, reported.text
    violation_id = reported.json()["id"]
    sign_in(client, world.user(Role.coordinator))
    page = client.get("/violations")
    assert "Shelling near the crossing." in page.text and "Active hostilities" in page.text
    version = str(reported.json()["version"])
    dismissed = client.post(
        f"/violations/{violation_id}/dismiss", data={"csrf": csrf_of(page.text), "version": version, "reason": ""}
    )
    assert (
        dismissed.status_code == 422 and f'id="dismiss-{violation_id}-error">Say why it is dismissed.' in dismissed.text
    )
    verified = client.post(
        f"/violations/{violation_id}/verify",
        data={"csrf": csrf_of(page.text), "version": version, "reason": "Two teams"},
        follow_redirects=False,
    )
    assert verified.status_code == 303
    again = client.post(f"/violations/{violation_id}/verify", data={"csrf": csrf_of(page.text), "version": version})
    assert again.status_code == 412 and "The violation changed after you opened it" in again.text, again.text[
        again.text.find("<main") :
    ][:1500]
    page = client.get("/violations")
    resolved = client.post(
        f"/violations/{violation_id}/resolve",
        data={"csrf": csrf_of(page.text), "reason": "Reopened"},
        follow_redirects=False,
    )
    assert resolved.status_code == 303
    assert _actions_of(session, violation_id)[-2:] == ["verify", "resolve"]


def test_a_partner_edits_a_request_sent_back_and_submits_it_again(world, client, session, aleppo):
    ngo = world.org(OrganizationKind.ngo)
    partner = world.user(Role.partner, ngo)
    partner_headers = world.headers(partner)
    coordinator = world.headers(world.user(Role.coordinator))
    created = client.post("/v1/access-requests", json=request_body(aleppo["id"]), headers=partner_headers).json()
    client.post(f"/v1/access-requests/{created['id']}/submit", headers=partner_headers)
    sent_back = client.post(
        f"/v1/access-requests/{created['id']}/request-changes", json={"reason": "Fewer trucks"}, headers=coordinator
    )
    assert sent_back.status_code == 200, sent_back.text
    sign_in(client, partner)
    detail = client.get(f"/requests/{created['id']}")
    assert "Fewer trucks" in detail.text and f'href="/requests/{created["id"]}/edit"' in detail.text
    form = client.get(f"/requests/{created['id']}/edit")
    assert 'value="Bab al-Hawa"' in form.text and 'value="4000"' in form.text  # the request as it stands
    fields = dict(re.findall(r'<input id="[^"]+" name="([^"]+)"[^>]*value="([^"]*)"', form.text))
    fields.update(
        {
            name: value
            for name, value in re.findall(
                r'<select id="[^"]+" name="([^"]+)"[^>]*>(?:(?!</select>).)*?<option value="([^"]*)" selected',
                form.text,
                re.S,
            )
        }
    )
    fields.update(
        {
            "csrf": csrf_of(form.text),
            "version": re.search(r'name="version" value="(\d+)"', form.text).group(1),
            "trucks": "8",
            "do": "save",
        }
    )
    saved = client.post(f"/requests/{created['id']}/edit", data=fields, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    shown = client.get(f"/v1/access-requests/{created['id']}", headers=partner_headers).json()
    assert shown["trucks"] == 8 and [line["item"] for line in shown["cargo_lines"]] == ["Food rations", "Surgical kits"]
    assert [step["name"] for step in shown["route"]] == ["Bab al-Hawa", "Ramouseh"]
    detail = client.get(f"/requests/{created['id']}")
    version = re.search(r'name="version" value="(\d+)"', detail.text).group(1)
    assert (
        client.post(
            f"/requests/{created['id']}/submit",
            data={"csrf": csrf_of(detail.text), "version": version},
            follow_redirects=False,
        ).status_code
        == 303
    )
    assert _actions_of(session, created["id"])[-2:] == ["edited", "submitted"]


# ---- who may open and do what, by the same policy as the API --------------------------------------

PAGES = ["/", "/cities/{city}", "/requests", "/requests/new", "/queue", "/pauses", "/pauses/new", "/violations"]
# What each role gets on each page: 200, or 403 where the API's policy refuses that role the thing.
EXPECTED = {
    Role.partner: [200, 200, 200, 200, 403, 200, 403, 200],
    Role.coordinator: [200, 200, 200, 403, 200, 200, 200, 200],
    Role.co_chair: [200, 200, 200, 403, 403, 200, 403, 200],
    Role.observer: [200, 200, 403, 403, 403, 200, 403, 403],
    Role.admin: [200, 200, 403, 403, 403, 200, 403, 403],
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_every_page_as_every_role(world, client, aleppo, role):
    sign_in(client, world.user(role))
    got = [client.get(path.format(city=aleppo["id"])).status_code for path in PAGES]
    assert got == EXPECTED[role]


@pytest.mark.parametrize("role", list(EXPECTED))
def test_every_request_action_as_every_role_of_either_organization(world, client, session, aleppo, role):
    """Each action on a request, by each role, of the request's organization and of another: done
    exactly when the API's policy (workflow.allowed_actions) lists it; refused otherwise, nothing written."""
    ngo = world.org(OrganizationKind.ngo)
    owner = world.headers(world.user(Role.partner, ngo))
    for own in (True, False):
        if role == Role.partner:
            actor = world.user(Role.partner, ngo if own else world.org(OrganizationKind.ngo))
        elif own and role in (Role.coordinator, Role.admin):
            continue  # a secretariat's own request: secretariat members file none
        else:
            actor = world.user(role)
        sign_in(client, actor)
        token = csrf_of(client.get("/").text)
        for action, body, state in (
            ("submit", {}, "draft"),
            ("cancel", {"reason": "No longer needed"}, "draft"),
            ("approve", {}, "submitted"),
            ("deny", {"reason": "Unsafe"}, "submitted"),
            ("request-changes", {"reason": "Fewer trucks"}, "submitted"),
        ):
            created = client.post("/v1/access-requests", json=request_body(aleppo["id"]), headers=owner).json()
            if state == "submitted":
                client.post(f"/v1/access-requests/{created['id']}/submit", headers=owner)
            api_view = client.get(f"/v1/access-requests/{created['id']}", headers=world.headers(actor))
            allowed = api_view.status_code == 200 and action.replace("-", "_") in api_view.json()["allowed_actions"]
            before = _actions_of(session, created["id"])
            response = client.post(
                f"/requests/{created['id']}/{action}", data={"csrf": token, **body}, follow_redirects=False
            )
            after = _actions_of(session, created["id"])
            if allowed:
                assert response.status_code == 303 and len(after) == len(before) + 1, (
                    role,
                    own,
                    action,
                    response.text[:300],
                )
            else:
                assert response.status_code in (403, 404, 409) and after == before, (
                    role,
                    own,
                    action,
                    response.status_code,
                )


def test_console_writes_count_against_the_accounts_write_rate(world, client, services, session, aleppo):
    from api.ratelimit import WriteRateLimiter

    client.app.state.write_limiter = WriteRateLimiter(per_minute=60, burst=2)
    user = world.user(Role.partner)
    sign_in(client, user)
    page = client.get("/requests/new")
    before = _count(session, AccessRequest)
    responses = [
        client.post("/requests/new", data=_request_form(aleppo, csrf=csrf_of(page.text)), follow_redirects=False)
        for _ in range(3)
    ]
    assert [r.status_code for r in responses] == [303, 303, 429]
    assert "Too many changes from this account" in responses[2].text and "Retry-After" in responses[2].headers
    assert _count(session, AccessRequest) == before + 2
