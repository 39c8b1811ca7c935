//! The Alembic project of the end-to-end tests (tests/alembic_project): copies of it with an
//! extra revision, and `alembic upgrade head` with a chosen driver.
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{python, repo_root, run_cmd, CmdOutput, ConnInfo};

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
    let url = conn
        .url()
        .replacen("postgresql://", &format!("postgresql+{driver}://"), 1);
    // asyncpg takes no libpq sslmode parameter.
    let url = match driver {
        "asyncpg" => url.split('?').next().unwrap_or(&url).to_string(),
        _ => url,
    };
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-m", "alembic", "-c"])
        .arg(project.join("alembic.ini"))
        .args(["upgrade", "head"])
        .current_dir(project)
        .env("PGWARDEN_TEST_URL", url)
        .env("PYTHONUNBUFFERED", "1");
    run_cmd(cmd, None, Duration::from_secs(300))
}
