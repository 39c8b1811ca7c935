//! Safe execution: runs one client statement under the timeouts of its class, retries a lock
//! timeout pgwarden caused, and says who held the lock (DESIGN.md "Safe execution", 1–4).
//!
//! # Shape
//! [`Executor`] is a pure state machine, no sockets and no clock: it says "send this" (an
//! [`Action::Send`] of a [`Request`]), is told the whole reply ([`Executor::on_reply`], with
//! the time elapsed since it started), may ask to wait ([`Action::Sleep`], ended by
//! [`Executor::on_woke`] or [`Executor::on_cancel`]) and ends with [`Action::Answer`]: the
//! bytes the client gets as the one answer to its statement. The session only drives it
//! (sends, routes the replies here instead of to the client, sleeps, replays the answer).
//!
//! # The sequence
//! ```text
//! set timeouts (set_config, reads the previous values)  -- SET LOCAL in a transaction
//! [SAVEPOINT pgwarden_lock_retry]                       -- in a transaction
//! the client's statement
//!   ok        -> [RELEASE SAVEPOINT] -> restore -> answer: the statement's reply
//!   55P03 (pgwarden's lock_timeout)
//!             -> [ROLLBACK TO SAVEPOINT] -> who blocks? [locks this transaction holds]
//!             -> holds a write-blocking lock from an earlier statement: give up at once
//!             -> budget left: back off (jitter), the statement again
//!             -> else give up
//!   other error -> (outside a transaction: restore) -> answer: the statement's reply
//! give up: (outside: restore) -> DO block raising 55P03 with what happened -> answer
//! ```
//! Giving up raises the error on the server, so the client's transaction is left aborted
//! exactly as a direct 55P03 leaves it, and nothing of the statement stays (its savepoint was
//! rolled back). The answer then starts with what the server acknowledged of the client's
//! request before the lock timeout (ParseComplete, BindComplete of an extended-protocol
//! request), as a direct run's error would. "The client's statement" is whatever the session
//! sends for [`Request::Client`]: a Query, an extended-protocol request up to its Sync
//! (`proxy/session/execute_extended.rs`), or one statement of a split multi-statement Query
//! (`proxy/session/execute_batch.rs`). A later step type (completion steps after COMMIT, issue 16) is another
//! [`Phase`] and another [`Request`]: the session's driver does not change.
use std::time::Duration;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

pub mod blockers;
pub mod plan;
pub mod reply;
pub mod wire;

pub use blockers::{Blocker, HeldLock};
pub use plan::{plan, Class, Plan, Situation};
pub use reply::{Feed, Reply};
pub use wire::Request;

use crate::enforce::raise::{excerpt, raise_with_sqlstate, Rejection};

/// SQLSTATE of a lock timeout, kept for the error pgwarden gives up with.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE of a cancelled statement.
pub const QUERY_CANCELED: &str = "57014";

/// What the session does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this and route its reply (up to ReadyForQuery) to [`Executor::on_reply`].
    Send(Request),
    /// Wait this long, then [`Executor::on_woke`]; a client cancel calls
    /// [`Executor::on_cancel`] instead.
    Sleep(Duration),
    /// Done: these frames (ending with a ReadyForQuery) are the client's answer.
    Answer(BytesMut),
}

/// One try of the client's statement, as the log and the audit record show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1, 2, ...
    pub number: u32,
    /// When it started, in ms since pgwarden began with the statement.
    pub started_ms: u64,
    /// How long the server worked on (or waited for) it, in ms.
    pub waited_ms: u64,
    /// The lock_timeout it ran under when pgwarden set one (ms).
    pub lock_timeout_ms: Option<u64>,
    /// `ok`, `lock_timeout`, or the SQLSTATE of another error.
    pub outcome: String,
    /// Who held a conflicting lock after a lock timeout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// The wait before the next attempt (ms), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
}

/// Where the executor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Set,
    Savepoint,
    Statement,
    Release,
    /// `recovering`: rolling back a failed blocker query, not a failed attempt.
    RollbackTo {
        recovering: bool,
    },
    Inspect,
    Sleeping,
    Restore,
    Raise,
    Done,
}

/// Why pgwarden stopped retrying.
enum GiveUp {
    Budget,
    HoldsLocks(Vec<HeldLock>),
    Cancelled,
}

/// Runs one client statement; see the module docs.
#[derive(Debug)]
pub struct Executor {
    plan: Plan,
    /// The statement's kind for messages (`ALTER TABLE`).
    kind: String,
    phase: Phase,
    attempts: Vec<Attempt>,
    /// lock_timeout and statement_timeout as they were before pgwarden set them.
    old: Option<(Option<String>, Option<String>)>,
    /// The statement's reply, handed on after the restore.
    answer: Option<Reply>,
    /// The final error to raise after the restore.
    raise: Option<String>,
    statement_started: Duration,
    /// The last blocker query failed: why (said in the final error).
    inspect_error: Option<String>,
    held: Vec<HeldLock>,
    /// What the server answered for the client's request before the last attempt's lock
    /// timeout (ParseComplete, BindComplete, NoData of an extended-protocol request): the
    /// answer pgwarden gives up with starts with it, as a direct run's error would.
    before_error: BytesMut,
    rng: u64,
    /// Restores sent again after a stray cancel.
    restore_retries: u32,
}

/// How often pgwarden sends one of its own statements again after a stray cancel (the
/// executor's restore here, the rewrite driver's clean-up in `proxy::session::rewrite`).
pub const STRAY_CANCEL_RETRIES: u32 = 3;

impl Executor {
    pub fn new(plan: Plan, kind: &str) -> Executor {
        let rng = plan.seed | 1;
        Executor {
            plan,
            kind: kind.to_string(),
            phase: Phase::Set,
            attempts: Vec::new(),
            old: None,
            answer: None,
            raise: None,
            statement_started: Duration::ZERO,
            inspect_error: None,
            held: Vec::new(),
            before_error: BytesMut::new(),
            rng,
            restore_retries: 0,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The first step: set the timeouts (reading the previous values).
    pub fn start(&mut self) -> Action {
        self.phase = Phase::Set;
        let v = |ms: Option<u64>| ms.map(|m| format!("{m}ms"));
        Action::Send(Request::Extended(vec![(
            wire::SET_SQL,
            vec![
                v(self.plan.lock_timeout_ms),
                v(self.plan.statement_timeout_ms),
                Some(self.local().into()),
            ],
        )]))
    }

    fn local(&self) -> &'static str {
        if self.plan.in_transaction {
            "true"
        } else {
            "false"
        }
    }

    /// The whole reply to the last [`Action::Send`]; `now` = time since [`Executor::start`].
    pub fn on_reply(&mut self, reply: Reply, now: Duration) -> Action {
        match self.phase {
            Phase::Set => {
                if reply.error.is_some() {
                    return self.own_failed(reply);
                }
                let row = reply
                    .results
                    .first()
                    .and_then(|r| r.rows.first())
                    .cloned()
                    .unwrap_or_default();
                self.old = Some((
                    row.first().cloned().flatten(),
                    row.get(1).cloned().flatten(),
                ));
                if self.plan.in_transaction {
                    self.phase = Phase::Savepoint;
                    Action::Send(Request::Simple(wire::SAVEPOINT))
                } else {
                    self.send_statement(now)
                }
            }
            Phase::Savepoint => {
                if reply.error.is_some() {
                    return self.own_failed(reply);
                }
                self.send_statement(now)
            }
            Phase::Statement => self.statement_done(reply, now),
            Phase::Release => {
                if reply.error.is_some() {
                    return self.own_failed(reply);
                }
                self.restore()
            }
            Phase::RollbackTo { recovering } => {
                if reply.error.is_some() {
                    return self.own_failed(reply);
                }
                if recovering {
                    self.after_inspect(now)
                } else {
                    self.inspect()
                }
            }
            Phase::Inspect => {
                if let Some(e) = &reply.error {
                    self.inspect_error = Some(format!("{} ({})", e.message, e.code));
                    if self.plan.in_transaction {
                        // The failed query aborted pgwarden's savepoint, not the client's work:
                        // rolling back to it again leaves the transaction as it was.
                        self.phase = Phase::RollbackTo { recovering: true };
                        return Action::Send(Request::Simple(wire::ROLLBACK_TO));
                    }
                } else {
                    self.read_inspection(&reply);
                }
                self.after_inspect(now)
            }
            Phase::Restore => {
                if reply.code() == Some(QUERY_CANCELED)
                    && !self.plan.in_transaction
                    && self.restore_retries < STRAY_CANCEL_RETRIES
                {
                    // PostgreSQL sends a cancel's SIGINT twice (to the backend, then to its
                    // process group): the second can arrive after the statement it cancelled
                    // and hit this restore. Outside a block the failed restore changed
                    // nothing; sent again, the session gets its own timeouts back.
                    self.restore_retries += 1;
                    return self.restore();
                }
                if let Some(raise) = self.raise.take() {
                    self.phase = Phase::Raise;
                    return Action::Send(Request::Raise(raise));
                }
                self.phase = Phase::Done;
                match self.answer.take() {
                    Some(statement) => {
                        // The statement's own frames, then the ReadyForQuery after the
                        // restore: the session's state as the client will find it.
                        let mut out = statement.frames;
                        out.extend_from_slice(&reply.ready);
                        Action::Answer(out)
                    }
                    None => Action::Answer(reply.into_answer()),
                }
            }
            Phase::Raise => {
                self.phase = Phase::Done;
                let mut out = std::mem::take(&mut self.before_error);
                out.extend_from_slice(&reply.into_answer());
                Action::Answer(out)
            }
            Phase::Sleeping | Phase::Done => self.pass_on(reply),
        }
    }

    /// The backoff wait is over: the next attempt.
    pub fn on_woke(&mut self, now: Duration) -> Action {
        self.send_statement(now)
    }

    /// The client cancelled its statement. Between attempts this ends the retrying with the
    /// usual 57014; while a request is in flight the server has the cancel, and its answer
    /// arrives as a reply (`None` here).
    pub fn on_cancel(&mut self, _now: Duration) -> Option<Action> {
        (self.phase == Phase::Sleeping).then(|| self.give_up(GiveUp::Cancelled))
    }

    fn send_statement(&mut self, now: Duration) -> Action {
        self.phase = Phase::Statement;
        self.statement_started = now;
        self.attempts.push(Attempt {
            number: self.attempts.len() as u32 + 1,
            started_ms: millis(now),
            waited_ms: 0,
            lock_timeout_ms: self.plan.lock_timeout_ms,
            outcome: String::new(),
            blockers: Vec::new(),
            backoff_ms: None,
        });
        Action::Send(Request::Client)
    }

    fn statement_done(&mut self, reply: Reply, now: Duration) -> Action {
        let lock_timeout = reply.code() == Some(LOCK_NOT_AVAILABLE) && self.plan.retries();
        if let Some(a) = self.attempts.last_mut() {
            a.waited_ms = millis(now.saturating_sub(self.statement_started));
            a.outcome = match reply.code() {
                None => "ok".into(),
                Some(_) if lock_timeout => "lock_timeout".into(),
                Some(code) => code.into(),
            };
        }
        if reply.error.is_none() {
            self.answer = Some(reply);
            if self.plan.in_transaction {
                self.phase = Phase::Release;
                return Action::Send(Request::Simple(wire::RELEASE));
            }
            return self.restore();
        }
        if lock_timeout {
            self.before_error = reply.frames_before_error();
            if self.plan.in_transaction {
                self.phase = Phase::RollbackTo { recovering: false };
                return Action::Send(Request::Simple(wire::ROLLBACK_TO));
            }
            return self.inspect();
        }
        // Another error (or the client's own lock timeout): the client's answer as it is.
        // In a transaction the server has aborted it, and with it pgwarden's SET LOCAL.
        if self.plan.in_transaction {
            return self.pass_on(reply);
        }
        self.answer = Some(reply);
        self.restore()
    }

    /// Hands a reply on as the client's answer and stops (a step of pgwarden's failed: the
    /// client learns it from that step's own error, in the state the server is in).
    fn pass_on(&mut self, reply: Reply) -> Action {
        self.phase = Phase::Done;
        Action::Answer(reply.into_answer())
    }

    /// A step of pgwarden's own failed: the client learns it from that step's error, without
    /// the acknowledgements of pgwarden's own Parse/Bind.
    fn own_failed(&mut self, reply: Reply) -> Action {
        self.phase = Phase::Done;
        Action::Answer(reply.into_error_answer())
    }

    fn inspect(&mut self) -> Action {
        self.phase = Phase::Inspect;
        let mut queries: Vec<(&'static str, Vec<Option<String>>)> = self
            .plan
            .targets
            .iter()
            .map(|(rel, mode)| {
                (
                    blockers::BLOCKERS_SQL,
                    vec![
                        rel.schema.clone(),
                        Some(rel.name.clone()),
                        Some(blockers::conflicting_modes(*mode).into()),
                    ],
                )
            })
            .collect();
        if self.plan.in_transaction {
            queries.push((blockers::OWN_LOCKS_SQL, Vec::new()));
        }
        Action::Send(Request::Extended(queries))
    }

    fn read_inspection(&mut self, reply: &Reply) {
        let n = self.plan.targets.len();
        let mut found: Vec<Blocker> = Vec::new();
        for rs in reply.results.iter().take(n) {
            for b in blockers::parse(rs) {
                if !found.iter().any(|f| f.pid == b.pid) {
                    found.push(b);
                }
            }
        }
        if let Some(a) = self.attempts.last_mut() {
            a.blockers = found;
        }
        if self.plan.in_transaction {
            let created = &self.plan.created_in_transaction;
            self.held = reply
                .results
                .get(n)
                .map(blockers::parse_held)
                .unwrap_or_default()
                .into_iter()
                .filter(|h| {
                    let name = crate::sql::ObjectName::new(Some(&h.schema), &h.name);
                    !created.iter().any(|c| c.same_as(&name))
                        && !h.oid.is_some_and(|o| self.plan.created_oids.contains(&o))
                })
                .collect();
        }
    }

    fn after_inspect(&mut self, now: Duration) -> Action {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            return self.give_up(GiveUp::HoldsLocks(held));
        }
        let delay = self.next_delay();
        let next_end = now + delay + Duration::from_millis(self.plan.lock_timeout_ms.unwrap_or(0));
        if next_end > self.plan.retry_budget {
            return self.give_up(GiveUp::Budget);
        }
        if let Some(a) = self.attempts.last_mut() {
            a.backoff_ms = Some(millis(delay));
        }
        self.phase = Phase::Sleeping;
        Action::Sleep(delay)
    }

    /// Exponential backoff with "equal jitter": half the step fixed, half random, so two
    /// migrations retrying against the same blocker do not retry in lockstep.
    fn next_delay(&mut self) -> Duration {
        let n = self.attempts.len().saturating_sub(1).min(30) as u32;
        let step = self
            .plan
            .backoff_initial
            .saturating_mul(1u32 << n)
            .min(self.plan.backoff_max);
        let half = step / 2;
        let jitter_ms = millis(half);
        let r = if jitter_ms == 0 {
            0
        } else {
            self.random() % (jitter_ms + 1)
        };
        half + Duration::from_millis(r)
    }

    /// splitmix64: deterministic from the plan's seed (tests), uniform enough for jitter.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn restore(&mut self) -> Action {
        self.phase = Phase::Restore;
        let (lock, stmt) = self.old.clone().unwrap_or_default();
        Action::Send(Request::Extended(vec![(
            wire::RESTORE_SQL,
            vec![lock, stmt, Some(self.local().into())],
        )]))
    }

    fn give_up(&mut self, why: GiveUp) -> Action {
        let (code, rejection) = self.final_error(why);
        let sql = raise_with_sqlstate(&rejection, code, self.plan.ascii_only);
        if self.plan.in_transaction {
            // Inside the rolled-back savepoint: the raise aborts the client's transaction, as
            // a direct error would, and takes pgwarden's SET LOCAL with it.
            self.phase = Phase::Raise;
            return Action::Send(Request::Raise(sql));
        }
        self.raise = Some(sql);
        self.restore()
    }

    fn final_error(&self, why: GiveUp) -> (&'static str, Rejection) {
        let (target, mode) = match self.plan.main_target() {
            Some((rel, mode)) => (
                match &rel.schema {
                    Some(s) => format!("{s}.{}", rel.name),
                    None => rel.name.clone(),
                },
                mode.sql_name(),
            ),
            None => ("its table".into(), "its"),
        };
        let tries = self.attempts.len();
        let spent = self
            .attempts
            .last()
            .map(|a| a.started_ms + a.waited_ms)
            .unwrap_or(0) as f64
            / 1000.0;
        let lock_timeout = self.plan.lock_timeout_ms.unwrap_or(0);
        let blockers = self.blocker_detail();
        let times = if tries == 1 { "time" } else { "times" };
        match why {
            GiveUp::Budget => (
                LOCK_NOT_AVAILABLE,
                Rejection {
                    message: format!(
                        "pgwarden: {} could not get its {mode} lock on {target}: tried {tries} {times} \
                         over {spent:.1} s (lock_timeout {lock_timeout} ms each, backing off in \
                         between) and stopped: another attempt would pass the retry budget of \
                         {} s",
                        self.kind,
                        self.plan.retry_budget.as_secs_f64()
                    ),
                    detail: blockers,
                    hint: format!(
                        "Nothing of the statement was applied. Ask the blocking session to \
                         commit or roll back (or end it with SELECT pg_terminate_backend(pid)), \
                         then run the migration again. Long transactions on {target} block every \
                         migration on it; [execute] retry_budget in pgwarden.toml sets how long \
                         pgwarden keeps trying."
                    ),
                },
            ),
            GiveUp::HoldsLocks(held) => {
                let list: Vec<String> = held
                    .iter()
                    .map(|h| format!("{} on {}.{}", h.mode, h.schema, h.name))
                    .collect();
                (
                    LOCK_NOT_AVAILABLE,
                    Rejection {
                        message: format!(
                            "pgwarden: {} could not get its {mode} lock on {target} within \
                             lock_timeout {lock_timeout} ms, and this transaction already holds \
                             {} from an earlier statement: waiting and retrying while holding it \
                             would keep the application blocked there, so pgwarden did not retry",
                            self.kind,
                            list.join(", ")
                        ),
                        detail: blockers,
                        hint: "Nothing of the statement was applied and the transaction is \
                               aborted. Run each revision in its own transaction (Alembic: \
                               context.configure(..., transaction_per_migration=True) in env.py) \
                               and put statements that lock different busy tables into separate \
                               revisions, so a retry holds no other lock; then run the migration \
                               again."
                            .into(),
                    },
                )
            }
            GiveUp::Cancelled => (
                QUERY_CANCELED,
                Rejection {
                    message: "canceling statement due to user request".into(),
                    detail: format!(
                        "pgwarden was waiting to retry {} on {target} after {tries} {}. {blockers}",
                        self.kind,
                        if tries == 1 { "lock timeout" } else { "lock timeouts" }
                    ),
                    hint: String::new(),
                },
            ),
        }
    }

    /// DETAIL naming the blockers of the last attempt (or why none are named).
    fn blocker_detail(&self) -> String {
        let last = self.attempts.last();
        match last.map(|a| a.blockers.as_slice()) {
            Some(b) if !b.is_empty() => {
                let list: Vec<String> = b.iter().map(Blocker::describe).collect();
                format!("Blocked by: {}.", list.join("; "))
            }
            _ => match &self.inspect_error {
                Some(e) => format!("pgwarden could not ask who held the lock: {e}."),
                None => "No session held a conflicting lock any more when pgwarden looked \
                         (short transactions queued one after another)."
                    .into(),
            },
        }
    }

    /// A statement excerpt for log lines.
    pub fn describe_statement(sql: &str) -> String {
        excerpt(sql)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
