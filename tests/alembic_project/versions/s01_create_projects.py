"""create projects (new table, its index, an enum type)"""
from alembic import op
import sqlalchemy as sa

revision = "s01"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Enum("active", "paused", name="project_status"), nullable=False),
    )
    # The table is new in this transaction: a plain CREATE INDEX on it is safe.
    op.create_index("ix_projects_name", "projects", ["name"])


def downgrade() -> None:
    op.drop_index("ix_projects_name", table_name="projects")
    op.drop_table("projects")
    sa.Enum(name="project_status").drop(op.get_bind())
