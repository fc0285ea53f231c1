"""The audit chain's append as one statement on PostgreSQL: ``audit_event_append`` takes the
chain's lock, reads its head, hashes and inserts the event, in one round trip.

Why: the chain's lock is held from the append to the commit. Appended by four statements (the
lock, the head, the insert, then the commit), its holder waited for its own process between each
(the answer read, then the GIL taken back): under the load bench's mix with two workers, the lock
was free 85 % of the time and, for the rest, held by a writer waiting on its process while up to
16 others waited for the lock. Now the holder waits on its process once, before its commit.

The function hashes what ``workflow.audit`` would: the caller sends the event's canonical JSON in
three pieces, around the id and the previous hash that only the append knows, and checks the hash
it gets back against its own. SQLite keeps appending from Python: its writers hold the database's
write lock from their first statement anyway.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # VOLATILE: each statement in it takes a fresh snapshot, so the head read after the lock sees
    # every append committed before the lock was granted (read committed).
    op.execute(
        """
        CREATE FUNCTION audit_event_append(
            p_lock bigint, p_prefix text, p_middle text, p_suffix text,
            p_occurred_at timestamptz, p_actor_type text, p_actor_id text, p_actor_label text,
            p_organization_id text, p_entity_type text, p_entity_id text, p_action text,
            p_from_state text, p_to_state text, p_changes text, p_reason text, p_request_id text
        ) RETURNS TABLE (appended_id bigint, appended_prev_hash text, appended_hash text)
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            last_id bigint;
            last_hash text;
        BEGIN
            PERFORM pg_advisory_xact_lock(p_lock);
            SELECT e.id, e.hash INTO last_id, last_hash FROM audit_event e ORDER BY e.id DESC LIMIT 1;
            IF last_id IS NULL THEN
                last_id := 0;
                last_hash := repeat('0', 64);
            END IF;
            appended_id := last_id + 1;
            appended_prev_hash := last_hash;
            appended_hash := encode(sha256(convert_to(
                last_hash || p_prefix || appended_id::text || p_middle || last_hash || p_suffix, 'UTF8')), 'hex');
            INSERT INTO audit_event (id, occurred_at, actor_type, actor_id, actor_label, organization_id,
                                     entity_type, entity_id, action, from_state, to_state, changes, reason,
                                     request_id, prev_hash, hash)
            VALUES (appended_id, p_occurred_at, p_actor_type, p_actor_id, p_actor_label, p_organization_id,
                    p_entity_type, p_entity_id, p_action, p_from_state, p_to_state, p_changes::jsonb, p_reason,
                    p_request_id, appended_prev_hash, appended_hash);
            RETURN NEXT;
        END;
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS audit_event_append(bigint, text, text, text, timestamptz, text, text, text, "
            "text, text, text, text, text, text, text, text, text)"
        )
