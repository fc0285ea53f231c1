"""The audit chain keyed with a secret outside the database: a seal per event.

A plain SHA-256 chain can be rewritten whole by whoever can write the table: change an event,
recompute every hash after it, and ``aidaccess audit verify`` saw nothing. Each event now has a seal,
HMAC-SHA256 under the audit key (``AIDACCESS_AUDIT_KEY``, never stored in the database) of its id and
hash; the hash covers the previous event's, so a seal vouches for the whole trail up to its event.
Rewriting any event needs the key. A truncated tail needs a checkpoint kept elsewhere
(``aidaccess audit checkpoint``, ``aidaccess audit verify --checkpoint FILE``).

Events written before this revision are sealed here, once their chain verifies, with the key the
service is configured with: a trail that does not verify is not sealed, and the upgrade stops.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_seal",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("audit_event.id"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("mac", sa.String(length=64), nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # audit_event_append_only() (revision 0001) raises whatever the table.
        op.execute(
            "CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_seal "
            "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_seal_no_{verb.lower()} BEFORE {verb} ON audit_seal "
                "BEGIN SELECT RAISE(ABORT, 'audit seals are append-only'); END"
            )
    if bind.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one():
        from sqlmodel import Session

        from workflow.audit import seal_existing_events

        with Session(bind=bind) as session:
            seal_existing_events(session)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_seal_append_only ON audit_seal")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_seal_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_seal_no_delete")
    op.drop_table("audit_seal")
