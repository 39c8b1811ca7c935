//! Which statements run under the executor, in which timeout class, and with which values.
use std::time::Duration;

use crate::config::ExecuteConfig;
use crate::enforce::lookup::RelName;
use crate::sql::facts::{LockMode, ObjectName, StatementFacts};

/// The timeout class of a statement (DESIGN.md "Safe execution", principle 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Takes a write-blocking lock (SHARE or stronger) on an existing relation and should hold
    /// it briefly: short lock_timeout (the application queues behind the wait), bounded
    /// statement_timeout.
    Quick,
    /// Concurrent builds, VALIDATE CONSTRAINT, REFRESH/DETACH CONCURRENTLY and other
    /// statements whose strongest lock blocks no writes: they wait for older transactions by
    /// design, and a short lock_timeout would cancel them again and again.
    Concurrent,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Quick => "quick",
            Class::Concurrent => "concurrent",
        }
    }
}

/// Everything the executor needs to run one client statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub class: Class,
    /// The client is inside a transaction block: `SET LOCAL`, savepoint around the statement.
    pub in_transaction: bool,
    /// lock_timeout pgwarden sets for the statement (ms); `None` keeps the session's own.
    pub lock_timeout_ms: Option<u64>,
    /// statement_timeout pgwarden sets (ms); `None` keeps the session's own.
    pub statement_timeout_ms: Option<u64>,
    /// The relations the statement locks and the mode it asks for: whom to ask about
    /// blockers, and what the messages name.
    pub targets: Vec<(RelName, LockMode)>,
    /// Tables created earlier in this transaction: a lock on them blocks no one.
    pub created_in_transaction: Vec<ObjectName>,
    /// The same by oid, as the server confirmed them (the proxy's notion of "new").
    pub created_oids: Vec<u32>,
    pub retry_budget: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Seeds the backoff jitter.
    pub seed: u64,
    /// The client encoding is not UTF-8: pgwarden's own error text must be ASCII.
    pub ascii_only: bool,
}

impl Plan {
    /// pgwarden owns the lock_timeout, so a lock timeout is its to retry (a lock timeout the
    /// client set itself is the client's answer).
    pub fn retries(&self) -> bool {
        self.lock_timeout_ms.is_some_and(|ms| ms > 0)
    }

    /// The strongest lock and its relation, for messages.
    pub fn main_target(&self) -> Option<&(RelName, LockMode)> {
        self.targets.iter().max_by_key(|(_, m)| *m)
    }
}

/// What the session knows when it asks for a plan.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    pub in_transaction: bool,
    /// The session's lock_timeout / statement_timeout as the server reported them just
    /// before (role and database defaults and the client's own SETs included); `None` unknown.
    pub lock_timeout_ms: Option<u64>,
    pub statement_timeout_ms: Option<u64>,
    pub created_in_transaction: &'a [ObjectName],
    pub ascii_only: bool,
    pub seed: u64,
}

/// The plan for one statement, or `None` when pgwarden has nothing to set for it (no lock on
/// an existing relation, or the session's own timeouts already are what pgwarden would use).
pub fn plan(f: &StatementFacts, cfg: &ExecuteConfig, s: Situation<'_>) -> Option<Plan> {
    if !cfg.enabled {
        return None;
    }
    let targets: Vec<(RelName, LockMode)> = f
        .locks
        .iter()
        .filter(|(t, _)| !s.created_in_transaction.iter().any(|c| c.same_as(t)))
        .map(|(t, m)| {
            (
                RelName {
                    schema: t.schema.clone(),
                    name: t.name.clone(),
                },
                *m,
            )
        })
        .collect();
    let strongest = targets.iter().map(|(_, m)| *m).max()?;
    let class = if strongest.blocks_writes() && !f.flags.concurrently {
        Class::Quick
    } else {
        Class::Concurrent
    };
    let (lock, stmt) = match class {
        Class::Quick => (cfg.quick_lock_timeout, cfg.quick_statement_timeout),
        Class::Concurrent => (
            cfg.concurrent_lock_timeout,
            cfg.concurrent_statement_timeout,
        ),
    };
    let lock_timeout_ms = effective(s.lock_timeout_ms, ms(lock), ms(cfg.max_client_lock_timeout));
    let statement_timeout_ms = effective(
        s.statement_timeout_ms,
        ms(stmt),
        ms(cfg.max_client_statement_timeout),
    );
    if lock_timeout_ms.is_none() && statement_timeout_ms.is_none() {
        return None;
    }
    Some(Plan {
        class,
        in_transaction: s.in_transaction,
        lock_timeout_ms,
        statement_timeout_ms,
        targets,
        created_in_transaction: s.created_in_transaction.to_vec(),
        created_oids: Vec::new(),
        retry_budget: cfg.retry_budget,
        backoff_initial: cfg.backoff_initial,
        backoff_max: cfg.backoff_max,
        seed: s.seed,
        ascii_only: s.ascii_only,
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The value pgwarden sets, or `None` to keep the session's: a non-zero value the client (or
/// its role/database defaults) chose is kept up to the ceiling (0 = no ceiling); 0, unknown
/// or above the ceiling gets the class value, unless that is what is in force already.
fn effective(current: Option<u64>, class: u64, ceiling: u64) -> Option<u64> {
    match current {
        Some(c) if c > 0 && (ceiling == 0 || c <= ceiling) => None,
        Some(c) if c == class => None,
        _ => Some(class),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{analyze, AnalysisContext};

    fn facts(sql: &str) -> StatementFacts {
        let a = analyze(sql, &AnalysisContext::default());
        a.statements[0].facts().cloned().expect("facts")
    }

    fn situation(lock: Option<u64>, stmt: Option<u64>) -> Situation<'static> {
        Situation {
            in_transaction: true,
            lock_timeout_ms: lock,
            statement_timeout_ms: stmt,
            created_in_transaction: &[],
            ascii_only: false,
            seed: 1,
        }
    }

    #[test]
    fn classes_and_values() {
        let cfg = ExecuteConfig::default();
        let p = plan(
            &facts("ALTER TABLE orders ADD COLUMN note text"),
            &cfg,
            situation(Some(0), Some(0)),
        )
        .unwrap();
        assert_eq!(p.class, Class::Quick);
        assert_eq!(p.lock_timeout_ms, Some(1000));
        assert_eq!(p.statement_timeout_ms, Some(30_000));
        assert!(p.retries());
        assert_eq!(p.main_target().unwrap().0.name, "orders");

        // Concurrent builds wait for older transactions: nothing to set on a default session.
        let f = facts("CREATE INDEX CONCURRENTLY i ON orders (a)");
        assert!(plan(&f, &cfg, situation(Some(0), Some(0))).is_none());
        // ... but a session-wide short lock_timeout above the ceiling is replaced by 0.
        let p = plan(&f, &cfg, situation(Some(60_000), Some(0))).unwrap();
        assert_eq!(p.class, Class::Concurrent);
        assert_eq!(p.lock_timeout_ms, Some(0));
        assert!(!p.retries());
        let v = plan(
            &facts("ALTER TABLE orders VALIDATE CONSTRAINT c"),
            &cfg,
            situation(Some(0), Some(0)),
        );
        assert!(v.is_none(), "{v:?}");
    }

    #[test]
    fn client_values_within_the_ceiling_are_kept() {
        let cfg = ExecuteConfig::default();
        let f = facts("ALTER TABLE orders ADD COLUMN note text");
        let p = plan(&f, &cfg, situation(Some(2000), Some(0))).unwrap();
        assert_eq!(p.lock_timeout_ms, None, "client's 2s kept");
        assert!(!p.retries(), "the client's own lock timeout is not retried");
        assert_eq!(p.statement_timeout_ms, Some(30_000));
        let p = plan(&f, &cfg, situation(Some(10_000), Some(5000))).unwrap();
        assert_eq!(p.lock_timeout_ms, Some(1000), "10s is above the 3s ceiling");
        assert_eq!(p.statement_timeout_ms, None);
        assert!(plan(&f, &cfg, situation(Some(2000), Some(5000))).is_none());
        // Unknown (no lookup): pgwarden sets its own and restores what it reads.
        let p = plan(&f, &cfg, situation(None, None)).unwrap();
        assert_eq!(p.lock_timeout_ms, Some(1000));
    }

    #[test]
    fn tables_created_in_the_transaction_need_nothing() {
        let cfg = ExecuteConfig::default();
        let created = [ObjectName::new(None, "fresh")];
        let s = Situation {
            created_in_transaction: &created,
            ..situation(Some(0), Some(0))
        };
        assert!(plan(&facts("ALTER TABLE fresh ADD COLUMN b int"), &cfg, s).is_none());
        let off = ExecuteConfig {
            enabled: false,
            ..ExecuteConfig::default()
        };
        assert!(plan(
            &facts("ALTER TABLE orders ADD COLUMN note text"),
            &off,
            situation(Some(0), Some(0))
        )
        .is_none());
    }
}
