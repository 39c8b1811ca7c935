//! Group commit of the audit log: which statements cannot take durable effect on the server
//! before their transaction block's COMMIT, so their records need only be *written* when they
//! are forwarded and one fsync in front of the COMMIT covers them all (writer.rs,
//! [`super::writer::Durability::Written`]).
//!
//! Why this keeps the audit trail right: inside an open transaction block (ReadyForQuery status
//! `T`, or `E`, where the server runs nothing but ROLLBACK), a transactional statement changes
//! nothing another session or a restarted server can see until COMMIT (or PREPARE TRANSACTION,
//! which COMMIT PREPARED may finish from anywhere) is executed. The session fsyncs every record
//! it wrote before it forwards anything that could end the transaction, so the statement record
//! is on disk before the server can make the statement durable. What a crash of pgwarden's host
//! (not of the process: `write(2)` survives a `kill -9`) can lose is only the record of a
//! transaction that never committed.
//!
//! The test is on the leading keywords the lexer already reads, as an allowlist: a statement
//! that is not plainly transactional (DO, CALL, COPY — which can run programs or write server
//! files at once —, LOAD, CHECKPOINT, VACUUM, ANALYZE, EXPLAIN, cursor and prepared-statement
//! commands, anything unanalysable or unknown) and every transaction-control statement other
//! than SAVEPOINT/RELEASE (COMMIT, END, ROLLBACK — after which the rest of a Query runs
//! outside the block —, PREPARE TRANSACTION, BEGIN) keeps the durable path. Statements that
//! refuse to run in a transaction block (CREATE DATABASE, CREATE INDEX CONCURRENTLY, ALTER
//! SYSTEM, ...) fail before doing anything there, so their leading CREATE/ALTER/DROP does not
//! need to be told apart.
use crate::sql::lexer::{self, Keyword, LexOptions, StatementClass};

/// Whether every statement of `sql` (a simple Query's text) is bound to the open transaction
/// block it runs in: nothing it does can become durable before that block commits. `false`
/// when in doubt.
pub fn transaction_bound(sql: &str, standard_conforming_strings: bool) -> bool {
    let opts = LexOptions {
        standard_conforming_strings,
        ..LexOptions::default()
    };
    for st in lexer::split(sql, &opts) {
        if st.class == StatementClass::Empty {
            continue;
        }
        if st.unanalysable == Some(lexer::Unanalysable::Unterminated)
            || st.unanalysable == Some(lexer::Unanalysable::PsqlMetaCommand)
        {
            return false;
        }
        if !bound_keyword(st.leading[0]) {
            return false;
        }
    }
    true
}

fn bound_keyword(k: Keyword) -> bool {
    use Keyword::*;
    matches!(
        k,
        // Schema changes: catalog rows, new relfilenodes — all rolled back with the block.
        Create | Alter | Drop | Comment | Grant | Revoke | Truncate | Security | Reindex
            | Cluster | Refresh | Lock
            // Row changes and reads (a function they call is not the audit log's to follow).
            | Insert | Update | Delete | Merge | Select | With | Values | Table
            // Stay inside the block.
            | Savepoint | Release | Set | Reset | Show
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_statements_are_bound() {
        for sql in [
            "CREATE TABLE t (id int)",
            "\nCREATE TABLE alembic_version (\n    version_num VARCHAR(32) NOT NULL\n)",
            "ALTER TABLE t ADD COLUMN c int DEFAULT 0 NOT NULL",
            "CREATE INDEX ix ON t (c); COMMENT ON TABLE t IS 'x'",
            "UPDATE alembic_version SET version_num='b' WHERE alembic_version.version_num = 'a'",
            "INSERT INTO alembic_version (version_num) VALUES ('a') RETURNING version_num",
            "SAVEPOINT s; DROP TABLE t; RELEASE SAVEPOINT s",
            "CREATE TYPE s AS ENUM ('a', 'b')",
            "GRANT SELECT ON t TO r",
            "/* c */ (SELECT 1)",
            "SET LOCAL lock_timeout = '1s'",
            "",
            ";;",
        ] {
            assert!(transaction_bound(sql, true), "{sql}");
        }
    }

    #[test]
    fn anything_that_can_end_the_block_or_act_at_once_is_not() {
        for sql in [
            "COMMIT",
            "commit and chain",
            "END",
            "ROLLBACK",
            "ABORT",
            "ROLLBACK TO SAVEPOINT s",
            "PREPARE TRANSACTION 'g'",
            "BEGIN",
            "CREATE TABLE a (); COMMIT",
            "CREATE TABLE a (); ROLLBACK; CREATE TABLE b ()",
            "COPY t TO PROGRAM 'cat > /tmp/x'",
            "COPY t FROM STDIN",
            "DO $$ BEGIN PERFORM 1; END $$",
            "CALL p()",
            "LOAD 'auto_explain'",
            "CHECKPOINT",
            "VACUUM t",
            "ANALYZE t",
            "EXPLAIN ANALYZE DELETE FROM t",
            "EXECUTE stmt",
            "PREPARE q AS SELECT 1",
            "DECLARE c CURSOR FOR SELECT 1",
            "NOTIFY ch",
            "LISTEN ch",
            "DISCARD ALL",
            "IMPORT FOREIGN SCHEMA s FROM SERVER f INTO public",
            "SELECT 'unterminated",
            "frobnicate t",
        ] {
            assert!(!transaction_bound(sql, true), "{sql}");
        }
    }

    #[test]
    fn a_commit_hidden_in_a_string_or_comment_is_not_a_statement() {
        assert!(transaction_bound("SELECT 'x; COMMIT'", true));
        assert!(transaction_bound("SELECT 1 -- ; COMMIT", true));
        assert!(transaction_bound(
            "CREATE FUNCTION f() RETURNS int AS $$ COMMIT $$ LANGUAGE sql",
            true
        ));
        // With standard_conforming_strings off a backslash escapes the quote: the string ends
        // later, and the COMMIT after it is a statement.
        assert!(!transaction_bound(r"SELECT 'a\'; COMMIT; --'", true));
        assert!(transaction_bound(r"SELECT 'a\'; COMMIT; --'", false));
    }
}
