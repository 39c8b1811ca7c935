"""add a nullable column to events, with lock_timeout and statement_timeout set (safe)"""
from alembic import op
import sqlalchemy as sa

revision = "d01"
down_revision = None


def upgrade() -> None:
    # The safe recipe: bounded waits for the lock, and a column without a default needs no
    # table rewrite, so ACCESS EXCLUSIVE is held for milliseconds.
    op.execute("SET LOCAL lock_timeout = '2s'")
    op.execute("SET LOCAL statement_timeout = '30s'")
    op.add_column("events", sa.Column("note", sa.Text(), nullable=True))
