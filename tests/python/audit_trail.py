"""psycopg2 sessions for tests/audit_trail.rs: savepoints the way Django's nested atomic()
sends them (BEGIN, then SAVEPOINT before any DDL), and execute() of several statements."""
import sys

import psycopg2


def savepoints(url):
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    # psycopg2 sends BEGIN before the first statement; the savepoint comes before any DDL.
    cur.execute('SAVEPOINT "S1"')
    cur.execute("CREATE TABLE sp_three (id int)")
    cur.execute('ROLLBACK TRANSACTION TO SAVEPOINT "S1"')
    cur.execute("CREATE TABLE sp_four (id int)")
    cur.execute("SAVEPOINT x")
    cur.execute("CREATE TABLE sp_five (id int)")
    cur.execute("SAVEPOINT X")
    cur.execute("CREATE TABLE sp_six (id int)")
    cur.execute("RELEASE x")  # the newer x, and nothing else
    cur.execute("ROLLBACK WORK TO x")  # the older x: undoes five and six
    cur.execute("CREATE TABLE sp_seven (id int)")
    # An error inside a subtransaction, recovered by ROLLBACK TO.
    cur.execute("SAVEPOINT e")
    try:
        cur.execute("ALTER TABLE sp_missing ADD COLUMN y int")
    except psycopg2.errors.UndefinedTable:
        cur.execute("ROLLBACK TO SAVEPOINT e")
    cur.execute("CREATE TABLE sp_eight (id int)")
    cur.execute('RELEASE SAVEPOINT "S1"')
    conn.commit()
    conn.close()


def multi(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    try:
        cur.execute("SET lock_timeout = '1s'; ALTER TABLE missing ADD COLUMN y int")
    except psycopg2.errors.UndefinedTable:
        print("42P01")
    conn.close()




def savepoints3(url):
    """psycopg 3's nested transaction() blocks: SAVEPOINT / ROLLBACK TO / RELEASE."""
    import psycopg

    with psycopg.connect(url) as conn:
        with conn.transaction():
            with conn.transaction():  # SAVEPOINT before any DDL
                conn.execute("CREATE TABLE p3_one (id int)")
            try:
                with conn.transaction():
                    conn.execute("CREATE TABLE p3_two (id int)")
                    raise RuntimeError("undo the savepoint")
            except RuntimeError:
                pass
            conn.execute("CREATE TABLE p3_three (id int)")


MODES = {"savepoints": savepoints, "multi": multi, "savepoints3": savepoints3}


if __name__ == "__main__":
    MODES[sys.argv[1]](sys.argv[2])
