"""plain CREATE INDEX inside the migration transaction"""
from alembic import op

revision = "u01"
down_revision = "s06"


def upgrade() -> None:
    op.create_index("ix_TABLE_created", "TABLE", ["created_at"])
