"""rename a column running code still reads"""
from alembic import op

revision = "u01"
down_revision = "s06"


def upgrade() -> None:
    op.alter_column("TABLE", "payload", new_column_name="body")
