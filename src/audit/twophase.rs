//! Two-phase commit across sessions: which audited statements a prepared transaction holds,
//! by gid, so the COMMIT/ROLLBACK PREPARED that decides it — from any session of the same
//! pgwarden process — can write their fate.
//!
//! What is knowable: a `PREPARE TRANSACTION` through pgwarden is recorded with its gid; a
//! later COMMIT/ROLLBACK PREPARED through *any* pgwarden session writes the outcome, joined to
//! the preparing session's statements here (same process) or, after a restart, by gid in
//! `pgwarden audit report`. What is not: a prepared transaction finished directly on the
//! server, by another tool or another pgwarden with another log, stays `prepared` in this log.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::record::MigrationInTx;

/// Prepared transactions kept at once. The server's own limit (`max_prepared_transactions`)
/// is usually far lower; the bound only matters for gids finished outside pgwarden, which
/// would otherwise stay here for ever. The oldest is forgotten first (the report still joins
/// it by gid).
const MAX_PREPARED: usize = 4096;

/// What a prepared transaction held.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedTx {
    /// The session that prepared it.
    pub session_id: String,
    pub seqs: Vec<u64>,
    pub migrations: Vec<MigrationInTx>,
}

/// Per-process registry (shared by every session through the audit handle).
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_gid: HashMap<String, PreparedTx>,
    order: VecDeque<String>,
}

impl Registry {
    /// A transaction was prepared with `gid`.
    pub fn prepared(&self, gid: &str, tx: PreparedTx) {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if st.by_gid.insert(gid.to_string(), tx).is_none() {
            st.order.push_back(gid.to_string());
        }
        while st.order.len() > MAX_PREPARED {
            if let Some(old) = st.order.pop_front() {
                st.by_gid.remove(&old);
            }
        }
    }

    /// COMMIT/ROLLBACK PREPARED `gid` succeeded: what it held, if this process prepared it.
    pub fn finished(&self, gid: &str) -> Option<PreparedTx> {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let tx = st.by_gid.remove(gid)?;
        st.order.retain(|g| g != gid);
        Some(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_returns_what_was_prepared_once() {
        let r = Registry::default();
        let tx = PreparedTx {
            session_id: "s-1".into(),
            seqs: vec![2, 3],
            migrations: Vec::new(),
        };
        r.prepared("g", tx.clone());
        assert_eq!(r.finished("other"), None);
        assert_eq!(r.finished("g"), Some(tx));
        assert_eq!(r.finished("g"), None);
    }

    #[test]
    fn bounded() {
        let r = Registry::default();
        for i in 0..MAX_PREPARED + 10 {
            r.prepared(
                &i.to_string(),
                PreparedTx {
                    session_id: "s".into(),
                    seqs: vec![],
                    migrations: vec![],
                },
            );
        }
        assert!(r.finished("0").is_none());
        assert!(r.finished(&(MAX_PREPARED + 9).to_string()).is_some());
    }
}
