"""Alembic environment of `pgwarden demo`: the URL (pgwarden's address) from PGWARDEN_DEMO_URL."""
import os

from alembic import context
from logging.config import fileConfig
from sqlalchemy import engine_from_config, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
config.set_main_option("sqlalchemy.url", os.environ["PGWARDEN_DEMO_URL"].replace("%", "%%"))

connectable = engine_from_config(
    config.get_section(config.config_ini_section, {}),
    prefix="sqlalchemy.",
    poolclass=pool.NullPool,
)
with connectable.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
