//! Who holds the lock a statement waited for: the query pgwarden asks on the same session after
//! a lock timeout, what it answers, and how a blocker is said to a human.
//!
//! PostgreSQL never says who held the lock when `lock_timeout` fires; the sessions holding a
//! lock that conflicts with the one requested are in `pg_locks` joined to `pg_stat_activity`.
//! Other roles' query text (and state, transaction start) is visible only with
//! `pg_read_all_stats`; the description says so when it is hidden.
use serde::{Deserialize, Serialize};

use super::reply::ResultSet;
use crate::sql::facts::LockMode;

/// Sessions holding a lock on relation (`$1` schema or NULL, `$2` name) in one of the modes
/// `$3` (a text array of pg_locks mode names), oldest transaction first.
pub const BLOCKERS_SQL: &str = "SELECT a.pid::pg_catalog.text, a.usename::pg_catalog.text, \
       a.application_name, a.state, \
       pg_catalog.date_part('epoch', pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) a.xact_start)::pg_catalog.text, \
       a.query, l.mode \
     FROM pg_catalog.pg_locks l \
     JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
     WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted \
       AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
       AND l.relation OPERATOR(pg_catalog.=) pg_catalog.to_regclass(CASE WHEN $1::pg_catalog.text IS NULL \
             THEN pg_catalog.quote_ident($2::pg_catalog.text) \
             ELSE pg_catalog.quote_ident($1::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                  OPERATOR(pg_catalog.||) pg_catalog.quote_ident($2::pg_catalog.text) END)::pg_catalog.oid \
       AND l.mode OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[]) \
       AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
     ORDER BY a.xact_start NULLS LAST, a.pid LIMIT 10";

/// Tables (and materialized views) this session holds a write-blocking lock on. Temporary
/// tables are invisible to other sessions and block no one.
pub const OWN_LOCKS_SQL: &str = "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, l.mode, \
       c.oid::pg_catalog.text \
     FROM pg_catalog.pg_locks l \
     JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation \
     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
     WHERE l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() \
       AND l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted \
       AND l.mode OPERATOR(pg_catalog.=) ANY ('{ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}'::pg_catalog.text[]) \
       AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,m}'::pg_catalog.\"char\"[]) \
       AND c.relpersistence OPERATOR(pg_catalog.<>) 't' \
     ORDER BY 1, 2";

/// What `pg_stat_activity` shows as the query of a session the role may not see.
const HIDDEN: &str = "<insufficient privilege>";

/// One session holding a conflicting lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    pub pid: i32,
    pub user: Option<String>,
    pub application_name: Option<String>,
    /// `idle in transaction`, `active`, ...; `None` when hidden from this role.
    pub state: Option<String>,
    /// Seconds since the blocker's transaction started; `None` when hidden or not in one.
    pub transaction_age_s: Option<f64>,
    /// Its current (or last) query, shortened; `None` when hidden from this role.
    pub query: Option<String>,
    /// The lock it holds, as pg_locks names it (`AccessShareLock`).
    pub mode: String,
}

/// The pg_locks mode names a request for `mode` waits behind (PostgreSQL's conflict table).
pub fn conflicting_modes(mode: LockMode) -> &'static str {
    match mode {
        LockMode::AccessShare => "{AccessExclusiveLock}",
        LockMode::RowShare => "{ExclusiveLock,AccessExclusiveLock}",
        LockMode::RowExclusive => {
            "{ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}"
        }
        LockMode::ShareUpdateExclusive => "{ShareUpdateExclusiveLock,ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}",
        LockMode::Share => "{RowExclusiveLock,ShareUpdateExclusiveLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}",
        LockMode::ShareRowExclusive => "{RowExclusiveLock,ShareUpdateExclusiveLock,ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}",
        LockMode::Exclusive => "{RowShareLock,RowExclusiveLock,ShareUpdateExclusiveLock,ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}",
        LockMode::AccessExclusive => "{AccessShareLock,RowShareLock,RowExclusiveLock,ShareUpdateExclusiveLock,ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}",
    }
}

/// Longest query excerpt kept per blocker.
const MAX_QUERY: usize = 200;

/// Reads the rows of one [`BLOCKERS_SQL`] result.
pub fn parse(result: &ResultSet) -> Vec<Blocker> {
    result
        .rows
        .iter()
        .filter_map(|r| {
            let col = |i: usize| r.get(i).cloned().flatten();
            Some(Blocker {
                pid: col(0)?.parse().ok()?,
                user: col(1),
                application_name: col(2),
                state: col(3),
                transaction_age_s: col(4).and_then(|v| v.parse().ok()),
                query: col(5)
                    .filter(|q| q != HIDDEN)
                    .map(|q| crate::enforce::raise::excerpt(&q))
                    .map(|q| shorten(&q)),
                mode: col(6).unwrap_or_default(),
            })
        })
        .collect()
}

fn shorten(q: &str) -> String {
    if q.len() <= MAX_QUERY {
        return q.to_string();
    }
    let mut cut = MAX_QUERY;
    while !q.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &q[..cut])
}

impl Blocker {
    /// `pid 4711 (user app, application_name "worker", idle in transaction, in its
    /// transaction for 12.3 s, holds AccessShareLock, query: SELECT ...)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user {u}"));
        }
        match self.application_name.as_deref() {
            Some("") | None => parts.push("no application_name".into()),
            Some(a) => parts.push(format!("application_name \"{a}\"")),
        }
        match (&self.state, self.transaction_age_s) {
            (Some(s), Some(age)) => {
                parts.push(s.clone());
                parts.push(format!("in its transaction for {age:.1} s"));
            }
            (Some(s), None) => parts.push(s.clone()),
            (None, _) => parts.push(
                "state, transaction age and query hidden from this role (needs pg_read_all_stats)"
                    .into(),
            ),
        }
        parts.push(format!("holds {}", self.mode));
        match (&self.query, &self.state) {
            (Some(q), _) => parts.push(format!("query: {q}")),
            (None, Some(_)) => {
                parts.push("query hidden from this role (needs pg_read_all_stats)".into())
            }
            (None, None) => {}
        }
        format!("pid {} ({})", self.pid, parts.join(", "))
    }
}

/// A relation this transaction holds a write-blocking lock on (from [`OWN_LOCKS_SQL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub schema: String,
    pub name: String,
    pub mode: String,
    pub oid: Option<u32>,
}

pub fn parse_held(result: &ResultSet) -> Vec<HeldLock> {
    result
        .rows
        .iter()
        .filter_map(|r| {
            Some(HeldLock {
                schema: r.first().cloned().flatten()?,
                name: r.get(1).cloned().flatten()?,
                mode: r.get(2).cloned().flatten().unwrap_or_default(),
                oid: r.get(3).cloned().flatten().and_then(|o| o.parse().ok()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(rows: &[&[Option<&str>]]) -> ResultSet {
        ResultSet {
            rows: rows
                .iter()
                .map(|r| r.iter().map(|c| c.map(str::to_string)).collect())
                .collect(),
            tag: "SELECT".into(),
        }
    }

    #[test]
    fn blockers_are_described_with_what_the_role_may_see() {
        let b = parse(&rs(&[
            &[
                Some("4711"),
                Some("app"),
                Some("worker"),
                Some("idle in transaction"),
                Some("12.34"),
                Some("SELECT   count(*)\n FROM orders"),
                Some("AccessShareLock"),
            ],
            &[
                Some("4712"),
                Some("other"),
                Some(""),
                None,
                None,
                Some("<insufficient privilege>"),
                Some("RowExclusiveLock"),
            ],
            &[Some("not a pid"), None, None, None, None, None, None],
        ]));
        assert_eq!(b.len(), 2);
        let d = b[0].describe();
        assert_eq!(
            d,
            "pid 4711 (user app, application_name \"worker\", idle in transaction, in its \
             transaction for 12.3 s, holds AccessShareLock, query: SELECT count(*) FROM orders)"
        );
        let d = b[1].describe();
        assert!(
            d.contains("hidden from this role (needs pg_read_all_stats)"),
            "{d}"
        );
        assert!(d.contains("no application_name"), "{d}");
        assert!(b[1].query.is_none());
    }

    #[test]
    fn conflicts_follow_postgres_table() {
        assert_eq!(
            conflicting_modes(LockMode::AccessExclusive)
                .matches("Lock")
                .count(),
            8
        );
        assert!(!conflicting_modes(LockMode::Share).contains("{ShareLock"));
        assert!(conflicting_modes(LockMode::ShareRowExclusive).contains("ShareRowExclusiveLock"));
    }

    #[test]
    fn long_queries_are_shortened_on_a_char_boundary() {
        let q = "é".repeat(300);
        let b = parse(&rs(&[&[
            Some("1"),
            None,
            None,
            Some("active"),
            None,
            Some(&q),
            Some("AccessShareLock"),
        ]]));
        assert!(b[0].query.as_ref().unwrap().len() <= MAX_QUERY + 3);
    }
}
