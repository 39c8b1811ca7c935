"""Client workloads for tests/execute_safe.rs: each prints one JSON object.

asyncpg_migrate URL SQL   the SQL in a transaction (conn.execute: simple protocol)
asyncpg_settings URL      SHOW answers after DDL in and out of transactions
psycopg3_settings URL     the same through psycopg 3: extended protocol and a pipeline
"""
import asyncio
import json
import sys


async def asyncpg_migrate(url, sql):
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(sql)
        return {"ok": True}
    except asyncpg.PostgresError as e:
        return {
            "ok": False,
            "sqlstate": e.sqlstate,
            "message": str(e),
            "detail": getattr(e, "detail", None),
            "hint": getattr(e, "hint", None),
        }
    finally:
        await conn.close()


async def asyncpg_settings(url):
    import asyncpg

    conn = await asyncpg.connect(url)
    out = {}

    async def both():
        return [
            await conn.fetchval("SHOW lock_timeout"),
            await conn.fetchval("SHOW statement_timeout"),
        ]

    out["start"] = await both()
    await conn.execute("ALTER TABLE orders ADD COLUMN a1 int")
    out["after_autocommit"] = await both()
    async with conn.transaction():
        await conn.execute("ALTER TABLE orders ADD COLUMN a2 int")
        out["in_tx"] = await both()
    out["after_tx"] = await both()
    await conn.execute("SET lock_timeout = '7s'")
    # A named prepared statement (asyncpg's own path for queries with arguments).
    stmt = await conn.prepare("ALTER TABLE orders ADD COLUMN a3 int")
    await stmt.fetch()
    await conn.execute("ALTER TABLE orders ADD COLUMN a4 int")
    out["after_client_set"] = await both()
    async with conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = '9s'")
        await conn.execute("ALTER TABLE orders ADD COLUMN a5 int")
        out["in_tx_after_set_local"] = await both()
    out["end"] = await both()
    await conn.close()
    return out


def psycopg3_settings(url):
    import psycopg

    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        def both():
            return [
                conn.execute("SHOW lock_timeout").fetchone()[0],
                conn.execute("SHOW statement_timeout").fetchone()[0],
            ]

        out["start"] = both()
        conn.execute("ALTER TABLE orders ADD COLUMN p1 int")
        out["after_extended"] = both()
        with conn.pipeline():
            conn.execute("ALTER TABLE orders ADD COLUMN p2 int")
            c1 = conn.execute("SHOW lock_timeout")
            c2 = conn.execute("SHOW statement_timeout")
        out["in_pipeline"] = [c1.fetchone()[0], c2.fetchone()[0]]
        with conn.transaction():
            conn.execute("ALTER TABLE orders ADD COLUMN p3 int")
            out["in_tx"] = both()
        out["end"] = both()
    return out


WORKLOADS = {
    "asyncpg_migrate": lambda url, sql: asyncio.run(asyncpg_migrate(url, sql)),
    "asyncpg_settings": lambda url: asyncio.run(asyncpg_settings(url)),
    "psycopg3_settings": psycopg3_settings,
}


def main():
    workload = WORKLOADS.get(sys.argv[1]) if len(sys.argv) > 1 else None
    if workload is None:
        sys.exit(f"usage: execute.py {sorted(WORKLOADS)} URL ...")
    print(json.dumps(workload(*sys.argv[2:]), sort_keys=True, default=str))


if __name__ == "__main__":
    main()
