"""int -> bigint: rewrites the table under ACCESS EXCLUSIVE"""
from alembic import op
import sqlalchemy as sa

revision = "u01"
down_revision = "s06"


def upgrade() -> None:
    op.alter_column("TABLE", "counter", type_=sa.BigInteger(), existing_type=sa.Integer())
