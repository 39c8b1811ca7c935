//! Migration-revision detection from the bookkeeping DML that migration tools send.
//!
//! Migration tools record what they applied in a table of their own, in the same transaction as
//! the migration's DDL (Alembic even *after* the DDL: its `UPDATE alembic_version` arrives last).
//! Recognising that DML tells the audit log which revision a DDL statement belongs to.
//!
//! Shapes recognised (literals or `$n` bind parameters, any schema qualification and quoting):
//! - Alembic: `INSERT INTO alembic_version (version_num) VALUES ('x')`,
//!   `UPDATE alembic_version SET version_num='y' WHERE alembic_version.version_num = 'x'`.
//! - Flyway (pgjdbc turns its `?` into `$n`): `INSERT INTO "public"."flyway_schema_history"
//!   ("installed_rank", "version", "description", "type", "script", "checksum",
//!   "installed_by", "execution_time", "success") VALUES ($1, ..., $9)`; revision = `version`
//!   (repeatable migrations have none: `R:` + description), `success = false` → dirty.
//! - Django: `INSERT INTO "django_migrations" ("app", "name", "applied") VALUES (...)`;
//!   revision = `app.name`.
//! - Rails: `INSERT INTO "schema_migrations" ("version") VALUES (...)` (one or many rows).
//! - golang-migrate: `INSERT INTO "schema_migrations" (version, dirty) VALUES ($1, $2)` after a
//!   `TRUNCATE`; told apart from Rails by the `dirty` column. golang-migrate writes its version
//!   in its own transaction (dirty before the migration, clean after), not in the migration's.
//!
//! Direction: an INSERT into the version table is an upgrade to the inserted revision; a
//! `DELETE FROM alembic_version / schema_migrations / django_migrations WHERE ...` is a
//! downgrade of the deleted revision (Alembic's downgrade to base, Rails' and Django's
//! unapply). Alembic's `UPDATE ... SET version_num = 'y' WHERE version_num = 'x'` says only
//! that the step went from `x` to `y`: upgrade and downgrade look the same. `from` keeps `x`,
//! and the direction is left open (the fate tracker and the report infer it from a chain of
//! steps that starts with an INSERT or ends with a DELETE, or from the reverse step).
use serde::{Deserialize, Serialize};

use super::lex::{ident_value, string_value, tokenize, Kind, Token};

/// Which tool wrote the bookkeeping row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationTool {
    Alembic,
    Flyway,
    Django,
    Rails,
    GolangMigrate,
}

/// One migration revision seen in bookkeeping DML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRevision {
    /// The tool whose table was written.
    pub tool: MigrationTool,
    /// Alembic/Rails/golang-migrate version, Flyway version, Django `app.name`.
    pub revision: String,
    /// Flyway's description column, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// golang-migrate's `dirty` flag, or Flyway `success = false`: the tool marked the revision
    /// as started but not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    /// Alembic's UPDATE: the version the row held before (its WHERE value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `upgrade` or `downgrade` when known (see the module docs); absent when the bookkeeping
    /// alone cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
}

/// Which way a migration step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Upgrade,
    Downgrade,
}

impl MigrationRevision {
    /// A revision with only tool and name.
    pub fn new(tool: MigrationTool, revision: impl Into<String>) -> MigrationRevision {
        MigrationRevision {
            tool,
            revision: revision.into(),
            description: None,
            dirty: None,
            from: None,
            direction: None,
        }
    }
}

/// Recognises migration bookkeeping in `sql` (which may hold several statements).
/// `params` are the Bind parameter values in text form (`None` for NULL or binary format).
///
/// Costs one pass over the bytes and no allocation for ordinary DML.
pub fn detect(sql: &str, params: &[Option<&str>]) -> Vec<MigrationRevision> {
    if !might_be_bookkeeping(sql) {
        return Vec::new();
    }
    let toks = tokenize(sql, true);
    let mut out = Vec::new();
    for stmt in toks.split(|t| t.is_punct(sql, ";")) {
        detect_one(sql, stmt, params, &mut out);
    }
    out
}

/// One pass looking for `_version`, `_migrations` or `_schema_history` after an underscore.
pub fn might_be_bookkeeping(sql: &str) -> bool {
    might_be_bookkeeping_bytes(sql.as_bytes())
}

/// [`might_be_bookkeeping`] on the text's bytes as they came off the wire: the same answer as
/// on their lossy UTF-8 reading (the needles are ASCII, and a replacement character holds no
/// ASCII byte), without building that reading for every Query.
pub fn might_be_bookkeeping_bytes(b: &[u8]) -> bool {
    // Every Query and Parse passes here with the audit log on: the underscores are found with
    // memchr's vectorised search (a byte-at-a-time loop cost ~350 instructions on a pgbench
    // query, BENCHMARKS.md).
    memchr::memchr_iter(b'_', b).any(|at| {
        let rest = &b[at..];
        [&b"_version"[..], b"_migrations", b"_schema_history"]
            .iter()
            .any(|needle| {
                rest.len() >= needle.len() && rest[..needle.len()].eq_ignore_ascii_case(needle)
            })
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Alembic,
    Flyway,
    Django,
    SchemaMigrations,
}

fn table_of(name: &str) -> Option<Table> {
    match name {
        "alembic_version" => Some(Table::Alembic),
        "flyway_schema_history" => Some(Table::Flyway),
        "django_migrations" => Some(Table::Django),
        "schema_migrations" => Some(Table::SchemaMigrations),
        _ => None,
    }
}

/// Reads a possibly qualified name starting at `i`; returns its last component and the index
/// after it.
fn qualified_name(src: &str, t: &[Token], mut i: usize) -> Option<(String, usize)> {
    let mut last = ident_value(t.get(i)?, src)?;
    i += 1;
    while t.get(i).is_some_and(|x| x.is_punct(src, ".")) {
        last = ident_value(t.get(i + 1)?, src)?;
        i += 2;
    }
    Some((last, i))
}

/// A scalar value: literal, number, boolean, NULL or `$n`; trailing casts are ignored.
fn value(src: &str, t: &[Token], params: &[Option<&str>]) -> Option<String> {
    let first = t.first()?;
    match first.kind {
        Kind::String => string_value(first.text(src), true),
        Kind::Number => Some(first.text(src).to_string()),
        Kind::Param => {
            let n: usize = first.text(src).get(1..)?.parse().ok()?;
            params
                .get(n.checked_sub(1)?)
                .copied()
                .flatten()
                .map(str::to_string)
        }
        Kind::Word if first.is_word(src, "true") || first.is_word(src, "false") => {
            Some(first.text(src).to_ascii_lowercase())
        }
        _ => None,
    }
}

/// Splits `t` (the inside of a parenthesised list) at top-level commas.
fn split_commas(src: &str, t: &[Token]) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, x) in t.iter().enumerate() {
        if x.is_punct(src, "(") || x.is_punct(src, "[") {
            depth += 1;
        } else if x.is_punct(src, ")") || x.is_punct(src, "]") {
            depth -= 1;
        } else if depth == 0 && x.is_punct(src, ",") {
            parts.push((start, i));
            start = i + 1;
        }
    }
    parts.push((start, t.len()));
    parts
}

/// Index of the `)` matching the `(` at `open`.
fn matching_paren(src: &str, t: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, x) in t.iter().enumerate().skip(open) {
        if x.is_punct(src, "(") {
            depth += 1;
        } else if x.is_punct(src, ")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn is_bool_true(v: Option<&str>) -> Option<bool> {
    match v?.to_ascii_lowercase().as_str() {
        "t" | "true" | "1" | "y" | "yes" | "on" => Some(true),
        "f" | "false" | "0" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn detect_one(src: &str, t: &[Token], params: &[Option<&str>], out: &mut Vec<MigrationRevision>) {
    let Some(first) = t.first() else { return };
    if first.is_word(src, "insert") {
        if !t.get(1).is_some_and(|x| x.is_word(src, "into")) {
            return;
        }
        let Some((name, i)) = qualified_name(src, t, 2) else {
            return;
        };
        let Some(table) = table_of(&name) else { return };
        // Column list.
        if !t.get(i).is_some_and(|x| x.is_punct(src, "(")) {
            return;
        }
        let Some(close) = matching_paren(src, t, i) else {
            return;
        };
        let cols: Vec<Option<String>> = split_commas(src, &t[i + 1..close])
            .into_iter()
            .map(|(a, b)| {
                let part = &t[i + 1 + a..i + 1 + b];
                if part.len() == 1 {
                    ident_value(&part[0], src)
                } else {
                    None
                }
            })
            .collect();
        let mut j = close + 1;
        if !t.get(j).is_some_and(|x| x.is_word(src, "values")) {
            return;
        }
        j += 1;
        // One or more rows.
        while t.get(j).is_some_and(|x| x.is_punct(src, "(")) {
            let Some(end) = matching_paren(src, t, j) else {
                return;
            };
            let inner = &t[j + 1..end];
            let vals: Vec<Option<String>> = split_commas(src, inner)
                .into_iter()
                .map(|(a, b)| value(src, &inner[a..b], params))
                .collect();
            let row = Row {
                cols: &cols,
                vals: &vals,
            };
            if let Some(rev) = row_revision(table, &row) {
                out.push(rev);
            }
            j = end + 1;
            if t.get(j).is_some_and(|x| x.is_punct(src, ",")) {
                j += 1;
            } else {
                break;
            }
        }
    } else if first.is_word(src, "update") {
        let mut i = 1;
        if t.get(i).is_some_and(|x| x.is_word(src, "only")) {
            i += 1;
        }
        let Some((name, mut i)) = qualified_name(src, t, i) else {
            return;
        };
        if table_of(&name) != Some(Table::Alembic) {
            return;
        }
        if !t.get(i).is_some_and(|x| x.is_word(src, "set")) {
            return;
        }
        i += 1;
        let end = t[i..]
            .iter()
            .position(|x| {
                x.is_word(src, "where") || x.is_word(src, "returning") || x.is_word(src, "from")
            })
            .map_or(t.len(), |p| p + i);
        for (a, b) in split_commas(src, &t[i..end]) {
            let part = &t[i + a..i + b];
            if part.len() >= 3
                && ident_value(&part[0], src).as_deref() == Some("version_num")
                && part[1].is_punct(src, "=")
            {
                if let Some(v) = value(src, &part[2..], params) {
                    let mut r = MigrationRevision::new(MigrationTool::Alembic, v);
                    r.from = t
                        .get(end..)
                        .and_then(|w| where_values(src, w, params).remove("version_num"));
                    out.push(r);
                }
            }
        }
    } else if first.is_word(src, "delete") {
        // `DELETE FROM alembic_version WHERE version_num = 'x'` (Rails and Django: their
        // tables' `version` / `app` + `name`): the downgrade of that revision.
        if !t.get(1).is_some_and(|x| x.is_word(src, "from")) {
            return;
        }
        let mut i = 2;
        if t.get(i).is_some_and(|x| x.is_word(src, "only")) {
            i += 1;
        }
        let Some((name, i)) = qualified_name(src, t, i) else {
            return;
        };
        let Some(table) = table_of(&name) else { return };
        let Some(w) = t[i..].iter().position(|x| x.is_word(src, "where")) else {
            return;
        };
        let vals = where_values(src, &t[i + w..], params);
        let revision = match table {
            Table::Alembic => vals.get("version_num").cloned(),
            Table::SchemaMigrations if !vals.contains_key("dirty") => vals.get("version").cloned(),
            Table::Django => match (vals.get("app"), vals.get("name")) {
                (Some(a), Some(n)) => Some(format!("{a}.{n}")),
                _ => None,
            },
            _ => None,
        };
        let tool = match table {
            Table::Alembic => MigrationTool::Alembic,
            Table::Django => MigrationTool::Django,
            _ => MigrationTool::Rails,
        };
        if let Some(rev) = revision {
            let mut r = MigrationRevision::new(tool, rev);
            r.direction = Some(Direction::Downgrade);
            out.push(r);
        }
    }
}

/// `column = value` pairs of a WHERE clause joined by AND (columns possibly qualified, the
/// clause possibly parenthesised): column → value. Anything else is ignored.
fn where_values(
    src: &str,
    t: &[Token],
    params: &[Option<&str>],
) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut i = 0;
    while i < t.len() {
        if t[i].is_word(src, "returning") {
            break;
        }
        if t.get(i + 1).is_some_and(|x| x.is_punct(src, "="))
            || t.get(i + 1).is_some_and(|x| x.is_punct(src, "."))
        {
            if let Some((col, j)) = qualified_name(src, t, i) {
                if t.get(j).is_some_and(|x| x.is_punct(src, "=")) {
                    if let Some(v) = t.get(j + 1..).and_then(|rest| value(src, rest, params)) {
                        out.entry(col).or_insert(v);
                    }
                    i = j + 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// One VALUES row with its column names.
struct Row<'a> {
    cols: &'a [Option<String>],
    vals: &'a [Option<String>],
}

impl Row<'_> {
    fn get(&self, col: &str) -> Option<&str> {
        let idx = self.cols.iter().position(|c| c.as_deref() == Some(col))?;
        self.vals.get(idx)?.as_deref()
    }

    fn has(&self, col: &str) -> bool {
        self.cols.iter().any(|c| c.as_deref() == Some(col))
    }
}

fn row_revision(table: Table, row: &Row<'_>) -> Option<MigrationRevision> {
    let get = |c: &str| row.get(c);
    let has_dirty = row.has("dirty");
    let rev = |tool, revision: String| {
        let mut r = MigrationRevision::new(tool, revision);
        // Inserting a version row: the revision was applied. golang-migrate's row is a
        // state marker (dirty before, clean after), whichever way it went.
        if tool != MigrationTool::GolangMigrate {
            r.direction = Some(Direction::Upgrade);
        }
        r
    };
    match table {
        Table::Alembic => Some(rev(MigrationTool::Alembic, get("version_num")?.to_string())),
        Table::Django => Some(rev(
            MigrationTool::Django,
            format!("{}.{}", get("app")?, get("name")?),
        )),
        Table::SchemaMigrations if has_dirty => {
            let mut r = rev(MigrationTool::GolangMigrate, get("version")?.to_string());
            r.dirty = is_bool_true(get("dirty"));
            Some(r)
        }
        Table::SchemaMigrations => Some(rev(MigrationTool::Rails, get("version")?.to_string())),
        Table::Flyway => {
            let description = get("description").map(str::to_string);
            let revision = match get("version") {
                Some(v) => v.to_string(),
                None => format!("R:{}", description.clone()?),
            };
            let mut r = rev(MigrationTool::Flyway, revision);
            r.description = description;
            r.dirty = is_bool_true(get("success")).map(|ok| !ok);
            Some(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str, params: &[Option<&str>]) -> MigrationRevision {
        let mut v = detect(sql, params);
        assert_eq!(v.len(), 1, "{sql}: {v:?}");
        v.remove(0)
    }

    /// The definition: some byte starts one of the needles, ignoring ASCII case.
    fn bookkeeping_by_definition(b: &[u8]) -> bool {
        (0..b.len()).any(|i| {
            [&b"_version"[..], b"_migrations", b"_schema_history"]
                .iter()
                .any(|n| b[i..].len() >= n.len() && b[i..i + n.len()].eq_ignore_ascii_case(n))
        })
    }

    #[test]
    fn bookkeeping_names_are_found_anywhere_in_any_case() {
        for (sql, want) in [
            ("UPDATE alembic_version SET version_num = '2'", true),
            ("select * from DJANGO_MIGRATIONS", true),
            ("insert into flyway_Schema_History values (1)", true),
            ("SELECT 1 FROM a_b_c_x_schema_migrations", true),
            ("x_version", true),
            ("_versio", false),
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
                false,
            ),
            ("SELECT version FROM t", false),
            ("", false),
            ("____", false),
        ] {
            assert_eq!(might_be_bookkeeping(sql), want, "{sql}");
            assert_eq!(bookkeeping_by_definition(sql.as_bytes()), want, "{sql}");
        }
        // Longer than one vector of the search, the needle at the very end.
        let long = format!(
            "{}_Migrations",
            "select a_b from t_u where c = 1 ".repeat(9)
        );
        assert!(might_be_bookkeeping(&long));
        assert!(!might_be_bookkeeping(&long[..long.len() - 1]));
    }

    proptest::proptest! {
        #[test]
        fn bookkeeping_search_agrees_with_its_definition(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"_"[..], b"_version", b"_VERSIO", b"_migrations", b"_Schema_History",
                    b"_schema_histor", b"v", b"m", b"a", b" ", b"\xe9", b"\x00", b"select ",
                ]),
                0..40,
            ),
        ) {
            let b = pieces.concat();
            proptest::prop_assert_eq!(might_be_bookkeeping_bytes(&b), bookkeeping_by_definition(&b));
        }
    }

    #[test]
    fn ordinary_dml_is_ignored_cheaply() {
        assert!(!might_be_bookkeeping("SELECT * FROM users WHERE id = 1"));
        assert!(detect("INSERT INTO users (version) VALUES ('1')", &[]).is_empty());
        assert!(detect("SELECT version_num FROM alembic_version", &[]).is_empty());
    }

    #[test]
    fn alembic() {
        let r = one(
            "INSERT INTO alembic_version (version_num) VALUES ('0001') RETURNING alembic_version.version_num",
            &[],
        );
        assert_eq!(
            (r.tool, r.revision.as_str()),
            (MigrationTool::Alembic, "0001")
        );
        let r = one(
            "UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001'",
            &[],
        );
        assert_eq!(r.revision, "0002");
        let r = one(
            "update \"myschema\".\"alembic_version\" set version_num=$1 where alembic_version.version_num = $2",
            &[Some("ae10"), Some("0002")],
        );
        assert_eq!(r.revision, "ae10");
        assert_eq!(r.from.as_deref(), Some("0002"));
        assert_eq!(r.direction, None);
        let r = one(
            "DELETE FROM alembic_version WHERE alembic_version.version_num = '0001'",
            &[],
        );
        assert_eq!(
            (r.revision.as_str(), r.direction),
            ("0001", Some(Direction::Downgrade))
        );
        let r = one(
            "DELETE FROM \"schema_migrations\" WHERE \"schema_migrations\".\"version\" = $1",
            &[Some("20240101")],
        );
        assert_eq!(
            (r.tool, r.revision.as_str(), r.direction),
            (MigrationTool::Rails, "20240101", Some(Direction::Downgrade))
        );
        let r = one(
            "DELETE FROM \"django_migrations\" WHERE (\"django_migrations\".\"app\" = 'shop' AND \"django_migrations\".\"name\" = '0002_x')",
            &[],
        );
        assert_eq!(
            (r.tool, r.revision.as_str()),
            (MigrationTool::Django, "shop.0002_x")
        );
        assert!(detect("DELETE FROM alembic_version", &[]).is_empty());
    }

    #[test]
    fn flyway_with_bind_parameters() {
        let sql = "INSERT INTO \"public\".\"flyway_schema_history\" (\"installed_rank\", \"version\", \"description\", \"type\", \"script\", \"checksum\", \"installed_by\", \"execution_time\", \"success\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let p = [
            Some("3"),
            Some("1.2"),
            Some("add users"),
            Some("SQL"),
            Some("V1_2__add_users.sql"),
            Some("-12345"),
            Some("deploy"),
            Some("40"),
            Some("t"),
        ];
        let r = one(sql, &p);
        assert_eq!(r.tool, MigrationTool::Flyway);
        assert_eq!(r.revision, "1.2");
        assert_eq!(r.description.as_deref(), Some("add users"));
        assert_eq!(r.dirty, Some(false));
        // Repeatable migration: version NULL.
        let mut p2 = p;
        p2[1] = None;
        assert_eq!(one(sql, &p2).revision, "R:add users");
    }

    #[test]
    fn django_literal_and_params() {
        let r = one(
            "INSERT INTO \"django_migrations\" (\"app\", \"name\", \"applied\") VALUES ('polls', '0001_initial', '2024-05-01T10:00:00+00:00'::timestamptz) RETURNING \"django_migrations\".\"id\"",
            &[],
        );
        assert_eq!(
            (r.tool, r.revision.as_str()),
            (MigrationTool::Django, "polls.0001_initial")
        );
        let r = one(
            "INSERT INTO \"django_migrations\" (\"app\", \"name\", \"applied\") VALUES ($1, $2, $3)",
            &[Some("auth"), Some("0002_x"), Some("2024-05-01")],
        );
        assert_eq!(r.revision, "auth.0002_x");
    }

    #[test]
    fn rails_and_golang_migrate() {
        let r = one(
            "INSERT INTO \"schema_migrations\" (\"version\") VALUES ($1) RETURNING \"version\"",
            &[Some("20240501120000")],
        );
        assert_eq!(
            (r.tool, r.revision.as_str()),
            (MigrationTool::Rails, "20240501120000")
        );
        let v = detect(
            "INSERT INTO \"schema_migrations\" (version) VALUES\n('20240101000000'),\n('20240102000000');",
            &[],
        );
        assert_eq!(v.len(), 2);
        let v = detect(
            "TRUNCATE \"public\".\"schema_migrations\"; INSERT INTO \"public\".\"schema_migrations\" (version, dirty) VALUES ($1, $2)",
            &[Some("7"), Some("true")],
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].tool, MigrationTool::GolangMigrate);
        assert_eq!((v[0].revision.as_str(), v[0].dirty), ("7", Some(true)));
        let r = one(
            "INSERT INTO schema_migrations (version, dirty) VALUES (8, false)",
            &[],
        );
        assert_eq!((r.revision.as_str(), r.dirty), ("8", Some(false)));
    }

    #[test]
    fn missing_parameter_is_no_revision() {
        assert!(detect("INSERT INTO alembic_version (version_num) VALUES ($1)", &[]).is_empty());
    }
}
