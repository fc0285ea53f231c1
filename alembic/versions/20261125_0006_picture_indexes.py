"""Indexes that keep costs flat as history grows: a partial index on the access request
events that can change a picture, the last delivery per city, a status's requests in order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here as it was when written: a later change to the states needs a revision of its own.
_STATES = "'approved', 'dispatched', 'delivered', 'partially_delivered', 'turned_back'"
_CONDITION = f"entity_type = 'access_request' AND (to_state IN ({_STATES}) OR from_state IN ({_STATES}))"


def upgrade() -> None:
    # A plain CREATE INDEX, no batch mode: audit_event must never be rebuilt (its triggers).
    op.create_index(
        "ix_audit_event_convoy",
        "audit_event",
        ["id"],
        unique=False,
        sqlite_where=sa.text(_CONDITION),
        postgresql_where=sa.text(_CONDITION),
    )
    with op.batch_alter_table("access_request", schema=None) as batch_op:
        batch_op.create_index("ix_access_request_city_completed", ["destination_city_id", "completed_at"], unique=False)
        batch_op.create_index("ix_access_request_status_id", ["status", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("access_request", schema=None) as batch_op:
        batch_op.drop_index("ix_access_request_status_id")
        batch_op.drop_index("ix_access_request_city_completed")
    op.drop_index("ix_audit_event_convoy", table_name="audit_event")
