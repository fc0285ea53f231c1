"""Upcoming convoys at any moment in history from one index (PostgreSQL): a GiST index over
each approved request's time between approval and departure.

Without it a picture or snapshot ``as_of`` a moment deep in history walked every request
departing after that moment (at 1,000,000 requests: a sequential scan, 240-300 ms, for any
``as_of`` a reader chose). SQLite has no range type and keeps the departure index.

A plain CREATE INDEX: at 1,000,000 requests it took 18 s, during which writes to access
requests wait. On a large live database, create the index CONCURRENTLY by hand first, with
this exact definition; IF NOT EXISTS then makes this revision a no-op.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here as it was when written (models.IN_FLIGHT_RANGE).
_RANGE = "tstzrange(approved_at, greatest(planned_departure, approved_at))"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_access_request_in_flight ON access_request "
            f"USING gist ({_RANGE}) WHERE approved_at IS NOT NULL"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_access_request_in_flight")
