"""Alembic environment for pgwarden's tests: URL from PGWARDEN_TEST_URL, sync or async driver.

PGWARDEN_TEST_TXMODE=per-migration sets transaction_per_migration=True (one BEGIN per revision).
"""
import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

url = os.environ["PGWARDEN_TEST_URL"]
config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
per_migration = os.environ.get("PGWARDEN_TEST_TXMODE") == "per-migration"


def run_migrations_offline() -> None:
    context.configure(url=url, literal_binds=True, transaction_per_migration=per_migration)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection) -> None:
    context.configure(connection=connection, transaction_per_migration=per_migration)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    # Imported here: the asyncio extension needs greenlet, which only the async runs use.
    from sqlalchemy.ext.asyncio import async_engine_from_config

    connectable = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


def run_migrations_online() -> None:
    if "+asyncpg" in url:
        asyncio.run(run_async_migrations())
        return
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
