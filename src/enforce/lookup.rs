//! Live facts from the server: the catalog queries pgwarden injects on the client's own server
//! connection, how they are put on the wire, and how their replies are read and swallowed.
//!
//! Why in-session and not on a side connection: the migration's own uncommitted work (a column
//! added a moment ago, `SET LOCAL lock_timeout`) is visible only here (DESIGN.md decision 7).
//!
//! Safety rules these queries obey, because a failing injected query inside the client's
//! transaction block would abort the client's transaction:
//! - they cannot fail on any input: names go through `quote_ident` + `to_regclass`, which yields
//!   NULL (not an error) for a missing schema or relation; every function used is readable by
//!   any role;
//! - table, column and function names travel as bind parameters, never spliced into SQL text;
//! - they use statement and portal names of their own, so the client's unnamed statement and
//!   portal survive; the portal is closed before the Sync.
//!
//! The fixed queries are prepared once per server session and only bound after that
//! ([`Prepared`]): planning them is most of a lookup's server time (parse and plan of the
//! settings and relation queries took 1–2 ms of the 2–3.5 ms a DDL statement of a real
//! history paid, BENCHMARKS.md). A prepared statement is not the session's to keep, though:
//! the client may `DEALLOCATE ALL` or `DISCARD ALL`, directly or from inside a function, where
//! pgwarden cannot see it. So inside a transaction block the lookup runs inside a savepoint of
//! its own ([`Batch::guarded`]): when a Bind finds the statement gone, [`encode_recovery`] rolls
//! the savepoint back, the client's transaction is as it was, and the lookup is sent again
//! with every statement parsed anew.
use bytes::BytesMut;
use pgwire::messages::extendedquery::Sync;
use pgwire::messages::Message;

use crate::sql::context::{parse_duration_ms, Estimate};

mod wire;

/// How the audit log names the lookup among the statements pgwarden injected.
pub const DESCRIPTION: &str =
    "pgwarden catalog lookup: server settings, relation sizes, column types, function volatility";

/// Name of pgwarden's own portal, and of its one-off statements (the savepoints, the
/// EXPLAINs); closed again before the Sync.
const STATEMENT: &str = "pgwarden_lookup";

// Every injected text below is immune to the user's objects and settings (issue 9 class 4):
// - operators are spelled `OPERATOR(pg_catalog.=)`: a bare `=` is resolved through the
//   search_path, and a user's `public.=(oid, regclass)` is an exact match that beats the
//   built-in `oid = oid` reached through a cast (or can raise and abort the client's
//   transaction);
// - every type name is `pg_catalog.`-qualified (`SET search_path = public, pg_catalog` plus a
//   `public.text` type would otherwise capture `::text`), every cast is explicit and between
//   built-in types (only a superuser can change those), every function is qualified;
// - outputs do not depend on settings: counts go out as `int8` (a `float8` prints according
//   to `extra_float_digits`), no dates, no locale-dependent formatting.
// `tests/enforce_identity.rs` plants hostile operators, types and functions and proves it.

/// Server version and the timeouts in force for this session (role and database defaults and
/// the migration's own `SET`s included), as `current_setting` prints them (`0`, `5s`, `1min`),
/// and the value of `pgwarden.allow` exactly as the server holds it now (`allow_setting`: NULL
/// when never set). Not `pg_settings`: that view builds a row for every setting, ~10x the cost
/// of the lookup.
const SETTINGS_SQL: &str = "SELECT pg_catalog.current_setting('server_version_num'), \
     pg_catalog.current_setting('lock_timeout'), \
     pg_catalog.current_setting('statement_timeout'), \
     pg_catalog.current_setting('pgwarden.allow', true)";

/// How many other client sessions are connected to this database (issue 11 deliver 2: a
/// database nobody else uses; `pg_stat_activity` shows every session's database to every
/// role, and it is the view as of this transaction's first look at it). Asked only for a
/// statement whose refusal that can relax (`LookupRequest::sessions`): it is three quarters of
/// the settings' server time (~60 of ~80 µs per lookup, BENCHMARKS.md).
const SESSIONS_SQL: &str = "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a \
       WHERE a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database() \
         AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
         AND a.backend_type OPERATOR(pg_catalog.=) CAST('client backend' AS pg_catalog.text)";

/// `to_regclass` of (schema or NULL, name): the relation the session's search_path resolves.
macro_rules! regclass_of {
    ($schema:literal, $name:literal) => {
        concat!(
            "CAST(pg_catalog.to_regclass(CASE WHEN CAST(",
            $schema,
            " AS pg_catalog.text) IS NULL THEN pg_catalog.quote_ident(CAST(",
            $name,
            " AS pg_catalog.text)) ELSE pg_catalog.quote_ident(CAST(",
            $schema,
            " AS pg_catalog.text)) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
             pg_catalog.quote_ident(CAST(",
            $name,
            " AS pg_catalog.text)) END) AS pg_catalog.oid)"
        )
    };
}

/// One relation by (schema or NULL, name). For an index, the size, oid and persistence are its
/// table's: the table is what a DROP INDEX locks and what "created in this session" is about.
///
/// Shaped for the server's executor, which runs it once per DDL statement, mostly inside long
/// migration transactions: what only an index needs (its table, its validity) is read by
/// subqueries behind `CASE WHEN c.relkind` that a table never runs, and the unique-index test
/// only for a materialized view, the one relation it is read for. Written as outer joins on
/// `pg_index` the same answers cost the server ~200 µs per execution in a transaction that
/// created 40 tables, against ~70 µs in this form (BENCHMARKS.md, "The relation lookup").
/// `$3` is the array of the relations this session created in the open transaction
/// ([`LookupRequest::created`]): for those the total size is NULL, not measured.
pub const RELATION_SQL: &str = concat!(
    "SELECT CAST(c.relkind AS pg_catalog.text), CAST(n.nspname AS pg_catalog.text), \
       CAST(COALESCE(t.reltuples, c.reltuples) AS pg_catalog.int8), \
       pg_catalog.pg_relation_size(CAST(COALESCE(t.oid, c.oid) AS pg_catalog.regclass)), \
       CASE WHEN COALESCE(t.oid, c.oid) OPERATOR(pg_catalog.=) \
             ANY (CAST(CAST($3 AS pg_catalog.text) AS pg_catalog.oid[])) THEN NULL \
         ELSE pg_catalog.pg_total_relation_size(CAST(COALESCE(t.oid, c.oid) AS pg_catalog.regclass)) END, \
       CAST(t.relname AS pg_catalog.text), \
       CASE WHEN c.relkind OPERATOR(pg_catalog.=) CAST('m' AS pg_catalog.\"char\") \
         THEN EXISTS (SELECT 1 FROM pg_catalog.pg_index u WHERE u.indrelid OPERATOR(pg_catalog.=) c.oid \
               AND u.indisunique AND u.indisvalid AND u.indpred IS NULL) \
         ELSE false END, \
       COALESCE(t.oid, c.oid), \
       CAST(COALESCE(t.relpersistence, c.relpersistence) AS pg_catalog.text), \
       CAST(tn.nspname AS pg_catalog.text), \
       CASE WHEN c.relkind OPERATOR(pg_catalog.=) ANY (CAST(ARRAY['i', 'I'] AS pg_catalog.\"char\"[])) \
         THEN (SELECT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid OPERATOR(pg_catalog.=) c.oid) END \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
     LEFT JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) (\
       CASE WHEN c.relkind OPERATOR(pg_catalog.=) ANY (CAST(ARRAY['i', 'I'] AS pg_catalog.\"char\"[])) \
         THEN (SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid OPERATOR(pg_catalog.=) c.oid) END) \
     LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.relnamespace \
     WHERE c.oid OPERATOR(pg_catalog.=) ",
    regclass_of!("$1", "$2")
);

/// One column: its current type, NOT NULL, and whether a validated `CHECK (col IS NOT NULL)`
/// exists (then SET NOT NULL skips its scan on PostgreSQL >= 12).
const COLUMN_SQL: &str = concat!(
    "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, \
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid OPERATOR(pg_catalog.=) a.attrelid \
               AND k.contype OPERATOR(pg_catalog.=) CAST('c' AS pg_catalog.\"char\") AND k.convalidated \
               AND pg_catalog.pg_get_constraintdef(k.oid) OPERATOR(pg_catalog.=) \
                   ('CHECK ((' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(CAST(a.attname AS pg_catalog.text)) \
                    OPERATOR(pg_catalog.||) ' IS NOT NULL))')) \
     FROM pg_catalog.pg_attribute a \
     WHERE a.attname OPERATOR(pg_catalog.=) CAST(CAST($3 AS pg_catalog.text) AS pg_catalog.name) \
       AND a.attnum OPERATOR(pg_catalog.>) CAST(0 AS pg_catalog.int2) AND NOT a.attisdropped \
       AND a.attrelid OPERATOR(pg_catalog.=) ",
    regclass_of!("$1", "$2")
);

/// Volatility of every function of that name (overloads included): `i`, `s`, `v` letters.
const FUNCTION_SQL: &str =
    "SELECT pg_catalog.string_agg(DISTINCT CAST(p.provolatile AS pg_catalog.text), '') \
     FROM pg_catalog.pg_proc p \
     WHERE p.proname OPERATOR(pg_catalog.=) CAST(CAST($1 AS pg_catalog.text) AS pg_catalog.name)";

/// Where a `CREATE TABLE` of (schema or NULL, name) creates its table — the schema named, or
/// the session's `current_schema()` — and the oid of what already has that qualified name
/// (NULL when nothing: then the CREATE makes a new relation). Always one row.
const TARGET_SQL: &str = "SELECT x.s, CAST(pg_catalog.to_regclass(pg_catalog.quote_ident(x.s) \
       OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(CAST($2 AS pg_catalog.text))) \
       AS pg_catalog.oid) \
     FROM (SELECT COALESCE(CAST($1 AS pg_catalog.text), CAST(pg_catalog.current_schema() AS pg_catalog.text)) AS s) x";

/// The table a foreign key (table, constraint name) references, with its size: dropping the
/// key takes ACCESS EXCLUSIVE on that table too (issue 11 deliver 5). No row when the
/// constraint is not a foreign key of that table.
const FOREIGN_KEY_SQL: &str = concat!(
    "SELECT CAST(rn.nspname AS pg_catalog.text), CAST(r.relname AS pg_catalog.text), \
       CAST(r.reltuples AS pg_catalog.int8), \
       pg_catalog.pg_relation_size(CAST(r.oid AS pg_catalog.regclass)), \
       pg_catalog.pg_total_relation_size(CAST(r.oid AS pg_catalog.regclass)) \
     FROM pg_catalog.pg_constraint k \
     JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) k.confrelid \
     JOIN pg_catalog.pg_namespace rn ON rn.oid OPERATOR(pg_catalog.=) r.relnamespace \
     WHERE k.contype OPERATOR(pg_catalog.=) CAST('f' AS pg_catalog.\"char\") \
       AND k.conname OPERATOR(pg_catalog.=) CAST(CAST($3 AS pg_catalog.text) AS pg_catalog.name) \
       AND k.conrelid OPERATOR(pg_catalog.=) ",
    regclass_of!("$1", "$2")
);

// The estimate of a data change (`rules::unbatched_backfill`): the client's own statement,
// planned and never run, so it can fail like the statement would (an unknown column, a
// permission, a lock wait). Nothing pgwarden sends may abort the client's transaction, so
// the whole lookup runs inside a savepoint of pgwarden's, always rolled back after a Sync:
//   SAVEPOINT; <the lookup queries>; set_config(lock_timeout, statement_timeout, local);
//   EXPLAIN ...; Sync; Close; ROLLBACK TO SAVEPOINT; RELEASE SAVEPOINT; Sync
// After an error the server skips to the first Sync, and the second batch puts the
// transaction back as it was: ROLLBACK TO undoes the timeouts set for the EXPLAIN and
// releases the lock the planner took; the Closes come first because the error skipped the
// first batch's. The client's statement travels inside an extended-protocol Parse, which
// PostgreSQL refuses if it holds more than one command: whatever pgwarden's lexer made of
// the text, nothing but the EXPLAIN can run. EXPLAIN without ANALYZE never executes it.

/// pgwarden's savepoint around a lookup inside a transaction block that binds statements
/// prepared by an earlier lookup (see the module doc).
const GUARD_SQL: &str = "SAVEPOINT pgwarden_lookup";
const GUARD_RELEASE_SQL: &str = "RELEASE SAVEPOINT pgwarden_lookup";
const GUARD_ROLLBACK_SQL: &str = "ROLLBACK TO SAVEPOINT pgwarden_lookup";

/// pgwarden's savepoint around an estimate.
const SAVEPOINT_SQL: &str = "SAVEPOINT pgwarden_estimate";
const ROLLBACK_SQL: &str = "ROLLBACK TO SAVEPOINT pgwarden_estimate";
const RELEASE_SQL: &str = "RELEASE SAVEPOINT pgwarden_estimate";
/// Bounds the EXPLAIN's lock wait and planning (`[policy] estimate_timeout`, in ms), local to
/// the savepoint.
const TIMEOUT_SQL: &str =
    "SELECT pg_catalog.set_config('lock_timeout', CAST($1 AS pg_catalog.text), true), \
     pg_catalog.set_config('statement_timeout', CAST($1 AS pg_catalog.text), true)";
/// How the EXPLAIN of a data change is spelled: JSON, so the row estimate is read from a
/// field and not from text that `lc_numeric` or a new PostgreSQL version could change.
const EXPLAIN_PREFIX: &str = "EXPLAIN (FORMAT JSON) ";

/// What the server said about the table a dropped foreign key references.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferencedFacts {
    pub schema: String,
    pub name: String,
    /// `reltuples`; `None` when never analysed.
    pub rows: Option<f64>,
    pub heap_bytes: i64,
    pub total_bytes: i64,
}

/// A relation name as the statement wrote it, already case-folded / unquoted by the analysis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelName {
    pub schema: Option<String>,
    pub name: String,
}

/// What to ask the server for one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupRequest {
    pub relations: Vec<RelName>,
    /// (relation, column name)
    pub columns: Vec<(RelName, String)>,
    /// Function names used in default expressions.
    pub functions: Vec<String>,
    /// Tables the text creates: where each would be created and what has that name now.
    pub targets: Vec<RelName>,
    /// (table, constraint) of every DROP CONSTRAINT: the table it references, if a foreign key.
    pub foreign_keys: Vec<(RelName, String)>,
    /// Every routine a DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE names
    /// (`enforce::routines`): which one it is and what depends on it.
    pub routines: Vec<super::routines::RoutineQuery>,
    /// Data changes (the client's statement texts) to `EXPLAIN`; when any, the lookup runs
    /// inside a savepoint (see above).
    pub explain: Vec<String>,
    /// Lock wait and planning bound for the EXPLAINs, in milliseconds.
    pub explain_timeout_ms: u64,
    /// The relations (table oids) this session created in the open transaction, the most
    /// recent 64 of them: no other session can see them, so no lock on them makes anyone wait
    /// and their size decides nothing. Their total size is not asked for (`RelationFacts::total_bytes` is `None`): `pg_total_relation_size` opens
    /// every fork of the table, its TOAST table and each of its indexes, and was ~30 of the
    /// ~70 µs the relation query cost a migration's transaction.
    pub created: Vec<u32>,
    /// Ask how many other client sessions use the database (`rules::unused::may_relax`: only
    /// a DROP or RENAME can be relaxed by it); otherwise `LiveFacts::other_sessions` is `None`.
    pub sessions: bool,
}

/// What the server said about one relation.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationFacts {
    /// `r` table, `p` partitioned table, `i` index, `m` materialized view, ...
    pub relkind: char,
    pub schema: String,
    /// `pg_class.reltuples` (of the index's table for an index); `None` when never analysed.
    pub rows: Option<f64>,
    /// Heap size in bytes.
    pub heap_bytes: i64,
    /// Heap + indexes + TOAST in bytes; `None` for a relation of [`LookupRequest::created`]
    /// (not measured).
    pub total_bytes: Option<i64>,
    /// For an index: the table it belongs to.
    pub index_table: Option<String>,
    /// For a materialized view: a valid, non-partial unique index exists (what REFRESH ... CONCURRENTLY
    /// needs); `false` for every other relation, which the server is not asked about.
    pub has_unique_index: bool,
    /// The oid of the table (of the index's table for an index): the identity "created in
    /// this session" is decided on, whatever name the relation has now.
    pub table_oid: Option<u32>,
    /// `pg_class.relpersistence` of that table: `t` = temporary (invisible to other sessions).
    pub persistence: char,
    /// For an index: the schema of its table.
    pub index_table_schema: Option<String>,
    /// For an index: `pg_index.indisvalid` (false after a failed CONCURRENTLY build).
    pub index_valid: Option<bool>,
}

#[cfg(test)]
impl RelationFacts {
    /// Test fixture: an ordinary, permanent, empty table with this oid in `public`.
    pub(crate) fn empty_table(oid: u32) -> RelationFacts {
        RelationFacts {
            relkind: 'r',
            schema: "public".into(),
            rows: Some(0.0),
            heap_bytes: 0,
            total_bytes: Some(0),
            index_table: None,
            has_unique_index: false,
            table_oid: Some(oid),
            persistence: 'p',
            index_table_schema: None,
            index_valid: None,
        }
    }
}

/// Where a CREATE TABLE creates its table, and what already has that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    /// The schema named, or `current_schema()`; `None` when no schema of the search_path
    /// exists (the CREATE then fails).
    pub schema: Option<String>,
    /// The relation that has that qualified name before the CREATE runs.
    pub existing_oid: Option<u32>,
}

/// What the server said about one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFacts {
    /// `format_type` spelling, e.g. `character varying(50)`.
    pub type_name: String,
    pub not_null: bool,
    pub has_validated_not_null_check: bool,
}

/// The answers, in the order of the request; `None` = does not exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFacts {
    pub server_version_num: Option<u32>,
    pub lock_timeout_ms: Option<u64>,
    pub statement_timeout_ms: Option<u64>,
    /// Other client sessions connected to this database (`None`: not known).
    pub other_sessions: Option<u64>,
    /// `current_setting('pgwarden.allow', true)`: `None` when the server has no such setting.
    pub allow_setting: Option<String>,
    pub relations: Vec<Option<RelationFacts>>,
    pub columns: Vec<Option<ColumnFacts>>,
    /// Volatility letters per function (`""` when no such function).
    pub functions: Vec<String>,
    pub targets: Vec<TargetFacts>,
    /// Per `foreign_keys` of the request: the referenced table, `None` when not a foreign key.
    pub foreign_keys: Vec<Option<ReferencedFacts>>,
    /// Per `routines` of the request (always one row each).
    pub routines: Vec<crate::sql::context::RoutineLive>,
    /// Per `explain` of the request: the planner's estimate, or why there is none.
    pub estimates: Vec<Estimate>,
}

/// Why a lookup produced no facts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("the server refused pgwarden's catalog lookup: {0}")]
    Server(String),
    /// 26000: a statement pgwarden prepared in an earlier lookup is gone (`DEALLOCATE ALL`,
    /// `DISCARD ALL`).
    #[error("the server refused pgwarden's catalog lookup: {0}")]
    StatementGone(String),
    #[error("unexpected reply to pgwarden's catalog lookup: message type {0:?}")]
    Unexpected(char),
    #[error("malformed reply to pgwarden's catalog lookup")]
    Malformed,
    #[error("cannot encode the catalog lookup: {0}")]
    Encode(String),
}

/// The fixed queries of a lookup: each is prepared under a name of its own (with a hash of
/// its text, so that two pgwarden versions in a chain of proxies never bind each other's
/// text) and bound as often as the request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fixed {
    Settings,
    Sessions,
    Relation,
    Column,
    Function,
    Target,
    ForeignKey,
    Routine,
}

impl Fixed {
    const ALL: [Fixed; 8] = [
        Fixed::Settings,
        Fixed::Sessions,
        Fixed::Relation,
        Fixed::Column,
        Fixed::Function,
        Fixed::Target,
        Fixed::ForeignKey,
        Fixed::Routine,
    ];

    fn sql(self) -> &'static str {
        match self {
            Fixed::Settings => SETTINGS_SQL,
            Fixed::Sessions => SESSIONS_SQL,
            Fixed::Relation => RELATION_SQL,
            Fixed::Column => COLUMN_SQL,
            Fixed::Function => FUNCTION_SQL,
            Fixed::Target => TARGET_SQL,
            Fixed::ForeignKey => FOREIGN_KEY_SQL,
            Fixed::Routine => super::routines::SQL,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Fixed::Settings => "settings",
            Fixed::Sessions => "sessions",
            Fixed::Relation => "relation",
            Fixed::Column => "column",
            Fixed::Function => "function",
            Fixed::Target => "target",
            Fixed::ForeignKey => "foreign_key",
            Fixed::Routine => "routine",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// `pgwarden_lookup_<label>_<FNV-1a of the text>`.
    fn name(self) -> &'static str {
        static NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
            Fixed::ALL
                .iter()
                .map(|f| {
                    let hash = f.sql().bytes().fold(0x811c_9dc5_u32, |h, b| {
                        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
                    });
                    format!("pgwarden_lookup_{}_{hash:08x}", f.label())
                })
                .collect()
        });
        NAMES[self as usize].as_str()
    }
}

/// Which fixed lookup statements pgwarden believes the server session holds prepared: the
/// ones an earlier lookup parsed and that answered. A belief, not a fact (see the module
/// doc): a Bind of a statement that is gone fails, and the caller sends the lookup again with
/// [`Prepared::NONE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prepared(u8);

impl Prepared {
    pub const NONE: Prepared = Prepared(0);

    fn has(self, f: Fixed) -> bool {
        self.0 & f.bit() != 0
    }

    /// Both sets.
    pub fn union(self, other: Prepared) -> Prepared {
        Prepared(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What one [`encode`]d lookup puts on the server session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// The fixed statements it parses: prepared once it has answered.
    pub parses: Prepared,
    /// It runs inside pgwarden's savepoint: after a failure [`encode_recovery`] puts the
    /// client's transaction back.
    pub guarded: bool,
    /// It binds statements an earlier lookup prepared: a [`LookupError::StatementGone`] means
    /// the client deallocated them, and the lookup is worth sending again.
    pub relies: bool,
}

/// Writes Parse/Bind/Execute/Close for every query of `req`, then one Sync: one round trip.
/// Fixed statements in `prepared` are bound without a Parse; `in_block` (the session is inside
/// a transaction block) wraps a lookup that binds any of them in a savepoint.
pub fn encode(
    req: &LookupRequest,
    prepared: Prepared,
    in_block: bool,
    buf: &mut BytesMut,
) -> Result<Batch, LookupError> {
    let mut q = Encoder {
        buf,
        prepared,
        parses: Prepared::NONE,
    };
    let estimating = !req.explain.is_empty();
    // An estimate has a savepoint of its own, rolled back whatever happened. A lookup that
    // parses everything it binds cannot fail (see the safety rules above): no savepoint.
    let relies = binds_prepared(req, prepared);
    let guarded = in_block && !estimating && relies;
    if estimating {
        q.query(SAVEPOINT_SQL, &[&[]])?;
    }
    if guarded {
        q.query(GUARD_SQL, &[&[]])?;
    }
    // Each parameter row is built as it is written: no vector per row.
    q.fixed(Fixed::Settings, std::iter::once([]))?;
    q.fixed(Fixed::Sessions, (0..usize::from(req.sessions)).map(|_| []))?;
    let created = oid_array(&req.created);
    q.fixed(
        Fixed::Relation,
        req.relations.iter().map(|r| {
            [
                r.schema.as_deref(),
                Some(r.name.as_str()),
                Some(created.as_str()),
            ]
        }),
    )?;
    q.fixed(
        Fixed::Column,
        req.columns
            .iter()
            .map(|(r, c)| [r.schema.as_deref(), Some(r.name.as_str()), Some(c.as_str())]),
    )?;
    q.fixed(
        Fixed::Function,
        req.functions.iter().map(|f| [Some(f.as_str())]),
    )?;
    q.fixed(
        Fixed::Target,
        req.targets
            .iter()
            .map(|r| [r.schema.as_deref(), Some(r.name.as_str())]),
    )?;
    q.fixed(
        Fixed::ForeignKey,
        req.foreign_keys
            .iter()
            .map(|(r, c)| [r.schema.as_deref(), Some(r.name.as_str()), Some(c.as_str())]),
    )?;
    q.fixed(
        Fixed::Routine,
        req.routines.iter().map(|r| {
            [
                r.schema.as_deref(),
                Some(r.name.as_str()),
                r.input.as_deref(),
                r.all.as_deref(),
            ]
        }),
    )?;
    if guarded {
        q.query(GUARD_RELEASE_SQL, &[&[]])?;
    }
    if estimating {
        let ms = req.explain_timeout_ms.max(1).to_string();
        q.query(TIMEOUT_SQL, &[&[Some(ms.as_str())]])?;
        for text in &req.explain {
            let sql = format!("{EXPLAIN_PREFIX}{text}");
            q.query(&sql, &[&[]])?;
        }
        sync(q.buf)?;
        q.close_own()?;
        q.query(ROLLBACK_SQL, &[&[]])?;
        q.query(RELEASE_SQL, &[&[]])?;
    }
    sync(q.buf)?;
    Ok(Batch {
        parses: q.parses,
        guarded,
        relies,
    })
}

/// `{1,2,3}`: the text form of an `oid[]`.
fn oid_array(oids: &[u32]) -> String {
    let mut out = String::with_capacity(2 + oids.len() * 6);
    out.push('{');
    for (i, oid) in oids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&oid.to_string());
    }
    out.push('}');
    out
}

/// Whether `req` binds a statement an earlier lookup prepared (one that may be gone).
fn binds_prepared(req: &LookupRequest, prepared: Prepared) -> bool {
    uses(req).iter().any(|(f, n)| *n > 0 && prepared.has(*f))
}

/// How many times `req` binds each fixed query, in the order they go on the wire.
fn uses(req: &LookupRequest) -> [(Fixed, usize); 8] {
    [
        (Fixed::Settings, 1),
        (Fixed::Sessions, usize::from(req.sessions)),
        (Fixed::Relation, req.relations.len()),
        (Fixed::Column, req.columns.len()),
        (Fixed::Function, req.functions.len()),
        (Fixed::Target, req.targets.len()),
        (Fixed::ForeignKey, req.foreign_keys.len()),
        (Fixed::Routine, req.routines.len()),
    ]
}

/// After a guarded lookup failed: close what the error skipped, roll pgwarden's savepoint
/// back and release it, then Sync. Its reader is [`ReplyReader::recovery`].
pub fn encode_recovery(buf: &mut BytesMut) -> Result<(), LookupError> {
    let mut q = Encoder {
        buf,
        prepared: Prepared::NONE,
        parses: Prepared::NONE,
    };
    q.close_own()?;
    q.query(GUARD_ROLLBACK_SQL, &[&[]])?;
    q.query(GUARD_RELEASE_SQL, &[&[]])?;
    sync(q.buf)
}

fn sync(buf: &mut BytesMut) -> Result<(), LookupError> {
    Sync::new()
        .encode(buf)
        .map_err(|e| LookupError::Encode(e.to_string()))
}

fn encode_err(e: pgwire::error::PgWireError) -> LookupError {
    LookupError::Encode(e.to_string())
}

struct Encoder<'a> {
    buf: &'a mut BytesMut,
    /// Fixed statements bound without a Parse.
    prepared: Prepared,
    /// Fixed statements this batch parses.
    parses: Prepared,
}

impl Encoder<'_> {
    /// A one-off statement under [`STATEMENT`], closed again.
    fn query(&mut self, sql: &str, params: &[&[Option<&str>]]) -> Result<(), LookupError> {
        wire::parse(self.buf, STATEMENT, sql).map_err(encode_err)?;
        for p in params {
            self.bind_execute(STATEMENT, p)?;
        }
        wire::close(self.buf, b'S', STATEMENT).map_err(encode_err)
    }

    /// A fixed statement, parsed first unless it is prepared, bound once per parameter row.
    fn fixed<'a, const N: usize>(
        &mut self,
        f: Fixed,
        params: impl ExactSizeIterator<Item = [Option<&'a str>; N]>,
    ) -> Result<(), LookupError> {
        if params.len() == 0 {
            return Ok(());
        }
        if !self.prepared.has(f) {
            // A statement of that name may be there although pgwarden does not count on it
            // (an earlier lookup failed after its Parse): a Parse over it would fail.
            wire::close(self.buf, b'S', f.name()).map_err(encode_err)?;
            wire::parse(self.buf, f.name(), f.sql()).map_err(encode_err)?;
            self.parses.0 |= f.bit();
        }
        for p in params {
            self.bind_execute(f.name(), &p)?;
        }
        Ok(())
    }

    /// Bind `statement` to pgwarden's portal, Execute it, close the portal.
    fn bind_execute(
        &mut self,
        statement: &str,
        params: &[Option<&str>],
    ) -> Result<(), LookupError> {
        wire::bind(self.buf, STATEMENT, statement, params).map_err(encode_err)?;
        wire::execute(self.buf, STATEMENT).map_err(encode_err)?;
        wire::close(self.buf, b'P', STATEMENT).map_err(encode_err)
    }

    /// Closes pgwarden's portal and one-off statement: after an error the server skipped the
    /// Closes of the failed batch.
    fn close_own(&mut self) -> Result<(), LookupError> {
        wire::close(self.buf, b'P', STATEMENT).map_err(encode_err)?;
        wire::close(self.buf, b'S', STATEMENT).map_err(encode_err)
    }
}

/// What the session does with one server message while a lookup is in flight.
// Only the few messages of an injected lookup pass through a Step, and `Done` is built once per
// lookup: a box would be an allocation per lookup to save copying a couple hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Part of the lookup's reply: drop it.
    Swallow,
    /// Not ours (NoticeResponse, NotificationResponse, ParameterStatus can come at any time):
    /// pass it on to the client.
    Forward,
    /// The lookup's ReadyForQuery arrived (swallowed too): the answer.
    Done(Result<LiveFacts, LookupError>),
}

/// Reads the replies of one [`encode`]d lookup, message by message, up to its ReadyForQuery.
#[derive(Debug)]
pub struct ReplyReader {
    expected: Vec<Slot>,
    /// Where the second batch of an estimating lookup starts in `expected` (`None`: one
    /// batch, one ReadyForQuery).
    second: Option<usize>,
    /// Index into `expected` of the query whose rows arrive now.
    current: usize,
    facts: LiveFacts,
    error: Option<LookupError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// One binding of a fixed query.
    Query(Fixed),
    /// The savepoint, the timeouts, ROLLBACK TO and RELEASE: no row of interest.
    Control,
    Explain,
}

impl ReplyReader {
    /// The reader of `req` encoded as `batch`.
    pub fn new(req: &LookupRequest, batch: &Batch) -> ReplyReader {
        let estimating = !req.explain.is_empty();
        let mut expected = Vec::new();
        if estimating || batch.guarded {
            expected.push(Slot::Control);
        }
        for (f, n) in uses(req) {
            expected.extend(std::iter::repeat_n(Slot::Query(f), n));
        }
        if batch.guarded {
            expected.push(Slot::Control);
        }
        let mut second = None;
        if estimating {
            expected.push(Slot::Control);
            expected.extend(std::iter::repeat_n(Slot::Explain, req.explain.len()));
            second = Some(expected.len());
            expected.extend([Slot::Control, Slot::Control]);
        }
        ReplyReader {
            expected,
            second,
            current: 0,
            facts: LiveFacts::default(),
            error: None,
        }
    }

    /// The reader of [`encode_recovery`]: its answer carries no facts, only whether the
    /// rollback and the release ran.
    pub fn recovery() -> ReplyReader {
        ReplyReader {
            expected: vec![Slot::Control, Slot::Control],
            second: None,
            current: 0,
            facts: LiveFacts::default(),
            error: None,
        }
    }

    /// Feeds one whole server message: its type byte and its body (without the length).
    pub fn step(&mut self, tag: u8, body: &[u8]) -> Step {
        match tag {
            b'1' | b'2' | b'3' => Step::Swallow,
            b'D' => {
                if let Err(e) = self.row(body) {
                    self.error.get_or_insert(e);
                }
                Step::Swallow
            }
            b'C' => {
                // A query with no row: record "does not exist" for its slot.
                self.finish_slot();
                Step::Swallow
            }
            b'E' => {
                if self.second.is_some() && self.expected.get(self.current) == Some(&Slot::Explain)
                {
                    // The statement's own trouble, or pgwarden's timeout: no estimate, the
                    // lookup stands (its queries answered before the EXPLAIN).
                    let code = error_field(body, b'C');
                    let own_error = !matches!(code.as_str(), "55P03" | "57014");
                    let why = if own_error {
                        format!("the server refused it: {}", error_message(body))
                    } else {
                        format!(
                            "the EXPLAIN did not get its lock or plan within estimate_timeout: {}",
                            error_message(body)
                        )
                    };
                    self.facts
                        .estimates
                        .push(Estimate::Unknown { why, own_error });
                } else if error_field(body, b'C') == "26000" {
                    self.error
                        .get_or_insert(LookupError::StatementGone(error_message(body)));
                } else {
                    self.error
                        .get_or_insert(LookupError::Server(error_message(body)));
                }
                Step::Swallow
            }
            b'N' | b'A' | b'S' => Step::Forward,
            b'Z' if self.second.is_some() => {
                // The first batch's ReadyForQuery: the rollback batch follows. An error made
                // the server skip the rest of the first batch; its EXPLAINs did not run.
                let Some(second) = self.second else {
                    return Step::Swallow;
                };
                let explains = self
                    .expected
                    .iter()
                    .filter(|s| **s == Slot::Explain)
                    .count();
                while self.facts.estimates.len() < explains {
                    self.facts.estimates.push(Estimate::Unknown {
                        why: "not run: an earlier query of pgwarden's lookup failed".into(),
                        own_error: false,
                    });
                }
                self.current = second;
                // Any later ReadyForQuery is the second batch's.
                self.second = None;
                Step::Swallow
            }
            b'Z' => {
                let result = match self.error.take() {
                    Some(e) => Err(e),
                    None => Ok(std::mem::take(&mut self.facts)),
                };
                Step::Done(result)
            }
            other => {
                self.error
                    .get_or_insert(LookupError::Unexpected(other as char));
                Step::Swallow
            }
        }
    }

    fn finish_slot(&mut self) {
        let Some(slot) = self.expected.get(self.current).copied() else {
            return;
        };
        let before = self.count_before(slot);
        let f = &mut self.facts;
        // Fill in "absent" for a slot whose query returned no row.
        match slot {
            Slot::Query(Fixed::Relation) if f.relations.len() == before => f.relations.push(None),
            Slot::Query(Fixed::Column) if f.columns.len() == before => f.columns.push(None),
            Slot::Query(Fixed::Function) if f.functions.len() == before => {
                f.functions.push(String::new())
            }
            Slot::Query(Fixed::ForeignKey) if f.foreign_keys.len() == before => {
                f.foreign_keys.push(None)
            }
            Slot::Query(Fixed::Routine) if f.routines.len() == before => {
                f.routines.push(Default::default())
            }
            Slot::Explain if f.estimates.len() == before => f.estimates.push(Estimate::Unknown {
                why: "the server returned no plan".into(),
                own_error: false,
            }),
            Slot::Query(Fixed::Target) if f.targets.len() == before => {
                f.targets.push(TargetFacts {
                    schema: None,
                    existing_oid: None,
                })
            }
            _ => {}
        }
        self.current += 1;
    }

    /// How many slots of `kind` come before the current one.
    fn count_before(&self, kind: Slot) -> usize {
        self.expected[..self.current]
            .iter()
            .filter(|s| **s == kind)
            .count()
    }

    fn row(&mut self, body: &[u8]) -> Result<(), LookupError> {
        let cols = data_row(body)?;
        let text = |i: usize| -> Option<&str> { cols.get(i).copied().flatten() };
        match self.expected.get(self.current) {
            Some(Slot::Query(Fixed::Settings)) => {
                self.facts.server_version_num = text(0).and_then(|v| v.parse().ok());
                self.facts.lock_timeout_ms = text(1).and_then(parse_duration_ms);
                self.facts.statement_timeout_ms = text(2).and_then(parse_duration_ms);
                self.facts.allow_setting = text(3).map(str::to_string);
            }
            Some(Slot::Query(Fixed::Sessions)) => {
                self.facts.other_sessions = text(0).and_then(|v| v.parse().ok());
            }
            Some(Slot::Query(Fixed::Relation)) => {
                let rows = text(2).and_then(|v| v.parse::<f64>().ok());
                self.facts.relations.push(Some(RelationFacts {
                    relkind: text(0).and_then(|k| k.chars().next()).unwrap_or('?'),
                    schema: text(1).unwrap_or_default().to_string(),
                    // PostgreSQL 14+ says -1 for a table never vacuumed or analysed.
                    rows: rows.filter(|r| *r >= 0.0),
                    heap_bytes: text(3).and_then(|v| v.parse().ok()).unwrap_or(0),
                    total_bytes: text(4).and_then(|v| v.parse().ok()),
                    index_table: text(5).map(str::to_string),
                    has_unique_index: text(6) == Some("t"),
                    table_oid: text(7).and_then(|v| v.parse().ok()),
                    persistence: text(8).and_then(|k| k.chars().next()).unwrap_or('?'),
                    index_table_schema: text(9).map(str::to_string),
                    index_valid: text(10).map(|v| v == "t"),
                }));
            }
            Some(Slot::Query(Fixed::Column)) => {
                self.facts.columns.push(Some(ColumnFacts {
                    type_name: text(0).unwrap_or_default().to_string(),
                    not_null: text(1) == Some("t"),
                    has_validated_not_null_check: text(2) == Some("t"),
                }));
            }
            Some(Slot::Query(Fixed::Function)) => {
                self.facts
                    .functions
                    .push(text(0).unwrap_or_default().to_string());
            }
            Some(Slot::Query(Fixed::ForeignKey)) => {
                self.facts.foreign_keys.push(Some(ReferencedFacts {
                    schema: text(0).unwrap_or_default().to_string(),
                    name: text(1).unwrap_or_default().to_string(),
                    rows: text(2)
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|r| *r >= 0.0),
                    heap_bytes: text(3).and_then(|v| v.parse().ok()).unwrap_or(0),
                    total_bytes: text(4).and_then(|v| v.parse().ok()).unwrap_or(0),
                }));
            }
            Some(Slot::Query(Fixed::Routine)) => {
                self.facts
                    .routines
                    .push(super::routines::from_row(|i| text(i).map(str::to_string)));
            }
            Some(Slot::Control) => {}
            Some(Slot::Explain) => {
                self.facts
                    .estimates
                    .push(match text(0).and_then(planned_rows) {
                        Some(rows) => Estimate::Rows(rows),
                        None => Estimate::Unknown {
                            why: "pgwarden could not read the plan".into(),
                            own_error: false,
                        },
                    });
            }
            Some(Slot::Query(Fixed::Target)) => {
                self.facts.targets.push(TargetFacts {
                    schema: text(0).map(str::to_string),
                    existing_oid: text(1).and_then(|v| v.parse().ok()),
                });
            }
            None => return Err(LookupError::Malformed),
        }
        Ok(())
    }
}

/// Columns of a text-format DataRow body; `None` = NULL.
fn data_row(body: &[u8]) -> Result<Vec<Option<&str>>, LookupError> {
    let mut rest = body;
    let n = take_i16(&mut rest)?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = take_i32(&mut rest)?;
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = len as usize;
        if rest.len() < len {
            return Err(LookupError::Malformed);
        }
        let (value, tail) = rest.split_at(len);
        rest = tail;
        out.push(Some(
            std::str::from_utf8(value).map_err(|_| LookupError::Malformed)?,
        ));
    }
    Ok(out)
}

fn take_i16(rest: &mut &[u8]) -> Result<i16, LookupError> {
    let (head, tail) = rest
        .split_first_chunk::<2>()
        .ok_or(LookupError::Malformed)?;
    *rest = tail;
    Ok(i16::from_be_bytes(*head))
}

fn take_i32(rest: &mut &[u8]) -> Result<i32, LookupError> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or(LookupError::Malformed)?;
    *rest = tail;
    Ok(i32::from_be_bytes(*head))
}

/// The `M` field of an ErrorResponse body.
fn error_message(body: &[u8]) -> String {
    let m = error_field(body, b'M');
    if m.is_empty() {
        "unknown error".into()
    } else {
        m
    }
}

/// One field of an ErrorResponse body (`C` SQLSTATE, `M` message); empty when absent.
fn error_field(body: &[u8], code: u8) -> String {
    body.split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(&[code]))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default()
}

/// The rows a data change's plan says it changes: the estimate of the node under
/// `ModifyTable` that feeds it (ModifyTable itself says 0 without RETURNING).
fn planned_rows(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let plan = v.get(0)?.get("Plan")?;
    let node = if plan.get("Node Type")?.as_str()? == "ModifyTable" {
        let children = plan.get("Plans")?.as_array()?;
        children
            .iter()
            .find(|c| c.get("Parent Relationship").and_then(|r| r.as_str()) == Some("Outer"))
            .or_else(|| children.first())?
    } else {
        plan
    };
    let rows = node.get("Plan Rows")?.as_f64()?;
    (rows.is_finite() && rows >= 0.0).then_some(rows as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[Option<&str>]) -> Vec<u8> {
        let mut b = (cols.len() as i16).to_be_bytes().to_vec();
        for c in cols {
            match c {
                Some(v) => {
                    b.extend((v.len() as i32).to_be_bytes());
                    b.extend(v.as_bytes());
                }
                None => b.extend((-1i32).to_be_bytes()),
            }
        }
        b
    }

    fn error(code: &str, message: &str) -> Vec<u8> {
        format!("SERROR\0C{code}\0M{message}\0\0").into_bytes()
    }

    fn request() -> LookupRequest {
        LookupRequest {
            relations: vec![RelName {
                schema: None,
                name: "package".into(),
            }],
            explain: vec!["UPDATE package SET a = 1".into()],
            explain_timeout_ms: 1000,
            ..LookupRequest::default()
        }
    }

    /// One query's replies: ParseComplete, BindComplete, rows, CommandComplete, two
    /// CloseComplete (portal, statement).
    fn query(rows: &[Vec<u8>]) -> Vec<(u8, Vec<u8>)> {
        let mut out = vec![(b'1', vec![]), (b'2', vec![])];
        out.extend(rows.iter().map(|r| (b'D', r.clone())));
        out.extend([
            (b'C', b"SELECT 1\0".to_vec()),
            (b'3', vec![]),
            (b'3', vec![]),
        ]);
        out
    }

    fn first_batch_until_explain() -> Vec<(u8, Vec<u8>)> {
        let mut m = query(&[]);
        m.extend(query(&[row(&[Some("150018"), Some("0"), Some("0"), None])]));
        let rel = [
            Some("r"),
            Some("public"),
            Some("1000000"),
            Some("50000000"),
            Some("80000000"),
            None,
            Some("f"),
            Some("t"),
            Some("16400"),
            Some("p"),
            None,
            None,
        ];
        m.extend(query(&[row(&rel)]));
        m.extend(query(&[row(&[Some(""), Some("")])]));
        m
    }

    fn second_batch() -> Vec<(u8, Vec<u8>)> {
        let mut m = vec![(b'3', vec![]), (b'3', vec![])];
        m.extend(query(&[]));
        m.extend(query(&[]));
        m.push((b'Z', b"T".to_vec()));
        m
    }

    fn feed(messages: &[(u8, Vec<u8>)]) -> Result<LiveFacts, LookupError> {
        let mut buf = BytesMut::new();
        let batch = encode(&request(), Prepared::NONE, true, &mut buf).expect("encode");
        feed_reader(ReplyReader::new(&request(), &batch), messages)
    }

    fn feed_reader(
        mut r: ReplyReader,
        messages: &[(u8, Vec<u8>)],
    ) -> Result<LiveFacts, LookupError> {
        for (i, (tag, body)) in messages.iter().enumerate() {
            match r.step(*tag, body) {
                Step::Done(result) => {
                    assert_eq!(i + 1, messages.len(), "done before the last message");
                    return result;
                }
                Step::Forward => panic!("{} forwarded", *tag as char),
                Step::Swallow => {}
            }
        }
        panic!("no answer after {} messages", messages.len())
    }

    #[test]
    fn an_estimate_is_read_from_the_plan_under_modify_table() {
        let plan = r#"[{"Plan": {"Node Type": "ModifyTable", "Operation": "Update", "Plan Rows": 0,
            "Plans": [{"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Plan Rows": 999987}]}}]"#;
        let mut m = first_batch_until_explain();
        m.extend(query(&[row(&[Some(plan)])]));
        m.push((b'Z', b"T".to_vec()));
        m.extend(second_batch());
        let facts = feed(&m).expect("facts");
        assert_eq!(facts.estimates, vec![Estimate::Rows(999_987)]);
        assert_eq!(facts.relations.len(), 1);
        assert_eq!(facts.lock_timeout_ms, Some(0));
    }

    /// The EXPLAIN fails: the server skips to the first Sync; the lookup's own answers stand,
    /// the estimate says why there is none, and the reader waits for the rollback batch.
    #[test]
    fn a_failed_explain_keeps_the_lookup_and_waits_for_the_rollback() {
        for (code, own) in [("42703", true), ("55P03", false)] {
            let mut m = first_batch_until_explain();
            m.push((b'1', vec![]));
            m.push((b'E', error(code, "column \"a\" does not exist")));
            m.push((b'Z', b"E".to_vec()));
            m.extend(second_batch());
            let facts = feed(&m).expect("facts");
            match &facts.estimates[..] {
                [Estimate::Unknown { why, own_error }] => {
                    assert_eq!(*own_error, own, "{code}");
                    assert!(why.contains("column \"a\" does not exist"), "{why}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(facts.relations.len(), 1);
        }
        // A failure of the rollback batch is the lookup's failure.
        let mut m = first_batch_until_explain();
        m.extend(query(&[row(&[Some("[]")])]));
        m.push((b'Z', b"T".to_vec()));
        m.extend([(b'3', vec![]), (b'3', vec![]), (b'1', vec![])]);
        m.push((b'E', error("3B001", "savepoint does not exist")));
        m.push((b'Z', b"E".to_vec()));
        assert!(feed(&m).is_err());
    }

    /// The other sessions are counted only when the request asks (a DROP or RENAME the count
    /// can relax): the count's query is parsed and bound then, after the settings, and its
    /// row is read as the count; otherwise it is not on the wire and the count is unknown.
    #[test]
    fn other_sessions_are_counted_only_when_asked() {
        let settings = || query(&[row(&[Some("150018"), Some("0s"), Some("0"), Some("r1")])]);
        for asked in [false, true] {
            let req = LookupRequest {
                sessions: asked,
                ..LookupRequest::default()
            };
            let mut buf = BytesMut::new();
            let batch = encode(&req, Prepared::NONE, false, &mut buf).expect("encode");
            let sent = parses(&frames(&buf));
            let mut m = settings();
            if asked {
                assert_eq!(sent, vec![SETTINGS_SQL, SESSIONS_SQL]);
                m.extend(query(&[row(&[Some("3")])]));
            } else {
                assert_eq!(sent, vec![SETTINGS_SQL]);
            }
            m.push((b'Z', b"I".to_vec()));
            let facts = feed_reader(ReplyReader::new(&req, &batch), &m).expect("facts");
            assert_eq!(facts.other_sessions, asked.then_some(3));
            assert_eq!(facts.allow_setting.as_deref(), Some("r1"));
            assert_eq!(facts.server_version_num, Some(150018));
        }
    }

    /// The request on the wire: the savepoint first, the EXPLAIN of the client's text, a Sync,
    /// then the Closes, the rollback and the release, and a second Sync.
    #[test]
    fn an_estimating_lookup_runs_inside_a_savepoint_rolled_back_after_a_sync() {
        let mut buf = BytesMut::new();
        encode(&request(), Prepared::NONE, true, &mut buf).expect("encode");
        let frames = frames(&buf);
        let parses = parses(&frames);
        assert_eq!(parses[0], SAVEPOINT_SQL);
        assert_eq!(
            parses[parses.len() - 3],
            "EXPLAIN (FORMAT JSON) UPDATE package SET a = 1"
        );
        assert_eq!(parses[parses.len() - 2], ROLLBACK_SQL);
        assert_eq!(parses[parses.len() - 1], RELEASE_SQL);
        let tags: Vec<u8> = frames.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags.iter().filter(|t| **t == b'S').count(), 2);
        let first_sync = tags.iter().position(|t| *t == b'S').unwrap_or(0);
        // After the first Sync: Close portal, Close statement, then the rollback's Parse.
        assert_eq!(&tags[first_sync + 1..first_sync + 4], b"CCP");
        assert_eq!(tags.last(), Some(&b'S'));
    }

    fn frames(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            frames.push((rest[0], rest[5..1 + len].to_vec()));
            rest = &rest[1 + len..];
        }
        frames
    }

    /// The first two NUL-terminated strings of a message body.
    fn two_strings(b: &[u8]) -> (String, String) {
        let first = b.iter().position(|c| *c == 0).unwrap_or(0);
        let body = &b[first + 1..];
        let second = body.iter().position(|c| *c == 0).unwrap_or(0);
        (
            String::from_utf8_lossy(&b[..first]).into_owned(),
            String::from_utf8_lossy(&body[..second]).into_owned(),
        )
    }

    /// The SQL text of every Parse.
    fn parses(frames: &[(u8, Vec<u8>)]) -> Vec<String> {
        frames
            .iter()
            .filter(|(t, _)| *t == b'P')
            .map(|(_, b)| two_strings(b).1)
            .collect()
    }

    /// The statement name of every Bind.
    fn binds(frames: &[(u8, Vec<u8>)]) -> Vec<String> {
        frames
            .iter()
            .filter(|(t, _)| *t == b'B')
            .map(|(_, b)| two_strings(b).1)
            .collect()
    }

    /// The Bind's parameter values, as text (`None` = NULL).
    fn bind_values(b: &[u8]) -> Vec<Option<String>> {
        let mut rest = b;
        for _ in 0..2 {
            let end = rest.iter().position(|c| *c == 0).expect("name");
            rest = &rest[end + 1..];
        }
        let formats = i16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2 + 2 * formats..];
        let n = i16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let mut out = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            rest = &rest[4..];
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(
                    String::from_utf8_lossy(&rest[..len as usize]).into_owned(),
                ));
                rest = &rest[len as usize..];
            }
        }
        out
    }

    /// Every relation is bound with the array of the relations created in the open
    /// transaction, the empty array when there are none.
    #[test]
    fn the_relation_query_is_told_which_relations_not_to_measure() {
        for (created, array) in [(vec![], "{}"), (vec![16_384, 99], "{16384,99}")] {
            let req = LookupRequest {
                created,
                ..plain_request()
            };
            let mut buf = BytesMut::new();
            encode(&req, Prepared::NONE, true, &mut buf).expect("encode");
            let f = frames(&buf);
            let relation = f
                .iter()
                .filter(|(t, _)| *t == b'B')
                .find(|(_, b)| two_strings(b).1 == Fixed::Relation.name())
                .expect("the relation's Bind");
            assert_eq!(
                bind_values(&relation.1),
                vec![None, Some("package".into()), Some(array.into())]
            );
        }
    }

    fn plain_request() -> LookupRequest {
        LookupRequest {
            relations: vec![RelName {
                schema: None,
                name: "package".into(),
            }],
            targets: vec![RelName {
                schema: None,
                name: "item".into(),
            }],
            ..LookupRequest::default()
        }
    }

    /// The first lookup of a session parses its fixed statements under their own names; once
    /// it has answered, the next one only binds them, inside pgwarden's savepoint when in a
    /// transaction block and without one outside.
    #[test]
    fn fixed_statements_are_parsed_once_and_then_bound() {
        let req = plain_request();
        let mut buf = BytesMut::new();
        let first = encode(&req, Prepared::NONE, true, &mut buf).expect("encode");
        let f = frames(&buf);
        assert_eq!(parses(&f), vec![SETTINGS_SQL, RELATION_SQL, TARGET_SQL]);
        assert_eq!(
            binds(&f),
            vec![
                Fixed::Settings.name(),
                Fixed::Relation.name(),
                Fixed::Target.name()
            ]
        );
        assert!(!first.guarded && !first.relies);
        // A Close of the name comes before each Parse: a leftover would make it fail.
        let tags: Vec<u8> = f.iter().map(|(t, _)| *t).collect();
        assert_eq!(&tags[..2], b"CP");
        let prepared = Prepared::NONE.union(first.parses);

        for in_block in [true, false] {
            let mut buf = BytesMut::new();
            let next = encode(&req, prepared, in_block, &mut buf).expect("encode");
            let f = frames(&buf);
            let expect_parses: Vec<&str> = if in_block {
                vec![GUARD_SQL, GUARD_RELEASE_SQL]
            } else {
                vec![]
            };
            assert_eq!(parses(&f), expect_parses, "in block: {in_block}");
            assert_eq!(next.guarded, in_block);
            assert!(next.relies);
            assert!(next.parses.is_empty());
            assert_eq!(
                binds(&f)
                    .iter()
                    .filter(|n| n.starts_with("pgwarden_lookup_"))
                    .count(),
                3
            );
        }

        // A statement not prepared yet is parsed; the ones prepared are only bound.
        let mut wider = req.clone();
        wider.columns.push((
            RelName {
                schema: None,
                name: "package".into(),
            },
            "name".into(),
        ));
        let mut buf = BytesMut::new();
        let b = encode(&wider, prepared, true, &mut buf).expect("encode");
        assert_eq!(
            parses(&frames(&buf)),
            vec![GUARD_SQL, COLUMN_SQL, GUARD_RELEASE_SQL]
        );
        assert!(b.parses.has(Fixed::Column) && !b.parses.has(Fixed::Relation));
    }

    /// Names are PostgreSQL identifiers (under 64 bytes) and differ between texts.
    #[test]
    fn fixed_statement_names_fit_and_differ() {
        let names: Vec<&str> = Fixed::ALL.iter().map(|f| f.name()).collect();
        for n in &names {
            assert!(n.len() < 64, "{n}");
            assert!(n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    /// A guarded lookup whose Bind finds its statement gone: the reader says so (the caller
    /// rolls the savepoint back and sends the lookup again), and the recovery batch's reader
    /// answers after its rollback and release.
    #[test]
    fn a_deallocated_statement_is_reported_as_gone() {
        let req = plain_request();
        let mut buf = BytesMut::new();
        let prepared = encode(&req, Prepared::NONE, true, &mut buf)
            .expect("encode")
            .parses;
        let batch = encode(&req, prepared, true, &mut buf).expect("encode");
        let mut m = query(&[]); // the savepoint
        m.push((
            b'E',
            error(
                "26000",
                "prepared statement \"pgwarden_lookup_settings\" does not exist",
            ),
        ));
        m.push((b'Z', b"E".to_vec()));
        match feed_reader(ReplyReader::new(&req, &batch), &m) {
            Err(LookupError::StatementGone(msg)) => assert!(msg.contains("does not exist")),
            other => panic!("{other:?}"),
        }
        // Any other error stays a plain refusal.
        let mut m = query(&[]);
        m.push((b'E', error("42501", "permission denied")));
        m.push((b'Z', b"E".to_vec()));
        assert!(matches!(
            feed_reader(ReplyReader::new(&req, &batch), &m),
            Err(LookupError::Server(_))
        ));

        let mut buf = BytesMut::new();
        encode_recovery(&mut buf).expect("encode");
        assert_eq!(
            parses(&frames(&buf)),
            vec![GUARD_ROLLBACK_SQL, GUARD_RELEASE_SQL]
        );
        let mut m = vec![(b'3', vec![]), (b'3', vec![])];
        m.extend(query(&[]));
        m.extend(query(&[]));
        m.push((b'Z', b"T".to_vec()));
        assert!(feed_reader(ReplyReader::recovery(), &m).is_ok());
    }
}
