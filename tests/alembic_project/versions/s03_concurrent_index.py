"""index the big table concurrently, outside the migration transaction"""
from alembic import op

revision = "s03"
down_revision = "s02"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_events_account_id", "events", ["account_id"], postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_events_account_id", table_name="events", postgresql_concurrently=True)
