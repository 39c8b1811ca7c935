"""drop a column running code still reads"""
from alembic import op

revision = "u01"
down_revision = "s06"


def upgrade() -> None:
    op.drop_column("TABLE", "payload")
