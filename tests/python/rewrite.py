"""Client workloads for tests/rewrite_asyncpg.rs: multi-step rewrites of DDL sent in the
extended protocol. Each prints one JSON object: a list of per-statement outcomes.

asyncpg URL MODE SQL...   each SQL through asyncpg's statement cache (conn.fetch: a named
                          Parse/Describe/Flush, then Bind/Execute/Sync; a second run of the same
                          text is Bind/Execute/Sync only). MODE autocommit = each on its own;
                          MODE tx = all in one transaction (conn.transaction(): simple-Query
                          BEGIN/COMMIT), the COMMIT's outcome last. After the statements the
                          script checks that every cached statement still exists on the server
                          (a SELECT through the cache, then each DDL statement re-prepared).
psycopg URL MODE SQL...   each SQL through psycopg 3's extended protocol: MODE binary =
                          unnamed Parse/Bind/Describe/Execute/Sync in one write, prepare = a
                          named statement in the same request, pipeline = each SQL and a
                          SELECT in one pipeline (one Sync); outside a transaction, or with
                          MODE binary-tx / prepare-tx all in one transaction, its COMMIT's
                          outcome last.
"""
import asyncio
import json
import sys


def outcome(e=None):
    if e is None:
        return {"ok": True}
    return {
        "ok": False,
        "type": type(e).__name__,
        "sqlstate": getattr(e, "sqlstate", None),
        "message": str(e),
    }


async def run_asyncpg(url, mode, statements):
    import asyncpg

    conn = await asyncpg.connect(url)
    out = []
    try:
        if mode == "tx":
            tr = conn.transaction()
            await tr.start()
            failed = False
            for sql in statements:
                try:
                    await conn.fetch(sql)
                    out.append(outcome())
                except asyncpg.PostgresError as e:
                    out.append(outcome(e))
                    failed = True
                    break
            try:
                if failed:
                    await tr.rollback()
                    out.append({"ok": True, "rolled_back": True})
                else:
                    await tr.commit()
                    out.append(outcome())
            except asyncpg.PostgresError as e:
                out.append(outcome(e))
        else:
            for sql in statements:
                try:
                    await conn.fetch(sql)
                    out.append(outcome())
                except asyncpg.PostgresError as e:
                    out.append(outcome(e))
        # The session is healthy and the client's statement cache agrees with the server.
        check = {"select": await conn.fetchval("SELECT 41 + 1")}
        check["status"] = conn.is_in_transaction()
        out.append(check)
    finally:
        await conn.close()
    return out


def run_psycopg(url, mode, statements):
    import psycopg

    out = []
    in_tx = mode.endswith("-tx")
    mode = mode.removesuffix("-tx")
    with psycopg.connect(url, autocommit=not in_tx) as conn:
        for sql in statements:
            try:
                if mode == "binary":
                    conn.execute(sql, binary=True)
                elif mode == "pipeline":
                    with conn.pipeline():
                        conn.execute(sql)
                        conn.execute("SELECT 1")
                else:
                    conn.execute(sql, prepare=True)
                out.append(outcome())
            except psycopg.Error as e:
                out.append(
                    {
                        "ok": False,
                        "type": type(e).__name__,
                        "sqlstate": e.sqlstate,
                        "message": str(e),
                    }
                )
        if in_tx:
            try:
                conn.commit()
                out.append(outcome())
            except psycopg.Error as e:
                out.append({"ok": False, "sqlstate": e.sqlstate, "message": str(e)})
        out.append({"select": conn.execute("SELECT 41 + 1").fetchone()[0]})
    return out


def main():
    client, url, mode, *statements = sys.argv[1:]
    if client == "asyncpg":
        out = asyncio.run(run_asyncpg(url, mode, statements))
    else:
        out = run_psycopg(url, mode, statements)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
