//! The rule catalogue: one rule per file, named after its id; `Rule` is the single list.
//!
//! Rules report, they do not decide: each is a pure function from one statement's facts and
//! the context to findings (the consequence, the remedy, the span, the lock, maybe a rewrite).
//! The policy step (`crate::policy`) turns findings into allow/warn/rewrite/reject.
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use crate::sql::context::{AnalysisContext, ScriptState, TableStats, TxState};
use crate::sql::facts::{LockMode, ObjectName, StatementFacts, TextEdit};
use crate::sql::{reparse, AnalysedStatement, Analysis, Outcome};

/// What to do with a finding of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Off,
    Warn,
    Reject,
    /// Rewrite into the safe form when the rule offers one and the situation allows it;
    /// otherwise reject.
    Rewrite,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Warn => "warn",
            Action::Reject => "reject",
            Action::Rewrite => "rewrite",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Action::Off),
            "warn" => Ok(Action::Warn),
            "reject" => Ok(Action::Reject),
            "rewrite" => Ok(Action::Rewrite),
            other => Err(format!(
                "unknown action `{other}` (expected off, warn, reject or rewrite)"
            )),
        }
    }
}

/// Where a rule's danger depends on the table's size (RULES.md "Defaults by table size").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// Reject on large tables, warn on small ones, silent on tables created in this transaction.
    BySize,
    /// Same answer whatever the size.
    Fixed,
}

mod drop_add_rename;
mod engine;
mod fk_referenced;
mod objects;
mod timeouts;
pub mod unused;

pub use engine::evaluate_selected;

macro_rules! rules {
    ($( $variant:ident, $module:ident, $id:literal, $action:ident, $sizing:ident, $summary:literal; )*) => {
        $( pub mod $module; )*

        /// Every rule pgwarden knows. Ids are kebab-case and follow squawk's where the hazard
        /// is the same, so `-- squawk-ignore` comments keep working.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule { $( $variant, )* }

        impl Rule {
            /// All rules, in catalogue order.
            pub const ALL: &'static [Rule] = &[ $( Rule::$variant, )* ];

            pub fn id(self) -> &'static str {
                match self { $( Rule::$variant => $id, )* }
            }

            pub fn default_action(self) -> Action {
                match self { $( Rule::$variant => Action::$action, )* }
            }

            pub fn sizing(self) -> Sizing {
                match self { $( Rule::$variant => Sizing::$sizing, )* }
            }

            /// One line for `pgwarden rules`.
            pub fn summary(self) -> &'static str {
                match self { $( Rule::$variant => $summary, )* }
            }

            /// The full documentation (What it does / Why is this bad / Example / Use instead /
            /// Rewrite safety) for `pgwarden explain`.
            pub fn doc(self) -> &'static str {
                match self { $( Rule::$variant => $module::DOC, )* }
            }
        }
    };
}

rules! {
    // A. Locks, scans and rewrites on existing tables
    RequireConcurrentIndexCreation, require_concurrent_index_creation, "require-concurrent-index-creation", Rewrite, BySize, "CREATE INDEX without CONCURRENTLY blocks writes for the whole build";
    BanConcurrentIndexCreationInTransaction, ban_concurrent_index_creation_in_transaction, "ban-concurrent-index-creation-in-transaction", Reject, Fixed, "CONCURRENTLY inside a transaction block fails (25001)";
    RequireConcurrentIndexDeletion, require_concurrent_index_deletion, "require-concurrent-index-deletion", Rewrite, BySize, "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table";
    RequireConcurrentReindex, require_concurrent_reindex, "require-concurrent-reindex", Rewrite, BySize, "REINDEX without CONCURRENTLY blocks writes (and reads through the index)";
    RequireConcurrentPartitionDetach, require_concurrent_partition_detach, "require-concurrent-partition-detach", Rewrite, BySize, "DETACH PARTITION without CONCURRENTLY locks the parent ACCESS EXCLUSIVE";
    RequireConcurrentRefresh, require_concurrent_refresh, "require-concurrent-refresh", Rewrite, BySize, "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads";
    PreferRepack, prefer_repack, "prefer-repack", Reject, BySize, "VACUUM FULL / CLUSTER rewrite the table under ACCESS EXCLUSIVE";
    AddingFieldWithDefault, adding_field_with_default, "adding-field-with-default", Reject, BySize, "ADD COLUMN with a volatile default (or a stored generated column) rewrites the table";
    AddingRequiredField, adding_required_field, "adding-required-field", Reject, Fixed, "ADD COLUMN NOT NULL without a default fails on a non-empty table";
    AddingSerialColumn, adding_serial_column, "adding-serial-column", Reject, BySize, "ADD COLUMN serial/identity rewrites the table";
    AddingNotNullableField, adding_not_nullable_field, "adding-not-nullable-field", Rewrite, BySize, "SET NOT NULL scans the table under ACCESS EXCLUSIVE";
    ConstraintMissingNotValid, constraint_missing_not_valid, "constraint-missing-not-valid", Rewrite, BySize, "ADD CHECK without NOT VALID scans the table under ACCESS EXCLUSIVE";
    AddingForeignKeyConstraint, adding_foreign_key_constraint, "adding-foreign-key-constraint", Rewrite, BySize, "ADD FOREIGN KEY without NOT VALID blocks writes on both tables during the scan";
    DisallowedUniqueConstraint, disallowed_unique_constraint, "disallowed-unique-constraint", Rewrite, BySize, "ADD UNIQUE builds an index under ACCESS EXCLUSIVE";
    AddingSerialPrimaryKeyField, adding_serial_primary_key_field, "adding-serial-primary-key-field", Rewrite, BySize, "ADD PRIMARY KEY builds an index under ACCESS EXCLUSIVE";
    BanExclusionConstraint, ban_exclusion_constraint, "ban-exclusion-constraint", Reject, BySize, "ADD EXCLUDE builds and checks an index under ACCESS EXCLUSIVE";
    ChangingColumnType, changing_column_type, "changing-column-type", Reject, BySize, "ALTER COLUMN TYPE rewrites the table and its indexes under ACCESS EXCLUSIVE";
    BanTableRewriteOptions, ban_table_rewrite_options, "ban-table-rewrite-options", Reject, BySize, "SET TABLESPACE / LOGGED / UNLOGGED / ACCESS METHOD rewrite the table";
    AttachPartitionWithoutCheck, attach_partition_without_check, "attach-partition-without-check", Warn, BySize, "ATTACH PARTITION scans the partition unless a matching CHECK exists";
    BanAlterDomainWithAddConstraint, ban_alter_domain_with_add_constraint, "ban-alter-domain-with-add-constraint", Reject, Fixed, "ALTER DOMAIN ADD CONSTRAINT checks every column of that domain";
    BanCreateDomainWithConstraint, ban_create_domain_with_constraint, "ban-create-domain-with-constraint", Warn, Fixed, "domain constraints are hard to change later without full scans";
    LockHeldAcrossStatements, lock_held_across_statements, "lock-held-across-statements", Warn, Fixed, "statements after an ACCESS EXCLUSIVE lock in the same transaction keep the lock held";
    InvalidIndexKept, invalid_index_kept, "invalid-index-kept", Warn, Fixed, "CREATE INDEX IF NOT EXISTS keeps an INVALID index of that name (a failed CONCURRENTLY build) and builds nothing";
    BackfillUnderLock, backfill_under_lock, "backfill-under-lock", Reject, BySize, "UPDATE/DELETE/MERGE/INSERT ... SELECT on a table the transaction holds a write-blocking lock on";
    UnbatchedBackfill, unbatched_backfill, "unbatched-backfill", Reject, BySize, "UPDATE/DELETE changing a large share of a table in one migration transaction (EXPLAIN estimate)";
    // B. Timeouts and transactions
    RequireLockTimeout, require_lock_timeout, "require-lock-timeout", Warn, Fixed, "a lock-taking statement runs without lock_timeout and can queue everyone behind it";
    RequireStatementTimeout, require_statement_timeout, "require-statement-timeout", Warn, Fixed, "a lock-taking statement runs without statement_timeout";
    EnumValueInTransaction, enum_value_in_transaction, "enum-value-in-transaction", Reject, Fixed, "ALTER TYPE ADD VALUE in a transaction (before PG 12), or the new value used in the same transaction";
    TransactionNesting, transaction_nesting, "transaction-nesting", Warn, Fixed, "BEGIN inside a transaction block does nothing but warn";
    BanUncommittedTransaction, ban_uncommitted_transaction, "ban-uncommitted-transaction", Reject, Fixed, "a BEGIN without COMMIT in the file (a truncated script)";
    BanTruncateCascade, ban_truncate_cascade, "ban-truncate-cascade", Reject, Fixed, "TRUNCATE ... CASCADE silently empties every referencing table";
    // C. Breaking changes for running application code
    BanDropColumn, ban_drop_column, "ban-drop-column", Reject, Fixed, "DROP COLUMN breaks application code that still reads it";
    BanDropTable, ban_drop_table, "ban-drop-table", Reject, Fixed, "DROP TABLE breaks application code and loses data";
    BanDropDatabase, ban_drop_database, "ban-drop-database", Reject, Fixed, "DROP DATABASE in a migration";
    RenamingColumn, renaming_column, "renaming-column", Reject, Fixed, "RENAME COLUMN breaks application code using the old name";
    RenamingTable, renaming_table, "renaming-table", Reject, Fixed, "RENAME TABLE breaks application code using the old name";
    BanDropNotNull, ban_drop_not_null, "ban-drop-not-null", Warn, Fixed, "DROP NOT NULL lets NULLs reach code that does not expect them";
    RenameEnumValue, rename_enum_value, "rename-enum-value", Warn, Fixed, "ALTER TYPE RENAME VALUE breaks code using the old label";
    // D. Schema quality
    PreferBigintOverInt, prefer_bigint_over_int, "prefer-bigint-over-int", Off, Fixed, "integer columns overflow at 2^31";
    PreferBigintOverSmallint, prefer_bigint_over_smallint, "prefer-bigint-over-smallint", Off, Fixed, "smallint columns overflow at 2^15";
    PreferIdentity, prefer_identity, "prefer-identity", Off, Fixed, "serial types instead of GENERATED ... AS IDENTITY";
    PreferTextField, prefer_text_field, "prefer-text-field", Off, Fixed, "varchar(n): changing the limit later may need a rewrite";
    BanCharField, ban_char_field, "ban-char-field", Warn, Fixed, "char(n) pads with spaces";
    PreferTimestamptz, prefer_timestamptz, "prefer-timestamptz", Warn, Fixed, "timestamp without time zone";
    IdentifierTooLong, identifier_too_long, "identifier-too-long", Warn, Fixed, "identifiers over 63 bytes are silently truncated";
    PreferRobustStmts, prefer_robust_stmts, "prefer-robust-stmts", Off, Fixed, "DDL outside a transaction without IF [NOT] EXISTS cannot be retried";
    RequireIndexOnForeignKey, require_index_on_foreign_key, "require-index-on-foreign-key", Warn, Fixed, "a foreign key without an index on its columns";
    // E. Compatibility with running code and clients (squawk 2.70 catalogue)
    BanDropView, ban_drop_view, "ban-drop-view", Reject, Fixed, "DROP VIEW / MATERIALIZED VIEW breaks code and objects that still use it";
    BanDropFunction, ban_drop_function, "ban-drop-function", Reject, Fixed, "DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE breaks code and objects that still use it";
    BanDropType, ban_drop_type, "ban-drop-type", Reject, Fixed, "DROP TYPE (and casts, operators, operator classes and families) breaks code and objects that still use it";
    BanDropDomain, ban_drop_domain, "ban-drop-domain", Reject, Fixed, "DROP DOMAIN breaks code and objects that still use it";
    BanDropSchema, ban_drop_schema, "ban-drop-schema", Reject, Fixed, "DROP SCHEMA breaks code and objects that still use it";
    BanDropSequence, ban_drop_sequence, "ban-drop-sequence", Reject, Fixed, "DROP SEQUENCE breaks code and objects that still use it";
    BanDropExtension, ban_drop_extension, "ban-drop-extension", Reject, Fixed, "DROP EXTENSION breaks code and objects that still use it";
    BanAlterIdentity, ban_alter_identity, "ban-alter-identity", Warn, Fixed, "ADD GENERATED / DROP IDENTITY / SET GENERATED ALWAYS changes which inserts work";
    BanDropConstraint, ban_drop_constraint, "ban-drop-constraint", Warn, Fixed, "DROP CONSTRAINT / NOT ENFORCED removes a guarantee running code relies on";
    BanDropDefault, ban_drop_default, "ban-drop-default", Warn, Fixed, "DROP DEFAULT breaks inserts that leave the column out";
    BanDropGeneratedExpression, ban_drop_generated_expression, "ban-drop-generated-expression", Warn, Fixed, "DROP EXPRESSION turns a generated column into a plain one code must now fill";
    BanSetSchema, ban_set_schema, "ban-set-schema", Reject, Fixed, "SET SCHEMA moves an object away from the name code uses";
    RenamingObject, renaming_object, "renaming-object", Reject, Fixed, "RENAME of a view, sequence, function, type, schema, index, constraint, role, ... breaks code using the old name";
    RequireEnumValueOrdering, require_enum_value_ordering, "require-enum-value-ordering", Warn, Fixed, "ADD VALUE without BEFORE/AFTER appends the label at the end of the sort order";
    BanDuplicateColumnAssignments, ban_duplicate_column_assignments, "ban-duplicate-column-assignments", Reject, Fixed, "the same column defined twice in one CREATE TABLE / ALTER TABLE ADD COLUMN";
    BanAddColumn, ban_add_column, "ban-add-column", Off, Fixed, "ADD COLUMN on an existing table or foreign table";
    BanAddCompositeAttribute, ban_add_composite_attribute, "ban-add-composite-attribute", Off, Fixed, "ALTER TYPE ... ADD ATTRIBUTE changes a composite type's shape";
    BanAddEnumValue, ban_add_enum_value, "ban-add-enum-value", Off, Fixed, "ALTER TYPE ... ADD VALUE: running code may not handle the new label";
    BanAlterDatabaseOptions, ban_alter_database_options, "ban-alter-database-options", Off, Fixed, "ALTER DATABASE options / settings change every session";
    BanAlterSystemOptions, ban_alter_system_options, "ban-alter-system-options", Off, Fixed, "ALTER SYSTEM changes the whole server";
    BanAlterExtension, ban_alter_extension, "ban-alter-extension", Off, Fixed, "ALTER EXTENSION UPDATE / DROP member changes functions clients call";
    BanAlterFunctionOptions, ban_alter_function_options, "ban-alter-function-options", Off, Fixed, "ALTER FUNCTION options change how existing callers' calls run";
    BanAlterViewOptions, ban_alter_view_options, "ban-alter-view-options", Off, Fixed, "ALTER VIEW SET/RESET options (security_barrier, security_invoker, check_option)";
    BanAlterRoleOptions, ban_alter_role_options, "ban-alter-role-options", Off, Fixed, "ALTER ROLE / USER options or settings change what clients may do";
    BanAlterRowLevelSecurity, ban_alter_row_level_security, "ban-alter-row-level-security", Off, Fixed, "ENABLE / DISABLE / FORCE ROW LEVEL SECURITY changes which rows clients see";
    BanAlterSequenceValues, ban_alter_sequence_values, "ban-alter-sequence-values", Off, Fixed, "ALTER SEQUENCE / identity RESTART, INCREMENT, bounds change the values clients get";
    BanAlterGeneratedExpression, ban_alter_generated_expression, "ban-alter-generated-expression", Off, Fixed, "SET EXPRESSION changes a generated column's values";
    BanAlterPolicyCondition, ban_alter_policy_condition, "ban-alter-policy-condition", Off, Fixed, "ALTER POLICY USING / WITH CHECK changes which rows clients see or write";
    BanAlterPolicyRoles, ban_alter_policy_roles, "ban-alter-policy-roles", Off, Fixed, "ALTER POLICY ... TO changes which roles a policy applies to";
    BanCreatePolicy, ban_create_policy, "ban-create-policy", Off, Fixed, "CREATE POLICY changes which rows clients see on a table with row level security";
    BanDropPolicy, ban_drop_policy, "ban-drop-policy", Off, Fixed, "DROP POLICY changes which rows clients see";
    BanDetachInheritance, ban_detach_inheritance, "ban-detach-inheritance", Off, Fixed, "DETACH PARTITION / NO INHERIT changes the rows clients reach through the parent";
    BanDisableTrigger, ban_disable_trigger, "ban-disable-trigger", Off, Fixed, "ENABLE / DISABLE TRIGGER or RULE changes the database's side effects";
    BanDropIndex, ban_drop_index, "ban-drop-index", Off, Fixed, "DROP INDEX can make queries that used it slow";
    BanDropTrigger, ban_drop_trigger, "ban-drop-trigger", Off, Fixed, "DROP TRIGGER removes side effects running code relies on";
    BanNewWriteRestriction, ban_new_write_restriction, "ban-new-write-restriction", Off, Fixed, "a new constraint, SET NOT NULL or unique index can reject writes running code makes";
    BanReplaceViewFunction, ban_replace_view_function, "ban-replace-view-function", Off, Fixed, "CREATE OR REPLACE VIEW / FUNCTION / TRIGGER / RULE / AGGREGATE changes behaviour under running code";
    BanReplicaIdentity, ban_replica_identity, "ban-replica-identity", Off, Fixed, "REPLICA IDENTITY changes what logical replication sends";
    BanRevoke, ban_revoke, "ban-revoke", Off, Fixed, "REVOKE / OWNER TO / DROP OWNED / REASSIGN OWNED take access away from clients";
    BanSetDefault, ban_set_default, "ban-set-default", Off, Fixed, "SET DEFAULT changes what inserts that omit the column store";
    RequireTableSchema, require_table_schema, "require-table-schema", Off, Fixed, "a table named without its schema";
    // Analysis itself (DESIGN.md decision 10) and escapes
    CannotAnalyse, cannot_analyse, "cannot-analyse", Reject, Fixed, "a statement pgwarden cannot read (syntax error, psql command, over the size bounds)";
    OpaqueDdl, opaque_ddl, "opaque-ddl", Reject, Fixed, "a DO block whose effect cannot be read (dynamic EXECUTE, other language)";
    AllowWithoutReason, allow_without_reason, "allow-without-reason", Warn, Fixed, "a pgwarden:allow comment without reason=\"...\" (ignored)";
    UnusedAllow, unused_allow, "unused-allow", Warn, Fixed, "an allow/ignore comment that matched no finding";
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A misspelled rule id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule `{id}`{}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
pub struct UnknownRule {
    pub id: String,
    pub suggestion: Option<&'static str>,
}

impl FromStr for Rule {
    type Err = UnknownRule;
    /// One rule by its id or a one-rule alias (squawk's `prefer-timestamp-tz`). An alias that
    /// names several rules (`require-timeout-settings`) is refused here: use [`Rule::expand`].
    fn from_str(s: &str) -> Result<Self, UnknownRule> {
        match Rule::expand(s)? {
            [one] => Ok(*one),
            _ => Err(UnknownRule {
                id: s.trim().to_string(),
                suggestion: None,
            }),
        }
    }
}

/// Other spellings of rule ids, accepted wherever an id is (comments, config, CLI), the one
/// place they are listed. squawk prints `prefer-timestamp-tz` for the rule both tools call
/// prefer-timestamptz, and its `require-timeout-settings` is the pair of timeout rules;
/// `unused-ignore` is squawk's name for an ignore comment that matched nothing, and
/// `adding-primary-key-constraint` is the file name squawk gives adding-serial-primary-key-field.
pub const ALIASES: &[(&str, &[Rule])] = &[
    ("prefer-timestamp-tz", &[Rule::PreferTimestamptz]),
    (
        "require-timeout-settings",
        &[Rule::RequireLockTimeout, Rule::RequireStatementTimeout],
    ),
    ("unused-ignore", &[Rule::UnusedAllow]),
    (
        "adding-primary-key-constraint",
        &[Rule::AddingSerialPrimaryKeyField],
    ),
];

impl Rule {
    /// The rules an id or alias names: one for an id, one or more for an alias.
    pub fn expand(id: &str) -> Result<&'static [Rule], UnknownRule> {
        let wanted = id.trim();
        if let Some(i) = Rule::ALL.iter().position(|r| r.id() == wanted) {
            return Ok(&Rule::ALL[i..=i]);
        }
        ALIASES
            .iter()
            .find(|(alias, _)| *alias == wanted)
            .map(|(_, rules)| *rules)
            .ok_or_else(|| UnknownRule {
                id: wanted.to_string(),
                suggestion: Rule::closest(wanted),
            })
    }

    /// The id closest to a misspelling (edit distance), if any is reasonably close.
    pub fn closest(wanted: &str) -> Option<&'static str> {
        Rule::ALL
            .iter()
            .map(|r| (edit_distance(wanted, r.id()), r.id()))
            .min()
            .filter(|(d, id)| *d <= id.len() / 3 + 2)
            .map(|(_, id)| id)
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The "large table" threshold pair (RULES.md "Defaults by table size").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizeThresholds {
    /// At or above this many estimated rows the table is large.
    pub large_rows: u64,
    /// At or above this many bytes (table + indexes + toast) the table is large.
    pub large_bytes: u64,
    /// When the size cannot be known (file mode without --stats, lookup impossible).
    pub unknown_is_large: bool,
}

impl Default for SizeThresholds {
    fn default() -> Self {
        SizeThresholds {
            large_rows: 1_000_000,
            large_bytes: 1 << 30,
            unknown_is_large: true,
        }
    }
}

/// How big a table is, as far as pgwarden can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Created earlier in this transaction (or file): empty and invisible to others.
    New,
    Small(TableStats),
    Large(TableStats),
    Unknown,
}

impl Size {
    /// Should a size-aware rule stay at warn for this table?
    pub fn is_small(self, t: &SizeThresholds) -> bool {
        match self {
            Size::Small(_) => true,
            Size::Unknown => !t.unknown_is_large,
            Size::New | Size::Large(_) => false,
        }
    }
}

/// A finding of one rule on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    /// The consequence, in the user's terms, naming the table and its size when known.
    pub message: String,
    /// The safe recipe (with the migration tools' spelling where it differs).
    pub help: String,
    /// Byte range the finding points at.
    pub span: Range<usize>,
    /// Byte range of the whole statement.
    pub statement: Range<usize>,
    /// The lock the statement takes on the table the finding is about.
    pub lock: Option<LockMode>,
    /// A text edit on the original text that makes the statement safe. Proven before it is
    /// offered: it re-parses and this rule no longer fires on it.
    pub rewrite: Option<TextEdit>,
    /// Size-aware rules on a small existing table: the policy caps the action at warn.
    pub small_table: bool,
}

impl Finding {
    pub fn new(rule: Rule, f: &StatementFacts, message: String, help: String) -> Self {
        Finding {
            rule,
            message,
            help,
            span: f.head_span.clone(),
            statement: f.span.clone(),
            lock: f.lock,
            rewrite: None,
            small_table: false,
        }
    }

    pub fn at(mut self, span: Range<usize>) -> Self {
        self.span = span;
        self
    }

    pub fn lock(mut self, lock: Option<LockMode>) -> Self {
        self.lock = lock;
        self
    }

    pub fn rewrite(mut self, edit: Option<TextEdit>) -> Self {
        self.rewrite = edit;
        self
    }

    pub fn sized(mut self, size: Size, cx: &Cx<'_>) -> Self {
        self.small_table = self.rule.sizing() == Sizing::BySize && size.is_small(cx.thresholds);
        self
    }
}

/// What a rule's check receives besides the statement's facts.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    /// The whole analysed text (spans index into it).
    pub text: &'a str,
    pub ctx: &'a AnalysisContext,
    /// State before this statement (transaction, created tables, timeouts, held locks).
    pub state: &'a ScriptState,
    pub thresholds: &'a SizeThresholds,
    /// Statements before and after this one in the same text.
    pub earlier: &'a [AnalysedStatement],
    pub later: &'a [AnalysedStatement],
    /// (table, columns) of every top-level CREATE INDEX of the text, collected once per text:
    /// rules that ask "is there an index?" would otherwise walk every statement of the text
    /// for every statement, quadratic in a 10,000-statement file.
    pub text_indexes: &'a [(&'a ObjectName, &'a [String])],
}

impl<'a> Cx<'a> {
    pub fn size(&self, table: &ObjectName) -> Size {
        if crate::sql::identity::is_new(self.ctx, self.state, table) {
            return Size::New;
        }
        if crate::sql::identity::resolved_elsewhere(self.ctx, self.state, table) {
            return Size::Unknown;
        }
        match self.ctx.catalog.table_stats(table) {
            Some(s)
                if s.rows >= self.thresholds.large_rows
                    || s.bytes >= self.thresholds.large_bytes =>
            {
                Size::Large(s)
            }
            Some(s) => Size::Small(s),
            None => Size::Unknown,
        }
    }

    /// `orders (~12.4M rows)`, `orders (312 rows)`, or `orders` when the size is unknown.
    pub fn describe(&self, table: &ObjectName) -> String {
        match self.size(table) {
            Size::Small(s) | Size::Large(s) => format!("{table} ({})", human_rows(s.rows)),
            Size::New => format!("{table} (created in this transaction)"),
            Size::Unknown => table.to_string(),
        }
    }

    /// Is the server at least this major version? `None` when unknown.
    pub fn version_at_least(&self, major: u32) -> Option<bool> {
        self.ctx.pg_version.map(|v| v >= major)
    }

    /// Can a statement run outside a transaction block right now (needed by CONCURRENTLY)?
    pub fn idle(&self) -> bool {
        self.state.tx == TxState::Idle
    }

    /// The statement text with `edit` applied, re-parsed; `None` if it does not parse as
    /// exactly one statement.
    fn reparse_with(
        &self,
        f: &StatementFacts,
        edit: &TextEdit,
    ) -> Option<(String, StatementFacts)> {
        if edit.range.start < f.span.start || edit.range.end > f.span.end {
            return None;
        }
        let stmt = self.text.get(f.span.clone())?;
        let local = TextEdit {
            range: edit.range.start - f.span.start..edit.range.end - f.span.start,
            replacement: edit.replacement.clone(),
        };
        let new_text = local.apply(stmt)?;
        let facts = reparse(&new_text)?;
        Some((new_text, facts))
    }
}

/// The table of an ALTER TABLE and its size, unless the table is new (exempt) or the
/// statement is something else.
pub(crate) fn altered_table<'f>(
    f: &'f StatementFacts,
    cx: &Cx<'_>,
) -> Option<(&'f ObjectName, Size)> {
    if f.kind != crate::sql::facts::StatementKind::AlterTable {
        return None;
    }
    let table = f.table.as_ref()?;
    match cx.size(table) {
        Size::New => None,
        size => Some((table, size)),
    }
}

/// Column types a statement declares: CREATE TABLE columns, ADD COLUMN, ALTER COLUMN TYPE.
pub(crate) fn declared_types(f: &StatementFacts) -> Vec<(&str, &crate::sql::facts::TypeFacts)> {
    let mut out: Vec<(&str, &crate::sql::facts::TypeFacts)> = f
        .columns
        .iter()
        .filter_map(|c| c.ty.as_ref().map(|t| (c.name.as_str(), t)))
        .collect();
    for a in &f.actions {
        if let Some(c) = &a.column_def {
            if let Some(t) = &c.ty {
                out.push((c.name.as_str(), t));
            }
        }
        if let (Some(t), Some(col)) = (&a.new_type, &a.column) {
            out.push((col.as_str(), t));
        }
    }
    out
}

/// The shape of the breaking-change rules (section C) on ALTER TABLE of an existing table: one
/// finding, with the sub-command's lock, for each sub-command of `kind`. `message` gets the
/// sub-command and the table.
pub(crate) fn flag_actions(
    f: &StatementFacts,
    cx: &Cx<'_>,
    out: &mut Vec<Finding>,
    rule: Rule,
    kind: crate::sql::facts::ActionKind,
    message: impl Fn(&crate::sql::facts::ActionFacts, &ObjectName) -> String,
    help: &str,
) {
    use crate::sql::facts::{ActionKind as A, ObjectType as O, StatementKind as K};
    // Columns of other relations break clients the same way: a composite type's attributes,
    // a view's, materialized view's or foreign table's columns.
    let other_relation = matches!(kind, A::DropColumn | A::RenameColumn)
        && (f.kind == K::AlterType
            || (f.kind == K::AlterObject
                && matches!(
                    f.object,
                    Some(O::View | O::MaterializedView | O::ForeignTable)
                )));
    let table = match (altered_table(f, cx), f.targets.first()) {
        (Some((table, _)), _) => table,
        (None, Some(target)) if other_relation => target,
        _ => return,
    };
    for a in f.actions.iter().filter(|a| a.kind == kind) {
        out.push(
            Finding::new(rule, f, message(a, table), help.to_string())
                .at(a.span.clone())
                .lock(Some(a.lock)),
        );
    }
}

/// The column an ALTER TABLE sub-command names (empty when it names none).
pub(crate) fn column(a: &crate::sql::facts::ActionFacts) -> &str {
    a.column.as_deref().unwrap_or_default()
}

/// The new name a RENAME sub-command gives (empty when it gives none).
pub(crate) fn new_name(a: &crate::sql::facts::ActionFacts) -> &str {
    a.new_name.as_deref().unwrap_or_default()
}

/// The shape of the column-type rules (section D): one finding, at the type, for each column
/// the statement declares whose type `bad` matches.
pub(crate) fn flag_column_types(
    f: &StatementFacts,
    out: &mut Vec<Finding>,
    rule: Rule,
    bad: impl Fn(&crate::sql::facts::TypeFacts) -> bool,
    message: impl Fn(&str) -> String,
    help: &str,
) {
    for (column, ty) in declared_types(f) {
        if bad(ty) {
            out.push(Finding::new(rule, f, message(column), help.to_string()).at(ty.span.clone()));
        }
    }
}

/// `~12.4M rows`, `~1.2k rows`, `312 rows`.
pub fn human_rows(rows: u64) -> String {
    match rows {
        0..=999 => format!("{rows} rows"),
        1_000..=999_999 => format!("~{:.1}k rows", rows as f64 / 1e3),
        1_000_000..=999_999_999 => format!("~{:.1}M rows", rows as f64 / 1e6),
        _ => format!("~{:.1}B rows", rows as f64 / 1e9),
    }
}

/// How each migration tool spells "run this outside a transaction", for help texts.
pub(crate) const OUTSIDE_TX_RECIPE: &str = "run it outside a transaction block. Alembic: \
`postgresql_concurrently=True` inside `with op.get_context().autocommit_block():`; Django: \
the *Concurrently operations with `atomic = False`; Rails: `algorithm: :concurrently` with \
`disable_ddl_transaction!`";

/// A rule's check over one statement.
pub type CheckFn = fn(&StatementFacts, &Cx<'_>, &mut Vec<Finding>);

impl Rule {
    /// The per-statement check, for rules that have one (the others are reported by the
    /// engine or the policy step: cannot-analyse, opaque-ddl, ban-uncommitted-transaction,
    /// allow-without-reason, unused-allow).
    pub fn check_fn(self) -> Option<CheckFn> {
        use Rule as R;
        Some(match self {
            R::RequireConcurrentIndexCreation => require_concurrent_index_creation::check,
            R::BanConcurrentIndexCreationInTransaction => {
                ban_concurrent_index_creation_in_transaction::check
            }
            R::RequireConcurrentIndexDeletion => require_concurrent_index_deletion::check,
            R::RequireConcurrentReindex => require_concurrent_reindex::check,
            R::RequireConcurrentPartitionDetach => require_concurrent_partition_detach::check,
            R::RequireConcurrentRefresh => require_concurrent_refresh::check,
            R::PreferRepack => prefer_repack::check,
            R::AddingFieldWithDefault => adding_field_with_default::check,
            R::AddingRequiredField => adding_required_field::check,
            R::AddingSerialColumn => adding_serial_column::check,
            R::AddingNotNullableField => adding_not_nullable_field::check,
            R::ConstraintMissingNotValid => constraint_missing_not_valid::check,
            R::AddingForeignKeyConstraint => adding_foreign_key_constraint::check,
            R::DisallowedUniqueConstraint => disallowed_unique_constraint::check,
            R::AddingSerialPrimaryKeyField => adding_serial_primary_key_field::check,
            R::BanExclusionConstraint => ban_exclusion_constraint::check,
            R::ChangingColumnType => changing_column_type::check,
            R::BanTableRewriteOptions => ban_table_rewrite_options::check,
            R::AttachPartitionWithoutCheck => attach_partition_without_check::check,
            R::BanAlterDomainWithAddConstraint => ban_alter_domain_with_add_constraint::check,
            R::BanCreateDomainWithConstraint => ban_create_domain_with_constraint::check,
            R::LockHeldAcrossStatements => lock_held_across_statements::check,
            R::RequireLockTimeout => require_lock_timeout::check,
            R::RequireStatementTimeout => require_statement_timeout::check,
            R::EnumValueInTransaction => enum_value_in_transaction::check,
            R::TransactionNesting => transaction_nesting::check,
            R::BanTruncateCascade => ban_truncate_cascade::check,
            R::BanDropColumn => ban_drop_column::check,
            R::BanDropTable => ban_drop_table::check,
            R::BanDropDatabase => ban_drop_database::check,
            R::RenamingColumn => renaming_column::check,
            R::RenamingTable => renaming_table::check,
            R::BanDropNotNull => ban_drop_not_null::check,
            R::RenameEnumValue => rename_enum_value::check,
            R::PreferBigintOverInt => prefer_bigint_over_int::check,
            R::PreferBigintOverSmallint => prefer_bigint_over_smallint::check,
            R::PreferIdentity => prefer_identity::check,
            R::PreferTextField => prefer_text_field::check,
            R::BanCharField => ban_char_field::check,
            R::PreferTimestamptz => prefer_timestamptz::check,
            R::IdentifierTooLong => identifier_too_long::check,
            R::PreferRobustStmts => prefer_robust_stmts::check,
            R::RequireIndexOnForeignKey => require_index_on_foreign_key::check,
            R::BanDropView => ban_drop_view::check,
            R::BanDropFunction => ban_drop_function::check,
            R::BanDropType => ban_drop_type::check,
            R::BanDropDomain => ban_drop_domain::check,
            R::BanDropSchema => ban_drop_schema::check,
            R::BanDropSequence => ban_drop_sequence::check,
            R::BanDropExtension => ban_drop_extension::check,
            R::BanAlterIdentity => ban_alter_identity::check,
            R::BanDropConstraint => ban_drop_constraint::check,
            R::BanDropDefault => ban_drop_default::check,
            R::BanDropGeneratedExpression => ban_drop_generated_expression::check,
            R::BanSetSchema => ban_set_schema::check,
            R::RenamingObject => renaming_object::check,
            R::RequireEnumValueOrdering => require_enum_value_ordering::check,
            R::BanDuplicateColumnAssignments => ban_duplicate_column_assignments::check,
            R::BanAddColumn => ban_add_column::check,
            R::BanAddCompositeAttribute => ban_add_composite_attribute::check,
            R::BanAddEnumValue => ban_add_enum_value::check,
            R::BanAlterDatabaseOptions => ban_alter_database_options::check,
            R::BanAlterSystemOptions => ban_alter_system_options::check,
            R::BanAlterExtension => ban_alter_extension::check,
            R::BanAlterFunctionOptions => ban_alter_function_options::check,
            R::BanAlterViewOptions => ban_alter_view_options::check,
            R::BanAlterRoleOptions => ban_alter_role_options::check,
            R::BanAlterRowLevelSecurity => ban_alter_row_level_security::check,
            R::BanAlterSequenceValues => ban_alter_sequence_values::check,
            R::BanAlterGeneratedExpression => ban_alter_generated_expression::check,
            R::BanAlterPolicyCondition => ban_alter_policy_condition::check,
            R::BanAlterPolicyRoles => ban_alter_policy_roles::check,
            R::BanCreatePolicy => ban_create_policy::check,
            R::BanDropPolicy => ban_drop_policy::check,
            R::BanDetachInheritance => ban_detach_inheritance::check,
            R::BanDisableTrigger => ban_disable_trigger::check,
            R::BanDropIndex => ban_drop_index::check,
            R::BanDropTrigger => ban_drop_trigger::check,
            R::BanNewWriteRestriction => ban_new_write_restriction::check,
            R::BanReplaceViewFunction => ban_replace_view_function::check,
            R::BanReplicaIdentity => ban_replica_identity::check,
            R::BanRevoke => ban_revoke::check,
            R::BanSetDefault => ban_set_default::check,
            R::RequireTableSchema => require_table_schema::check,
            R::OpaqueDdl => opaque_ddl::check,
            R::BanUncommittedTransaction
            | R::BackfillUnderLock
            | R::UnbatchedBackfill
            | R::InvalidIndexKept
            | R::CannotAnalyse
            | R::AllowWithoutReason
            | R::UnusedAllow => return None,
        })
    }
}

/// The findings of one analysed text, and the state after its last statement (the proxy
/// carries it to the next Query of the same transaction).
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    pub state: ScriptState,
}

/// Runs every rule over every statement of `analysis`, proving every rewrite a rule offers
/// (`pgwarden check` prints each one as the finding's fix). Rules switched off in the policy
/// are filtered later; running them all keeps this step independent of configuration.
pub fn evaluate(
    text: &str,
    analysis: &Analysis,
    ctx: &AnalysisContext,
    thresholds: &SizeThresholds,
) -> Evaluation {
    evaluate_proving(text, analysis, ctx, thresholds, &|_| true)
}

/// [`evaluate`], proving only the rewrites of the rules `prove` names; the others' findings
/// carry no rewrite. A proof re-parses the edited statement (as much as the analysis of the
/// statement itself), so the proxy proves only what its policy may apply: the rules whose
/// action is `rewrite`, when the Query can be rewritten at all.
pub fn evaluate_proving(
    text: &str,
    analysis: &Analysis,
    ctx: &AnalysisContext,
    thresholds: &SizeThresholds,
    prove: &dyn Fn(Rule) -> bool,
) -> Evaluation {
    evaluate_selected(text, analysis, ctx, thresholds, &|_| true, prove)
}

/// Test support shared by the rule files: analyse a script and run one rule over it.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::sql::analyze;

    pub fn ctx() -> AnalysisContext {
        AnalysisContext {
            file_mode: true,
            pg_version: Some(15),
            ..AnalysisContext::default()
        }
    }

    pub fn with_rows(mut c: AnalysisContext, table: &str, rows: u64) -> AnalysisContext {
        c.catalog.tables.insert(
            table.to_string(),
            TableStats {
                rows,
                bytes: rows * 100,
            },
        );
        c
    }

    /// Findings of `rule` on `sql` in file mode.
    pub fn run_with(rule: Rule, sql: &str, c: &AnalysisContext) -> Vec<Finding> {
        let a = analyze(sql, c);
        for s in &a.statements {
            assert!(
                !matches!(s.outcome, Outcome::ParseError(_) | Outcome::Unanalysable(_)),
                "fixture does not analyse: {:?}",
                s.outcome
            );
        }
        evaluate(sql, &a, c, &SizeThresholds::default())
            .findings
            .into_iter()
            .filter(|f| f.rule == rule)
            .collect()
    }

    pub fn run(rule: Rule, sql: &str) -> Vec<Finding> {
        run_with(rule, sql, &ctx())
    }

    /// Asserts the rule fires once, offers a rewrite, and that the rewritten text re-parses
    /// and no longer trips the rule. Returns the rewritten text.
    pub fn assert_rewrite(rule: Rule, sql: &str) -> String {
        let found = run(rule, sql);
        assert_eq!(found.len(), 1, "{found:?}");
        let edit = found[0].rewrite.clone().expect("a rewrite");
        let fixed = edit.apply(sql).expect("edit applies");
        assert!(reparse(fixed.trim_end_matches(';')).is_some(), "{fixed}");
        assert!(
            crate::sql::parse::parses_cleanly(&fixed),
            "squawk's validator refuses {fixed}"
        );
        assert!(run(rule, &fixed).is_empty(), "still fires on {fixed}");
        fixed
    }

    /// Every fixture under `tests/fixtures/<rule-id>/`: `fail*.sql` must trip the rule,
    /// `pass*.sql` must not.
    pub fn fixtures(rule: Rule) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rule.id());
        let mut seen = 0;
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let sql = std::fs::read_to_string(&path).expect("fixture readable");
            let found = run(rule, &sql);
            // `-- expect: N` in a fixture: exactly N findings of its rule.
            if let Some(n) = sql
                .lines()
                .find_map(|l| l.trim().strip_prefix("-- expect:"))
                .map(|n| n.trim().parse::<usize>().expect("-- expect: takes a count"))
            {
                assert_eq!(found.len(), n, "{rule}/{name}: {found:?}");
            }
            if name.starts_with("fail") {
                assert!(!found.is_empty(), "{name} should trip {rule}");
                seen += 1;
            } else if name.starts_with("pass") {
                assert!(found.is_empty(), "{name} should not trip {rule}: {found:?}");
                seen += 1;
            }
        }
        assert!(seen >= 2, "{rule}: needs a fail and a pass fixture");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_round_trip() {
        let mut ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        for r in Rule::ALL {
            assert_eq!(r.id().parse::<Rule>(), Ok(*r));
            assert!(r.id().chars().all(|c| c.is_ascii_lowercase() || c == '-'));
            for heading in [
                "What it does",
                "Why is this bad",
                "Example",
                "Use instead",
                "Rewrite safety",
            ] {
                assert!(r.doc().contains(heading), "{r}: doc lacks {heading}");
            }
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
    }

    #[test]
    fn misspelled_id_suggests_the_closest() {
        let e = "require-concurent-index-creation"
            .parse::<Rule>()
            .unwrap_err();
        assert_eq!(e.suggestion, Some("require-concurrent-index-creation"));
        assert!(e.to_string().contains("did you mean"));
        assert_eq!("zzz".parse::<Rule>().unwrap_err().suggestion, None);
    }

    #[test]
    fn catalogue_covers_rules_md_sections_a_to_d() {
        let listed = include_str!("../../tests/fixtures/rules-md-ids.txt");
        for id in listed
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(str::split_whitespace)
        {
            assert!(id.parse::<Rule>().is_ok(), "{id} from RULES.md is missing");
        }
    }

    /// Every rule with a per-statement check has fixtures, and all of them hold: one test
    /// over the whole `tests/fixtures/<rule-id>/` tree.
    #[test]
    fn every_rule_fixture_holds() {
        for rule in Rule::ALL.iter().filter(|r| r.check_fn().is_some()) {
            testing::fixtures(*rule);
        }
    }

    #[test]
    fn squawk_aliases_expand() {
        assert_eq!(
            "prefer-timestamp-tz".parse::<Rule>(),
            Ok(Rule::PreferTimestamptz)
        );
        assert_eq!(
            Rule::expand("require-timeout-settings"),
            Ok(&[Rule::RequireLockTimeout, Rule::RequireStatementTimeout][..])
        );
        assert!("require-timeout-settings".parse::<Rule>().is_err());
        for (alias, rules) in ALIASES {
            assert!(alias.parse::<Rule>().is_err() || rules.len() == 1);
            assert!(
                Rule::ALL.iter().all(|r| r.id() != *alias),
                "{alias} is an id"
            );
        }
    }

    #[test]
    fn human_rows_formats() {
        assert_eq!(human_rows(312), "312 rows");
        assert_eq!(human_rows(12_400_000), "~12.4M rows");
    }
}
