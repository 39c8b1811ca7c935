//! The requests pgwarden sends for the executor, and how they go on the wire.
//!
//! pgwarden's own queries use a statement and portal name of their own (closed before the
//! Sync, so the client's unnamed statement and portal survive), every value pgwarden did not
//! write itself travels as a bind parameter (DESIGN.md decision 7), and every name is
//! `pg_catalog`-qualified, operators included, so no user object can change what they do.
use bytes::{Bytes, BytesMut};
use pgwire::messages::extendedquery::{Bind, Close, Execute, Parse, Sync};
use pgwire::messages::Message;

use crate::protocol::frontend;

/// Name of pgwarden's prepared statement and portal for the executor's queries.
const STATEMENT: &str = "pgwarden_exec";

/// pgwarden's savepoint around the client's statement inside a transaction block.
pub const SAVEPOINT: &str = "SAVEPOINT pgwarden_lock_retry";
pub const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT pgwarden_lock_retry";
pub const RELEASE: &str = "RELEASE SAVEPOINT pgwarden_lock_retry";

/// Reads the timeouts in force and sets pgwarden's in the same statement. `$1`/`$2`: the new
/// lock_timeout / statement_timeout (NULL = keep), `$3`: local to the transaction. The
/// `OFFSET 0` subquery is evaluated before the outer `set_config` calls, so the first two
/// columns are the values from before.
pub const SET_SQL: &str = "SELECT o.l, o.s, \
     pg_catalog.set_config('lock_timeout', COALESCE($1::pg_catalog.text, o.l), $3::pg_catalog.bool), \
     pg_catalog.set_config('statement_timeout', COALESCE($2::pg_catalog.text, o.s), $3::pg_catalog.bool) \
     FROM (SELECT pg_catalog.current_setting('lock_timeout') AS l, \
                  pg_catalog.current_setting('statement_timeout') AS s OFFSET 0) AS o";

/// Puts back the values [`SET_SQL`] read: `$1`, `$2` as printed by `current_setting`.
pub const RESTORE_SQL: &str = "SELECT \
     pg_catalog.set_config('lock_timeout', $1::pg_catalog.text, $3::pg_catalog.bool), \
     pg_catalog.set_config('statement_timeout', $2::pg_catalog.text, $3::pg_catalog.bool)";

/// What the executor asks the session to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The client's own statement: the session sends the Query frame it holds.
    Client,
    /// A simple Query of pgwarden's own fixed text (no values in it).
    Simple(&'static str),
    /// pgwarden's own queries with bind parameters, in one round trip (one Sync).
    Extended(Vec<(&'static str, Vec<Option<String>>)>),
    /// A `DO` block that raises the statement's final error on the server (built by
    /// `enforce::raise`, every value quoted as a literal there), so the server's transaction
    /// state is the one a direct error leaves.
    Raise(String),
}

/// Why a request could not be encoded (a NUL byte in a value: cannot happen for the values
/// pgwarden sends, which come from the server as text).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode pgwarden's request: {0}")]
pub struct EncodeError(String);

impl Request {
    /// Appends the request's frames; [`Request::Client`] appends nothing (the session has it).
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Request::Client => Ok(()),
            Request::Simple(sql) => {
                frontend::encode_query(sql, out).map_err(|e| EncodeError(e.to_string()))
            }
            Request::Raise(sql) => {
                frontend::encode_query(sql, out).map_err(|e| EncodeError(e.to_string()))
            }
            Request::Extended(queries) => {
                let enc = |e: pgwire::error::PgWireError| EncodeError(e.to_string());
                for (sql, params) in queries {
                    if params.iter().flatten().any(|v| v.contains('\0')) {
                        return Err(EncodeError("NUL byte in a parameter".into()));
                    }
                    Parse::new(Some(STATEMENT.into()), (*sql).into(), vec![])
                        .encode(out)
                        .map_err(enc)?;
                    Bind::new(
                        Some(STATEMENT.into()),
                        Some(STATEMENT.into()),
                        vec![],
                        params
                            .iter()
                            .map(|v| v.as_ref().map(|s| Bytes::copy_from_slice(s.as_bytes())))
                            .collect(),
                        vec![],
                    )
                    .encode(out)
                    .map_err(enc)?;
                    Execute::new(Some(STATEMENT.into()), 0)
                        .encode(out)
                        .map_err(enc)?;
                    Close::new(b'P', Some(STATEMENT.into()))
                        .encode(out)
                        .map_err(enc)?;
                    Close::new(b'S', Some(STATEMENT.into()))
                        .encode(out)
                        .map_err(enc)?;
                }
                Sync::new().encode(out).map_err(enc)
            }
        }
    }

    /// How the audit log and the log name this request among pgwarden's own statements.
    pub fn describe(&self) -> String {
        match self {
            Request::Client => "the client's statement".into(),
            Request::Simple(sql) => (*sql).into(),
            Request::Raise(_) => "pgwarden's final error (DO block raising it)".into(),
            Request::Extended(q) => q
                .iter()
                .map(|(sql, _)| describe_sql(sql))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

fn describe_sql(sql: &str) -> &'static str {
    if sql == SET_SQL {
        "set lock_timeout/statement_timeout (previous values read)"
    } else if sql == RESTORE_SQL {
        "restore lock_timeout/statement_timeout"
    } else if sql == super::blockers::BLOCKERS_SQL {
        "who holds conflicting locks (pg_locks + pg_stat_activity)"
    } else {
        "locks this transaction holds (pg_locks)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_requests_close_their_statement_before_sync() {
        let r = Request::Extended(vec![(
            SET_SQL,
            vec![Some("1000ms".into()), None, Some("true".into())],
        )]);
        let mut out = BytesMut::new();
        r.encode(&mut out).unwrap();
        let tags: Vec<u8> = frames(&out).map(|f| f[0]).collect();
        assert_eq!(tags, b"PBECCS".to_vec());
        let bad = Request::Extended(vec![(RESTORE_SQL, vec![Some("a\0b".into())])]);
        assert!(bad.encode(&mut BytesMut::new()).is_err());
    }

    fn frames(b: &[u8]) -> impl Iterator<Item = &[u8]> {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let len = u32::from_be_bytes(b.get(pos + 1..pos + 5)?.try_into().ok()?) as usize;
            let f = &b[pos..pos + 1 + len];
            pos += 1 + len;
            Some(f)
        })
    }
}
