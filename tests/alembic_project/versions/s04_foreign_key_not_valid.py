"""foreign key added NOT VALID, validated in its own transaction"""
from alembic import op

revision = "s04"
down_revision = "s03"


def upgrade() -> None:
    op.create_foreign_key(
        "fk_events_account", "events", "accounts", ["account_id"], ["id"],
        postgresql_not_valid=True,
    )
    with op.get_context().autocommit_block():
        op.execute("ALTER TABLE events VALIDATE CONSTRAINT fk_events_account")


def downgrade() -> None:
    op.drop_constraint("fk_events_account", "events", type_="foreignkey")
