"""add nullable columns; backfill the small table"""
from alembic import op
import sqlalchemy as sa

revision = "s02"
down_revision = "s01"


def upgrade() -> None:
    op.add_column("events", sa.Column("note", sa.Text(), nullable=True))
    op.add_column("accounts", sa.Column("plan", sa.Text(), nullable=True))
    op.execute("UPDATE accounts SET plan = 'free' WHERE plan IS NULL")


def downgrade() -> None:
    op.drop_column("accounts", "plan")
    op.drop_column("events", "note")
