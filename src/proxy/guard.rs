//! The session's enforcement glue: the per-session enforcer, what it is told about the
//! session, and how its decisions are logged and turned into bytes for the client.
//!
//! The session (session.rs) owns the wire: it holds the frame, runs the catalog lookup round
//! trip and sends what this module decides. Keeping the two apart keeps session.rs about bytes.
use bytes::BytesMut;
use tracing::{info, warn};

use crate::audit::record::Decision as AuditDecision;
use crate::enforce::engine::{Enforcement, Prepared, SessionEnforcer, Situation, WireAction};
use crate::enforce::lookup::LiveFacts;
use crate::policy::{Policy, Verdict};
use crate::protocol::errors;
use crate::protocol::TxStatus;

/// A session's [`Guard`], built at its first use. A session that never sends anything the
/// enforcer must look at (an application's connection: DML only) holds no enforcer, no copy
/// of its policy and no strings of its own; its idle memory is what it forwards with. An
/// unbuilt guard answers what a fresh one would: it watches no DML, created nothing, has
/// nothing to summarise.
#[derive(Debug)]
pub(crate) struct LazyGuard {
    /// The startup packet's application_name: the profile is chosen by it, as when the
    /// guard was built at startup (a later `SET application_name` does not change it).
    application_name: Box<str>,
    built: Option<Box<Guard>>,
}

impl LazyGuard {
    pub(crate) fn new(application_name: &str) -> LazyGuard {
        LazyGuard {
            application_name: application_name.into(),
            built: None,
        }
    }

    /// The guard, if something needed it already.
    pub(crate) fn built(&self) -> Option<&Guard> {
        self.built.as_deref()
    }

    /// The guard, built now if this is its first use.
    pub(crate) fn build(
        &mut self,
        live: &super::reload::LivePolicy,
        session_id: u64,
        database: &str,
        user: &str,
    ) -> &mut Guard {
        let app = &self.application_name;
        self.built
            .get_or_insert_with(|| Box::new(Guard::new(live, session_id, database, user, app)))
    }
}

/// One session's enforcer plus what it needs to know about the session.
#[derive(Debug)]
pub(crate) struct Guard {
    enforcer: SessionEnforcer,
    /// The session's `idle_epoch` when the enforcer last looked: a different value means a
    /// transaction ended since, and nothing it created or locked carries over.
    epoch: u64,
    session_id: u64,
    /// How long the last `prepare` took: one analysis sample is prepare + decide.
    prepare_took: std::time::Duration,
    /// The policy in force (SIGHUP swaps it) and the generation the enforcer was built from.
    live: super::reload::LivePolicy,
    generation: u64,
    /// Who the session is, to apply the profiles of a reloaded policy.
    who: (String, String, String),
    /// The last decision, logged and counted by [`Guard::settle`] once the session has had
    /// its say (a multi-step rewrite takes over a refused statement, or refuses one the
    /// enforcer would have rewritten).
    unsettled: Option<Unsettled>,
}

#[derive(Debug)]
struct Unsettled {
    sql: String,
    kind: String,
    enforcement: Enforcement,
}

/// A decision as the session acts on it and the audit log records it.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    /// The text to send instead of the client's, if any.
    pub replace: Option<String>,
    pub decision: AuditDecision,
    /// Ids of the rules behind the decision.
    pub rules: Vec<String>,
    /// (table, rows, bytes) the decision used.
    pub sizes: Vec<(String, u64, u64)>,
    /// Each rule id with the byte range of the statement it fired on (the audit log gives
    /// each statement of a multi-statement Query its own rules).
    pub findings: Vec<(String, std::ops::Range<usize>)>,
    /// What enforce mode would have done (differs from `decision` in warn and dry-run modes).
    pub intended: AuditDecision,
    /// Findings accepted deliberately (`SET LOCAL pgwarden.allow`, `-- pgwarden:allow`): rule,
    /// statement range, reason — for the audit log.
    pub allowed: Vec<(String, std::ops::Range<usize>, String)>,
    /// What pgwarden's EXPLAIN of each data change said (`enforce::estimate`), for the audit.
    pub estimated: Vec<String>,
}

/// What the session needs from the state shared with the server→client side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot<'a> {
    pub tx_status: TxStatus,
    pub idle_epoch: u64,
    pub server_version: &'a str,
    pub client_encoding: &'a str,
    pub standard_conforming_strings: bool,
    /// An Execute since the last Sync: an implicit transaction block (see [`Situation`]).
    pub pipelined: bool,
    /// The settings the server will lex with are the reported ones (`sql::server_lex`).
    pub lex_certain: bool,
    /// The text splits differently under the settings the server may have: fail closed.
    pub unreadable: bool,
}

impl Guard {
    pub(crate) fn new(
        live: &super::reload::LivePolicy,
        session_id: u64,
        database: &str,
        user: &str,
        application_name: &str,
    ) -> Guard {
        let generation = live.generation();
        let policy: &Policy = &live.current();
        Guard {
            live: live.clone(),
            generation,
            who: (database.into(), user.into(), application_name.into()),
            enforcer: SessionEnforcer::new(policy, database, user, application_name),
            epoch: 0,
            session_id,
            prepare_took: std::time::Duration::ZERO,
            unsettled: None,
        }
    }

    /// Brings the enforcer up to date with the session and analyses `sql`.
    pub(crate) fn prepare(&mut self, sql: &str, snap: Snapshot<'_>) -> Prepared {
        let generation = self.live.generation();
        if generation != self.generation {
            // A SIGHUP reload: this statement and the next ones decide with the new policy.
            self.generation = generation;
            let (db, user, app) = &self.who;
            self.enforcer
                .set_policy(&self.live.current(), db, user, app);
        }
        if snap.idle_epoch != self.epoch {
            self.epoch = snap.idle_epoch;
            self.enforcer.ready_for_query(TxStatus::Idle);
        }
        self.enforcer.ready_for_query(snap.tx_status);
        self.enforcer.set_server_version(snap.server_version);
        let started = std::time::Instant::now();
        let p = self.enforcer.prepare(sql, situation(snap));
        self.prepare_took = started.elapsed();
        p
    }

    /// Must this DML text be decided on (a data change on a table the open transaction holds
    /// a write-blocking lock on)? `idle_epoch`/`tx_status`: the session's, now.
    pub(crate) fn watches_dml(
        &self,
        sql: &str,
        idle_epoch: u64,
        tx_status: TxStatus,
        standard_conforming_strings: bool,
    ) -> bool {
        idle_epoch == self.epoch
            && tx_status != TxStatus::Idle
            && self
                .enforcer
                .dml_needs_attention(sql, standard_conforming_strings)
    }

    /// The next decision judges the statement under the timeouts pgwarden will set for it.
    pub(crate) fn will_inject(&mut self, timeouts: crate::sql::context::Timeouts) {
        self.enforcer.will_inject(timeouts);
    }

    /// Decides on a prepared text, logs the decision, and queues warnings for the client.
    pub(crate) fn decide(
        &mut self,
        sql: &str,
        prepared: Prepared,
        facts: Result<&LiveFacts, &str>,
        snap: Snapshot<'_>,
        outbox: &mut BytesMut,
    ) -> Decided {
        let kind = crate::metrics::kind_of(prepared.analysis());
        let started = std::time::Instant::now();
        let e = self.enforcer.decide(sql, prepared, facts, situation(snap));
        crate::metrics::analysis_took(self.prepare_took + started.elapsed());
        // Dry-run forwards everything unchanged, notices included: its findings go to the log
        // (and the audit log) only.
        if self.enforcer.mode() != crate::config::policy::Mode::DryRun {
            for (_, message, hint) in &e.warnings {
                errors::policy_warning(message, hint).encode(outbox);
            }
        }
        let audit_decision = |v: Verdict| match v {
            Verdict::Allow => AuditDecision::Allow,
            Verdict::Warn => AuditDecision::Warn,
            Verdict::Rewrite => AuditDecision::Rewrite,
            Verdict::Reject => AuditDecision::Reject,
        };
        let decision = audit_decision(e.verdict);
        let intended = audit_decision(e.intended);
        let findings = e
            .decision
            .findings
            .iter()
            .map(|j| (j.finding.rule.id().to_string(), j.finding.statement.clone()))
            .collect();
        let rules: Vec<String> = e
            .decision
            .findings
            .iter()
            .map(|j| j.finding.rule.id().to_string())
            .collect();
        let replace = match &e.action {
            WireAction::Forward => None,
            WireAction::Replace { sql, .. } => Some(sql.clone()),
        };
        let allowed = crate::policy::setting::allowed(&e.decision);
        let sizes = e.sizes.clone();
        let estimated = e.estimated.clone();
        self.unsettled = Some(Unsettled {
            sql: sql.to_string(),
            kind: kind.to_string(),
            enforcement: e,
        });
        Decided {
            replace,
            decision,
            rules,
            sizes,
            findings,
            intended,
            allowed,
            estimated,
        }
    }

    /// Logs and counts the last decision as the session finally acts on it.
    pub(crate) fn settle(&mut self, decided: &Decided) {
        let Some(Unsettled {
            sql,
            kind,
            mut enforcement,
        }) = self.unsettled.take()
        else {
            return;
        };
        let last = match decided.decision {
            AuditDecision::Allow => Verdict::Allow,
            AuditDecision::Warn => Verdict::Warn,
            AuditDecision::Rewrite => Verdict::Rewrite,
            AuditDecision::Reject => Verdict::Reject,
        };
        if last != enforcement.verdict {
            let c = &mut self.enforcer.counts;
            for (v, delta) in [(enforcement.verdict, -1i64), (last, 1)] {
                let n = match v {
                    Verdict::Reject => &mut c.rejected,
                    Verdict::Rewrite => &mut c.rewritten,
                    Verdict::Warn => &mut c.warned,
                    Verdict::Allow => continue,
                };
                *n = n.saturating_add_signed(delta);
            }
            enforcement.verdict = last;
            enforcement.intended = last;
        }
        self.log(&sql, &enforcement);
        crate::metrics::statement_decided(&kind, decided.decision.as_str(), &decided.rules);
    }

    fn log(&self, sql: &str, e: &Enforcement) {
        let session = self.session_id;
        let mode = self.enforcer.mode().as_str();
        let live = e.without_live_facts.as_deref().unwrap_or("used");
        // Built only for the lines that carry them (an allowed statement logs none).
        let sizes = || -> Vec<String> {
            e.sizes
                .iter()
                .map(|(t, rows, bytes)| format!("{t}: ~{rows} rows, {bytes} bytes"))
                .collect()
        };
        let rules = || -> Vec<&str> {
            e.decision
                .findings
                .iter()
                .map(|j| j.finding.rule.id())
                .collect()
        };
        // Most statements log nothing (allowed, no finding): excerpt them only for a line.
        let excerpted = std::cell::OnceCell::new();
        let statement = || excerpted.get_or_init(|| crate::enforce::raise::excerpt(sql));
        for estimate in &e.estimated {
            info!(session, mode, statement = statement(), "{estimate}");
        }
        for (rule, _, reason) in crate::policy::setting::allowed(&e.decision) {
            info!(
                session,
                mode,
                decision = "allowed",
                rule,
                reason,
                statement = statement(),
                "finding accepted deliberately"
            );
        }
        match (e.intended, e.verdict) {
            (Verdict::Allow, _) => {}
            (Verdict::Reject, Verdict::Reject) => {
                let (rules, sizes) = (rules(), sizes());
                let message = e.rejection.as_ref().map(|r| r.message.as_str());
                warn!(session, mode, decision = "reject", rules = ?rules, sizes = ?sizes,
                      live_facts = live, statement = statement(), "{}", message.unwrap_or("rejected"));
            }
            (Verdict::Rewrite, Verdict::Rewrite) => {
                let (rules, sizes) = (rules(), sizes());
                info!(session, mode, decision = "rewrite", rules = ?rules, sizes = ?sizes,
                      live_facts = live, statement = statement(), "statement rewritten into its safe form");
            }
            (intended, _) if !e.warnings.is_empty() => {
                let sizes = sizes();
                for (rule, message, _) in &e.warnings {
                    warn!(session, mode, decision = "warn", would = %intended, rule = rule.id(),
                          sizes = ?sizes, live_facts = live, statement = statement(), "{message}");
                }
            }
            (_, _) => {}
        }
    }

    /// Relations (oids) this session created in the open transaction.
    pub(crate) fn created_in_transaction(&self) -> Vec<u32> {
        self.enforcer.created_in_transaction()
    }

    /// The action the session's policy gives `rule` (the multi-step rewrites run only for
    /// rules set to `rewrite`).
    pub(crate) fn action(&self, rule: crate::rules::Rule) -> crate::rules::Action {
        self.enforcer.action(rule)
    }

    /// pgwarden runs statements under its own timeouts and retries (`execute`); dry-run
    /// forwards everything exactly as sent.
    pub(crate) fn executes(&self) -> bool {
        self.enforcer.mode() != crate::config::policy::Mode::DryRun
    }

    /// FunctionCall messages (the fastpath interface) cannot be analysed: refused in enforce
    /// mode, forwarded (and logged) in warn and dry-run modes.
    pub(crate) fn refuses_function_calls(&self) -> bool {
        self.enforcer.mode() == crate::config::policy::Mode::Enforce
    }

    /// The statement that replaces a refused FunctionCall.
    pub(crate) fn function_call_refusal() -> String {
        crate::enforce::raise::raise_statement(
            &crate::enforce::raise::Rejection {
                message: "pgwarden: cannot-analyse: FunctionCall (fastpath) messages are refused: \
                          pgwarden cannot see what they do"
                    .into(),
                detail: "The fastpath interface calls a function by OID, outside any SQL text."
                    .into(),
                hint: "Call the function with a SELECT statement instead.".into(),
            },
            false,
        )
    }

    /// The per-session summary, logged when the session ends (Alembic users never see
    /// notices, so the log is where warnings are found).
    pub(crate) fn log_summary(&self) {
        let c = self.enforcer.counts;
        if c.statements == 0 {
            return;
        }
        info!(
            session = self.session_id,
            statements = c.statements,
            warned = c.warned,
            rejected = c.rejected,
            rewritten = c.rewritten,
            "session summary (DDL statements checked)"
        );
    }
}

fn situation(snap: Snapshot<'_>) -> Situation {
    let enc = snap.client_encoding.to_ascii_uppercase();
    Situation {
        tx_status: snap.tx_status,
        standard_conforming_strings: snap.standard_conforming_strings,
        pipelined: snap.pipelined,
        unreadable: snap.unreadable,
        // Names in non-ASCII text are vouched for only when the server will read it as the
        // UTF-8 it is (an encoding changed by a request in flight would rename them).
        utf8: snap.lex_certain && (enc == "UTF8" || enc == "UTF-8" || enc == "UNICODE"),
    }
}
