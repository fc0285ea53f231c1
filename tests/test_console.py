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
    response = client.post("/sign-in", data={"username": user.email, "password": password, "csrf": csrf_of(form.text), "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return response


@pytest.fixture
def aleppo(world, client):  # noqa: ANN001, ANN201
    coordinator = world.headers(world.user(Role.coordinator))
    city = client.post("/v1/cities", json=_city_body(name="Aleppo", name_ar="حلب", latitude=36.2, longitude=37.15), headers=coordinator).json()
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
    event = session.execute(select(AuditEvent).where(AuditEvent.action == "signed_in").order_by(AuditEvent.id.desc())).scalars().first()
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
        response = client.post("/sign-in", data={"username": user.email, "password": "wrong-password", "csrf": csrf_of(form.text)})
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
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = client.post("/sign-in", data={"username": user.email, "password": PASSWORD, "csrf": csrf_of(form.text), "next": target},
                               follow_redirects=False)
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
    client.post(f"/v1/cities/{aleppo['id']}/designations", json=_designation("accessible", when="2016-06-01T00:00:00+03:00"), headers=coordinator)
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
        "destination_city_id": aleppo["id"], "origin_name": "Damascus warehouse",
        "planned_departure": departure.strftime("%Y-%m-%dT%H:%M"),
        "planned_arrival": (departure + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M"),
        "trucks": "40", "people_targeted": "80000", "contact-name": "Convoy lead",
        "route-0-kind": "checkpoint", "route-0-name": "Ramouseh", "route-0-controlled_by": "GoS",
        "cargo_lines-0-sector": "food", "cargo_lines-0-item": "Food rations", "cargo_lines-0-quantity": "4000", "cargo_lines-0-unit": "rations",
        "cargo_lines-1-sector": "health", "cargo_lines-1-item": "Surgical kits", "cargo_lines-1-quantity": "20", "cargo_lines-1-unit": "kits",
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
    response = client.post("/requests/new", data=_request_form(
        aleppo, csrf=csrf_of(page.text), trucks="many", **{"contact-name": "", "cargo_lines-1-quantity": "-3"}))
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


def test_a_post_without_the_logins_csrf_token_is_refused_and_changes_nothing(world, client, session, aleppo, audit_count):
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
    assert client.patch(f"/v1/access-requests/{created['id']}", json={"trucks": 9}, headers=partner).status_code == 200
    response = client.post(f"/requests/{created['id']}/submit", data={"csrf": csrf_of(page.text), "version": str(created["version"])})
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
    assert client.post(f"{location}/submit", data={"csrf": csrf_of(detail.text), "version": version}, follow_redirects=False).status_code == 303

    sign_in(client, world.user(Role.coordinator))
    queue = client.get("/queue")
    assert location in queue.text
    review = client.get(location)
    lines = re.findall(r'name="(approved-[0-9a-f-]+)" inputmode="decimal" size="8" value="([\d.]+)"', review.text)
    assert len(lines) == 2
    form = {"csrf": csrf_of(review.text), "version": re.search(r'name="version" value="(\d+)"', review.text).group(1),
            lines[1][0]: "15", "note": "Surgical kits reduced."}
    assert client.post(f"{location}/approve", data=form, follow_redirects=False).status_code == 303

    sign_in(client, partner)
    seen = client.get(location)
    assert "Approved" in seen.text and "15 kits" in seen.text and "Surgical kits reduced." in seen.text
    event = session.execute(select(AuditEvent).where(AuditEvent.action == "approved").order_by(AuditEvent.id.desc())).scalars().first()
    assert event.entity_id == location.rsplit("/", 1)[1]


def test_co_chairs_see_what_changed_since_the_revision_they_decided_on(world, client, aleppo):
    coordinator_user = world.user(Role.coordinator)
    coordinator = world.headers(coordinator_user)
    chair = world.user(Role.co_chair)
    starts = utcnow() + timedelta(days=2)
    pause = client.post("/v1/pauses", json={"city_ids": [aleppo["id"]], "starts_at": starts.isoformat(),
                                            "ends_at": (starts + timedelta(hours=48)).isoformat(), "purpose": "Medical evacuations"},
                        headers=coordinator).json()
    sign_in(client, chair)
    page = client.get(f"/pauses/{pause['id']}")
    assert "has not decided on any revision yet" in page.text
    assert client.post(f"/pauses/{pause['id']}/endorse", data={"csrf": csrf_of(page.text), "revision": "1"}, follow_redirects=False).status_code == 303
    current = client.get(f"/v1/pauses/{pause['id']}", headers=coordinator).headers["ETag"]
    revised = client.patch(f"/v1/pauses/{pause['id']}", json={"purpose": "Medical evacuations and food"},
                           headers={**coordinator, "If-Match": current})
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
    secret = request_body(aleppo["id"], notes="SECRET-NOTE", contact={"name": "SECRET-CONTACT"},
                          route=[{"kind": "checkpoint", "name": "SECRET-CHECKPOINT"}])
    created = client.post("/v1/access-requests", json=secret, headers=owner_headers).json()
    client.post(f"/v1/access-requests/{created['id']}/submit", headers=owner_headers)
    approved = client.post(f"/v1/access-requests/{created['id']}/approve", json={}, headers=coordinator)
    assert approved.status_code == 200, approved.text
    marks = (created["id"], "SECRET-NOTE", "SECRET-CONTACT", "SECRET-CHECKPOINT")
    pages = ["/", f"/cities/{aleppo['id']}", "/requests", "/requests?status=approved", "/queue", "/pauses", "/violations",
             f"/requests/{created['id']}", f"/requests/{created['id']}/edit", "/requests/new", "/pauses/new"]
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
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(CONSOLE / "babel.cfg"), "-k", "N_",
                    "-k", "say", "--no-location", "-o", str(template), "."], cwd=ROOT, check=True, capture_output=True)
    wanted = {m.id for m in read_po(template.open("rb")) if m.id}
    with (CONSOLE / "locale" / "ar" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        arabic = {m.id: m.string for m in read_po(source, locale="ar") if m.id}
    assert len(wanted) > 150
    assert not wanted - arabic.keys(), sorted(wanted - arabic.keys())
    assert not [m for m in wanted if not arabic[m]]
