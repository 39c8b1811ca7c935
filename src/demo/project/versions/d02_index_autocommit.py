"""index events.created_at in an autocommit block (pgwarden adds CONCURRENTLY)"""
from alembic import op

revision = "d02"
down_revision = "d01"


def upgrade() -> None:
    # Outside the migration transaction, but without postgresql_concurrently=True: a plain
    # CREATE INDEX would block every write to events for the whole build.
    with op.get_context().autocommit_block():
        op.create_index("ix_events_created_at", "events", ["created_at"])
