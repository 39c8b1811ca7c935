"""add a NOT NULL column with DEFAULT random() to events (pgwarden refuses it)"""
from alembic import op
import sqlalchemy as sa

revision = "d03"
down_revision = "d02"


def upgrade() -> None:
    # A volatile default makes Postgres write a value into every existing row, under an
    # ACCESS EXCLUSIVE lock held for the whole rewrite.
    op.add_column(
        "events",
        sa.Column("shard", sa.Float(), server_default=sa.text("random()"), nullable=False),
    )
