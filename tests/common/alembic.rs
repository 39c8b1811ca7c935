//! The Alembic project of the end-to-end tests (tests/alembic_project): copies of it with an
//! extra revision, and `alembic upgrade head` with a chosen driver. Also the projects a test
//! writes itself ([`project_of`]) and running any `alembic` command in them ([`run`]).
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{python, repo_root, run_cmd, Cluster, CmdOutput, ConnInfo, ProxyProcess};

pub fn project_dir() -> PathBuf {
    repo_root().join("tests/alembic_project")
}

/// A copy of the project in a temp dir, with the safe revisions s01–s06 and optionally one
/// revision from `unsafe/` (`TABLE` in it replaced by `table`, when given).
pub fn project(extra: Option<&str>, table: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgwarden-alembic-")
        .tempdir()
        .expect("tempdir");
    let src = project_dir();
    for f in ["alembic.ini", "env.py", "script.py.mako"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy project file");
    }
    let versions = dir.path().join("versions");
    std::fs::create_dir(&versions).expect("mkdir versions");
    for e in std::fs::read_dir(src.join("versions")).expect("read versions") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), versions.join(e.file_name())).expect("copy revision");
    }
    if let Some(name) = extra {
        let text = std::fs::read_to_string(src.join("unsafe").join(format!("{name}.py")))
            .expect("revision template");
        let text = match table {
            Some(t) => text.replace("TABLE", t),
            None => text,
        };
        std::fs::write(versions.join(format!("{name}.py")), text).expect("write revision");
    }
    dir
}

/// `alembic upgrade head` in `project` against `conn` with SQLAlchemy's `driver` dialect.
pub fn alembic(project: &Path, conn: &ConnInfo, driver: &str) -> CmdOutput {
    run(project, &driver_url(conn, driver), &["upgrade", "head"])
}

/// SQLAlchemy's URL for `conn` with the `driver` dialect.
pub fn driver_url(conn: &ConnInfo, driver: &str) -> String {
    let url = conn
        .url()
        .replacen("postgresql://", &format!("postgresql+{driver}://"), 1);
    // asyncpg takes no libpq sslmode parameter.
    match driver {
        "asyncpg" => url.split('?').next().unwrap_or(&url).to_string(),
        _ => url,
    }
}

/// env.py of a project a test writes: the URL from `PGWARDEN_TEST_URL`, the revisions in one
/// transaction (Alembic's default); `--sql` (offline mode) supported.
pub const ENV_PY: &str = r#"
import os
from alembic import context
from sqlalchemy import engine_from_config, pool
config = context.config
url = os.environ["PGWARDEN_TEST_URL"]
config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
"#;

/// A project in a new temp dir (`prefix`): alembic.ini, [`ENV_PY`], and `revisions` (file name,
/// text) in versions/.
pub fn project_of(prefix: &str, revisions: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    std::fs::write(
        dir.path().join("alembic.ini"),
        "[alembic]\nscript_location = .\n",
    )
    .expect("ini");
    std::fs::write(dir.path().join("env.py"), ENV_PY).expect("env.py");
    std::fs::create_dir(dir.path().join("versions")).expect("versions");
    for (name, text) in revisions {
        std::fs::write(dir.path().join("versions").join(name), text).expect("revision");
    }
    dir
}

/// SQLAlchemy's URL for `db` of the shared cluster, reached on `port` (pgwarden's, or the
/// cluster's own for a direct run), with the `driver` dialect.
pub fn url(db: &str, port: u16, driver: &str) -> String {
    Cluster::shared().conn(db).with_port(port).url().replacen(
        "postgresql://",
        &format!("postgresql+{driver}://"),
        1,
    )
}

/// `alembic <args>` in `dir` against `url`.
pub fn run(dir: &Path, url: &str, args: &[&str]) -> CmdOutput {
    run_with(dir, url, args, &[])
}

/// `alembic <args>` in `dir` against `url`, with more environment for the project's env.py.
pub fn run_with(dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-m", "alembic", "-c"])
        .arg(dir.join("alembic.ini"))
        .args(args)
        .current_dir(dir)
        .env("PGWARDEN_TEST_URL", url)
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().copied());
    run_cmd(cmd, None, Duration::from_secs(300))
}

/// `what` succeeded; else its output and pgwarden's log.
#[track_caller]
pub fn assert_ok(out: &CmdOutput, what: &str, px: &ProxyProcess) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}\nproxy log:\n{}",
        out.stdout,
        out.stderr,
        px.logs()
    );
}
