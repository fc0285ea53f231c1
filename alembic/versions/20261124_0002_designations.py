"""City search text, designations, and the audit index behind ETags.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

import db.types
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The city table changes before anything references it (SQLite rebuilds it).
    with op.batch_alter_table("city", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    _backfill_search_text()
    with op.batch_alter_table("city", schema=None) as batch_op:
        batch_op.alter_column("search_text", existing_type=sa.Text(), nullable=False)

    op.create_table(
        "designation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("city_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("besieged_by", sa.String(length=200), nullable=True),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("effective_from", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("decided_by_id", sa.Uuid(), nullable=True),
        sa.Column("corrects_id", sa.Uuid(), nullable=True),
        sa.Column("recorded_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["city_id"], ["city.id"], name=op.f("fk_designation_city_id_city")),
        sa.ForeignKeyConstraint(
            ["corrects_id"], ["designation.id"], name=op.f("fk_designation_corrects_id_designation")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["user_account.id"], name=op.f("fk_designation_decided_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_designation")),
        sa.UniqueConstraint("corrects_id", name=op.f("uq_designation_corrects_id")),
    )
    op.create_index("ix_designation_city_effective", "designation", ["city_id", "effective_from"], unique=False)
    op.create_index("ix_designation_effective_from", "designation", ["effective_from"], unique=False)
    # Not in batch mode: rebuilding audit_event would drop its append-only triggers.
    op.create_index("ix_audit_event_type_id", "audit_event", ["entity_type", "id"], unique=False)


def _backfill_search_text() -> None:
    # The folding rule of this revision, frozen here so later changes to it do not rewrite history.
    import json
    import re
    import unicodedata

    def fold(text: str) -> str:
        text = unicodedata.normalize("NFKD", text.casefold())
        text = "".join(c for c in text if not unicodedata.combining(c))
        for variants, plain in (("أإآٱ", "ا"), ("ى", "ي"), ("ة", "ه"), ("ؤ", "و"), ("ئ", "ي")):
            for v in variants:
                text = text.replace(v, plain)
        return re.sub(r"[\W_]+", "", text)

    bind = op.get_bind()
    city = sa.table(
        "city",
        sa.column("id", sa.Uuid()),
        sa.column("name"),
        sa.column("name_ar"),
        sa.column("aliases", sa.JSON()),
        sa.column("pcode"),
        sa.column("search_text"),
    )
    for row in bind.execute(sa.select(city.c.id, city.c.name, city.c.name_ar, city.c.aliases, city.c.pcode)).all():
        aliases = row.aliases if isinstance(row.aliases, list) else json.loads(row.aliases or "[]")
        names = [row.name, row.name_ar or "", *aliases, row.pcode]
        text = "|" + "|".join(fold(n) for n in names if n) + "|"
        bind.execute(city.update().where(city.c.id == row.id).values(search_text=text))


def downgrade() -> None:
    op.drop_index("ix_audit_event_type_id", table_name="audit_event")
    op.drop_index("ix_designation_effective_from", table_name="designation")
    op.drop_index("ix_designation_city_effective", table_name="designation")
    op.drop_table("designation")
    with op.batch_alter_table("city", schema=None) as batch_op:
        batch_op.drop_column("search_text")
