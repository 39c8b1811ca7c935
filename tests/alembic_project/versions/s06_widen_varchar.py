"""widen varchar(50) to varchar(100) on the big table: binary-coercible, no rewrite"""
from alembic import op
import sqlalchemy as sa

revision = "s06"
down_revision = "s05"


def upgrade() -> None:
    op.alter_column("events", "kind", type_=sa.String(100), existing_type=sa.String(50))


def downgrade() -> None:
    op.alter_column("events", "kind", type_=sa.String(50), existing_type=sa.String(100))
