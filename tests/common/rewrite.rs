//! Shared set-up of the multi-step rewrite tests (rewrite_alembic, rewrite_asyncpg,
//! rewrite_forms): one big `orders` table per test binary, cloned per test as a template
//! database, Alembic projects of plain revisions, and what the tests read back (the schema as
//! pg_dump prints it, NOT VALID / INVALID leftovers, the audit log).
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::alembic::project_dir;
use super::{pg_bin, run_cmd, Cluster, CmdOutput, ConnInfo, ProxyProcess};

/// 1,050,000 orders (every rule's "large table" threshold is passed), 1,000 customers.
pub const SETUP: &str = "
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 1000) g;
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    amount integer NOT NULL,
    status text,
    ref bigint
);
INSERT INTO orders SELECT g, 1 + g % 1000, 1 + g % 500, 'new', g FROM generate_series(1, 1050000) g;
ANALYZE customers;
ANALYZE orders;
";

/// The five statements, one revision each, written as Alembic's docs write them. The foreign
/// key and the unique constraint are unnamed: PostgreSQL's names must come out.
pub const REVISIONS: [(&str, &str); 5] = [
    (
        "r1",
        "op.create_foreign_key(None, 'orders', 'customers', ['customer_id'], ['id'])",
    ),
    (
        "r2",
        "op.create_check_constraint('ck_orders_amount_positive', 'orders', 'amount > 0')",
    ),
    (
        "r3",
        "op.alter_column('orders', 'status', existing_type=sa.Text(), nullable=False)",
    ),
    (
        "r4",
        "op.create_index('ix_orders_amount', 'orders', ['amount'])",
    ),
    ("r5", "op.create_unique_constraint(None, 'orders', ['ref'])"),
];

/// A database of its own for one test: a copy of the template with [`SETUP`] (seconds, not a
/// reload).
pub fn fresh(tag: &str) -> String {
    Cluster::shared().fresh_from_template(SETUP, tag)
}

/// An Alembic project (the repository's async-capable env.py) whose revisions are `revs`
/// (id, body of `upgrade()`), in order.
pub fn project(revs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgwarden-rewrite-")
        .tempdir()
        .expect("tempdir");
    let src = project_dir();
    for f in ["alembic.ini", "env.py", "script.py.mako"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy project file");
    }
    let versions = dir.path().join("versions");
    std::fs::create_dir(&versions).expect("mkdir versions");
    let mut down = "None".to_string();
    for (id, body) in revs {
        let text = format!(
            "\"\"\"{id}\"\"\"\nfrom alembic import op\nimport sqlalchemy as sa\n\n\
             revision = \"{id}\"\ndown_revision = {down}\n\n\n\
             def upgrade() -> None:\n    {body}\n"
        );
        std::fs::write(versions.join(format!("{id}.py")), text).expect("write revision");
        down = format!("\"{id}\"");
    }
    dir
}

/// `alembic upgrade head` with SQLAlchemy's `driver` dialect; `per_migration`:
/// transaction_per_migration=True.
pub fn alembic(project: &Path, conn: &ConnInfo, driver: &str, per_migration: bool) -> CmdOutput {
    let mode = if per_migration {
        "per-migration"
    } else {
        "single"
    };
    super::alembic::run_with(
        project,
        &super::alembic::driver_url(conn, driver),
        &["upgrade", "head"],
        &[("PGWARDEN_TEST_TXMODE", mode)],
    )
}

/// Schema of `db` as pg_dump prints it, plus the Alembic revision.
pub fn schema(db: &str) -> String {
    let c = Cluster::shared();
    let mut cmd = std::process::Command::new(pg_bin("pg_dump"));
    cmd.args(["--schema-only", "--no-owner", "-h"])
        .arg(&c.socket_dir)
        .args(["-p", &c.port.to_string(), "-U", "postgres", db]);
    let out = run_cmd(cmd, None, Duration::from_secs(120));
    out.assert_success();
    let dump: String = out
        .stdout
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let exists = c.sql(db, "SELECT to_regclass('alembic_version') IS NOT NULL");
    let version = if exists == "t" {
        c.sql(
            db,
            "SELECT coalesce((SELECT string_agg(version_num, ',') FROM alembic_version), '<none>')",
        )
    } else {
        "<no table>".into()
    };
    format!("{dump}\nalembic_version: {version}")
}

/// Constraints not validated and indexes not valid: a rewrite must leave none behind.
pub fn leftovers(db: &str) -> String {
    Cluster::shared().sql(
        db,
        "SELECT coalesce(string_agg(n, ',' ORDER BY n), '') FROM ( \
           SELECT conname::text AS n FROM pg_constraint WHERE NOT convalidated \
           UNION ALL SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid) x",
    )
}

/// pgwarden with its default config and an audit log in a temp dir.
pub fn proxy() -> (ProxyProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[audit]\npath = \"{}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    (ProxyProcess::start(&Cluster::shared().addr(), &toml), dir)
}

pub fn audit_text(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default()
}

/// `pgwarden audit report` of the audit log in `dir`.
pub fn audit_report(dir: &tempfile::TempDir) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    cmd.args(["audit", "report"])
        .arg(dir.path().join("audit.jsonl"));
    let report = run_cmd(cmd, None, Duration::from_secs(60));
    report.assert_success();
    report.stdout
}

/// The schema of a direct run of [`REVISIONS`] (psycopg2, no pgwarden), made once.
pub fn direct_schema() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        let c = Cluster::shared();
        let p = project(&REVISIONS);
        let direct = fresh("rw_direct");
        alembic(p.path(), &c.conn(&direct), "psycopg2", false).assert_success();
        let expected = schema(&direct);
        assert!(expected.contains("orders_customer_id_fkey"), "{expected}");
        assert!(expected.contains("orders_ref_key"), "{expected}");
        expected
    })
}

/// Indexes and constraints of `orders` by name, `name:valid`, for messages and comparisons.
pub fn objects(db: &str) -> String {
    Cluster::shared().sql(
        db,
        "SELECT coalesce(string_agg(n, ',' ORDER BY n), '') FROM ( \
           SELECT conname || ':' || convalidated AS n FROM pg_constraint \
             WHERE conrelid = 'orders'::regclass AND contype IN ('f', 'u', 'c') \
           UNION ALL SELECT indexrelid::regclass::text || ':' || indisvalid FROM pg_index \
             WHERE indrelid = 'orders'::regclass) x",
    )
}
