"""The audit trail against an insider who can write the database: seals under a key kept outside
it, and checkpoints kept elsewhere (`aidaccess audit checkpoint`, `audit verify --checkpoint`)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from db import migrations
from tests.server import PASSWORD, aidaccess, cli_environment

pytestmark = pytest.mark.e2e


@pytest.fixture
def trail(fresh_database, tmp_path):
    env = cli_environment(fresh_database.url, tmp_path / "data")
    assert aidaccess(env, "db", "upgrade").returncode == 0
    assert aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    engine = create_engine(fresh_database.url)
    yield env, engine, tmp_path
    engine.dispose()


def _unprotect(connection) -> None:
    """What an attacker with owner rights on the database does first."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        connection.execute(text("ALTER TABLE audit_seal DISABLE TRIGGER audit_seal_append_only"))
    else:
        for name in ("audit_event_no_update", "audit_event_no_delete", "audit_seal_no_update", "audit_seal_no_delete"):
            connection.execute(text(f"DROP TRIGGER {name}"))


def _count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM audit_event")).scalar_one()


def test_a_cut_tail_passes_the_chain_but_not_the_checkpoint(trail):
    env, engine, tmp_path = trail
    checkpoint = tmp_path / "checkpoint.json"
    made = aidaccess(env, "audit", "checkpoint", "--output", str(checkpoint))
    assert made.returncode == 0, made.stderr
    saved = json.loads(checkpoint.read_text())
    total = _count(engine)
    assert saved["events"] == total and len(saved["head_hash"]) == 64 and saved["signature"]
    assert aidaccess(env, "audit", "verify", "--checkpoint", str(checkpoint)).returncode == 0
    with engine.begin() as connection:
        _unprotect(connection)
        connection.execute(text("DELETE FROM audit_seal WHERE event_id > :keep"), {"keep": total - 3})
        connection.execute(text("DELETE FROM audit_event WHERE id > :keep"), {"keep": total - 3})
    alone = aidaccess(env, "audit", "verify")
    assert alone.returncode == 0  # a shorter chain is a chain: only what was kept elsewhere shows the cut
    against = aidaccess(env, "audit", "verify", "--checkpoint", str(checkpoint))
    assert against.returncode == 5
    assert (
        f"the trail ends at event {total - 3}" in against.stderr
        and f"events {total - 2} to {total} are missing" in against.stderr
    )


def test_a_trail_rewritten_and_rehashed_without_the_key_is_caught_at_the_first_change(trail):
    from sqlalchemy import select
    from sqlmodel import Session

    from db.models import AuditEvent
    from workflow.audit import event_hash

    env, engine, tmp_path = trail
    checkpoint = tmp_path / "checkpoint.json"
    assert aidaccess(env, "audit", "checkpoint", "--output", str(checkpoint)).returncode == 0
    with Session(engine) as session:
        _unprotect(session.connection())
        events = session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        previous = events[0].prev_hash
        for event in events:  # change event 2, then recompute every hash with plain SHA-256
            if event.id == 2:
                event.changes = {**event.changes, "name": "Forged"}
            event.prev_hash = previous
            event.hash = event_hash(event)
            previous = event.hash
        session.commit()
    verified = aidaccess(env, "audit", "verify")
    assert verified.returncode == 5 and "event 2's seal does not match" in verified.stderr, verified.stderr
    against = aidaccess(env, "audit", "verify", "--checkpoint", str(checkpoint))
    assert against.returncode == 5
    # Seals removed as well: the first event without one is named.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_seal"))
    assert "event 1 carries no seal" in aidaccess(env, "audit", "verify").stderr


def test_a_checkpoint_edited_or_made_with_another_key_is_refused(trail):
    env, engine, tmp_path = trail
    checkpoint = tmp_path / "checkpoint.json"
    assert aidaccess(env, "audit", "checkpoint", "--output", str(checkpoint)).returncode == 0
    saved = json.loads(checkpoint.read_text())
    checkpoint.write_text(json.dumps({**saved, "events": saved["events"] - 1}))
    edited = aidaccess(env, "audit", "verify", "--checkpoint", str(checkpoint))
    assert edited.returncode == 5 and "signature does not verify" in edited.stderr
    checkpoint.write_text(json.dumps(saved))
    other = aidaccess(
        {**env, "AIDACCESS_AUDIT_KEY": "another-audit-key-" + "q7" * 20},
        "audit",
        "verify",
        "--checkpoint",
        str(checkpoint),
    )
    assert other.returncode == 5 and "seal does not match" in other.stderr  # every seal is the other key's
    assert aidaccess(env, "audit", "verify", "--checkpoint", str(tmp_path / "nowhere.json")).returncode == 2


def test_a_trail_from_before_seals_is_sealed_by_the_upgrade_once_it_verifies(trail, fresh_database):
    env, engine, _ = trail
    total = _count(engine)
    assert aidaccess(env, "db", "downgrade", "0010").returncode == 0  # the trail as it was, unsealed
    upgraded = aidaccess(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    verified = aidaccess(env, "audit", "verify")
    assert verified.returncode == 0 and f"{total} events, every one sealed" in verified.stdout
    # A broken trail is not sealed: the upgrade stops and says why.
    assert aidaccess(env, "db", "downgrade", "0010").returncode == 0
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        else:
            connection.execute(text("DROP TRIGGER audit_event_no_update"))
        connection.execute(text("UPDATE audit_event SET action = 'forged' WHERE id = 2"))
    refused = aidaccess(env, "db", "upgrade")
    assert refused.returncode != 0 and "broken at event 2" in refused.stderr
    with engine.connect() as connection:
        assert migrations.current_revision(connection) == "0010"
