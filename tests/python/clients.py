"""Client workloads the Rust integration tests run through pgwarden and directly, printing JSON.

Usage: clients.py versions | clients.py WORKLOAD URL
Each workload prints one JSON object on stdout: the results it read, so the Rust test can compare
a run through the proxy with a direct run. Any exception exits non-zero with the traceback.
"""
import json
import sys


def versions():
    import alembic
    import asyncpg
    import psycopg
    import psycopg2
    import sqlalchemy

    print(json.dumps({
        "psycopg2": psycopg2.__version__,
        "psycopg": psycopg.__version__,
        "asyncpg": asyncpg.__version__,
        "alembic": alembic.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "versions":
        versions()
        return
    workload = WORKLOADS.get(sys.argv[1])
    if workload is None:
        sys.exit(f"unknown workload {sys.argv[1]!r}; known: {sorted(WORKLOADS)}")
    print(json.dumps(workload(*sys.argv[2:]), sort_keys=True, default=str))


def psycopg2_workload(url):
    """psycopg2 (Alembic's default driver): simple Query only, parameters interpolated client-side."""
    import io
    import psycopg2

    out = {}
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    # Implicit BEGIN (autocommit off), as Alembic runs.
    cur.execute("CREATE TEMP TABLE p2 (id int PRIMARY KEY, v text, n numeric)")
    cur.executemany("INSERT INTO p2 VALUES (%s, %s, %s)",
                    [(i, f"val {i} 'quoted' ü", i * 1.5) for i in range(200)])
    cur.execute("SELECT count(*), sum(n), md5(string_agg(v, ',' ORDER BY id)) FROM p2 WHERE id >= %s", (10,))
    out["agg"] = list(cur.fetchone())
    # A named (server-side) cursor: DECLARE ... CURSOR and FETCH under the hood.
    named = conn.cursor("srv_cursor")
    named.itersize = 17
    named.execute("SELECT id FROM p2 ORDER BY id")
    out["cursor_sum"] = sum(r[0] for r in named)
    named.close()
    buf = io.StringIO()
    cur.copy_expert("COPY (SELECT id, v FROM p2 ORDER BY id) TO STDOUT", buf)
    out["copy_out_len"] = len(buf.getvalue())
    cur.execute("CREATE TEMP TABLE p2c (id int, v text)")
    buf.seek(0)
    cur.copy_expert("COPY p2c FROM STDIN", buf)
    cur.execute("SELECT count(*) FROM p2c")
    out["copy_in_count"] = cur.fetchone()[0]
    cur.execute("DO $$ BEGIN RAISE NOTICE 'psycopg2 notice %', 7; END $$")
    out["notices"] = [n.strip() for n in conn.notices]
    conn.commit()
    try:
        cur.execute("SELECT 1/0")
    except psycopg2.Error as e:
        out["error"] = [e.pgcode, e.diag.message_primary]
    out["status_after_error"] = conn.get_transaction_status()
    conn.rollback()
    cur.execute("SELECT %s::text || %s", ("a", "b"))
    out["after_rollback"] = cur.fetchone()[0]
    conn.close()
    return out


def psycopg3_workload(url):
    """psycopg 3: extended protocol with unnamed statements, named ones after 5 runs, COPY."""
    import psycopg

    out = {}
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE p3 (id int PRIMARY KEY, v text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO p3 VALUES (%s, %s)", [(i, f"v{i}") for i in range(100)])
            # The same query 12 times: psycopg prepares it (named _pg3_N) after prepare_threshold=5,
            # then re-executes it with Bind alone.
            out["repeated"] = [cur.execute("SELECT v FROM p3 WHERE id = %s", (i,)).fetchone()[0]
                               for i in range(12)]
            out["explicit_prepare"] = cur.execute("SELECT count(*) FROM p3 WHERE id < %s", (50,),
                                                  prepare=True).fetchone()[0]
            with cur.copy("COPY (SELECT * FROM p3 ORDER BY id) TO STDOUT") as copy:
                out["copy_out_rows"] = sum(1 for _ in copy.rows())
            conn.execute("CREATE TEMP TABLE p3c (id int, v text)")
            with cur.copy("COPY p3c FROM STDIN") as copy:
                for i in range(1000):
                    copy.write_row((i, f"copied {i}"))
            out["copy_in_count"] = cur.execute("SELECT count(*) FROM p3c").fetchone()[0]
            try:
                cur.execute("SELECT %s::int / 0", (1,))
            except psycopg.Error as e:
                out["error"] = [e.sqlstate, e.diag.message_primary]
            conn.rollback()
            out["after_error"] = cur.execute("SELECT 'ok'").fetchone()[0]
        conn.commit()
    return out


def psycopg3_pipeline_workload(url):
    """psycopg 3 pipeline mode: many Parse/Bind/Execute before one Sync, results read later."""
    import psycopg

    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE pl (id int PRIMARY KEY, v text)")
        with conn.pipeline() as p:
            curs = []
            for i in range(50):
                conn.execute("INSERT INTO pl VALUES (%s, %s)", (i, f"p{i}"))
            for i in range(0, 50, 5):
                cur = conn.cursor()
                cur.execute("SELECT v FROM pl WHERE id = %s", (i,))
                curs.append(cur)
            p.sync()
            out["selected"] = [c.fetchone()[0] for c in curs]
        # An error inside a pipeline aborts the rest until the Sync.
        try:
            with conn.pipeline():
                conn.execute("INSERT INTO pl VALUES (%s, %s)", (1000, "x"))
                conn.execute("INSERT INTO pl VALUES (%s, %s)", (1, "duplicate"))
                conn.execute("INSERT INTO pl VALUES (%s, %s)", (1001, "skipped"))
        except psycopg.Error as e:
            out["error"] = e.sqlstate
        out["count"] = conn.execute("SELECT count(*) FROM pl").fetchone()[0]
        out["max"] = conn.execute("SELECT max(id) FROM pl").fetchone()[0]
    return out


def asyncpg_workload(url):
    """asyncpg: every statement a named prepared statement, re-executed by Bind alone."""
    import asyncio

    import asyncpg

    async def run():
        out = {}
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TEMP TABLE ap (id int PRIMARY KEY, v text)")
        await conn.executemany("INSERT INTO ap VALUES ($1, $2)", [(i, f"a{i}") for i in range(100)])
        # DDL through fetch() goes as a named Parse too (as the asyncpg Alembic dialect does).
        await conn.fetch("CREATE TEMP TABLE ap2 (x int)")
        out["repeated"] = [await conn.fetchval("SELECT v FROM ap WHERE id = $1", i) for i in range(20)]
        stmt = await conn.prepare("SELECT count(*) FROM ap WHERE id < $1")
        out["prepared"] = [await stmt.fetchval(n) for n in (10, 20, 30)]
        async with conn.transaction():
            await conn.execute("INSERT INTO ap2 VALUES (1), (2)")
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO ap2 VALUES (3)")
                await conn.fetchval("SELECT 1 / $1::int", 0)
        except asyncpg.PostgresError as e:
            out["error"] = [e.sqlstate, e.message]
        out["ap2"] = await conn.fetchval("SELECT sum(x) FROM ap2")
        await conn.copy_records_to_table("ap2", records=[(i,) for i in range(1000)])
        out["after_copy"] = await conn.fetchval("SELECT count(*) FROM ap2")
        out["cursor"] = []
        async with conn.transaction():
            async for r in conn.cursor("SELECT id FROM ap ORDER BY id", prefetch=13):
                out["cursor"].append(r["id"])
        out["cursor"] = sum(out["cursor"])
        await conn.close()
        return out

    return asyncio.run(run())


def auth_workload(url):
    """Connects with each driver and reports the user, or the error each driver raises."""
    import asyncio

    import asyncpg
    import psycopg
    import psycopg2

    out = {}
    try:
        with psycopg2.connect(url) as c, c.cursor() as cur:
            cur.execute("SELECT current_user")
            out["psycopg2"] = cur.fetchone()[0]
    except psycopg2.OperationalError as e:
        out["psycopg2"] = "error: " + str(e).split("FATAL:", 1)[-1].strip()
    try:
        with psycopg.connect(url) as c:
            out["psycopg"] = c.execute("SELECT current_user").fetchone()[0]
    except psycopg.OperationalError as e:
        out["psycopg"] = "error: " + str(e).split("FATAL:", 1)[-1].strip()

    async def apg():
        c = await asyncpg.connect(url)
        try:
            return await c.fetchval("SELECT current_user")
        finally:
            await c.close()

    try:
        out["asyncpg"] = asyncio.run(apg())
    except asyncpg.PostgresError as e:
        out["asyncpg"] = f"error: {e.sqlstate} {e}"
    return out


def psycopg3_cancel_workload(url):
    """Cancels a pg_sleep with Connection.cancel_safe() from another thread."""
    import threading
    import time

    import psycopg

    out = {}
    with psycopg.connect(url) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        started = time.monotonic()
        timer.start()
        try:
            conn.execute("SELECT pg_sleep(30)")
        except psycopg.errors.QueryCanceled as e:
            out["error"] = e.sqlstate
        out["fast"] = time.monotonic() - started < 10
        timer.join()
    return out


WORKLOADS = {
    "psycopg3-cancel": psycopg3_cancel_workload,
    "psycopg2": psycopg2_workload,
    "psycopg3": psycopg3_workload,
    "psycopg3-pipeline": psycopg3_pipeline_workload,
    "asyncpg": asyncpg_workload,
    "auth": auth_workload,
}

if __name__ == "__main__":
    main()
