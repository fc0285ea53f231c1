"""Two pauses in force for one city never overlap, enforced by the database.

The approval's check before its write (workflow.pauses._overlapping) cannot see a concurrent
approval that has not committed: on PostgreSQL two coordinators approving two overlapping pauses
at the same moment both succeeded. Each pause_city row now carries its pause's window and whether
the pause is in force (approved, active or suspended), kept equal to the pause's by triggers, and
on PostgreSQL an exclusion constraint over the city and the window of the rows in force refuses
the second (btree_gist gives GiST the uuid equality). SQLite runs one writer at a time (BEGIN
IMMEDIATE), so there the check before the write sees every committed approval.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

import db.types
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_FORCE = "('approved', 'suspended')"


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("pause_city") as batch:
        batch.add_column(sa.Column("starts_at", db.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ends_at", db.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("in_force", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(
        "UPDATE pause_city SET starts_at = (SELECT p.starts_at FROM pause p WHERE p.id = pause_city.pause_id), "
        "ends_at = (SELECT p.ends_at FROM pause p WHERE p.id = pause_city.pause_id), "
        f"in_force = (SELECT p.status IN {_IN_FORCE} FROM pause p WHERE p.id = pause_city.pause_id)"
    )
    with op.batch_alter_table("pause_city") as batch:
        batch.alter_column("starts_at", nullable=False)
        batch.alter_column("ends_at", nullable=False)
    if postgresql:
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            """
            CREATE FUNCTION pause_city_follows_pause() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_TABLE_NAME = 'pause' THEN
                    UPDATE pause_city SET starts_at = NEW.starts_at, ends_at = NEW.ends_at,
                           in_force = NEW.status IN ('approved', 'suspended')
                    WHERE pause_id = NEW.id;
                    RETURN NEW;
                END IF;
                SELECT p.starts_at, p.ends_at, p.status IN ('approved', 'suspended')
                INTO NEW.starts_at, NEW.ends_at, NEW.in_force FROM pause p WHERE p.id = NEW.pause_id;
                RETURN NEW;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER pause_city_follows_pause AFTER UPDATE OF status, starts_at, ends_at ON pause "
            "FOR EACH ROW EXECUTE FUNCTION pause_city_follows_pause()"
        )
        op.execute(
            "CREATE TRIGGER pause_city_takes_its_pause BEFORE INSERT OR UPDATE ON pause_city "
            "FOR EACH ROW EXECUTE FUNCTION pause_city_follows_pause()"
        )
        op.execute(
            "ALTER TABLE pause_city ADD CONSTRAINT pause_city_no_overlap EXCLUDE USING gist "
            "(city_id WITH =, tstzrange(starts_at, ends_at) WITH &&) WHERE (in_force)"
        )
    else:
        op.execute(
            f"""
            CREATE TRIGGER pause_city_follows_pause AFTER UPDATE OF status, starts_at, ends_at ON pause
            BEGIN
                UPDATE pause_city SET starts_at = NEW.starts_at, ends_at = NEW.ends_at, in_force = NEW.status IN {_IN_FORCE}
                WHERE pause_id = NEW.id;
            END
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER pause_city_takes_its_pause AFTER INSERT ON pause_city
            BEGIN
                UPDATE pause_city SET starts_at = p.starts_at, ends_at = p.ends_at, in_force = p.status IN {_IN_FORCE}
                FROM (SELECT starts_at, ends_at, status FROM pause WHERE id = NEW.pause_id) AS p
                WHERE pause_id = NEW.pause_id AND city_id = NEW.city_id;
            END
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pause_city DROP CONSTRAINT IF EXISTS pause_city_no_overlap")
        op.execute("DROP TRIGGER IF EXISTS pause_city_takes_its_pause ON pause_city")
        op.execute("DROP TRIGGER IF EXISTS pause_city_follows_pause ON pause")
        op.execute("DROP FUNCTION IF EXISTS pause_city_follows_pause()")
    else:
        op.execute("DROP TRIGGER IF EXISTS pause_city_takes_its_pause")
        op.execute("DROP TRIGGER IF EXISTS pause_city_follows_pause")
    with op.batch_alter_table("pause_city") as batch:
        batch.drop_column("in_force")
        batch.drop_column("ends_at")
        batch.drop_column("starts_at")
