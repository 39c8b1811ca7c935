"""add an enum value (allowed in a transaction on PostgreSQL >= 12 when not used there)"""
from alembic import op

revision = "s05"
down_revision = "s04"


def upgrade() -> None:
    op.execute("ALTER TYPE project_status ADD VALUE IF NOT EXISTS 'archived'")


def downgrade() -> None:
    pass
