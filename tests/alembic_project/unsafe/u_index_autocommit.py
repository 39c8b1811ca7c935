"""plain CREATE INDEX outside a transaction: pgwarden rewrites it to CONCURRENTLY"""
from alembic import op

revision = "u01"
down_revision = "s06"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_TABLE_created", "TABLE", ["created_at"])
