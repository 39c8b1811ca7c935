"""Client workloads for tests/execute_safe.rs: each prints one JSON object.

asyncpg_migrate URL SQL   the SQL in a transaction (conn.execute: simple protocol)
asyncpg_settings URL      SHOW answers after DDL in and out of transactions
psycopg3_settings URL     the same through psycopg 3: extended protocol and a pipeline
asyncpg_prepared URL SQL  the SQL in a transaction as asyncpg's named prepared statement
                          (Parse/Describe/Sync, then Bind/Execute/Sync)
psycopg3_extended URL SQL MODE
                          the SQL in a transaction through psycopg 3's extended protocol:
                          MODE binary = unnamed Parse/Bind/Describe/Execute/Sync in one write
                          (the shape of a query with parameters), prepare = a named statement,
                          pipeline = a named statement and its execution before one Sync
extended_settings URL     SHOW answers after DDL sent in the extended protocol (asyncpg's
                          prepared statements, psycopg 3 binary/prepare/pipelines)
pipeline_ddl URL SQL      the SQL then two SHOWs in one psycopg 3 pipeline (one Sync)
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


def error_json(e):
    return {
        "ok": False,
        "sqlstate": getattr(e, "sqlstate", None),
        "message": str(e),
        "detail": getattr(e, "detail", None) or getattr(getattr(e, "diag", None), "message_detail", None),
        "hint": getattr(e, "hint", None) or getattr(getattr(e, "diag", None), "message_hint", None),
    }


async def asyncpg_prepared(url, sql):
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            stmt = await conn.prepare(sql)
            await stmt.fetch()
        return {"ok": True}
    except asyncpg.PostgresError as e:
        return error_json(e)
    finally:
        await conn.close()


def psycopg3_extended(url, sql, mode):
    import psycopg

    with psycopg.connect(url, autocommit=(mode == "pipeline")) as conn:
        try:
            if mode == "binary":
                conn.execute(sql, binary=True)
            elif mode == "pipeline":
                # A named Parse, Bind, Describe, Execute and Sync in one request.
                with conn.pipeline() as p:
                    conn.execute(sql, prepare=True)
                    p.sync()
            else:
                conn.execute(sql, prepare=True)
            conn.commit()
            return {"ok": True}
        except psycopg.Error as e:
            return error_json(e)


async def asyncpg_extended_settings(url, out):
    import asyncpg

    conn = await asyncpg.connect(url)

    async def both():
        return [
            await conn.fetchval("SHOW lock_timeout"),
            await conn.fetchval("SHOW statement_timeout"),
        ]

    async def ddl(sql):
        stmt = await conn.prepare(sql)
        await stmt.fetch()

    await ddl("ALTER TABLE orders ADD COLUMN a1 int")
    out["asyncpg_autocommit"] = await both()
    async with conn.transaction():
        await ddl("ALTER TABLE orders ADD COLUMN a2 int")
        out["asyncpg_in_tx"] = await both()
    out["asyncpg_after_tx"] = await both()
    await conn.execute("SET lock_timeout = '7s'")
    await ddl("ALTER TABLE orders ADD COLUMN a3 int")
    out["asyncpg_after_client_set"] = await both()
    async with conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = '9s'")
        await ddl("ALTER TABLE orders ADD COLUMN a4 int")
        out["asyncpg_after_set_local"] = await both()
    out["asyncpg_end"] = await both()
    await conn.close()


def extended_settings(url):
    import psycopg

    out = {}
    asyncio.run(asyncpg_extended_settings(url, out))
    with psycopg.connect(url, autocommit=True) as conn:
        def both():
            return [
                conn.execute("SHOW lock_timeout", binary=True).fetchone()[0],
                conn.execute("SHOW statement_timeout", prepare=True).fetchone()[0],
            ]

        conn.execute("ALTER TABLE orders ADD COLUMN p1 int", binary=True)
        out["psycopg_binary"] = both()
        conn.execute("ALTER TABLE orders ADD COLUMN p2 int", prepare=True)
        out["psycopg_prepare"] = both()
        with conn.transaction():
            conn.execute("ALTER TABLE orders ADD COLUMN p3 int", binary=True)
            out["psycopg_in_tx"] = both()
        with conn.pipeline() as p:
            conn.execute("ALTER TABLE orders ADD COLUMN p4 int")
            p.sync()
            c1 = conn.execute("SHOW lock_timeout")
            c2 = conn.execute("SHOW statement_timeout")
        out["psycopg_pipeline_synced"] = [c1.fetchone()[0], c2.fetchone()[0]]
        out["psycopg_end"] = both()
    return out


def pipeline_ddl(url, sql):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        try:
            with conn.pipeline():
                conn.execute(sql)
                c1 = conn.execute("SHOW lock_timeout")
                c2 = conn.execute("SHOW statement_timeout")
            out = {"ok": True, "shown": [c1.fetchone()[0], c2.fetchone()[0]]}
        except psycopg.Error as e:
            return error_json(e)
        out["after"] = [
            conn.execute("SHOW lock_timeout").fetchone()[0],
            conn.execute("SHOW statement_timeout").fetchone()[0],
        ]
        return out


WORKLOADS = {
    "asyncpg_prepared": lambda url, sql: asyncio.run(asyncpg_prepared(url, sql)),
    "psycopg3_extended": psycopg3_extended,
    "extended_settings": extended_settings,
    "pipeline_ddl": pipeline_ddl,
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
