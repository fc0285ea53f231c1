"""Long-lived tokens end with a password reset or a deactivation.

A calendar token lived its 180 days through both; ``user_account.tokens_valid_after`` is set by
either, and a calendar token issued before it is refused (workflow.identity.calendar_subscriber).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

import db.types
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(sa.Column("tokens_valid_after", db.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("tokens_valid_after")
