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


WORKLOADS = {}

if __name__ == "__main__":
    main()
