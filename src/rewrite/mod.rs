//! Multi-step rewrites (DESIGN.md "Safe execution", principle 5): the safe form of a statement
//! as the steps that end in exactly the state the statement asked for.
//!
//! Pure: [`shape`] reads a statement's facts and says whether it has such a form and which name
//! the server must choose first; [`Shape::steps`] writes the steps once the name is known. The
//! session's driver (`proxy::session::rewrite`) runs them: one after the other outside a
//! transaction block, or the first `in_place` in place and the rest after the client's COMMIT.
//!
//! | statement | steps |
//! |---|---|
//! | `ADD FOREIGN KEY` / `ADD CHECK` | `... NOT VALID` → `VALIDATE CONSTRAINT` |
//! | `ALTER COLUMN c SET NOT NULL` | `ADD CONSTRAINT tmp CHECK (c IS NOT NULL) NOT VALID` → `VALIDATE` → `SET NOT NULL` → `DROP CONSTRAINT tmp` |
//! | `CREATE [UNIQUE] INDEX` | `CREATE [UNIQUE] INDEX CONCURRENTLY` |
//! | `ADD UNIQUE (cols)` | `CREATE UNIQUE INDEX CONCURRENTLY name` → `ADD CONSTRAINT name UNIQUE USING INDEX name` |
//! | `ADD PRIMARY KEY (cols)`, columns NOT NULL | `CREATE UNIQUE INDEX CONCURRENTLY name` → `ADD CONSTRAINT name PRIMARY KEY USING INDEX name` |
//!
//! The options of UNIQUE / PRIMARY KEY (INCLUDE, NULLS NOT DISTINCT, WITH, USING INDEX
//! TABLESPACE, DEFERRABLE) are carried by [`keys`]. An unnamed CHECK is added NOT VALID
//! unnamed, so the server names it exactly as a direct run would, and the driver reads the
//! name back ([`names::NEW_CHECK_SQL`]) before VALIDATE.
pub mod completion;
pub mod keys;
pub mod names;
mod qualify;
pub mod split;

use crate::rules::Rule;
use crate::sql::facts::{ActionKind, ConstraintKind, ObjectName, StatementFacts, StatementKind};

use names::quote_ident;

/// SQLSTATE of the error that replaces COMMIT's CommandComplete when a completion step failed
/// after the transaction committed.
pub const COMPLETION_FAILED_SQLSTATE: &str = "PW002";

/// SQLSTATE of the refusal of a statement that needs what a completion step will create.
pub const DEPENDS_ON_DEFERRED_SQLSTATE: &str = "PW001";

/// The rules whose finding this rewrite answers, when they are set to `rewrite` (a statement
/// with another rejecting finding is not rewritten: that rule decides).
pub const PRIMARY: &[Rule] = &[
    Rule::AddingForeignKeyConstraint,
    Rule::ConstraintMissingNotValid,
    Rule::AddingNotNullableField,
    Rule::RequireConcurrentIndexCreation,
    Rule::DisallowedUniqueConstraint,
    Rule::AddingSerialPrimaryKeyField,
];

/// Findings on the same statement the steps answer too, whatever their action: every step
/// runs under pgwarden's timeouts.
pub const ANSWERED_TOO: &[Rule] = &[Rule::RequireLockTimeout, Rule::RequireStatementTimeout];

/// Which safe form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    ForeignKey,
    Check,
    NotNull,
    Index,
    Unique,
    PrimaryKey,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::ForeignKey => "foreign key",
            Form::Check => "check constraint",
            Form::NotNull => "not null",
            Form::Index => "index",
            Form::Unique => "unique constraint",
            Form::PrimaryKey => "primary key",
        }
    }
}

/// What a step does (for the driver's clean-up and the messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    AddNotValid,
    Validate,
    SetNotNull,
    DropHelper,
    BuildIndex,
    AttachIndex,
}

/// One statement pgwarden sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub sql: String,
    /// What undoes this step when a later one fails. `artifact`: the object is pgwarden's own
    /// (a helper constraint, an index built for a constraint), so it is removed after a
    /// failure past the client's COMMIT too; the client's own object (a committed NOT VALID
    /// constraint) stays then, and the message says so.
    pub undo: Option<(String, bool)>,
}

/// A statement with a multi-step safe form, before its name is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub form: Form,
    pub table: ObjectName,
    /// The object's name as the statement gives it.
    pub name: Option<String>,
    /// When unnamed: the names PostgreSQL would try, in order (`names::CHOOSE_SQL`), and
    /// whether relations / constraints of that name take a candidate.
    pub candidates: Vec<String>,
    pub taken_by_relations: bool,
    pub taken_by_constraints: bool,
    /// The statement's text.
    text: String,
    /// Constraint forms: where the constraint starts and ends in `text`.
    constraint: std::ops::Range<usize>,
    /// SET NOT NULL: the column.
    column: String,
    /// ADD UNIQUE / PRIMARY KEY: its columns.
    columns: Vec<String>,
    /// ADD UNIQUE / PRIMARY KEY: the constraint with its options.
    key: Option<keys::KeySpec>,
    /// An unnamed CHECK: the server names it in the first step, the driver reads it back.
    pub named_by_server: bool,
    /// CREATE INDEX: where CONCURRENTLY goes.
    concurrently_at: usize,
    unique: bool,
}

/// The statement's safe form, if it has one pgwarden can write. `text`: the statement as sent
/// (one statement), `f`: its facts.
pub fn shape(text: &str, f: &StatementFacts) -> Option<Shape> {
    let table = f.table.clone()?;
    let base = Shape {
        form: Form::Index,
        table: table.clone(),
        name: None,
        candidates: Vec::new(),
        taken_by_relations: false,
        taken_by_constraints: true,
        text: text.to_string(),
        constraint: 0..0,
        column: String::new(),
        columns: Vec::new(),
        key: None,
        named_by_server: false,
        concurrently_at: 0,
        unique: false,
    };
    match f.kind {
        StatementKind::CreateIndex => {
            if f.flags.concurrently || f.flags.only || f.flags.if_not_exists {
                return None;
            }
            let at = f.concurrently_at?.at;
            let name = f.targets.first().map(|t| t.name.clone());
            let candidates = match &name {
                Some(_) => Vec::new(),
                // An expression column's name is PostgreSQL's guess (`expr`, a function
                // name): only plain columns are named here.
                None if f.index_columns.iter().any(String::is_empty)
                    || f.index_columns.is_empty() =>
                {
                    return None
                }
                None => {
                    let mut cols = f.index_columns.clone();
                    cols.extend(keys::include_of_index(text)?);
                    names::candidates(&table.name, &cols, "idx")
                }
            };
            Some(Shape {
                form: Form::Index,
                name,
                candidates,
                taken_by_relations: true,
                taken_by_constraints: false,
                concurrently_at: at,
                unique: f.flags.unique,
                ..base
            })
        }
        StatementKind::AlterTable => {
            let [a] = f.actions.as_slice() else {
                return None;
            };
            match a.kind {
                ActionKind::SetNotNull => Some(Shape {
                    form: Form::NotNull,
                    name: Some(helper_name(&a.column.clone()?)),
                    column: a.column.clone()?,
                    ..base
                }),
                ActionKind::AddConstraint(kind) => {
                    let c = a.constraint.as_ref()?;
                    if c.not_valid || c.using_index {
                        return None;
                    }
                    let body = text.get(c.span.clone())?;
                    let (form, key) = match kind {
                        ConstraintKind::ForeignKey => (Form::ForeignKey, None),
                        ConstraintKind::Check => (Form::Check, None),
                        ConstraintKind::Unique | ConstraintKind::PrimaryKey => {
                            let k = keys::parse(body)?;
                            let form = if k.primary {
                                Form::PrimaryKey
                            } else {
                                Form::Unique
                            };
                            (form, Some(k))
                        }
                        _ => return None,
                    };
                    let columns = key
                        .as_ref()
                        .map_or(c.columns.clone(), |k| k.columns.clone());
                    if columns.is_empty() && form != Form::Check {
                        return None;
                    }
                    let candidates = match (&c.name, form) {
                        (Some(_), _) => Vec::new(),
                        // PostgreSQL names an unnamed CHECK after the one column its
                        // expression reads (else after the table alone): the server names it
                        // in the first step, and the driver reads the name back.
                        (None, Form::Check) => Vec::new(),
                        (None, Form::ForeignKey) => {
                            names::candidates(&table.name, &columns, "fkey")
                        }
                        (None, Form::Unique) => {
                            names::candidates(&table.name, &key.as_ref()?.name_columns(), "key")
                        }
                        (None, _) => names::candidates(&table.name, &[], "pkey"),
                    };
                    Some(Shape {
                        form,
                        name: c.name.clone(),
                        candidates,
                        named_by_server: c.name.is_none() && form == Form::Check,
                        taken_by_relations: key.is_some(),
                        constraint: c.span.clone(),
                        columns,
                        key,
                        ..base
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The name of pgwarden's helper CHECK for SET NOT NULL on `column`.
fn helper_name(column: &str) -> String {
    names::make_object_name("pgwarden", Some(column), "not_null")
}

impl Shape {
    /// The client's statement.
    pub fn statement(&self) -> &str {
        &self.text
    }

    /// The table as SQL text.
    pub fn table_sql(&self) -> String {
        qualified(&self.table)
    }

    /// The steps, given the object's name (the statement's own or the server's choice).
    pub fn steps(&self, name: &str) -> Vec<Step> {
        let t = self.table_sql();
        let q = quote_ident(name);
        let drop_constraint = format!("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {q}");
        match self.form {
            Form::ForeignKey | Form::Check => {
                let mut sql = self.text.clone();
                sql.insert_str(self.constraint.end, " NOT VALID");
                if self.name.is_none() && !self.named_by_server {
                    sql.insert_str(self.constraint.start, &format!("CONSTRAINT {q} "));
                }
                vec![
                    Step {
                        kind: StepKind::AddNotValid,
                        sql,
                        undo: Some((drop_constraint, false)),
                    },
                    Step {
                        kind: StepKind::Validate,
                        sql: format!("ALTER TABLE {t} VALIDATE CONSTRAINT {q}"),
                        undo: None,
                    },
                ]
            }
            Form::NotNull => {
                let c = quote_ident(&self.column);
                vec![
                    Step {
                        kind: StepKind::AddNotValid,
                        sql: format!(
                            "ALTER TABLE {t} ADD CONSTRAINT {q} CHECK ({c} IS NOT NULL) NOT VALID"
                        ),
                        undo: Some((drop_constraint.clone(), true)),
                    },
                    Step {
                        kind: StepKind::Validate,
                        sql: format!("ALTER TABLE {t} VALIDATE CONSTRAINT {q}"),
                        undo: None,
                    },
                    Step {
                        kind: StepKind::SetNotNull,
                        sql: format!("ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL"),
                        undo: None,
                    },
                    Step {
                        kind: StepKind::DropHelper,
                        sql: format!("ALTER TABLE {t} DROP CONSTRAINT {q}"),
                        undo: None,
                    },
                ]
            }
            Form::Index => {
                let mut sql = self.text.clone();
                if self.name.is_none() {
                    // After the ON ... the statement is unnamed: name it as PostgreSQL would.
                    sql.insert_str(self.concurrently_at, &format!(" {q}"));
                }
                sql.insert_str(self.concurrently_at, " CONCURRENTLY");
                vec![Step {
                    kind: StepKind::BuildIndex,
                    sql,
                    undo: None,
                }]
            }
            Form::Unique | Form::PrimaryKey => {
                let key = self.key.clone().unwrap_or_default();
                vec![
                    Step {
                        kind: StepKind::BuildIndex,
                        sql: key.build_sql(name, &t),
                        undo: Some((
                            format!("DROP INDEX CONCURRENTLY IF EXISTS {}", self.index_sql(name)),
                            true,
                        )),
                    },
                    Step {
                        kind: StepKind::AttachIndex,
                        sql: key.attach_sql(name, &t),
                        undo: None,
                    },
                ]
            }
        }
    }

    /// How many steps run in place inside a transaction block; the rest wait for COMMIT.
    pub fn in_place(&self) -> usize {
        match self.form {
            Form::ForeignKey | Form::Check | Form::NotNull => 1,
            Form::Index | Form::Unique | Form::PrimaryKey => 0,
        }
    }

    /// The command tag of the client's statement (pgwarden answers for it when nothing runs
    /// in place).
    pub fn tag(&self) -> &'static str {
        match self.form {
            Form::Index => "CREATE INDEX",
            _ => "ALTER TABLE",
        }
    }

    /// The index `name` of this table as SQL text (an index lives in its table's schema).
    pub fn index_sql(&self, name: &str) -> String {
        match &self.table.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(name)),
            None => quote_ident(name),
        }
    }

    /// The index this rewrite builds, when it builds one.
    pub fn builds_index(&self) -> bool {
        matches!(self.form, Form::Index | Form::Unique | Form::PrimaryKey)
    }

    /// ADD PRIMARY KEY: the columns that must already be NOT NULL (else `USING INDEX` would
    /// set them NOT NULL with a scan under ACCESS EXCLUSIVE; the driver refuses instead).
    pub fn must_be_not_null(&self) -> &[String] {
        match self.form {
            Form::PrimaryKey => &self.columns,
            _ => &[],
        }
    }

    /// What stays after step `failed` failed past the client's COMMIT (and pgwarden cleaned up
    /// its own objects), and the statements that finish the job by hand.
    pub fn remains(&self, name: &str, steps: &[Step], failed: usize) -> (String, String) {
        let t = self.table.to_string();
        let finish: Vec<String> = match self.form {
            Form::NotNull => vec![format!(
                "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL",
                self.table_sql(),
                quote_ident(&self.column)
            )],
            _ => steps[failed..].iter().map(|s| s.sql.clone()).collect(),
        };
        let what = match self.form {
            Form::ForeignKey | Form::Check => format!(
                "the {} {name} exists on {t} NOT VALID: new and updated rows are checked, the \
                 existing rows are not",
                self.form.as_str()
            ),
            Form::NotNull => format!(
                "{t}.{} is still nullable (pgwarden dropped its helper constraint {name})",
                self.column
            ),
            Form::Index => format!(
                "there is no index {name} on {t} (pgwarden dropped the INVALID index the failed \
                 build left)"
            ),
            Form::Unique | Form::PrimaryKey => format!(
                "there is no {} {name} on {t} (pgwarden dropped the index the failed steps left)",
                self.form.as_str()
            ),
        };
        (what, finish.join("; "))
    }
}

/// A table name as SQL text.
pub fn qualified(o: &ObjectName) -> String {
    match &o.schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&o.name)),
        None => quote_ident(&o.name),
    }
}

/// The objects completion steps will create in this transaction, for the dependency check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deferred {
    /// Index and constraint names (lower-case as stored).
    pub names: Vec<String>,
    /// Unique constraints: (table, columns) a foreign key could need.
    pub unique: Vec<(ObjectName, Vec<String>)>,
    /// Primary keys: (table, columns) that must stay NOT NULL until the key is attached
    /// (else `USING INDEX` sets them NOT NULL again, scanning under ACCESS EXCLUSIVE).
    pub not_null: Vec<(ObjectName, Vec<String>)>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn add(&mut self, shape: &Shape, name: &str) {
        if shape.builds_index() {
            self.names.push(name.to_string());
        }
        if shape.form == Form::PrimaryKey {
            self.not_null
                .push((shape.table.clone(), shape.columns.clone()));
        }
        if matches!(shape.form, Form::Unique | Form::PrimaryKey) {
            self.unique
                .push((shape.table.clone(), shape.columns.clone()));
        }
    }

    /// Why `f` (a later statement in the same transaction) cannot run before the completion
    /// steps: it names a deferred index, or it is a foreign key needing a deferred unique
    /// index. `text`: its SQL.
    pub fn needed_by(&self, text: &str, f: &StatementFacts) -> Option<String> {
        for a in &f.actions {
            if a.kind == ActionKind::DropNotNull {
                let keyed = self.not_null.iter().any(|(t, cols)| {
                    f.table.as_ref().is_some_and(|ft| ft.same_as(t))
                        && a.column.as_ref().is_some_and(|c| cols.contains(c))
                });
                if keyed {
                    return Some(format!(
                        "it drops NOT NULL from a column of the primary key pgwarden adds only \
                         after COMMIT ({})",
                        a.column.as_deref().unwrap_or_default()
                    ));
                }
            }
            if let Some(c) = &a.constraint {
                if c.kind == ConstraintKind::ForeignKey {
                    if let Some(r) = &c.references {
                        if self.unique.iter().any(|(t, _)| t.same_as(r)) {
                            return Some(format!(
                                "its foreign key references {r}, whose unique constraint \
                                 pgwarden builds only after COMMIT"
                            ));
                        }
                    }
                }
            }
        }
        let words = identifiers(text);
        self.names
            .iter()
            .find(|n| words.iter().any(|w| w == *n))
            .map(|n| format!("it uses {n}, which pgwarden builds only after COMMIT"))
    }
}

/// The identifiers of a text, folded as PostgreSQL folds them (string literals and comments
/// left out).
fn identifiers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            out.push(String::from_utf8_lossy(&b[start..i.min(b.len())]).into_owned());
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            out.push(String::from_utf8_lossy(&b[start..i]).to_lowercase());
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
