"""The audit trail: chained, append-only, verified, readable by coordinators and admins."""

from __future__ import annotations

import itertools

from sqlalchemy import text

from auth.roles import OrganizationKind, Role
from workflow.audit import GENESIS_HASH, verify_chain


def _disable_protection(session):
    """What an attacker with owner rights on the database would do first."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        session.execute(text("ALTER TABLE audit_seal DISABLE TRIGGER audit_seal_append_only"))
    else:
        for name in ("audit_event_no_update", "audit_event_no_delete", "audit_seal_no_update", "audit_seal_no_delete"):
            session.execute(text(f"DROP TRIGGER {name}"))


def _make_events(world, n=3):
    for i in range(n):
        world.org(OrganizationKind.ngo, f"Audited {i}")


def test_events_are_chained_from_genesis(world, session, client):
    _make_events(world)
    coordinator = world.user(Role.coordinator)
    events = client.get("/v1/audit", headers=world.headers(coordinator)).json()["items"]
    assert events[0]["id"] == 1 and events[0]["prev_hash"] == GENESIS_HASH
    for previous, event in itertools.pairwise(events):
        assert event["id"] == previous["id"] + 1
        assert event["prev_hash"] == previous["hash"]
    report = verify_chain(session)
    assert report.ok and report.checked == len(events)


def test_altering_an_event_is_detected_at_that_event(world, session):
    _make_events(world, 4)
    _disable_protection(session)
    session.execute(text("UPDATE audit_event SET changes = :c WHERE id = 3"), {"c": '{"name": "Forged"}'})
    report = verify_chain(session)
    assert not report.ok
    assert report.broken_at == 3
    assert "altered" in report.problem


def test_rehashing_an_altered_event_breaks_the_next_link(world, session):
    from db.models import AuditEvent
    from workflow.audit import event_hash

    _make_events(world, 4)
    _disable_protection(session)
    event = session.get(AuditEvent, 2)
    event.action = "forged"
    event.hash = event_hash(event)
    session.execute(text("UPDATE audit_event SET action = 'forged', hash = :h WHERE id = 2"), {"h": event.hash})
    session.expire_all()
    # Its seal, under a key the database does not hold, no longer matches: caught at the event itself.
    report = verify_chain(session)
    assert report.broken_at == 2 and "seal does not match" in report.problem
    # The chain alone catches it at the next link.
    report = verify_chain(session, sealed=False)
    assert report.broken_at == 3
    assert "does not follow" in report.problem


def test_deleting_an_event_is_detected(world, session):
    _make_events(world, 4)
    _disable_protection(session)
    session.execute(text("DELETE FROM audit_seal WHERE event_id = 2"))
    session.execute(text("DELETE FROM audit_event WHERE id = 2"))
    report = verify_chain(session)
    assert report.broken_at == 2
    assert "missing" in report.problem


def test_the_database_refuses_updates_and_deletes_of_events(world, session, connection):
    _make_events(world, 1)
    for statement in ("UPDATE audit_event SET action = 'x' WHERE id = 1", "DELETE FROM audit_event WHERE id = 1"):
        savepoint = connection.begin_nested()
        try:
            connection.execute(text(statement))
            raise AssertionError(f"{statement} was allowed")
        except Exception as exc:  # noqa: BLE001 - the driver's error type differs by engine
            assert "append-only" in str(exc)
        finally:
            savepoint.rollback()


def test_audit_is_paginated_and_filtered(world, client):
    _make_events(world, 5)
    headers = world.headers(world.user(Role.coordinator))
    first = client.get("/v1/audit", params={"limit": 2, "entity_type": "organization"}, headers=headers).json()
    second = client.get(
        "/v1/audit", params={"limit": 2, "entity_type": "organization", "cursor": first["next_cursor"]}, headers=headers
    ).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert all(e["entity_type"] == "organization" for e in first["items"] + second["items"])


def test_every_event_names_actor_organization_and_request(world, client):
    admin = world.user(Role.admin)
    headers = {**world.headers(admin), "X-Request-ID": "trace-42"}
    created = client.post("/v1/organizations", json={"name": "Traced", "kind": "ngo"}, headers=headers).json()
    event = client.get("/v1/audit", params={"entity_id": created["id"]}, headers=headers).json()["items"][0]
    assert event["actor_id"] == str(admin.id)
    assert event["actor_label"] == admin.email
    assert event["organization_id"] == str(admin.organization_id)
    assert event["request_id"] == "trace-42"
    assert event["action"] == "created"
    assert event["changes"] == {"name": "Traced", "kind": "ngo"}


def test_a_recorded_event_carries_every_column_of_the_audit_table(world, session):
    """Events go in as rows built from RecordedEvent: a column the table gains must be written
    (and hashed) too, so the two are held to the same names; and what was hashed is what the
    database gives back."""
    from dataclasses import fields

    from db.models import AuditEvent
    from workflow.audit import RecordedEvent, event_hash

    assert [f.name for f in fields(RecordedEvent)] == [c.name for c in AuditEvent.__table__.columns]
    _make_events(world, n=2)
    stored = session.execute(text("SELECT id FROM audit_event ORDER BY id DESC LIMIT 1")).scalar_one()
    event = session.get(AuditEvent, stored)
    assert event.hash == event_hash(event)


def _chain_length(session) -> int:
    return session.execute(text("SELECT count(*) FROM audit_event")).scalar_one()


def _record(session, name: str) -> None:
    from workflow.audit import Actor, record_event

    record_event(session, actor=Actor.system("test"), entity_type="organization", entity_id=name, action="created")


def test_an_event_joins_the_chain_when_its_transaction_commits_and_never_if_it_rolls_back(session):
    from workflow.audit import pending_events

    before = _chain_length(session)
    _record(session, "kept")
    assert pending_events(session) == 1 and _chain_length(session) == before  # not in the chain yet
    session.commit()
    assert pending_events(session) == 0 and _chain_length(session) == before + 1
    _record(session, "undone")
    session.rollback()
    assert _chain_length(session) == before + 1
    _record(session, "next")
    _record(session, 'and next: Zoë ق "q" \\')  # two events of one transaction, in the order recorded
    session.commit()
    rows = session.execute(text("SELECT id, entity_id FROM audit_event ORDER BY id DESC LIMIT 3")).all()
    assert [r.entity_id for r in rows] == ['and next: Zoë ق "q" \\', "next", "kept"]
    assert [r.id for r in rows] == [before + 3, before + 2, before + 1]  # gapless: the rolled-back one took no id
    report = verify_chain(session)
    assert report.ok and report.checked == before + 3


def test_an_event_cannot_be_recorded_in_a_savepoint(session):
    """Its rollback would leave the event behind: events belong to the outermost transaction."""
    import pytest

    with session.begin_nested():
        with pytest.raises(RuntimeError, match="outermost"):
            _record(session, "nested")


def test_the_chain_lock_is_held_from_the_commit_only(session, migrated_database):
    """PostgreSQL: a writer holds the chain's advisory lock only for the append and its commit, so
    writers queue for it only that long (held from the event's recording on, every create of the
    load bench's mix queued behind the others' responses being built)."""
    import pytest

    from workflow.audit import _AUDIT_LOCK_KEY

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers by its own write lock")

    def free_elsewhere() -> bool:
        with migrated_database.engine.connect() as other:
            try:
                return other.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY}).scalar_one()
            finally:
                other.rollback()

    _record(session, "recorded")
    assert free_elsewhere()  # recorded, not yet committed: the lock is free
    session.commit()  # the test's outer transaction stays open, and with it the lock taken at the commit
    assert not free_elsewhere()


def test_an_events_hash_pieces_rebuild_exactly_what_the_chain_hashes():
    """PostgreSQL's append (alembic 0008) hashes prev_hash + prefix + id + middle + prev_hash + suffix:
    the pieces must rebuild the canonical JSON byte for byte, whatever the event holds."""
    import hashlib
    from datetime import UTC, datetime

    from workflow.audit import RecordedEvent, _hashed_fields, canonical_json, event_hash, hashed_pieces

    event = RecordedEvent(
        id=123456789,
        occurred_at=datetime(2026, 12, 2, 19, 58, 1, 7, tzinfo=UTC),
        actor_type="user",
        actor_id=None,
        actor_label='Zoë "quoted" \\ back',
        organization_id="org",
        entity_type="access_request",
        entity_id="e1",
        action="created",
        from_state=None,
        to_state="submitted",
        changes={"id": 0, "prev_hash": "", "nested": {"b": [1, "ق"], "a": None}, "nul": "\x00"},
        reason="\n",
        request_id="r",
        prev_hash="f" * 64,
    )
    prefix, middle, suffix = hashed_pieces(event)
    assert prefix + str(event.id) + middle + event.prev_hash + suffix == canonical_json(_hashed_fields(event))
    material = event.prev_hash + prefix + str(event.id) + middle + event.prev_hash + suffix
    assert hashlib.sha256(material.encode()).hexdigest() == event_hash(event)


# ---- what a caller who may not read a thing sees of its events ---------------------------


def _convoy_trail(world, client):
    """A partner's request, submitted and approved, beside some organizations' events."""
    from datetime import UTC, datetime, timedelta

    partner_org = world.org(OrganizationKind.ngo, "Convoy NGO")
    partner = world.headers(world.user(Role.partner, partner_org))
    coordinator = world.headers(world.user(Role.coordinator))
    city = client.post(
        "/v1/cities",
        json={
            "name": "Madaya",
            "pcode": "C2450",
            "adm1_pcode": "SY03",
            "adm1_name": "Rural Damascus",
            "latitude": 33.69,
            "longitude": 36.1,
        },
        headers=coordinator,
    ).json()["id"]
    departs = datetime.now(UTC) + timedelta(days=9)
    created = client.post(
        "/v1/access-requests",
        json={
            "destination_city_id": city,
            "origin_name": "Damascus",
            "trucks": 3,
            "people_targeted": 100,
            "route": [{"kind": "checkpoint", "name": "Secret ridge"}],
            "contact": {"name": "Convoy lead", "phone": "+963-1111"},
            "notes": "Leaves before dawn",
            "planned_departure": departs.isoformat(),
            "planned_arrival": (departs + timedelta(hours=5)).isoformat(),
            "cargo_lines": [{"sector": "food", "item": "Rice", "quantity": 5, "unit": "MT"}],
        },
        headers=partner,
    ).json()
    assert client.post(f"/v1/access-requests/{created['id']}/submit", headers=partner).status_code == 200
    assert client.post(f"/v1/access-requests/{created['id']}/approve", json={}, headers=coordinator).status_code == 200
    _make_events(world, 2)
    return created, departs, coordinator


def test_admins_see_that_a_convoy_changed_on_which_day_and_nothing_more(world, client):
    """An admin gets 404 on a request; its audit events say that they happened, on which day and by
    which organization: no route, contact, notes, dates, states or exact time, no id or hash."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    created, departs, coordinator = _convoy_trail(world, client)
    admin = world.headers(world.user(Role.admin))
    assert client.get(f"/v1/access-requests/{created['id']}", headers=admin).status_code == 404
    seen = client.get("/v1/audit", params={"entity_type": "access_request"}, headers=admin).json()["items"]
    assert [e["action"] for e in seen] == ["created", "submitted", "approved"]
    text = str(seen)
    for secret in ("Secret ridge", "Convoy lead", "+963", "dawn", departs.isoformat()[:16], "Rice"):
        assert secret not in text
    for event in seen:
        assert event["entity_id"] == created["id"] and event["organization_id"]
        assert event["id"] is None and event["hash"] is None and event["prev_hash"] is None and event["changes"] == {}
        assert (
            event["from_state"] is None
            and event["to_state"] is None
            and event["actor_id"] is None
            and event["reason"] is None
        )
        moment = datetime.fromisoformat(event["occurred_at"]).astimezone(ZoneInfo("Asia/Damascus"))
        assert (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0)
    # Not among the other events (their places would time them), which come without their places either.
    others = client.get("/v1/audit", params={"limit": 200}, headers=admin).json()["items"]
    assert others and all(e["entity_type"] != "access_request" for e in others)
    assert all(e["id"] is None and e["hash"] is None for e in others)
    assert created["id"] not in str(
        client.get(
            "/v1/audit", params={"entity_id": created["id"], "entity_type": "organization"}, headers=admin
        ).json()
    )
    # The coordinator, who reads the request, gets it all.
    full = client.get("/v1/audit", params={"entity_type": "access_request"}, headers=coordinator).json()["items"]
    assert full[0]["changes"]["route"][0]["name"] == "Secret ridge" and all(isinstance(e["id"], int) for e in full)


def test_an_admins_cursor_names_no_position_and_time_bounds_go_by_the_day(world, client):
    from datetime import UTC, datetime, timedelta

    created, _departs, _coordinator = _convoy_trail(world, client)
    admin = world.headers(world.user(Role.admin))
    pages, cursor = [], None
    while True:
        params = {"limit": 1, "entity_type": "access_request", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/audit", params=params, headers=admin).json()
        pages.append(page["items"][0]["action"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert not cursor.isdigit() and "after" not in cursor and len(cursor) == 28
    assert pages == ["created", "submitted", "approved"]
    # A cursor of the coordinators' kind, or a forged one, is refused.
    for forged in ("eyJhZnRlciI6ICIxIn0", "00" * 14):
        assert client.get("/v1/audit", params={"cursor": forged}, headers=admin).status_code == 422
    # Bounds within today: the whole of today, whatever the instant (bisecting stops at the day).
    bound = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()  # after every event, on the same day
    after = client.get("/v1/audit", params={"entity_type": "access_request", "occurred_after": bound}, headers=admin)
    before = client.get("/v1/audit", params={"entity_type": "access_request", "occurred_before": bound}, headers=admin)
    assert len(after.json()["items"]) == 3 and before.json()["items"] == []
