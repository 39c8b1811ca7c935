//! The demo's Alembic side: the Python venv (the test suite's pinned requirements, from PyPI)
//! and a small real Alembic project, written out and upgraded one revision at a time.
//!
//! To add a revision (a lock-retry or completion-step showcase): put the file in
//! `src/demo/project/versions/`, chain its `down_revision`, and add a [`Revision`] line to
//! [`REVISIONS`] saying what pgwarden must do with it. A refused revision stops the chain, so
//! it comes last.
use std::path::{Path, PathBuf};

use super::run::{run, Cmd, Output};
use super::DemoError;

/// What pgwarden must do with a revision for the demo to have shown what it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Applied as written.
    Applied,
    /// Applied, with at least one statement rewritten into its safe form.
    Rewritten,
    /// Refused: the upgrade fails and nothing of the revision stays.
    Refused,
}

/// One revision of the demo project.
pub struct Revision {
    pub id: &'static str,
    pub file: &'static str,
    pub text: &'static str,
    pub expect: Expect,
}

/// The demo project's revisions, in upgrade order.
pub const REVISIONS: &[Revision] = &[
    Revision {
        id: "d01",
        file: "d01_safe_nullable_column.py",
        text: include_str!("project/versions/d01_safe_nullable_column.py"),
        expect: Expect::Applied,
    },
    Revision {
        id: "d02",
        file: "d02_index_autocommit.py",
        text: include_str!("project/versions/d02_index_autocommit.py"),
        expect: Expect::Rewritten,
    },
    Revision {
        id: "d03",
        file: "d03_volatile_default.py",
        text: include_str!("project/versions/d03_volatile_default.py"),
        expect: Expect::Refused,
    },
];

const ALEMBIC_INI: &str = include_str!("project/alembic.ini");
const ENV_PY: &str = include_str!("project/env.py");
/// The test suite's venv recipe and pins: the demo runs the same Alembic the tests prove.
const SETUP_VENV: &str = include_str!("../../tests/python/setup-venv.sh");
const REQUIREMENTS: &str = include_str!("../../tests/python/requirements.txt");

impl Revision {
    /// The revision's docstring (its first line), as Alembic prints it.
    pub fn title(&self) -> &'static str {
        self.text
            .lines()
            .next()
            .unwrap_or("")
            .trim_matches('"')
            .trim()
    }
}

/// The venv's cache directory when none is given: `target/demo-venv` in a pgwarden checkout
/// (where `cargo run` is typed), else `~/.cache/pgwarden/demo-venv`.
pub fn default_venv() -> PathBuf {
    let in_checkout = std::fs::read_to_string("Cargo.toml")
        .map(|t| t.contains("name = \"pgwarden\""))
        .unwrap_or(false);
    if in_checkout {
        return PathBuf::from("target/demo-venv");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("pgwarden").join("demo-venv")
}

/// Python 3 with `venv` and `ensurepip`, or the exact command that installs it.
pub fn check_python() -> Result<(), DemoError> {
    let ok = Cmd::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(DemoError::Missing {
            what: "Python 3 with the venv module (for Alembic)".into(),
            fix: "apt-get install -y python3-venv   (as root)".into(),
        })
    }
}

/// True when `venv` already holds the pinned requirements (setup-venv.sh's stamp).
pub fn venv_ready(venv: &Path) -> bool {
    let want = sha256_hex_of(REQUIREMENTS);
    match (
        want,
        std::fs::read_to_string(venv.join(".pgwarden-stamp")).ok(),
    ) {
        (Some(w), Some(have)) => have.trim() == w,
        _ => false,
    }
}

/// sha256 of `text` as `sha256sum` prints it (the stamp's format), if sha256sum exists.
fn sha256_hex_of(text: &str) -> Option<String> {
    use std::io::Write;
    let mut child = Cmd::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// Creates (or reuses) the venv with the pinned Alembic, psycopg2 and SQLAlchemy from PyPI.
/// `scratch` is a directory the recipe may be written to. Concurrent demos wait on a lock.
pub fn ensure_venv(venv: &Path, scratch: &Path) -> Result<PathBuf, DemoError> {
    if let Some(parent) = venv.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DemoError::io(parent, e))?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", venv.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| DemoError::io(&lock_path, e))?;
    lock.lock().map_err(|e| DemoError::io(&lock_path, e))?;
    let setup = scratch.join("venv-setup");
    std::fs::create_dir_all(&setup).map_err(|e| DemoError::io(&setup, e))?;
    for (name, text) in [
        ("setup-venv.sh", SETUP_VENV),
        ("requirements.txt", REQUIREMENTS),
    ] {
        let p = setup.join(name);
        std::fs::write(&p, text).map_err(|e| DemoError::io(&p, e))?;
    }
    let mut c = Cmd::new("bash");
    c.arg(setup.join("setup-venv.sh")).arg(venv);
    let result = run(c).and_then(|o| o.ok("creating the Python venv (needs PyPI)"));
    let _ = lock.unlock();
    result?;
    Ok(venv.join("bin").join("python"))
}

/// Writes the project into `dir` (created).
pub fn write_project(dir: &Path) -> Result<(), DemoError> {
    let versions = dir.join("versions");
    std::fs::create_dir_all(&versions).map_err(|e| DemoError::io(&versions, e))?;
    let mut files = vec![
        (dir.join("alembic.ini"), ALEMBIC_INI),
        (dir.join("env.py"), ENV_PY),
    ];
    for r in REVISIONS {
        files.push((versions.join(r.file), r.text));
    }
    for (path, text) in files {
        std::fs::write(&path, text).map_err(|e| DemoError::io(&path, e))?;
    }
    Ok(())
}

/// `alembic upgrade <rev>` in `project`, connecting to `url` with libpq environment `env`.
pub fn upgrade(
    python: &Path,
    project: &Path,
    url: &str,
    env: &[(String, String)],
    rev: &str,
) -> Result<Output, DemoError> {
    let mut c = Cmd::new(python);
    c.args(["-m", "alembic", "-c"])
        .arg(project.join("alembic.ini"))
        .args(["upgrade", rev])
        .current_dir(project)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PGWARDEN_DEMO_URL", url)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run(c)
}

/// The part of Alembic's output that is the error a user reads: from the last exception line
/// (`sqlalchemy.exc....: (driver error) message`) to the end (DETAIL, HINT, `[SQL: ...]`).
pub fn error_block(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("sqlalchemy.exc."))
        .or_else(|| lines.iter().rposition(|l| l.starts_with("Traceback")))
        .unwrap_or(0);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_block_starts_at_the_last_exception_line() {
        let stderr = "INFO  [alembic] Running upgrade d02 -> d03\n\
            Traceback (most recent call last):\n  File \"x\", line 1\n\
            psycopg2.errors.RaiseException: inner\n\nThe above exception was the direct cause:\n\
            Traceback (most recent call last):\n\
            sqlalchemy.exc.InternalError: (psycopg2.InternalError) pgwarden: rule: msg\n\
            HINT:  recipe\n[SQL: ALTER TABLE t]\n";
        assert_eq!(
            error_block(stderr),
            "sqlalchemy.exc.InternalError: (psycopg2.InternalError) pgwarden: rule: msg\nHINT:  recipe\n[SQL: ALTER TABLE t]"
        );
        // Without a SQLAlchemy exception: the last traceback, rather than nothing.
        assert_eq!(error_block("a\nTraceback (x)\nboom"), "Traceback (x)\nboom");
    }

    #[test]
    fn revisions_chain_and_a_refused_one_comes_last() {
        let mut prev = "None".to_string();
        for r in REVISIONS {
            assert!(
                r.text.contains(&format!("revision = \"{}\"", r.id)),
                "{}",
                r.file
            );
            assert!(
                r.text.contains(&format!("down_revision = {prev}")),
                "{}",
                r.file
            );
            assert!(!r.title().is_empty(), "{}", r.file);
            prev = format!("\"{}\"", r.id);
        }
        let refused = REVISIONS.iter().position(|r| r.expect == Expect::Refused);
        assert!(matches!(refused, Some(i) if i == REVISIONS.len() - 1));
    }
}
