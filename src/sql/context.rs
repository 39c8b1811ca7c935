//! What the analysis knows besides the statement text: server version, transaction state,
//! tables created earlier in the same transaction, timeouts, and live catalog facts.
//!
//! The proxy fills it from the session (ReadyForQuery status, ParameterStatus, injected catalog
//! lookups); `pgwarden check` fills it from flags and follows the script's own BEGIN/COMMIT.
//! Everything here is plain data: the analysis stays pure.
use std::collections::{HashMap, HashSet};

use super::facts::{LockMode, ObjectName, StatementFacts, StatementKind, Volatility};
use super::lexer::LexOptions;

/// Nesting cap handed to the prefilter. squawk overflows a 2 MiB stack at ≈4,200 nested
/// parentheses (DESIGN.md decision 3); real migrations stay below 20.
pub const DEFAULT_MAX_DEPTH: usize = 256;
/// Length cap: the longest real migration statement in the corpus is a few KB; pg_dump
/// function bodies reach tens of KB.
pub const DEFAULT_MAX_STATEMENT_LEN: usize = 1 << 20;

/// Transaction state as the session (or the script) knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxState {
    /// Not in a transaction block: every statement commits on its own.
    #[default]
    Idle,
    /// Inside BEGIN ... COMMIT.
    InTransaction,
    /// The transaction failed; the server ignores everything until ROLLBACK.
    Failed,
    /// Nobody knows (file mode on a fragment): rules treat it as "maybe in a transaction".
    Unknown,
}

/// Estimated size of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TableStats {
    pub rows: u64,
    pub bytes: u64,
}

/// Live (or supplied) catalog facts, keyed by `schema.name` or bare `name`.
#[derive(Debug, Clone, Default)]
pub struct CatalogFacts {
    pub tables: HashMap<String, TableStats>,
    /// Current column types, keyed by (table, column), in Postgres' `format_type` spelling.
    pub column_types: HashMap<(String, String), String>,
    /// (table, column) pairs with a validated `CHECK (col IS NOT NULL)`.
    pub not_null_checks: HashSet<(String, String)>,
    /// Function volatility from `pg_proc.provolatile`, keyed by lower-case name.
    pub volatility: HashMap<String, Volatility>,
    /// Existing indexes per table (key as for `tables`): the column lists, leading first.
    pub index_columns: HashMap<String, Vec<Vec<String>>>,
    /// Materialized views that have a unique index (REFRESH CONCURRENTLY needs one).
    pub unique_indexed_matviews: HashSet<String>,
    /// (table, column) pairs that are NOT NULL already (SET NOT NULL on them is a no-op).
    pub not_null_columns: HashSet<(String, String)>,
    /// The table behind an index name (key as for `tables`): what DROP INDEX locks.
    pub index_tables: HashMap<String, ObjectName>,
    /// Tables whose heap is zero bytes long (live facts only): provably without a row, unlike
    /// `reltuples`, which is an estimate from the last ANALYZE (issue 11 deliver 2).
    pub empty_tables: HashSet<String>,
    /// Indexes that exist and are INVALID (live facts only), keyed as the CREATE INDEX IF NOT
    /// EXISTS that would keep them names them: `schema.index` with the table's schema.
    pub invalid_indexes: HashSet<String>,
    /// (table, constraint, referenced table) of foreign keys the text drops (live facts only).
    pub dropped_foreign_keys: Vec<(ObjectName, String, ObjectName)>,
    /// Other client sessions connected to the database (live facts only).
    pub other_sessions: Option<u64>,
    /// What the server said about the routines each DROP FUNCTION / PROCEDURE / ROUTINE /
    /// AGGREGATE names (live facts only), keyed by the statement's start offset in the text:
    /// one entry per routine the statement lists, `None` for one not looked up.
    pub dropped_routines: HashMap<usize, Vec<Option<RoutineLive>>>,
    /// The server's `EXPLAIN` (no ANALYZE) of a data change, keyed by the statement's byte
    /// offset in the text (live facts only: `rules::unbatched_backfill`).
    pub estimates: HashMap<usize, Estimate>,
    /// The proxy's live answer about which relation each name is. When present, names are
    /// matched exactly (no `public.` guess): the server resolved them.
    pub live: Option<super::identity::LiveIdentity>,
}

impl CatalogFacts {
    fn lookup<'a, T>(&self, map: &'a HashMap<String, T>, name: &ObjectName) -> Option<&'a T> {
        // Rules ask for sizes and indexes many times per statement; without stats (`check`
        // without --stats) building the keys was most of the cost.
        if map.is_empty() {
            return None;
        }
        let exact = map.get(&name.to_string());
        if self.live.is_some() {
            // `s.big` must not borrow the size of the `big` the search_path found.
            return exact;
        }
        exact.or_else(|| match &name.schema {
            Some(_) => map.get(&name.name),
            None => map.get(&format!("public.{}", name.name)),
        })
    }

    pub fn table_stats(&self, name: &ObjectName) -> Option<TableStats> {
        self.lookup(&self.tables, name).copied()
    }

    pub fn indexes(&self, table: &ObjectName) -> &[Vec<String>] {
        self.lookup(&self.index_columns, table)
            .map_or(&[], Vec::as_slice)
    }

    pub fn column_type(&self, table: &ObjectName, column: &str) -> Option<&str> {
        self.column_types
            .get(&(table.to_string(), column.to_string()))
            .or_else(|| {
                self.column_types
                    .get(&(table.name.clone(), column.to_string()))
            })
            .map(String::as_str)
    }

    /// The column is NOT NULL already (live facts only).
    pub fn is_not_null(&self, table: &ObjectName, column: &str) -> bool {
        self.not_null_columns
            .contains(&(table.to_string(), column.to_string()))
    }

    /// The table is provably empty (live facts only).
    pub fn is_empty_table(&self, table: &ObjectName) -> bool {
        self.live.is_some() && self.empty_tables.contains(&table.to_string())
    }

    /// The table behind an index name, when the live catalog said.
    pub fn index_table(&self, index: &ObjectName) -> Option<&ObjectName> {
        self.lookup(&self.index_tables, index)
    }

    pub fn has_not_null_check(&self, table: &ObjectName, column: &str) -> bool {
        self.not_null_checks
            .contains(&(table.to_string(), column.to_string()))
            || self
                .not_null_checks
                .contains(&(table.name.clone(), column.to_string()))
    }
}

/// One routine a DROP names, as the live catalog resolved it (`enforce::routines`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutineLive {
    /// How many routines match what the DROP wrote (0: none, the server refuses with 42883
    /// unless IF EXISTS; more than 1: not unique, 42725).
    pub matches: usize,
    /// Their signatures, as `regprocedure` prints them.
    pub signatures: Vec<String>,
    /// `pg_proc.prokind` of the single match: `f` function, `p` procedure, `a` aggregate,
    /// `w` window function.
    pub kind: Option<char>,
    /// What pg_depend records as depending on the single match (`pg_describe_object`).
    pub dependents: Vec<String>,
    /// Routines whose body mentions the name as a word (at most 11; pg_depend cannot see calls
    /// from PL/pgSQL or string-bodied SQL functions).
    pub mentions: Vec<String>,
}

/// What pgwarden's `EXPLAIN` of one data change said (`enforce::estimate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Estimate {
    /// The planner's estimate of the rows the statement changes.
    Rows(u64),
    /// No estimate; why, in the user's terms. `own_error`: the server refused the statement
    /// itself (it will fail the same way when it runs: nothing to warn about).
    Unknown { why: String, own_error: bool },
}

/// Effective timeouts in milliseconds: `Some(0)` = disabled, `None` = not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    pub lock_timeout_ms: Option<u64>,
    pub statement_timeout_ms: Option<u64>,
}

/// A lock that blocks writes (SHARE or stronger), held on an existing table until the
/// transaction ends, with the table's size when it was taken: a data change on that table
/// later in the transaction runs under it (`rules::backfill_under_lock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub table: ObjectName,
    pub mode: LockMode,
    pub stats: Option<TableStats>,
    /// Columns the transaction added to the table (with a DROP COLUMN later: a rename that
    /// loses data, `rules::drop_add_rename`).
    pub added_columns: Vec<String>,
}

/// Everything the analysis and the rules receive besides the text.
#[derive(Debug, Clone)]
pub struct AnalysisContext {
    /// Server major version (15 for 15.4); `None` = assume the oldest supported behaviour
    /// where it matters (rules say so in their message).
    pub pg_version: Option<u32>,
    /// Prefilter options, including the bounds on what reaches the parser.
    pub lex: LexOptions,
    /// Transaction state before the first statement of the text.
    pub tx: TxState,
    /// Tables created earlier in the same transaction (empty, invisible to others: exempt).
    pub created_tables: Vec<ObjectName>,
    /// Timeouts known before the first statement.
    pub timeouts: Timeouts,
    /// Live or supplied catalog facts.
    pub catalog: CatalogFacts,
    /// `pgwarden check` on a file: BEGIN/COMMIT in the script are the only transaction truth.
    pub file_mode: bool,
    /// Write-blocking locks earlier texts of this transaction hold (the proxy carries them).
    pub held_locks: Vec<HeldLock>,
    /// Enum values earlier texts of this transaction added: (type, label).
    pub enum_values_added: Vec<(ObjectName, String)>,
    /// An earlier text of this transaction changed the schema (a migration transaction).
    pub schema_changed: bool,
}

impl Default for AnalysisContext {
    fn default() -> Self {
        AnalysisContext {
            pg_version: None,
            lex: LexOptions {
                max_depth: DEFAULT_MAX_DEPTH,
                max_statement_len: DEFAULT_MAX_STATEMENT_LEN,
                ..LexOptions::default()
            },
            tx: TxState::Idle,
            created_tables: Vec::new(),
            timeouts: Timeouts::default(),
            catalog: CatalogFacts::default(),
            file_mode: false,
            held_locks: Vec::new(),
            enum_values_added: Vec::new(),
            schema_changed: false,
        }
    }
}

/// The state that evolves from statement to statement within one text (and, in the proxy,
/// across the Query messages of one transaction).
#[derive(Debug, Clone, Default)]
pub struct ScriptState {
    pub tx: TxState,
    /// Tables created in the current transaction (or, outside a transaction, earlier in the
    /// same file: file mode only, where they are known to be new).
    pub created_tables: Vec<ObjectName>,
    pub timeouts: Timeouts,
    /// Tables on which an ACCESS EXCLUSIVE lock is held until COMMIT, with the statement that
    /// took it (byte span start) — for lock-held-across-statements.
    pub ael_held: Vec<(ObjectName, usize)>,
    /// Constraints added NOT VALID in the current transaction (name).
    pub not_valid_added: Vec<String>,
    /// Enum values added in the current transaction: (type, label).
    pub enum_values_added: Vec<(ObjectName, String)>,
    /// lock-held-across-statements already spoke in this transaction.
    pub ael_reported: bool,
    /// Ids of rules that speak once per text until the state they warn about changes
    /// (the timeout rules: once until a SET of that timeout).
    pub spoken: Vec<&'static str>,
    /// `CHECK (col IS NOT NULL)` constraints added in this file: (table, constraint, column).
    pub not_null_checks: Vec<(ObjectName, String, String)>,
    /// Columns with a validated `CHECK (col IS NOT NULL)` (SET NOT NULL skips its scan, PG ≥ 12).
    pub validated_not_null: Vec<(ObjectName, String)>,
    /// A BEGIN seen in the text without a matching COMMIT/ROLLBACK yet: its byte offset.
    pub open_begin_at: Option<usize>,
    /// An earlier statement of this text may have changed the search_path: the live lookup
    /// resolved unqualified names under the old one (see `identity::may_change_search_path`).
    pub search_path_changed: bool,
    /// Timeouts set with SET LOCAL, restored at transaction end.
    local_timeouts_saved: Option<Timeouts>,
    /// Tables a VALIDATE CONSTRAINT of this text ran on (the constraint may be older).
    pub validated_tables: Vec<ObjectName>,
    /// `created_tables.len()` at this text's BEGIN: a ROLLBACK forgets the tables after it.
    created_mark: Option<usize>,
    /// Write-blocking locks on existing tables held until the transaction ends.
    pub held_locks: Vec<HeldLock>,
    /// This transaction changed the schema (see [`is_schema_change`]): it is a migration, and
    /// its large data changes are estimated (`rules::unbatched_backfill`).
    pub schema_changed: bool,
}

impl ScriptState {
    pub fn from_context(ctx: &AnalysisContext) -> Self {
        ScriptState {
            tx: ctx.tx,
            created_tables: ctx.created_tables.clone(),
            timeouts: ctx.timeouts,
            held_locks: ctx.held_locks.clone(),
            enum_values_added: ctx.enum_values_added.clone(),
            schema_changed: ctx.schema_changed,
            // A transaction open before the text (the proxy mid-transaction, `check
            // --assume-in-transaction`) holds every table created so far: its ROLLBACK
            // forgets them all.
            created_mark: matches!(ctx.tx, TxState::InTransaction | TxState::Failed).then_some(0),
            ..ScriptState::default()
        }
    }

    pub fn in_transaction(&self) -> bool {
        matches!(self.tx, TxState::InTransaction | TxState::Failed)
    }

    /// Was `table` created earlier in this transaction/file?
    pub fn is_new(&self, table: &ObjectName) -> bool {
        self.created_tables.iter().any(|t| t.same_as(table))
    }

    /// Moves the state past one statement.
    pub fn advance(&mut self, f: &StatementFacts) {
        match f.kind {
            // A nested BEGIN only draws a warning from Postgres: the transaction goes on.
            StatementKind::Begin if !self.in_transaction() => {
                self.tx = TxState::InTransaction;
                self.open_begin_at = Some(f.span.start);
                self.created_mark = Some(self.created_tables.len());
            }
            StatementKind::Commit | StatementKind::Rollback => {
                if let (StatementKind::Rollback, Some(mark)) = (f.kind, self.created_mark) {
                    self.created_tables.truncate(mark);
                }
                self.end_transaction();
                if f.flags.and_chain {
                    self.tx = TxState::InTransaction;
                    self.open_begin_at = Some(f.span.start);
                    self.created_mark = Some(self.created_tables.len());
                }
            }
            StatementKind::Set | StatementKind::Reset => {
                if let Some(s) = &f.setting {
                    let ms = s.value.as_deref().map(parse_duration_ms);
                    if f.flags.local && self.in_transaction() && self.local_timeouts_saved.is_none()
                    {
                        self.local_timeouts_saved = Some(self.timeouts);
                    }
                    self.spoken
                        .retain(|id| !id.contains(s.name.replace('_', "-").as_str()));
                    match s.name.as_str() {
                        // RESET / TO DEFAULT: back to the role/database default, unknown here.
                        "lock_timeout" => self.timeouts.lock_timeout_ms = ms.flatten(),
                        "statement_timeout" => self.timeouts.statement_timeout_ms = ms.flatten(),
                        _ => {}
                    }
                }
            }
            StatementKind::CreateTable | StatementKind::CreateTableAs => {
                // Once each: a file that creates the same table again (a dump restored twice,
                // drop-and-recreate migrations) must not make every later lookup longer.
                for t in &f.targets {
                    if !self.created_tables.contains(t) {
                        self.created_tables.push(t.clone());
                    }
                }
            }
            StatementKind::AlterType if f.flags.add_value => {
                if let (Some(t), Some(v)) = (f.targets.first(), &f.enum_value) {
                    self.enum_values_added.push((t.clone(), v.clone()));
                }
            }
            _ => {}
        }
        if self.in_transaction() && is_schema_change(f) {
            self.schema_changed = true;
        }
        if self.in_transaction() {
            for (rel, mode) in &f.locks {
                if *mode == LockMode::AccessExclusive
                    && !self.is_new(rel)
                    && !self.ael_held.iter().any(|(r, _)| r == rel)
                {
                    self.ael_held.push((rel.clone(), f.span.start));
                }
            }
            for a in &f.actions {
                if let Some(c) = &a.constraint {
                    if c.not_valid {
                        if let Some(n) = &c.name {
                            self.not_valid_added.push(n.clone());
                        }
                    }
                }
            }
        }
        if let Some(table) = &f.table {
            for a in &f.actions {
                if let (Some(c), Some(col)) = (
                    &a.constraint,
                    a.constraint
                        .as_ref()
                        .and_then(|c| c.checks_not_null_of.clone()),
                ) {
                    if let Some(name) = &c.name {
                        self.not_null_checks
                            .push((table.clone(), name.clone(), col.clone()));
                    }
                    if !c.not_valid {
                        self.validated_not_null.push((table.clone(), col));
                    }
                }
                if a.kind == super::facts::ActionKind::ValidateConstraint
                    && !self.validated_tables.contains(table)
                {
                    self.validated_tables.push(table.clone());
                }
                if a.kind == super::facts::ActionKind::ValidateConstraint {
                    let validated: Vec<(ObjectName, String)> = self
                        .not_null_checks
                        .iter()
                        .filter(|(t, n, _)| {
                            t.same_as(table) && Some(n) == a.constraint_name.as_ref()
                        })
                        .map(|(t, _, col)| (t.clone(), col.clone()))
                        .collect();
                    self.validated_not_null.extend(validated);
                }
            }
        }
        // A routine's body runs when it is called, not now: nothing it does carries over.
        if f.kind != super::facts::StatementKind::CreateFunction {
            for inner in &f.body {
                self.advance(inner);
            }
        }
    }

    fn end_transaction(&mut self) {
        self.tx = TxState::Idle;
        self.open_begin_at = None;
        self.ael_held.clear();
        self.held_locks.clear();
        self.schema_changed = false;
        self.not_valid_added.clear();
        self.enum_values_added.clear();
        self.ael_reported = false;
        self.created_mark = None;
        if let Some(saved) = self.local_timeouts_saved.take() {
            self.timeouts = saved;
        }
    }
}

/// Does this statement change the schema, the mark of a migration transaction? Transaction
/// control, settings, LOCK, maintenance (VACUUM, ANALYZE, REINDEX, CLUSTER, REFRESH) and
/// TRUNCATE are what applications run too; so are temporary tables. A DO block counts by
/// what pgwarden could read in it.
pub fn is_schema_change(f: &StatementFacts) -> bool {
    use StatementKind as K;
    match f.kind {
        K::Begin
        | K::Commit
        | K::Rollback
        | K::Savepoint
        | K::Set
        | K::Reset
        | K::Lock
        | K::Vacuum
        | K::VacuumFull
        | K::Analyze
        | K::Reindex
        | K::Cluster
        | K::RefreshMaterializedView
        | K::Truncate
        | K::Other => false,
        K::Do => f.body.iter().any(is_schema_change),
        _ => !f.flags.temporary,
    }
}

/// Parses a Postgres duration setting (`'2s'`, `5000`, `1min`, `0`) into milliseconds.
pub fn parse_duration_ms(value: &str) -> Option<u64> {
    let v = value.trim().trim_matches('\'').trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some((num * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("'2s'"), Some(2000));
        assert_eq!(parse_duration_ms("5000"), Some(5000));
        assert_eq!(parse_duration_ms("1min"), Some(60_000));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("soon"), None);
    }

    #[test]
    fn default_depth_is_far_below_the_parser_limit() {
        const { assert!(DEFAULT_MAX_DEPTH < 1000) };
        // Every depth the default bound allows has its chain tracked.
        const { assert!(DEFAULT_MAX_DEPTH < crate::sql::lexer::RUN_LEVELS) };
        assert_eq!(AnalysisContext::default().lex.max_depth, DEFAULT_MAX_DEPTH);
    }

    #[test]
    fn stats_lookup_accepts_public_and_bare_names() {
        let mut c = CatalogFacts::default();
        c.tables.insert(
            "orders".into(),
            TableStats {
                rows: 10,
                bytes: 100,
            },
        );
        assert!(c
            .table_stats(&ObjectName::new(Some("public"), "orders"))
            .is_some());
        assert!(c.table_stats(&ObjectName::new(None, "orders")).is_some());
        assert!(c.table_stats(&ObjectName::new(None, "other")).is_none());
    }

    /// A transaction open before the text (the migration tool's, `--assume-in-transaction`;
    /// the proxy mid-transaction): its ROLLBACK, nested BEGIN or not, forgets every table it
    /// created, those of earlier Queries included.
    #[test]
    fn rollback_of_a_transaction_opened_before_the_text_forgets_its_tables() {
        use crate::rules::{evaluate, Rule, SizeThresholds};
        let ctx = AnalysisContext {
            file_mode: true,
            tx: TxState::InTransaction,
            created_tables: vec![ObjectName::new(None, "early")],
            ..AnalysisContext::default()
        };
        for text in [
            "CREATE TABLE n (a int);\nROLLBACK;\nALTER TABLE n DROP COLUMN a;\nALTER TABLE early DROP COLUMN a;",
            "BEGIN;\nCREATE TABLE n (a int);\nROLLBACK;\nALTER TABLE n DROP COLUMN a;\nALTER TABLE early DROP COLUMN a;",
            "CREATE TABLE n (a int);\nROLLBACK AND CHAIN;\nALTER TABLE n DROP COLUMN a;\nALTER TABLE early DROP COLUMN a;",
        ] {
            let a = crate::sql::analyze(text, &ctx);
            let found = evaluate(text, &a, &ctx, &SizeThresholds::default()).findings;
            let drops = found.iter().filter(|f| f.rule == Rule::BanDropColumn).count();
            assert_eq!(drops, 2, "{text}: {found:?}");
        }
        // Committed, the tables stay the text's own (new and empty) for what follows.
        let text = "CREATE TABLE n (a int);\nCOMMIT;\nALTER TABLE n DROP COLUMN a;";
        let a = crate::sql::analyze(text, &ctx);
        let found = evaluate(text, &a, &ctx, &SizeThresholds::default()).findings;
        assert!(
            !found.iter().any(|f| f.rule == Rule::BanDropColumn),
            "{found:?}"
        );
    }
}
