"""foreign key validated at once: SHARE ROW EXCLUSIVE on both tables during the scan"""
from alembic import op

revision = "u01"
down_revision = "s06"


def upgrade() -> None:
    op.create_foreign_key("fk_TABLE_owner", "TABLE", "accounts", ["owner_id"], ["id"])
