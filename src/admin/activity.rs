//! What every session is doing now, for the admin listener's `/activity` view.
//!
//! Each session registers a [`SessionActivity`] when it starts and drops it when it ends. The
//! forwarding loop updates it only where something changes: the transaction status when a
//! ReadyForQuery carries a different one (one relaxed swap otherwise), the backend pid and
//! application_name when the server reports them, and the DDL statement in flight from the
//! enforcer's turn until the ReadyForQuery that answers it.
//!
//! Blockers: pgwarden holds no credentials and asks the server nothing on a side connection,
//! so it cannot read `pg_locks`. What it does know is every session it proxies: a DDL
//! statement's *possible blockers* are the other sessions on the same database that are inside
//! a transaction which began before the statement was sent (an open transaction that read or
//! wrote the table holds a lock the statement's ACCESS EXCLUSIVE/SHARE lock waits for), and
//! earlier DDL in flight there. Sessions connected to PostgreSQL directly are invisible to
//! pgwarden; the view gives the backend pid for `pg_blocking_pids(pid)`.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use crate::proxy::hook::TxStatus;

/// Every live session of one proxy.
#[derive(Debug, Default)]
pub struct Activity {
    sessions: Mutex<BTreeMap<u64, Arc<SessionActivity>>>,
}

/// One session, as the view shows it.
#[derive(Debug)]
pub struct SessionActivity {
    id: u64,
    user: String,
    database: String,
    client: String,
    started: Instant,
    started_at: SystemTime,
    application_name: Mutex<String>,
    backend_pid: AtomicI32,
    tx: AtomicU8,
    tx_since: Mutex<Option<Instant>>,
    ddl: Mutex<Option<Ddl>>,
    /// A DDL statement has been forwarded: the next ReadyForQuery with nothing pending ends it.
    ddl_armed: AtomicBool,
}

/// The DDL statement a session is running.
#[derive(Debug, Clone)]
struct Ddl {
    excerpt: String,
    since: Instant,
    phase: &'static str,
    /// (table, lock mode) the analysis says the statement takes.
    locks: Vec<(String, &'static str)>,
    kind: Option<String>,
    decision: Option<&'static str>,
    rules: Vec<String>,
    /// Set by safe execution (issue 10) when it retries a lock wait.
    attempt: Option<u32>,
    /// Who held a conflicting lock when pgwarden's lock_timeout last fired, as the server
    /// answered (pg_locks + pg_stat_activity on the session's own connection).
    server_blockers: Vec<crate::execute::Blocker>,
    /// How long that attempt waited for its lock.
    last_wait_ms: Option<u64>,
    /// While pgwarden sleeps before the next attempt.
    backoff_until: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain values: a panic elsewhere leaves nothing half-updated that matters.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn tx_code(s: TxStatus) -> u8 {
    match s {
        TxStatus::Idle => 0,
        TxStatus::InTransaction => 1,
        TxStatus::Failed => 2,
    }
}

impl Activity {
    /// Registers a session; it leaves the view when the returned slot is dropped.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        user: &str,
        database: &str,
        client: &str,
        application_name: &str,
    ) -> Slot {
        let s = Arc::new(SessionActivity {
            id,
            user: user.to_owned(),
            database: database.to_owned(),
            client: client.to_owned(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            application_name: Mutex::new(application_name.to_owned()),
            backend_pid: AtomicI32::new(0),
            tx: AtomicU8::new(0),
            tx_since: Mutex::new(None),
            ddl: Mutex::new(None),
            ddl_armed: AtomicBool::new(false),
        });
        lock(&self.sessions).insert(id, s.clone());
        crate::metrics::session_started();
        Slot(Some((self.clone(), s)))
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `/activity` document: sessions, and DDL in flight with its possible blockers.
    pub fn to_json(&self) -> Value {
        let now = Instant::now();
        let all: Vec<Arc<SessionActivity>> = lock(&self.sessions).values().cloned().collect();
        let snaps: Vec<Snap> = all.iter().map(|s| s.snap()).collect();
        let sessions: Vec<Value> = snaps.iter().map(|s| s.to_json(now)).collect();
        let mut ddl = Vec::new();
        for s in &snaps {
            let Some(d) = &s.ddl else { continue };
            let blockers: Vec<Value> = snaps
                .iter()
                .filter(|o| o.id != s.id && o.database == s.database)
                .filter_map(|o| {
                    let why = if let Some(od) = o.ddl.as_ref().filter(|od| od.since < d.since) {
                        format!(
                            "its own DDL has been in flight for {:.3}s",
                            secs(now, od.since)
                        )
                    } else if let Some(t) = o.tx_since.filter(|t| *t <= d.since) {
                        format!(
                            "{} since {:.3}s, before this statement was sent",
                            o.state(),
                            secs(now, t)
                        )
                    } else {
                        return None;
                    };
                    Some(json!({
                        "session": o.id,
                        "backend_pid": o.pid_json(),
                        "user": o.user,
                        "application_name": o.application_name,
                        "client_addr": o.client,
                        "state": o.state(),
                        "why": why,
                    }))
                })
                .collect();
            ddl.push(json!({
                "session": s.id,
                "backend_pid": s.pid_json(),
                "user": s.user,
                "database": s.database,
                "application_name": s.application_name,
                "statement": d.excerpt,
                "kind": d.kind,
                "phase": match d.backoff_until {
                    Some(t) if t > now => "backing off after a lock timeout; retries when it ends",
                    _ => d.phase,
                },
                "running_seconds": secs(now, d.since),
                "locks": d.locks.iter().map(|(t, m)| json!({
                    "table": t,
                    "mode": m,
                })).collect::<Vec<_>>(),
                "decision": d.decision,
                "rules": d.rules,
                "attempt": d.attempt,
                "last_lock_wait_ms": d.last_wait_ms,
                "blockers_seen_by_server": d.server_blockers,
                "possible_blockers": blockers,
                "blockers_note": "sessions through this pgwarden on the same database inside a \
                    transaction that began before this statement, or with earlier DDL in flight; \
                    pgwarden holds no credentials and cannot read pg_locks: sessions connected \
                    to PostgreSQL directly are not listed (ask the server: \
                    SELECT pg_blocking_pids(backend_pid)). When pgwarden's own lock_timeout \
                    fires it asks the server, and blockers_seen_by_server lists who held a \
                    conflicting lock then (any session, direct ones included)",
            }));
        }
        json!({ "sessions": sessions, "ddl_in_flight": ddl })
    }
}

fn secs(now: Instant, t: Instant) -> f64 {
    (now.saturating_duration_since(t).as_secs_f64() * 1000.0).round() / 1000.0
}

/// A copy of one session's fields, taken under its locks one at a time.
struct Snap {
    id: u64,
    user: String,
    database: String,
    client: String,
    application_name: String,
    backend_pid: i32,
    tx: u8,
    started: Instant,
    started_at: SystemTime,
    tx_since: Option<Instant>,
    ddl: Option<Ddl>,
}

impl SessionActivity {
    fn snap(&self) -> Snap {
        Snap {
            id: self.id,
            user: self.user.clone(),
            database: self.database.clone(),
            client: self.client.clone(),
            application_name: lock(&self.application_name).clone(),
            backend_pid: self.backend_pid.load(Ordering::Relaxed),
            tx: self.tx.load(Ordering::Relaxed),
            started: self.started,
            started_at: self.started_at,
            tx_since: *lock(&self.tx_since),
            ddl: lock(&self.ddl).clone(),
        }
    }
}

impl Snap {
    fn state(&self) -> &'static str {
        match (self.tx, self.ddl.is_some()) {
            (_, true) => "active (DDL)",
            (1, _) => "idle in transaction",
            (2, _) => "idle in transaction (aborted)",
            _ => "idle",
        }
    }

    fn pid_json(&self) -> Value {
        if self.backend_pid == 0 {
            Value::Null
        } else {
            json!(self.backend_pid)
        }
    }

    fn to_json(&self, now: Instant) -> Value {
        let unix = self
            .started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        json!({
            "session": self.id,
            "backend_pid": self.pid_json(),
            "user": self.user,
            "database": self.database,
            "application_name": self.application_name,
            "client_addr": self.client,
            "state": self.state(),
            "connected_at_unix": (unix * 1000.0).round() / 1000.0,
            "connected_seconds": secs(now, self.started),
            "transaction_seconds": self.tx_since.map(|t| secs(now, t)),
        })
    }
}

/// A session's entry in the view (or nothing, for unit tests of the session loop).
#[derive(Debug)]
pub struct Slot(Option<(Arc<Activity>, Arc<SessionActivity>)>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((all, s)) = self.0.take() {
            lock(&all.sessions).remove(&s.id);
            crate::metrics::session_ended();
        }
    }
}

impl Slot {
    /// A slot that is in no view.
    pub fn detached() -> Slot {
        Slot(None)
    }

    fn get(&self) -> Option<&SessionActivity> {
        self.0.as_ref().map(|(_, s)| &**s)
    }

    /// A ReadyForQuery: the status, and whether every request is answered now. One relaxed
    /// swap when nothing changed and no DDL is in flight.
    #[inline]
    pub fn ready_for_query(&self, status: TxStatus, pending: u32) {
        let Some(s) = self.get() else { return };
        let new = tx_code(status);
        let old = s.tx.swap(new, Ordering::Relaxed);
        if old != new {
            let mut since = lock(&s.tx_since);
            match (old, new) {
                (_, 0) => *since = None,
                (0, _) => *since = Some(Instant::now()),
                _ => {}
            }
        }
        if pending == 0 && s.ddl_armed.load(Ordering::Relaxed) {
            s.ddl_armed.store(false, Ordering::Relaxed);
            *lock(&s.ddl) = None;
        }
    }

    pub fn backend_pid(&self, pid: i32) {
        if let Some(s) = self.get() {
            s.backend_pid.store(pid, Ordering::Relaxed);
        }
    }

    pub fn application_name(&self, name: &str) {
        if let Some(s) = self.get() {
            *lock(&s.application_name) = name.to_owned();
        }
    }

    /// The enforcer took a DDL/utility text.
    pub fn ddl_begin(&self, sql: &str) {
        if let Some(s) = self.get() {
            *lock(&s.ddl) = Some(Ddl {
                excerpt: crate::enforce::raise::excerpt(sql),
                since: Instant::now(),
                phase: "analysing",
                locks: Vec::new(),
                kind: None,
                decision: None,
                rules: Vec::new(),
                attempt: None,
                server_blockers: Vec::new(),
                last_wait_ms: None,
                backoff_until: None,
            });
        }
    }

    /// What the analysis says the text locks.
    pub fn ddl_analysed(&self, analysis: &crate::sql::Analysis) {
        let Some(s) = self.get() else { return };
        let mut locks = Vec::new();
        let mut kind = None;
        for st in &analysis.statements {
            if let Some(f) = st.facts() {
                kind.get_or_insert_with(|| crate::metrics::kind_label(f.kind.label()));
                for (t, m) in &f.locks {
                    locks.push((t.to_string(), m.sql_name()));
                }
            }
        }
        if let Some(d) = lock(&s.ddl).as_mut() {
            d.locks = locks;
            d.kind = kind;
        }
    }

    pub fn ddl_phase(&self, phase: &'static str) {
        if let Some(s) = self.get() {
            if let Some(d) = lock(&s.ddl).as_mut() {
                d.phase = phase;
            }
        }
    }

    /// The decision, before the statement (or its replacement) is sent.
    pub fn ddl_decided(&self, decision: &'static str, rules: &[String]) {
        let Some(s) = self.get() else { return };
        if let Some(d) = lock(&s.ddl).as_mut() {
            d.decision = Some(decision);
            d.rules = rules.to_vec();
            d.phase = "sent to the server: running or waiting for its lock";
        }
    }

    /// The statement is on its way (the request is counted in `pending`).
    pub fn ddl_forwarded(&self) {
        if let Some(s) = self.get() {
            if lock(&s.ddl).is_some() {
                s.ddl_armed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Attempt `attempt` of the statement in flight hit pgwarden's lock_timeout after
    /// waiting `waited_ms`; the server named `blockers`; the next attempt follows `backoff`.
    pub fn ddl_lock_timeout(
        &self,
        attempt: u32,
        waited_ms: u64,
        backoff: std::time::Duration,
        blockers: &[crate::execute::Blocker],
    ) {
        let Some(s) = self.get() else { return };
        if let Some(d) = lock(&s.ddl).as_mut() {
            d.attempt = Some(attempt);
            d.last_wait_ms = Some(waited_ms);
            d.server_blockers = blockers.to_vec();
            d.backoff_until = Some(Instant::now() + backoff);
        }
    }

    /// Safe execution's retry count of the statement in flight (issue 10).
    pub fn ddl_attempt(&self, attempt: u32) {
        if let Some(s) = self.get() {
            if let Some(d) = lock(&s.ddl).as_mut() {
                d.attempt = Some(attempt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_ddl_names_the_open_transaction() {
        let all = Arc::new(Activity::default());
        let blocker = all.register(1, "app", "shop", "127.0.0.1:1", "worker");
        blocker.backend_pid(101);
        blocker.ready_for_query(TxStatus::InTransaction, 0);
        let other_db = all.register(3, "app", "other", "127.0.0.1:3", "x");
        other_db.ready_for_query(TxStatus::InTransaction, 0);
        let mig = all.register(2, "deploy", "shop", "127.0.0.1:2", "alembic");
        mig.ddl_begin("ALTER TABLE orders ADD COLUMN note text");
        mig.ddl_decided("allow", &[]);
        mig.ddl_forwarded();
        let v = all.to_json();
        assert_eq!(v["sessions"].as_array().map(Vec::len), Some(3));
        let d = &v["ddl_in_flight"][0];
        assert_eq!(d["session"], 2);
        let b = d["possible_blockers"].as_array().unwrap();
        assert_eq!(b.len(), 1, "{v}");
        assert_eq!(b[0]["backend_pid"], 101);
        assert_eq!(b[0]["state"], "idle in transaction");
        // The ReadyForQuery answering the DDL ends it.
        mig.ready_for_query(TxStatus::Idle, 0);
        assert_eq!(
            all.to_json()["ddl_in_flight"].as_array().map(Vec::len),
            Some(0)
        );
        drop(blocker);
        assert_eq!(all.len(), 2);
    }
}
