"""Sign-in throttling per client address, and pruning: two indexes on login_attempt.

Failures are now counted per client address too (unknown e-mails each had their own five tries),
and attempts older than the throttling window are deleted (a flood left a row each, for good).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_login_attempt_client_ip_attempted_at", "login_attempt", ["client_ip", "attempted_at"])
    op.create_index("ix_login_attempt_attempted_at", "login_attempt", ["attempted_at"])


def downgrade() -> None:
    op.drop_index("ix_login_attempt_attempted_at", table_name="login_attempt")
    op.drop_index("ix_login_attempt_client_ip_attempted_at", table_name="login_attempt")
