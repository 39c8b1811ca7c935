"""a revision the server fails half-way: the table it created must not survive"""
from alembic import op
import sqlalchemy as sa

revision = "u01"
down_revision = "s06"


def upgrade() -> None:
    op.create_table("created_then_rolled_back", sa.Column("id", sa.Integer(), primary_key=True))
    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")
