//! Shared set-up of the safe-execution tests (tests/execute_safe.rs, tests/execute_extended.rs):
//! a database with small `orders`/`customers` tables, pgwarden with `[execute]` lines, a
//! blocking session, and what the tests read back (columns, the retry log lines, the audit log).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use super::{repo_root, wait_until, Cluster, CmdOutput, ConnInfo, ProxyConfig, ProxyProcess};

/// pgwarden's default config (enforce), with optional `[execute]` lines.
pub fn config(execute: &[&str]) -> ProxyConfig {
    let mut policy = vec!["mode = \"enforce\"".to_string()];
    if !execute.is_empty() {
        policy.push("[execute]".into());
        policy.extend(execute.iter().map(|l| l.to_string()));
    }
    ProxyConfig {
        policy,
        ..ProxyConfig::default()
    }
}

/// A database with a small `orders` and `customers` table.
pub fn database(tag: &str) -> String {
    let c = Cluster::shared();
    let db = c.fresh_db(tag);
    c.sql(
        &db,
        "CREATE TABLE orders (id bigserial PRIMARY KEY, amount int NOT NULL);
         INSERT INTO orders (amount) SELECT g FROM generate_series(1, 200) g;
         CREATE TABLE customers (id bigserial PRIMARY KEY, name text);
         INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 20) g;",
    );
    db
}

/// One test's database and pgwarden in front of it.
pub struct Setup {
    pub db: String,
    pub proxy: ProxyProcess,
    /// Connection parameters through pgwarden.
    pub conn: ConnInfo,
}

impl Setup {
    /// A fresh database (`tag`) behind a pgwarden with these `[execute]` lines.
    pub fn new(tag: &str, execute: &[&str]) -> Setup {
        let db = database(tag);
        let proxy = config(execute).start(Cluster::shared());
        let conn = Cluster::shared().conn(&db).with_port(proxy.port());
        Setup { db, proxy, conn }
    }

    /// The URL through pgwarden (for the Python clients).
    pub fn url(&self) -> String {
        self.conn.url()
    }

    pub fn columns(&self, table: &str) -> String {
        columns(&self.db, table)
    }

    /// Lock-timeout retries pgwarden logged so far.
    pub fn retries(&self) -> usize {
        retries(&self.proxy)
    }

    /// Waits until pgwarden logged `n` lock-timeout retries.
    pub fn wait_retries(&self, n: usize) {
        wait_retries(&self.proxy, n)
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.audit_path()).unwrap_or_default()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.proxy
            .config_path
            .parent()
            .expect("config dir")
            .join("pgwarden-audit.jsonl")
    }
}

/// A session idle in a transaction that read `orders`: it holds ACCESS SHARE on it.
pub struct Blocker {
    pub client: tokio_postgres::Client,
    pub pid: i32,
}

impl Blocker {
    /// Ends the blocking transaction.
    pub async fn commit(&self) {
        self.client
            .batch_execute("COMMIT")
            .await
            .expect("blocker commits");
    }
}

pub async fn blocker(db: &str, app: &str) -> Blocker {
    let mut cfg = Cluster::shared().conn(db).tokio_config();
    cfg.application_name(app);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("blocker");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute("BEGIN; SELECT count(*) FROM orders;")
        .await
        .expect("blocker begins");
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    Blocker { client, pid }
}

pub fn columns(db: &str, table: &str) -> String {
    Cluster::shared().sql(
        db,
        &format!(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
        ),
    )
}

/// The log line pgwarden writes for every lock-timeout retry.
pub const RETRY_LINE: &str = "pgwarden rolls back the attempt";

pub fn retries(proxy: &ProxyProcess) -> usize {
    proxy.logs().matches(RETRY_LINE).count()
}

/// Waits until pgwarden logged `n` lock-timeout retries.
pub fn wait_retries(proxy: &ProxyProcess, n: usize) {
    let ok = wait_until(Duration::from_secs(60), || retries(proxy) >= n);
    assert!(ok, "no retry logged; pgwarden said:\n{}", proxy.logs());
}

/// Runs a blocking client off the async runtime.
pub fn blocking(
    f: impl FnOnce() -> CmdOutput + Send + 'static,
) -> tokio::task::JoinHandle<CmdOutput> {
    tokio::task::spawn_blocking(f)
}

/// `psql -v ON_ERROR_STOP=1` with `script` on stdin.
pub fn psql_script(conn: &ConnInfo, script: &str) -> CmdOutput {
    super::psql_stdin(conn, &["-v", "ON_ERROR_STOP=1"], Some(script.as_bytes()))
}

/// A Python workload of tests/python/execute.py; its one JSON line.
pub fn python_json(args: &[&str]) -> serde_json::Value {
    let out = super::run_python("execute.py", args);
    out.assert_success();
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr))
}

/// An Alembic project with one revision `e01` whose upgrade is `body`.
pub fn alembic_project(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = repo_root().join("tests/alembic_project");
    for f in ["alembic.ini", "env.py", "script.py.mako"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy");
    }
    std::fs::create_dir(dir.path().join("versions")).expect("versions");
    std::fs::write(
        dir.path().join("versions/e01_note.py"),
        format!(
            "\"\"\"add a note to orders\"\"\"\nfrom alembic import op\nimport sqlalchemy as sa\n\n\
             revision = \"e01\"\ndown_revision = None\n\n\ndef upgrade() -> None:\n{body}\n\n\n\
             def downgrade() -> None:\n    pass\n"
        ),
    )
    .expect("revision");
    dir
}

/// The revision body that adds a column to `orders`.
pub const ADD_NOTE: &str = "    op.add_column(\"orders\", sa.Column(\"note\", sa.Text()))";

pub fn alembic_version(db: &str) -> String {
    let c = Cluster::shared();
    if c.sql(db, "SELECT to_regclass('alembic_version') IS NULL") == "t" {
        return "no table".into();
    }
    c.sql(
        db,
        "SELECT coalesce(string_agg(version_num, ','), 'none') FROM alembic_version",
    )
}
