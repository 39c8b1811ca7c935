//! pgwarden's own statement facts: what a statement is, what it touches, what it locks and costs.
//!
//! These types are the only view of a statement the rules get. They never mention the parser's
//! tree, so the parser can change (DESIGN.md decision 3) without touching a rule.
use std::fmt;
use std::ops::Range;

/// PostgreSQL table-level lock modes, weakest first, so `Ord` gives "stronger".
/// <https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-TABLES>
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// The name Postgres uses in `LOCK TABLE ... IN <mode> MODE` and in pg_locks.
    pub fn sql_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What the lock does to the application, in the words a user understands.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare | LockMode::RowExclusive => {
                "blocks only other DDL"
            }
            LockMode::ShareUpdateExclusive => "blocks neither reads nor writes",
            LockMode::Share | LockMode::ShareRowExclusive | LockMode::Exclusive => {
                "blocks all writes"
            }
            LockMode::AccessExclusive => "blocks all reads and writes",
        }
    }

    /// Blocks INSERT/UPDATE/DELETE (SHARE and stronger).
    pub fn blocks_writes(self) -> bool {
        self >= LockMode::Share
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// What a statement does to the data of the table it locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Cost {
    /// Catalog-only change.
    #[default]
    None,
    /// Builds an index (reads the whole table once).
    IndexBuild,
    /// Reads every row (validation) while holding the lock.
    Scan,
    /// Writes a new copy of the table (and rebuilds its indexes).
    Rewrite,
}

/// A schema-qualified object name, identifiers normalised the way Postgres does
/// (unquoted folded to lower case, quoted kept as written).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub schema: Option<String>,
    pub name: String,
}

impl ObjectName {
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        ObjectName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// Same object, comparing an unqualified name with a qualified one as equal
    /// (pgwarden does not know the search_path; `public` is the usual one).
    pub fn same_as(&self, other: &ObjectName) -> bool {
        self.name == other.name
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The statement kinds the rules distinguish; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    CreateTable,
    CreateTableAs,
    CreateIndex,
    DropIndex,
    Reindex,
    AlterTable,
    AlterIndex,
    DropTable,
    DropDatabase,
    Truncate,
    Cluster,
    VacuumFull,
    Vacuum,
    Analyze,
    RefreshMaterializedView,
    CreateType,
    AlterType,
    CreateDomain,
    AlterDomain,
    CreateTrigger,
    DropTrigger,
    Lock,
    Comment,
    Do,
    CreateFunction,
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Set,
    Reset,
    /// DROP of an object other than a table, index or database (view, function, schema,
    /// sequence, type, domain, extension, policy, ...): `object` says which.
    DropObject,
    /// CREATE POLICY.
    CreatePolicy,
    /// REVOKE, DROP OWNED, REASSIGN OWNED: privileges or ownership taken away.
    Revoke,
    /// CREATE [OR REPLACE] VIEW / MATERIALIZED VIEW.
    CreateView,
    /// CREATE RULE / CREATE AGGREGATE (only their OR REPLACE matters to the rules).
    CreateOther,
    /// ALTER of an object other than a table, index, type or domain (view, materialized view,
    /// foreign table, sequence, function, schema, role, database, policy, ...): `object` says
    /// which; its sub-commands are in `actions`.
    AlterObject,
    /// Any other statement: read-only for the rules.
    Other,
}

impl StatementKind {
    /// The SQL words users recognise, for messages.
    pub fn label(self) -> &'static str {
        match self {
            StatementKind::CreateTable => "CREATE TABLE",
            StatementKind::CreateTableAs => "CREATE TABLE AS",
            StatementKind::CreateIndex => "CREATE INDEX",
            StatementKind::DropIndex => "DROP INDEX",
            StatementKind::Reindex => "REINDEX",
            StatementKind::AlterTable => "ALTER TABLE",
            StatementKind::AlterIndex => "ALTER INDEX",
            StatementKind::DropTable => "DROP TABLE",
            StatementKind::DropDatabase => "DROP DATABASE",
            StatementKind::Truncate => "TRUNCATE",
            StatementKind::Cluster => "CLUSTER",
            StatementKind::VacuumFull => "VACUUM FULL",
            StatementKind::Vacuum => "VACUUM",
            StatementKind::Analyze => "ANALYZE",
            StatementKind::RefreshMaterializedView => "REFRESH MATERIALIZED VIEW",
            StatementKind::CreateType => "CREATE TYPE",
            StatementKind::AlterType => "ALTER TYPE",
            StatementKind::CreateDomain => "CREATE DOMAIN",
            StatementKind::AlterDomain => "ALTER DOMAIN",
            StatementKind::CreateTrigger => "CREATE TRIGGER",
            StatementKind::DropTrigger => "DROP TRIGGER",
            StatementKind::Lock => "LOCK",
            StatementKind::Comment => "COMMENT",
            StatementKind::Do => "DO",
            StatementKind::CreateFunction => "CREATE FUNCTION",
            StatementKind::Begin => "BEGIN",
            StatementKind::Commit => "COMMIT",
            StatementKind::Rollback => "ROLLBACK",
            StatementKind::Savepoint => "SAVEPOINT",
            StatementKind::Set => "SET",
            StatementKind::Reset => "RESET",
            StatementKind::DropObject => "DROP",
            StatementKind::CreatePolicy => "CREATE POLICY",
            StatementKind::Revoke => "REVOKE",
            StatementKind::CreateView => "CREATE VIEW",
            StatementKind::CreateOther => "CREATE",
            StatementKind::AlterObject => "ALTER",
            StatementKind::Other => "statement",
        }
    }
}

/// The kind of object a generic DROP / ALTER names (`StatementKind::DropObject`/`AlterObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    View,
    MaterializedView,
    ForeignTable,
    Sequence,
    Function,
    Procedure,
    Routine,
    Aggregate,
    Type,
    /// Casts, operators, operator classes and families: type-like objects clients rely on.
    TypeLike,
    Domain,
    Schema,
    Extension,
    Policy,
    Trigger,
    Role,
    Database,
    System,
    Other,
}

impl ObjectType {
    /// The SQL words for messages (`materialized view`).
    pub fn label(self) -> &'static str {
        match self {
            ObjectType::View => "view",
            ObjectType::MaterializedView => "materialized view",
            ObjectType::ForeignTable => "foreign table",
            ObjectType::Sequence => "sequence",
            ObjectType::Function => "function",
            ObjectType::Procedure => "procedure",
            ObjectType::Routine => "routine",
            ObjectType::Aggregate => "aggregate",
            ObjectType::Type => "type",
            ObjectType::TypeLike => "type-related object",
            ObjectType::Domain => "domain",
            ObjectType::Schema => "schema",
            ObjectType::Extension => "extension",
            ObjectType::Policy => "policy",
            ObjectType::Trigger => "trigger",
            ObjectType::Role => "role",
            ObjectType::Database => "database",
            ObjectType::System => "system",
            ObjectType::Other => "object",
        }
    }
}

/// A sub-command of a generic ALTER that is not an ALTER TABLE sub-command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectOption {
    /// Function/procedure options (SECURITY DEFINER, volatility, ...), role options
    /// (SUPERUSER, LOGIN, ...), database options (CONNECTION LIMIT, ...).
    Options,
    /// SET / RESET of a configuration parameter (ALTER ROLE/DATABASE/SYSTEM/FUNCTION).
    Config,
    /// ALTER EXTENSION ... UPDATE.
    ExtensionUpdate,
    /// ALTER EXTENSION ... DROP member.
    ExtensionDrop,
    /// ALTER POLICY ... TO roles.
    PolicyRoles,
    /// ALTER POLICY ... USING / WITH CHECK.
    PolicyCondition,
    /// ALTER SEQUENCE RESTART / START / INCREMENT / MINVALUE / MAXVALUE / CYCLE / CACHE / AS.
    SequenceValues,
}

/// Kinds of table constraint, as added by ALTER TABLE or declared inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConstraintKind {
    Check,
    ForeignKey,
    Unique,
    PrimaryKey,
    Exclude,
    NotNull,
}

/// One added or declared constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintFacts {
    pub kind: ConstraintKind,
    pub name: Option<String>,
    /// `NOT VALID`: existing rows are not checked now.
    pub not_valid: bool,
    /// `USING INDEX idx`: the index already exists, nothing is built.
    pub using_index: bool,
    /// Columns of the constraint (FK: referencing columns).
    pub columns: Vec<String>,
    /// FK: the referenced table.
    pub references: Option<ObjectName>,
    /// `CHECK (col IS NOT NULL)` on a single column: the pre-step of the safe SET NOT NULL.
    pub checks_not_null_of: Option<String>,
    /// Byte range of the constraint in the original text.
    pub span: Range<usize>,
}

/// What the parser could tell about the volatility of a default expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    /// Constants and casts of constants.
    Immutable,
    /// Fixed within a statement (now(), current_timestamp): Postgres ≥ 11 stores it once.
    Stable,
    /// Changes per row (random(), gen_random_uuid(), clock_timestamp(), nextval()).
    Volatile,
    /// Calls a function pgwarden does not know; the live catalog can answer.
    Unknown,
}

/// A column default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultFacts {
    pub text: String,
    pub volatility: Volatility,
    /// Functions called (lower case, unqualified), for the live volatility lookup.
    pub functions: Vec<String>,
}

/// A column type as written, normalised to Postgres' canonical name where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFacts {
    /// Canonical base name: `int4`, `int8`, `int2`, `varchar`, `bpchar`, `text`, `timestamp`,
    /// `timestamptz`, `serial4`, `serial8`, `serial2`, `numeric`, ... or the name as written.
    pub name: String,
    /// Type modifiers as written inside the parentheses, e.g. `50` or `10, 2`.
    pub modifiers: Option<String>,
    pub is_array: bool,
    /// Byte range of the type in the original text.
    pub span: Range<usize>,
}

impl TypeFacts {
    pub fn is_serial(&self) -> bool {
        matches!(self.name.as_str(), "serial2" | "serial4" | "serial8")
    }
}

/// A column definition (CREATE TABLE or ADD COLUMN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFacts {
    pub name: String,
    pub name_span: Range<usize>,
    pub ty: Option<TypeFacts>,
    pub default: Option<DefaultFacts>,
    pub not_null: bool,
    /// `GENERATED ALWAYS AS (...) STORED`: computed for every row when added.
    pub generated_stored: bool,
    /// `GENERATED ... AS IDENTITY`.
    pub identity: bool,
    /// Inline constraints (UNIQUE, PRIMARY KEY, REFERENCES, CHECK).
    pub constraints: Vec<ConstraintFacts>,
}

/// ALTER TABLE sub-commands; the lock table (`sql::locks`) maps each to a lock mode and a cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    AddColumn,
    DropColumn,
    AlterColumnType,
    SetDefault,
    DropDefault,
    SetNotNull,
    DropNotNull,
    DropExpression,
    /// ALTER COLUMN ... SET EXPRESSION AS (...): recomputes a stored generated column (PG 17+).
    SetExpression,
    /// SET GENERATED BY DEFAULT, RESTART, SET sequence option: the identity stays as it is.
    AlterIdentity,
    /// ADD GENERATED ... AS IDENTITY, DROP IDENTITY, SET GENERATED ALWAYS: inserts that worked
    /// before (explicit values, or no value) may fail after.
    ChangeIdentity,
    SetStatistics,
    /// ALTER COLUMN SET/RESET (n_distinct, ...).
    SetColumnOptions,
    SetStorage,
    SetCompression,
    AddConstraint(ConstraintKind),
    ValidateConstraint,
    DropConstraint,
    AlterConstraint,
    RenameConstraint,
    RenameColumn,
    RenameTable,
    /// RENAME TO of an object other than a table (view, sequence, function, schema, role, ...).
    Rename,
    SetSchema,
    SetTablespace,
    SetLogged,
    SetUnlogged,
    SetAccessMethod,
    /// SET/RESET (storage_parameter): `light` when every parameter is one Postgres changes
    /// under SHARE UPDATE EXCLUSIVE (fillfactor, autovacuum_*, toast.*, parallel_workers).
    StorageParams {
        light: bool,
    },
    ClusterOn,
    SetWithoutCluster,
    SetWithoutOids,
    EnableDisableTrigger,
    EnableDisableRule,
    RowLevelSecurity,
    ReplicaIdentity,
    Inherit,
    NoInherit,
    OfType,
    NotOf,
    OwnerTo,
    AttachPartition,
    DetachPartition,
    /// Something the parser knows but pgwarden does not classify (MERGE/SPLIT PARTITION).
    Other,
}

/// One ALTER TABLE sub-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFacts {
    pub kind: ActionKind,
    /// Byte range in the original text.
    pub span: Range<usize>,
    pub lock: LockMode,
    pub cost: Cost,
    /// The column the action is about (ALTER COLUMN, DROP COLUMN, RENAME COLUMN).
    pub column: Option<String>,
    /// ADD COLUMN: the new column.
    pub column_def: Option<ColumnFacts>,
    /// ADD CONSTRAINT: the constraint.
    pub constraint: Option<ConstraintFacts>,
    /// ALTER COLUMN TYPE: the new type; ATTACH/DETACH PARTITION: the partition.
    pub new_type: Option<TypeFacts>,
    pub partition: Option<ObjectName>,
    /// VALIDATE/DROP/RENAME CONSTRAINT: its name.
    pub constraint_name: Option<String>,
    /// `CONCURRENTLY` (DETACH PARTITION).
    pub concurrently: bool,
    /// `FINALIZE` (DETACH PARTITION).
    pub finalize: bool,
    /// ALTER COLUMN TYPE ... USING expr.
    pub using_expr: bool,
    /// New name (RENAME ...).
    pub new_name: Option<String>,
    /// ATTACH PARTITION ... DEFAULT.
    pub default_partition: bool,
    /// `IF EXISTS` / `IF NOT EXISTS` on the sub-command (ADD/DROP COLUMN, DROP CONSTRAINT).
    pub guarded: bool,
}

impl ActionFacts {
    /// A sub-command with the lock and cost the caller read off the lock table (`locks.rs`
    /// depends on these types, not the other way round).
    pub fn new(kind: ActionKind, span: Range<usize>, lock: LockMode, cost: Cost) -> Self {
        ActionFacts {
            kind,
            span,
            lock,
            cost,
            column: None,
            column_def: None,
            constraint: None,
            new_type: None,
            partition: None,
            constraint_name: None,
            concurrently: false,
            finalize: false,
            using_expr: false,
            new_name: None,
            default_partition: false,
            guarded: false,
        }
    }
}

/// Flags read off the statement's keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub concurrently: bool,
    pub if_exists: bool,
    pub if_not_exists: bool,
    pub cascade: bool,
    pub unique: bool,
    /// `ONLY tbl`: not recursing into partitions/children.
    pub only: bool,
    /// `SET LOCAL`.
    pub local: bool,
    /// CREATE TEMP/UNLOGGED TABLE: temp tables are invisible to other sessions.
    pub temporary: bool,
    /// CREATE OR REPLACE.
    pub or_replace: bool,
    /// ALTER TYPE ... ADD VALUE.
    pub add_value: bool,
    /// ALTER TYPE ... RENAME VALUE.
    pub rename_value: bool,
    /// ALTER DOMAIN ... ADD CONSTRAINT.
    pub add_constraint: bool,
    /// REFRESH ... WITH NO DATA.
    pub with_no_data: bool,
    /// CREATE TABLE ... PARTITION OF parent.
    pub partition_of: bool,
    /// COMMIT / ROLLBACK AND CHAIN: a new transaction starts at once.
    pub and_chain: bool,
    /// ALTER TYPE ... ADD VALUE ... BEFORE / AFTER an existing label.
    pub value_positioned: bool,
}

/// A `SET`/`RESET` of a session setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingFacts {
    /// Setting name, lower case.
    pub name: String,
    /// Value as written (quotes removed); `None` for RESET / TO DEFAULT.
    pub value: Option<String>,
}

/// Where pgwarden can insert text to make the statement safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertPoint {
    /// Byte offset in the original text.
    pub at: usize,
}

/// Everything pgwarden knows about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementFacts {
    pub kind: StatementKind,
    /// Byte range of the whole statement in the original text.
    pub span: Range<usize>,
    /// Byte range of the statement's first keyword(s), for diagnostics.
    pub head_span: Range<usize>,
    /// The objects the statement creates, changes or drops.
    pub targets: Vec<ObjectName>,
    /// The table the statement locks (CREATE INDEX: the indexed table).
    pub table: Option<ObjectName>,
    /// Locks taken on existing relations, strongest per relation.
    pub locks: Vec<(ObjectName, LockMode)>,
    /// The strongest of `locks`.
    pub lock: Option<LockMode>,
    pub cost: Cost,
    pub flags: Flags,
    /// ALTER TABLE sub-commands in order.
    pub actions: Vec<ActionFacts>,
    /// CREATE TABLE columns.
    pub columns: Vec<ColumnFacts>,
    /// CREATE TABLE table-level constraints.
    pub constraints: Vec<ConstraintFacts>,
    /// CREATE INDEX: the plain column names indexed, in order (expressions omitted).
    pub index_columns: Vec<String>,
    /// Where `CONCURRENTLY` goes (CREATE INDEX, DROP INDEX, REINDEX, REFRESH).
    pub concurrently_at: Option<InsertPoint>,
    /// SET/RESET.
    pub setting: Option<SettingFacts>,
    /// ALTER TYPE ... ADD VALUE: the new label; RENAME VALUE: the old label.
    pub enum_value: Option<String>,
    /// DO block / function body: the statements pgwarden could read inside it.
    pub body: Vec<StatementFacts>,
    /// DO block whose effect cannot be read (dynamic EXECUTE, other language, unparsable).
    pub opaque: bool,
    /// LOCK TABLE: the requested mode.
    pub requested_lock: Option<LockMode>,
    /// DropObject / AlterObject: what kind of object.
    pub object: Option<ObjectType>,
    /// AlterObject: its sub-commands that are not ALTER TABLE ones, with their spans.
    pub options: Vec<(ObjectOption, Range<usize>)>,
}

impl StatementFacts {
    pub fn new(kind: StatementKind, span: Range<usize>) -> Self {
        StatementFacts {
            kind,
            head_span: span.clone(),
            span,
            targets: Vec::new(),
            table: None,
            locks: Vec::new(),
            lock: None,
            cost: Cost::None,
            flags: Flags::default(),
            actions: Vec::new(),
            columns: Vec::new(),
            constraints: Vec::new(),
            index_columns: Vec::new(),
            concurrently_at: None,
            setting: None,
            enum_value: None,
            body: Vec::new(),
            opaque: false,
            requested_lock: None,
            object: None,
            options: Vec::new(),
        }
    }

    /// Records a lock on a relation, keeping the strongest per relation.
    pub fn add_lock(&mut self, rel: ObjectName, mode: LockMode) {
        if let Some(slot) = self.locks.iter_mut().find(|(r, _)| *r == rel) {
            slot.1 = slot.1.max(mode);
        } else {
            self.locks.push((rel, mode));
        }
        self.lock = self.lock.max(Some(mode));
    }

    /// The lock taken on `rel`, if any.
    pub fn lock_on(&self, rel: &ObjectName) -> Option<LockMode> {
        self.locks
            .iter()
            .filter(|(r, _)| r.same_as(rel))
            .map(|(_, m)| *m)
            .max()
    }

    /// Is this a transaction-control or session-setting statement (never a rule target)?
    pub fn is_control(&self) -> bool {
        matches!(
            self.kind,
            StatementKind::Begin
                | StatementKind::Commit
                | StatementKind::Rollback
                | StatementKind::Savepoint
                | StatementKind::Set
                | StatementKind::Reset
        )
    }
}

/// A text edit on the original query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    /// Byte range replaced (empty for an insertion).
    pub range: Range<usize>,
    pub replacement: String,
}

impl TextEdit {
    pub fn insert(at: usize, text: &str) -> Self {
        TextEdit {
            range: at..at,
            replacement: text.to_owned(),
        }
    }

    /// Applies the edit to `text`; `None` if the range is not on char boundaries of `text`.
    pub fn apply(&self, text: &str) -> Option<String> {
        let head = text.get(..self.range.start)?;
        let tail = text.get(self.range.end..)?;
        let mut out = String::with_capacity(text.len() + self.replacement.len());
        out.push_str(head);
        out.push_str(&self.replacement);
        out.push_str(tail);
        Some(out)
    }
}
