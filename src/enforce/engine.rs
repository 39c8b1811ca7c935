//! Per-session enforcement: the statement text of one Query or Parse, plus what the session
//! knows and what the server answered to the catalog lookup, becomes an action on the wire.
//!
//! Pure (no I/O): the session does the lookup round trip between [`SessionEnforcer::prepare`]
//! and [`SessionEnforcer::decide`], and sends what `decide` says.
use crate::config::policy::Mode;
use crate::policy::setting::{self, SettingAllow};
use crate::policy::{Decision, Outcome as FindingOutcome, Policy, Verdict};
use crate::protocol::TxStatus;
use crate::rules::Rule;
use crate::sql::context::{CatalogFacts, Timeouts};
use crate::sql::facts::Volatility;
use crate::sql::lexer::{self, LexOptions, StatementClass};
use crate::sql::{
    analyze, Analysis, AnalysisContext, ObjectName, ScriptState, TableStats, TxState,
};

use super::identity::SessionRelations;
use super::lookup::{LiveFacts, LookupRequest, RelName};
use super::raise::{excerpt, raise_statement, Rejection};

/// Smallest possible heap tuple with its line pointer (23-byte header padded to 24, plus 4):
/// dividing a table's size by it can only over-estimate its rows, which errs on the safe side
/// for a table never analysed (`reltuples = -1`).
const MIN_TUPLE_BYTES: u64 = 28;

/// Does this text need the enforcer at all? Plain DML, transaction control, SET and empty
/// statements do not; DDL and utility statements do, including those the prefilter could not
/// read. One prefilter pass, no allocation: this is the hot path for every Query.
///
/// A DML statement over the parser's bounds (a 10 MB bulk INSERT) or with an unterminated
/// literal is forwarded: the server reads it as the prefilter did, and it cannot hide DDL.
pub fn needs_attention(sql: &str, standard_conforming_strings: bool) -> bool {
    let opts = LexOptions {
        standard_conforming_strings,
        ..session_lex_options()
    };
    lexer::split(sql, &opts).any(|s| s.class == StatementClass::DdlOrUtility)
}

fn session_lex_options() -> LexOptions {
    // Built once: `AnalysisContext::default()` also builds its empty catalog maps, and the
    // audit log asks this for every statement record it writes.
    static LEX: std::sync::OnceLock<LexOptions> = std::sync::OnceLock::new();
    *LEX.get_or_init(|| AnalysisContext::default().lex)
}

/// What the session tells the enforcer about itself for one statement text.
#[derive(Debug, Clone, Copy)]
pub struct Situation {
    /// From the last ReadyForQuery.
    pub tx_status: TxStatus,
    /// `standard_conforming_strings` as the server reported it.
    pub standard_conforming_strings: bool,
    /// The client encoding is UTF-8 (else non-ASCII text cannot be trusted).
    pub utf8: bool,
    /// An Execute was sent since the last Sync: PostgreSQL runs the statement in the implicit
    /// transaction block of a pipeline, where `PreventInTransactionBlock` refuses
    /// CONCURRENTLY (25001) exactly as inside BEGIN. Analysed as inside a transaction.
    pub pipelined: bool,
    /// pgwarden cannot know how the server will split this text (see `sql::server_lex`):
    /// it is analysed as one statement that cannot be analysed, and fails closed.
    pub unreadable: bool,
}

/// A text analysed, waiting for its live facts.
#[derive(Debug)]
pub struct Prepared {
    analysis: Analysis,
    ctx: AnalysisContext,
    /// What to ask the server; `None` when the rules need nothing from it.
    pub lookup: Option<LookupRequest>,
    /// The relations of `lookup`, to map the answers back.
    relations: Vec<ObjectName>,
    columns: Vec<(ObjectName, String)>,
    functions: Vec<String>,
    matviews: usize,
    /// Index names a CREATE INDEX IF NOT EXISTS would keep (after the matviews in `relations`).
    indexes: usize,
    /// (statement index, table, constraint) of every DROP CONSTRAINT (lookup `foreign_keys`).
    fk_drops: Vec<(usize, ObjectName, String)>,
    /// Session-created candidates resolved after `relations` in the lookup.
    pending: usize,
    /// Tables the text creates (lookup `targets`).
    targets: Vec<ObjectName>,
    /// Where each answer of the lookup's `routines` goes (`enforce::routines`).
    routines: Vec<super::routines::Asked>,
    /// The data changes to estimate (`enforce::estimate`).
    estimates: super::estimate::Candidates,
}

impl Prepared {
    /// The facts of the text's only statement, when it holds exactly one that parsed.
    pub fn single_statement(&self) -> Option<&crate::sql::StatementFacts> {
        let mut it = self
            .analysis
            .statements
            .iter()
            .filter(|st| !matches!(st.outcome, crate::sql::Outcome::Empty));
        let first = it.next()?;
        if it.next().is_some() {
            return None;
        }
        first.facts()
    }

    /// Tables created earlier in this transaction (a lock on them blocks no one).
    pub fn created_tables(&self) -> &[ObjectName] {
        &self.ctx.created_tables
    }

    /// The analysis of the text (statement kinds and locks, for metrics and the activity view).
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }
}

/// What the session does with the client's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireAction {
    /// Forward the client's bytes unchanged.
    Forward,
    /// Send this text instead (re-encode the Query/Parse). For a rejection it is the `RAISE`
    /// statement, which has no parameters: the Bind of a replaced Parse must carry none.
    Replace { sql: String, rejected: bool },
}

/// The enforcer's answer for one text.
#[derive(Debug, Clone)]
pub struct Enforcement {
    pub action: WireAction,
    /// What pgwarden did (dry-run: what it forwarded as).
    pub verdict: Verdict,
    /// What pgwarden would have done without dry-run.
    pub intended: Verdict,
    pub decision: Decision,
    /// Warnings for the client (NoticeResponse) and the log: (rule, message, hint).
    pub warnings: Vec<(Rule, String, String)>,
    /// The rejection, when rejected.
    pub rejection: Option<Rejection>,
    /// Why no live facts were used, when none were (said in the decision's log line).
    pub without_live_facts: Option<String>,
    /// Table sizes the decision used: (table, rows, bytes).
    pub sizes: Vec<(String, u64, u64)>,
    /// What pgwarden's EXPLAIN of each data change said, for the log and the audit record.
    pub estimated: Vec<String>,
}

/// At most this many of the relations created in the open transaction are named to the lookup
/// as not to be measured (the most recent ones, which the next statements name): the list
/// travels with every lookup, and a migration that creates thousands of tables in one
/// transaction must not send thousands of oids per statement. One left out is measured, as
/// before.
const UNMEASURED_MAX: usize = 64;

/// Counters for the per-session summary logged at disconnect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub statements: u64,
    pub warned: u64,
    pub rejected: u64,
    pub rewritten: u64,
}

/// One session's enforcer: its policy (profile applied) and what it carries from one Query to
/// the next inside a transaction (tables created, ACCESS EXCLUSIVE locks held, timeouts set).
#[derive(Debug)]
pub struct SessionEnforcer {
    policy: Policy,
    carry: ScriptState,
    pg_version: Option<u32>,
    /// Relations the server created for this session, by oid (`enforce::identity`).
    relations: SessionRelations,
    pub counts: Counts,
    /// The timeouts pgwarden will run the next text under (the executor sets them): the
    /// timeout rules judge those, not the session's own.
    injected: Option<Timeouts>,
}

impl SessionEnforcer {
    /// `policy` is the global policy; the profile matching this session is applied here.
    pub fn new(policy: &Policy, database: &str, user: &str, application_name: &str) -> Self {
        SessionEnforcer {
            policy: policy.for_session(database, user, application_name),
            carry: ScriptState::default(),
            pg_version: None,
            relations: SessionRelations::default(),
            counts: Counts::default(),
            injected: None,
        }
    }

    /// The next [`SessionEnforcer::decide`] judges the statement under these timeouts,
    /// because pgwarden itself sets them around it (`execute`).
    pub fn will_inject(&mut self, timeouts: Timeouts) {
        self.injected = Some(timeouts);
    }

    /// Relations (oids) the server created for this session in the open transaction.
    pub fn created_in_transaction(&self) -> Vec<u32> {
        self.relations.in_transaction()
    }

    /// The action the session's policy gives `rule`.
    pub fn action(&self, rule: Rule) -> crate::rules::Action {
        self.policy.action(rule)
    }

    pub fn mode(&self) -> Mode {
        self.policy.mode
    }

    /// Replaces the policy (a configuration reload); what the session carries stays.
    pub fn set_policy(
        &mut self,
        policy: &Policy,
        database: &str,
        user: &str,
        application_name: &str,
    ) {
        self.policy = policy.for_session(database, user, application_name);
    }

    /// From ParameterStatus `server_version` ("15.18 (Debian ...)" → 15).
    pub fn set_server_version(&mut self, server_version: &str) {
        self.pg_version = server_version
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|m| m.parse().ok());
    }

    /// The server's transaction status after a request. Outside a transaction block nothing
    /// carries over: tables created before are committed and visible to everyone.
    pub fn ready_for_query(&mut self, status: TxStatus) {
        match status {
            TxStatus::Idle => {
                self.relations.transaction_ended();
                self.carry = ScriptState::default();
            }
            TxStatus::InTransaction => self.carry.tx = TxState::InTransaction,
            TxStatus::Failed => self.carry.tx = TxState::Failed,
        }
    }

    /// Must this text, which the prefilter calls plain DML, be decided on all the same? Only
    /// while the transaction holds a write-blocking lock on an existing table, and only for a
    /// data change on that table (`rules::backfill_under_lock`): sessions that never ran DDL
    /// in the open transaction pay one emptiness check.
    pub fn dml_needs_attention(&self, sql: &str, standard_conforming_strings: bool) -> bool {
        if !self.carry.in_transaction() {
            return false;
        }
        // An enum label this transaction added, used by the data change (55P04 at the server).
        if !self.carry.enum_values_added.is_empty()
            && self
                .carry
                .enum_values_added
                .iter()
                .any(|(_, label)| sql.contains(&format!("'{}'", label.replace('\'', "''"))))
        {
            return true;
        }
        // A transaction that neither holds a write-blocking lock nor changed the schema (every
        // application transaction) stops here.
        if self.carry.held_locks.is_empty() && !self.carry.schema_changed {
            return false;
        }
        let opts = LexOptions {
            standard_conforming_strings,
            ..session_lex_options()
        };
        lexer::split(sql, &opts).any(|st| {
            st.class == StatementClass::Dml
                && sql.get(st.span.clone()).is_some_and(|text| {
                    crate::rules::backfill_under_lock::dml_target(text)
                        .is_some_and(|t| self.carry.held_locks.iter().any(|h| h.table.same_as(&t)))
                        || (self.carry.schema_changed
                            && crate::rules::unbatched_backfill::estimated_target(text).is_some())
                })
        })
    }

    /// Analyses the text and says which live facts the rules could use.
    pub fn prepare(&self, sql: &str, s: Situation) -> Prepared {
        let mut ctx = AnalysisContext {
            pg_version: self.pg_version,
            tx: match s.tx_status {
                TxStatus::Idle if s.pipelined => TxState::InTransaction,
                TxStatus::Idle => TxState::Idle,
                TxStatus::InTransaction => TxState::InTransaction,
                TxStatus::Failed => TxState::Failed,
            },
            // Newness across texts is by oid (`enforce::identity`), never by name.
            created_tables: Vec::new(),
            timeouts: self.carry.timeouts,
            held_locks: self.carry.held_locks.clone(),
            enum_values_added: self.carry.enum_values_added.clone(),
            schema_changed: self.carry.schema_changed,
            ..AnalysisContext::default()
        };
        ctx.lex.standard_conforming_strings = s.standard_conforming_strings;
        let analysis = if s.unreadable {
            Analysis {
                statements: vec![crate::sql::AnalysedStatement {
                    span: 0..sql.len(),
                    outcome: crate::sql::Outcome::Unanalysable(
                        lexer::Unanalysable::UnknownSettings,
                    ),
                }],
            }
        } else {
            analyze(sql, &ctx)
        };
        let needs = analysis.lookup_needs();
        let kept = crate::rules::invalid_index_kept::index_names(&analysis);
        let estimates = super::estimate::candidates(sql, &analysis, &ctx, s);
        let dml_tables: Vec<ObjectName> = estimates
            .tables
            .iter()
            .filter(|t| !needs.tables.contains(t))
            .cloned()
            .collect();
        let relations: Vec<ObjectName> = needs
            .tables
            .iter()
            .chain(dml_tables.iter())
            .chain(needs.matviews.iter())
            .chain(kept.iter())
            .cloned()
            .collect();
        let has_ddl = analysis.statements.iter().any(|st| st.facts().is_some());
        // A data change watched under a held lock (`dml_needs_attention`) asks only for the
        // settings: `pgwarden.allow` and the timeouts as the server holds them.
        let wants = has_ddl
            || ((!ctx.held_locks.is_empty() || !ctx.enum_values_added.is_empty())
                && analysis
                    .statements
                    .iter()
                    .any(|st| matches!(st.outcome, crate::sql::Outcome::Dml)))
            || !estimates.tables.is_empty();
        let pending = self.relations.pending();
        let targets = created_targets(&analysis);
        let fk_drops = dropped_constraints(&analysis);
        let (routines, routine_queries): (Vec<_>, Vec<_>) =
            super::routines::queries(sql, &analysis).into_iter().unzip();
        let lookup = wants.then(|| LookupRequest {
            relations: relations
                .iter()
                .map(rel_name)
                .chain(pending.iter().cloned())
                .collect(),
            targets: targets.iter().map(rel_name).collect(),
            columns: needs
                .columns
                .iter()
                .map(|(t, c)| (rel_name(t), c.clone()))
                .collect(),
            functions: needs.functions.clone(),
            foreign_keys: fk_drops
                .iter()
                .map(|(_, t, c)| (rel_name(t), c.clone()))
                .collect(),
            routines: routine_queries,
            explain: estimates.explain.iter().map(|(_, t)| t.clone()).collect(),
            explain_timeout_ms: self.policy.estimate_timeout_ms,
            created: self.relations.in_transaction_recent(UNMEASURED_MAX),
            sessions: analysis
                .statements
                .iter()
                .filter_map(|st| st.facts())
                .any(crate::rules::unused::may_relax),
        });
        Prepared {
            analysis,
            ctx,
            lookup,
            matviews: needs.matviews.len(),
            indexes: kept.len(),
            fk_drops,
            pending: if wants { pending.len() } else { 0 },
            targets,
            relations,
            columns: needs.columns,
            functions: needs.functions,
            routines,
            estimates,
        }
    }

    /// Decides on a prepared text. `facts`: the server's answer, or why there is none.
    pub fn decide(
        &mut self,
        sql: &str,
        mut p: Prepared,
        facts: Result<&LiveFacts, &str>,
        s: Situation,
    ) -> Enforcement {
        let mut sizes = Vec::new();
        let without_live_facts = match facts {
            Ok(live) => {
                let named = p.relations.len().min(live.relations.len());
                let answers = &live.relations[named..];
                if answers.len() == p.pending {
                    self.relations
                        .confirm(answers, s.tx_status == TxStatus::Idle);
                }
                self.relations.discard_pending();
                apply_live(&mut p, live, &self.relations, &self.policy, &mut sizes);
                None
            }
            Err(why) => {
                self.relations.discard_pending();
                Some(why.to_string())
            }
        };
        let estimated = super::estimate::apply(
            sql,
            &p.estimates,
            facts.ok().map(|l| l.estimates.as_slice()),
            &mut p.ctx.catalog,
        );
        if let Some(t) = self.injected.take() {
            p.ctx.timeouts = t;
        }
        // A rewrite is a text edit of one statement: only when the Query holds that one
        // statement and runs outside a transaction block (CONCURRENTLY needs both).
        let statements = p
            .analysis
            .statements
            .iter()
            .filter(|st| !matches!(st.outcome, crate::sql::Outcome::Empty))
            .count();
        let allow_rewrite = s.tx_status == TxStatus::Idle && !s.pipelined && statements == 1;
        let evaluation = self
            .policy
            .evaluate(sql, &p.analysis, &p.ctx, allow_rewrite);
        let mut decision = self
            .policy
            .decide(sql, &p.analysis, &evaluation, &p.ctx, allow_rewrite);
        if let Some(allow) = facts
            .ok()
            .and_then(|live| live.allow_setting.as_deref())
            .and_then(SettingAllow::parse)
        {
            // `SET LOCAL pgwarden.allow`, as the server holds it now (`policy::setting`); a
            // text read lossily cannot be vouched for, so nothing in it is allowed this way.
            if s.utf8 || sql.is_ascii() {
                let cut = setting::cutoff(sql, &p.analysis);
                setting::apply(&self.policy, &mut decision, &allow, cut);
            }
        }
        if !s.utf8 && !sql.is_ascii() {
            // The text was read lossily: pgwarden cannot vouch for what it analysed.
            fail_closed_non_utf8(&mut decision);
        }
        let intended = decision.intended();
        let verdict = decision.verdict();
        self.counts.statements += 1;
        let warnings: Vec<(Rule, String, String)> = decision
            .findings
            .iter()
            .filter(|j| {
                j.outcome == FindingOutcome::Warn
                    || (verdict == Verdict::Warn && j.outcome != FindingOutcome::Warn)
                        && !matches!(j.outcome, FindingOutcome::Allowed { .. })
            })
            .map(|j| {
                let msg = if j.outcome == FindingOutcome::Warn {
                    format!("pgwarden: {}: {}", j.finding.rule, j.finding.message)
                } else {
                    format!(
                        "pgwarden ({} mode, would {}): {}: {}",
                        self.policy.mode.as_str(),
                        j.outcome.as_str(),
                        j.finding.rule,
                        j.finding.message
                    )
                };
                (j.finding.rule, msg, j.finding.help.clone())
            })
            .collect();
        let mut rejection = None;
        let action = match verdict {
            Verdict::Reject => {
                self.counts.rejected += 1;
                let r = rejection_of(sql, &decision);
                let sql = raise_statement(&r, !s.utf8);
                rejection = Some(r);
                WireAction::Replace {
                    sql,
                    rejected: true,
                }
            }
            Verdict::Rewrite => match &decision.rewritten {
                Some(text) => {
                    self.counts.rewritten += 1;
                    WireAction::Replace {
                        sql: text.clone(),
                        rejected: false,
                    }
                }
                None => WireAction::Forward,
            },
            Verdict::Warn | Verdict::Allow => {
                if verdict == Verdict::Warn {
                    self.counts.warned += 1;
                }
                WireAction::Forward
            }
        };
        if !matches!(action, WireAction::Replace { rejected: true, .. }) {
            if let Ok(live) = facts {
                self.relations.expect_created(&p.targets, &live.targets);
            }
            // The statements will run: carry what they change into the next Query's context.
            let mut state = evaluation.state;
            state.tx = self.carry.tx;
            self.carry = state;
        }
        Enforcement {
            action,
            verdict,
            intended,
            decision,
            warnings,
            rejection,
            without_live_facts,
            sizes,
            estimated,
        }
    }
}

fn rel_name(o: &ObjectName) -> RelName {
    RelName {
        schema: o.schema.clone(),
        name: o.name.clone(),
    }
}

/// CREATE TABLE / CREATE TABLE AS targets of the text (DO bodies included), temporary tables
/// left out: a temporary table is new by its persistence, whatever created it.
fn created_targets(analysis: &Analysis) -> Vec<ObjectName> {
    fn visit(f: &crate::sql::facts::StatementFacts, out: &mut Vec<ObjectName>) {
        if matches!(
            f.kind,
            crate::sql::StatementKind::CreateTable | crate::sql::StatementKind::CreateTableAs
        ) && !f.flags.temporary
        {
            for t in &f.targets {
                if t.schema.as_deref() != Some("pg_temp") && !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        for inner in &f.body {
            visit(inner, out);
        }
    }
    let mut out = Vec::new();
    for st in &analysis.statements {
        if let Some(f) = st.facts() {
            visit(f, &mut out);
        }
    }
    out
}

/// (statement index, table, constraint) of the top-level `ALTER TABLE ... DROP CONSTRAINT`s.
fn dropped_constraints(analysis: &Analysis) -> Vec<(usize, ObjectName, String)> {
    let mut out = Vec::new();
    for (i, st) in analysis.statements.iter().enumerate() {
        let Some(f) = st.facts() else { continue };
        let Some(table) = &f.table else { continue };
        for a in &f.actions {
            if a.kind == crate::sql::facts::ActionKind::DropConstraint {
                if let Some(name) = &a.constraint_name {
                    out.push((i, table.clone(), name.clone()));
                }
            }
        }
    }
    out
}

/// Dropping a foreign key takes ACCESS EXCLUSIVE on the table it references too: the server
/// named that table; its lock and size join the statement's (issue 11 deliver 5).
fn apply_foreign_keys(
    p: &mut Prepared,
    live: &LiveFacts,
    catalog: &mut CatalogFacts,
    sizes: &mut Vec<(String, u64, u64)>,
) {
    for ((i, table, constraint), answer) in p.fk_drops.iter().zip(&live.foreign_keys) {
        let Some(r) = answer else { continue };
        let referenced = ObjectName::new(Some(&r.schema), &r.name);
        let heap = u64::try_from(r.heap_bytes).unwrap_or(0);
        let bytes = u64::try_from(r.total_bytes).unwrap_or(0);
        let rows = r.rows.map_or(heap / MIN_TUPLE_BYTES, |v| v as u64);
        catalog
            .tables
            .insert(referenced.to_string(), TableStats { rows, bytes });
        sizes.push((referenced.to_string(), rows, bytes));
        catalog
            .dropped_foreign_keys
            .push((table.clone(), constraint.clone(), referenced.clone()));
        if let Some(crate::sql::AnalysedStatement {
            outcome: crate::sql::Outcome::Facts(f),
            ..
        }) = p.analysis.statements.get_mut(*i)
        {
            if !f.locks.iter().any(|(t, _)| t == &referenced) {
                f.locks
                    .push((referenced, crate::sql::LockMode::AccessExclusive));
            }
        }
    }
}

/// Puts the server's answers into the analysis context the rules read.
fn apply_live(
    p: &mut Prepared,
    live: &LiveFacts,
    created: &SessionRelations,
    policy: &Policy,
    sizes: &mut Vec<(String, u64, u64)>,
) {
    let mut catalog = CatalogFacts::default();
    let mut identity = crate::sql::identity::LiveIdentity::default();
    let tables = p.relations.len() - p.matviews - p.indexes;
    let matviews_end = p.relations.len() - p.indexes;
    for (i, (name, facts)) in p.relations.iter().zip(&live.relations).enumerate() {
        if i >= matviews_end {
            // An index a CREATE INDEX IF NOT EXISTS would keep: only its validity matters.
            if facts
                .as_ref()
                .is_some_and(|f| f.relkind == 'i' && f.index_valid == Some(false))
            {
                catalog.invalid_indexes.insert(name.to_string());
            }
            continue;
        }
        let Some(f) = facts else {
            identity.names.insert(name.to_string(), None);
            continue;
        };
        let heap = u64::try_from(f.heap_bytes).unwrap_or(0);
        // Not measured for a relation created in the open transaction (`LookupRequest::created`):
        // that one is new whatever its size, and an unmeasured size is never "small".
        let total = f.total_bytes.map(|b| u64::try_from(b).unwrap_or(0));
        let rows = match f.rows {
            Some(r) => r as u64,
            None => heap / MIN_TUPLE_BYTES,
        };
        let t = &policy.thresholds;
        let small = rows < t.large_rows && total.is_some_and(|b| b < t.large_bytes);
        let oid = f.table_oid.unwrap_or(0);
        let new = f.persistence == 't' || (oid != 0 && created.is_new(oid, small));
        identity.names.insert(
            name.to_string(),
            Some(crate::sql::identity::Resolved { oid, new }),
        );
        if let Some(table) = &f.index_table {
            catalog.index_tables.insert(
                name.to_string(),
                ObjectName::new(f.index_table_schema.as_deref(), table),
            );
        }
        if i < tables && f.relkind == 'r' && f.index_table.is_none() && heap == 0 {
            // A zero-length heap holds no row, committed or not (an INSERT extends it first).
            catalog.empty_tables.insert(name.to_string());
        }
        if i < tables {
            // A relation created in the open transaction has no size the decision uses: its
            // rules see it as new (`Cx::size`), and the audit record lists no size for it.
            if let Some(total) = total {
                catalog
                    .tables
                    .insert(name.to_string(), TableStats { rows, bytes: total });
                sizes.push((name.to_string(), rows, total));
            }
        } else if f.has_unique_index {
            catalog.unique_indexed_matviews.insert(name.to_string());
        }
    }
    for ((table, column), facts) in p.columns.iter().zip(&live.columns) {
        let Some(c) = facts else { continue };
        let key = (table.to_string(), column.clone());
        catalog
            .column_types
            .insert(key.clone(), c.type_name.clone());
        if c.not_null {
            catalog.not_null_columns.insert(key.clone());
        }
        if c.has_validated_not_null_check {
            catalog.not_null_checks.insert(key);
        }
    }
    for (name, letters) in p.functions.iter().zip(&live.functions) {
        let v = if letters.contains('v') {
            Volatility::Volatile
        } else if letters.contains('s') {
            Volatility::Stable
        } else if letters.contains('i') {
            Volatility::Immutable
        } else {
            Volatility::Unknown
        };
        catalog.volatility.insert(name.clone(), v);
    }
    catalog.other_sessions = live.other_sessions;
    for (asked, answer) in p.routines.iter().zip(&live.routines) {
        let slots = catalog
            .dropped_routines
            .entry(asked.statement)
            .or_insert_with(|| vec![None; asked.of]);
        if let Some(slot) = slots.get_mut(asked.index) {
            *slot = Some(answer.clone());
        }
    }
    apply_foreign_keys(p, live, &mut catalog, sizes);
    catalog.live = Some(identity);
    p.ctx.catalog = catalog;
    if let Some(v) = live.server_version_num {
        p.ctx.pg_version = Some(v / 10_000);
    }
    // The server's word beats what the statements so far suggested (role and database
    // defaults, `options=-c lock_timeout=...` in the connection string).
    p.ctx.timeouts = Timeouts {
        lock_timeout_ms: live.lock_timeout_ms,
        statement_timeout_ms: live.statement_timeout_ms,
    };
}

/// A text that is not UTF-8 was analysed from a lossy copy: pgwarden cannot vouch for what it
/// read, so every finding becomes a rejection (DESIGN.md decision 10). The client may use
/// `SET client_encoding = 'UTF8'` for its migrations.
fn fail_closed_non_utf8(d: &mut Decision) {
    for j in &mut d.findings {
        if !matches!(j.outcome, FindingOutcome::Allowed { .. }) {
            j.outcome = FindingOutcome::Reject;
            j.finding.help = format!(
                "{} (pgwarden read this statement in a non-UTF-8 client encoding and cannot \
                 vouch for it; run migrations with client_encoding UTF8)",
                j.finding.help
            );
        }
    }
    d.rewritten = None;
}

/// The texts the user sees: the first rejected finding speaks; the others are listed.
fn rejection_of(sql: &str, d: &Decision) -> Rejection {
    let rejected: Vec<_> = d
        .findings
        .iter()
        .filter(|j| j.outcome == FindingOutcome::Reject)
        .collect();
    let Some(first) = rejected.first() else {
        return Rejection {
            message: "pgwarden: statement refused".into(),
            detail: format!("Statement: {}", excerpt(sql)),
            hint: String::new(),
        };
    };
    let f = &first.finding;
    let statement = sql.get(f.statement.clone()).unwrap_or(sql);
    let mut detail = match f.lock {
        Some(lock) => format!(
            "Lock: {lock} ({}). Statement: {}",
            lock.blocks(),
            excerpt(statement)
        ),
        None => format!("Statement: {}", excerpt(statement)),
    };
    if rejected.len() > 1 {
        let others: Vec<&str> = rejected[1..].iter().map(|j| j.finding.rule.id()).collect();
        detail.push_str(&format!(" Also refused by: {}.", others.join(", ")));
    }
    let hint = match setting::hint(f.rule) {
        Some(escape) if !f.help.is_empty() => format!("{} {escape}", f.help),
        Some(escape) => escape,
        None => f.help.clone(),
    };
    Rejection {
        message: format!("pgwarden: {}: {}", f.rule, f.message),
        detail,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::lookup::RelationFacts;

    fn situation(tx: TxStatus) -> Situation {
        Situation {
            tx_status: tx,
            standard_conforming_strings: true,
            utf8: true,
            pipelined: false,
            unreadable: false,
        }
    }

    fn live_big() -> LiveFacts {
        LiveFacts {
            server_version_num: Some(150_018),
            lock_timeout_ms: Some(0),
            statement_timeout_ms: Some(0),
            relations: vec![Some(RelationFacts {
                rows: Some(12_400_000.0),
                heap_bytes: 2_000_000_000,
                total_bytes: Some(3_000_000_000),
                has_unique_index: true,
                ..RelationFacts::empty_table(16_400)
            })],
            columns: vec![],
            functions: vec![],
            targets: vec![],
            other_sessions: Some(3),
            allow_setting: None,
            foreign_keys: vec![],
            routines: vec![],
            estimates: vec![],
        }
    }

    /// issue 11 deliver 4: an application transaction's DML is never decided on; once the
    /// transaction changed the schema, its UPDATE/DELETE is, with an EXPLAIN in the lookup —
    /// not Alembic's bookkeeping, not a statement with bind parameters.
    #[test]
    fn a_migration_transaction_estimates_its_data_changes() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let s = situation(TxStatus::InTransaction);
        e.ready_for_query(TxStatus::InTransaction);
        assert!(!e.dml_needs_attention("UPDATE package SET a = 1", true));
        let ddl = "ALTER TABLE tiny ADD COLUMN b int";
        let p = e.prepare(ddl, s);
        let mut live = live_big();
        live.relations = vec![live_rel(700, 10.0)];
        let out = e.decide(ddl, p, Ok(&live), s);
        assert_ne!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        assert!(e.dml_needs_attention("UPDATE package SET a = 1", true));
        assert!(e.dml_needs_attention("SELECT 1; DELETE FROM package", true));
        assert!(!e.dml_needs_attention("UPDATE alembic_version SET version_num = '2'", true));
        assert!(!e.dml_needs_attention("SELECT * FROM package", true));
        let update = "UPDATE package SET a = 1";
        let p = e.prepare(update, s);
        let req = p.lookup.clone().expect("lookup");
        assert_eq!(req.explain, vec![update.to_string()]);
        assert_eq!(req.relations[0].name, "package");
        let mut live = live_big();
        live.estimates = vec![crate::sql::context::Estimate::Rows(12_000_000)];
        let out = e.decide(update, p, Ok(&live), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        assert!(
            out.estimated[0].contains("~12000000 rows"),
            "{:?}",
            out.estimated
        );
        let p = e.prepare("UPDATE package SET a = $1", s);
        assert!(p.lookup.clone().expect("lookup").explain.is_empty());
        // The transaction ends: nothing carries over.
        e.ready_for_query(TxStatus::Idle);
        e.ready_for_query(TxStatus::InTransaction);
        assert!(!e.dml_needs_attention("UPDATE package SET a = 1", true));
    }

    #[test]
    fn dml_needs_no_attention() {
        assert!(!needs_attention("SELECT 1", true));
        assert!(!needs_attention("BEGIN; UPDATE t SET a = 1; COMMIT", true));
        assert!(!needs_attention("SET lock_timeout = '2s'", true));
        assert!(needs_attention("CREATE INDEX i ON t (a)", true));
        assert!(needs_attention("SELECT 1; DROP TABLE t", true));
        assert!(!needs_attention("SELECT 'unterminated", true));
        let big = format!("INSERT INTO t VALUES ('{}')", "x".repeat(2 << 20));
        assert!(!needs_attention(&big, true));
        let big_ddl = format!("COMMENT ON TABLE t IS '{}'", "x".repeat(2 << 20));
        assert!(needs_attention(&big_ddl, true));
    }

    #[test]
    fn create_index_on_big_table_in_transaction_is_rejected_with_size() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let sql = "CREATE INDEX i ON orders (a)";
        let s = situation(TxStatus::InTransaction);
        let p = e.prepare(sql, s);
        let req = p.lookup.clone().expect("lookup wanted");
        assert_eq!(req.relations[0].name, "orders");
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.verdict, Verdict::Reject);
        let r = out.rejection.expect("rejection");
        assert!(
            r.message.contains("require-concurrent-index-creation"),
            "{r:?}"
        );
        assert!(r.message.contains("orders"), "{r:?}");
        assert!(r.hint.contains("autocommit_block"), "{r:?}");
        match out.action {
            WireAction::Replace { sql, rejected } => {
                assert!(rejected);
                assert!(sql.starts_with("DO $pgwarden$"), "{sql}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.counts.rejected, 1);
    }

    #[test]
    fn create_index_outside_transaction_is_rewritten() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let sql = "CREATE INDEX i ON orders (a)";
        let s = situation(TxStatus::Idle);
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.verdict, Verdict::Rewrite, "{:?}", out.decision);
        assert_eq!(
            out.action,
            WireAction::Replace {
                sql: "CREATE INDEX CONCURRENTLY i ON orders (a)".into(),
                rejected: false
            }
        );
    }

    /// After an Execute without Sync the server is in a pipeline's implicit transaction
    /// block: CONCURRENTLY would fail there with 25001, so no rewrite — small tables pass
    /// unchanged, big ones get the reject fallback, as inside BEGIN.
    #[test]
    fn create_index_in_a_pipeline_is_not_rewritten() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let sql = "CREATE INDEX i ON orders (a)";
        let s = Situation {
            pipelined: true,
            ..situation(TxStatus::Idle)
        };
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        assert!(
            matches!(&out.action, WireAction::Replace { rejected: true, .. }),
            "{:?}",
            out.action
        );
    }

    /// A text pgwarden cannot read the way the server will is refused in enforce mode.
    #[test]
    fn unreadable_text_fails_closed() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let sql = "SELECT 'a\\'; ALTER TABLE orders ADD COLUMN x int; --'";
        let s = Situation {
            unreadable: true,
            ..situation(TxStatus::Idle)
        };
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Err("test"), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        let r = out.rejection.expect("a rejection");
        assert!(r.message.contains("cannot-analyse"), "{}", r.message);
        assert!(r.message.contains("client_encoding"), "{}", r.message);
    }

    /// `live_big()` with the one relation answered as `oid` and `rows`.
    fn live_rel(oid: u32, rows: f64) -> Option<RelationFacts> {
        let mut r = live_big().relations.remove(0)?;
        r.table_oid = Some(oid);
        r.rows = Some(rows);
        r.total_bytes = Some(8192);
        Some(r)
    }

    #[test]
    fn table_created_earlier_is_new_by_oid_not_by_name() {
        use crate::enforce::lookup::TargetFacts;
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let s = situation(TxStatus::InTransaction);
        e.ready_for_query(TxStatus::InTransaction);
        let create = "CREATE TABLE fresh (a int)";
        let p = e.prepare(create, s);
        let req = p.lookup.clone().expect("lookup");
        assert_eq!(req.targets[0].name, "fresh");
        let mut live = live_big();
        live.relations = vec![];
        live.targets = vec![TargetFacts {
            schema: Some("public".into()),
            existing_oid: None,
        }];
        let out = e.decide(create, p, Ok(&live), s);
        assert_eq!(out.action, WireAction::Forward);
        // The next text: its own name, then the candidate public.fresh to confirm.
        let idx = "CREATE INDEX i ON fresh (a)";
        let p = e.prepare(idx, s);
        let req = p.lookup.clone().expect("lookup");
        assert_eq!(req.relations.len(), 2, "{req:?}");
        assert_eq!(req.relations[1].schema.as_deref(), Some("public"));
        let mut live = live_big();
        live.relations = vec![live_rel(500, 0.0), live_rel(500, 0.0)];
        let out = e.decide(idx, p, Ok(&live), s);
        assert_ne!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        // Same name, another relation (dropped and replaced by a big one): not new.
        let p = e.prepare(idx, s);
        let mut live = live_big();
        live.relations = vec![live_rel(501, 5_000_000.0)];
        let out = e.decide(idx, p, Ok(&live), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        // Without the server's answer nothing is new.
        let p = e.prepare(idx, s);
        let out = e.decide(idx, p, Err("test"), s);
        assert_eq!(out.verdict, Verdict::Reject);
    }

    /// The lookup names the relations created in the open transaction so that the server
    /// does not measure them; an unmeasured relation is new only because the session created
    /// it, never because it looks small, and its size is not reported as used.
    #[test]
    fn relations_created_in_the_open_transaction_are_not_measured() {
        use crate::enforce::lookup::TargetFacts;
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let s = situation(TxStatus::InTransaction);
        e.ready_for_query(TxStatus::InTransaction);
        let create = "CREATE TABLE fresh (a int)";
        let p = e.prepare(create, s);
        assert!(p.lookup.as_ref().expect("lookup").created.is_empty());
        let mut live = live_big();
        live.relations = vec![];
        live.targets = vec![TargetFacts {
            schema: Some("public".into()),
            existing_oid: None,
        }];
        e.decide(create, p, Ok(&live), s);
        // Confirmed by the next lookup (which still measures it: it is not known yet).
        let idx = "CREATE INDEX i ON fresh (a)";
        let p = e.prepare(idx, s);
        assert!(p.lookup.as_ref().expect("lookup").created.is_empty());
        let mut live = live_big();
        live.relations = vec![live_rel(700, 0.0), live_rel(700, 0.0)];
        e.decide(idx, p, Ok(&live), s);
        // From now on its oid goes with every lookup of the transaction, and the server's
        // unmeasured answer is a new table: allowed, no size listed.
        let p = e.prepare(idx, s);
        assert_eq!(p.lookup.as_ref().expect("lookup").created, vec![700]);
        let mut live = live_big();
        let mut unmeasured = live_rel(700, 50_000_000.0).expect("relation");
        unmeasured.total_bytes = None;
        live.relations = vec![Some(unmeasured.clone())];
        let out = e.decide(idx, p, Ok(&live), s);
        assert_ne!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        assert!(out.sizes.is_empty(), "{:?}", out.sizes);
        // An unmeasured answer for a relation the session did not create (which the server
        // does not give) is never taken for small: refused like any big table.
        let p = e.prepare("CREATE INDEX j ON other (a)", s);
        let mut live = live_big();
        let mut stranger = unmeasured.clone();
        stranger.table_oid = Some(701);
        stranger.rows = Some(10.0);
        live.relations = vec![Some(stranger)];
        let out = e.decide("CREATE INDEX j ON other (a)", p, Ok(&live), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        // After the COMMIT nothing is in the open transaction: everything is measured.
        e.ready_for_query(TxStatus::Idle);
        e.ready_for_query(TxStatus::InTransaction);
        let p = e.prepare(idx, s);
        assert!(p.lookup.as_ref().expect("lookup").created.is_empty());
    }

    #[test]
    fn create_if_not_exists_in_the_same_text_does_not_exempt_an_existing_table() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let s = situation(TxStatus::InTransaction);
        let sql = "CREATE TABLE IF NOT EXISTS orders (a int); \
                   ALTER TABLE orders ADD COLUMN b int NOT NULL DEFAULT random()";
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        // Nothing of that name existed: the text's own CREATE made it.
        let p = e.prepare(sql, s);
        let mut live = live_big();
        live.relations = vec![None];
        let out = e.decide(sql, p, Ok(&live), s);
        assert_ne!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        // ...unless the text changed the search_path first.
        let sql = "CREATE TABLE IF NOT EXISTS orders (a int); SET search_path = other; \
                   ALTER TABLE orders ADD COLUMN b int NOT NULL DEFAULT random()";
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
    }

    #[test]
    fn drop_if_exists_of_a_missing_table_is_a_no_op() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let s = situation(TxStatus::Idle);
        let sql = "DROP TABLE IF EXISTS migrate_version";
        let p = e.prepare(sql, s);
        let mut live = live_big();
        live.relations = vec![None];
        let out = e.decide(sql, p, Ok(&live), s);
        assert_eq!(out.verdict, Verdict::Allow, "{:?}", out.decision);
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
    }

    /// The lookup counts the database's other sessions for exactly the statements whose
    /// refusal that count can relax (`rules::unused`), and for none of a history's creates.
    #[test]
    fn only_drops_and_renames_ask_for_the_other_sessions() {
        let e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let s = situation(TxStatus::InTransaction);
        let asks = |sql: &str| {
            e.prepare(sql, s)
                .lookup
                .unwrap_or_else(|| panic!("{sql}: no lookup"))
                .sessions
        };
        for sql in [
            "DROP TABLE orders",
            "ALTER TABLE orders DROP COLUMN a",
            "ALTER TABLE orders RENAME TO purchases",
            "ALTER TABLE orders RENAME COLUMN a TO b",
            "DROP VIEW v",
            "DROP TYPE status",
            "DROP SEQUENCE s",
            "CREATE INDEX i ON orders (a); DROP TABLE old_orders",
        ] {
            assert!(asks(sql), "{sql}");
        }
        for sql in [
            "CREATE TABLE t (id int PRIMARY KEY)",
            "CREATE INDEX i ON orders (a)",
            "ALTER TABLE orders ADD COLUMN b int",
            "ALTER TABLE orders ALTER COLUMN a TYPE bigint",
            "CREATE TYPE status AS ENUM ('a')",
            "COMMENT ON TABLE orders IS 'x'",
        ] {
            assert!(!asks(sql), "{sql}");
        }
    }

    /// Issue 11 deliver 2: a drop of a provably empty table in a database nobody else is
    /// connected to warns; with a row-holding heap or another session it is refused.
    #[test]
    fn drop_of_an_empty_table_in_an_unused_database_warns() {
        let decide = |heap: i64, others: u64, sql: &str| {
            let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
            let s = situation(TxStatus::InTransaction);
            let p = e.prepare(sql, s);
            let mut live = live_big();
            if let Some(Some(r)) = live.relations.first_mut() {
                r.heap_bytes = heap;
                r.total_bytes = Some(heap + 8192);
                r.rows = Some(if heap == 0 { 0.0 } else { 1.0 });
            }
            live.other_sessions = Some(others);
            e.decide(sql, p, Ok(&live), s)
        };
        for sql in [
            "DROP TABLE orders",
            "ALTER TABLE orders DROP COLUMN a",
            "ALTER TABLE orders RENAME TO purchases",
            "ALTER TABLE orders RENAME COLUMN a TO b",
        ] {
            let out = decide(0, 0, sql);
            assert_eq!(out.verdict, Verdict::Warn, "{sql}: {:?}", out.decision);
            assert!(
                out.warnings
                    .iter()
                    .any(|(_, m, _)| m.contains("no other session")),
                "{sql}: {:?}",
                out.warnings
            );
            assert_eq!(
                decide(8192, 0, sql).verdict,
                Verdict::Reject,
                "{sql} with a row"
            );
            assert_eq!(decide(0, 1, sql).verdict, Verdict::Reject, "{sql} in use");
        }
        // NOT NULL without a default: fine on a provably empty table (whoever is connected),
        // refused on one with a row.
        let required = "ALTER TABLE orders ADD COLUMN b int NOT NULL";
        let has = |out: &Enforcement| {
            out.decision
                .findings
                .iter()
                .any(|j| j.finding.rule == Rule::AddingRequiredField)
        };
        assert!(!has(&decide(0, 3, required)));
        assert!(has(&decide(8192, 3, required)));
        // A type: no rows, but CASCADE would drop the columns that use it.
        assert_eq!(decide(0, 0, "DROP TYPE mood").verdict, Verdict::Warn);
        assert_eq!(
            decide(0, 0, "DROP TYPE mood CASCADE").verdict,
            Verdict::Reject
        );
        assert_eq!(decide(0, 2, "DROP TYPE mood").verdict, Verdict::Reject);
    }

    /// The refusal's HINT says how to accept it deliberately, Alembic's spelling first; the
    /// server's `pgwarden.allow` value then lets it through with its reason.
    #[test]
    fn the_allow_setting_as_the_server_holds_it() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        let s = situation(TxStatus::InTransaction);
        let sql = "ALTER TABLE orders DROP COLUMN a";
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        let hint = out.rejection.expect("refused").hint;
        assert!(
            hint.contains("op.execute(\"SET LOCAL pgwarden.allow = 'ban-drop-column: <reason>'\")"),
            "{hint}"
        );
        let mut live = live_big();
        live.allow_setting = Some("ban-drop-column: legacy column retired in r7".into());
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live), s);
        // The timeout warnings stay: only the rule named is allowed.
        assert_eq!(out.verdict, Verdict::Warn, "{:?}", out.decision);
        assert_eq!(
            crate::policy::setting::allowed(&out.decision)[0].2,
            "pgwarden.allow: legacy column retired in r7"
        );
        // Read lossily (non-UTF-8), nothing is allowed this way.
        let lossy = "ALTER TABLE orders DROP COLUMN caf\u{e9}";
        let bad = Situation { utf8: false, ..s };
        let p = e.prepare(lossy, bad);
        let out = e.decide(lossy, p, Ok(&live), bad);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        // Without the server's answer there is no value to read.
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Err("test"), s);
        assert_eq!(out.verdict, Verdict::Reject);
    }

    #[test]
    fn dry_run_forwards_and_says_what_it_would_do() {
        let cfg = crate::config::Config::from_toml("[policy]\nmode = \"dry-run\"\n").unwrap();
        let policy = Policy::from_config(&cfg.policy).unwrap();
        let mut e = SessionEnforcer::new(&policy, "db", "u", "app");
        let sql = "ALTER TABLE orders DROP COLUMN a";
        let s = situation(TxStatus::InTransaction);
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.action, WireAction::Forward);
        assert_eq!(out.intended, Verdict::Reject);
        assert!(out
            .warnings
            .iter()
            .any(|(_, m, _)| m.contains("would reject")));
    }

    #[test]
    fn non_utf8_client_encoding_fails_closed_on_findings() {
        let mut e = SessionEnforcer::new(&Policy::default(), "db", "u", "app");
        // On its own a warning (no lock_timeout); read lossily it must be refused.
        let sql = "ALTER TABLE orders ADD COLUMN caf\u{e9} int";
        let mut s = situation(TxStatus::InTransaction);
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.verdict, Verdict::Warn, "{:?}", out.decision);
        s.utf8 = false;
        let p = e.prepare(sql, s);
        let out = e.decide(sql, p, Ok(&live_big()), s);
        assert_eq!(out.verdict, Verdict::Reject, "{:?}", out.decision);
        assert!(out.rejection.unwrap().hint.contains("client_encoding UTF8"));
    }
}
