//! `pgwarden demo` end to end: the real binary, real PostgreSQL, real Alembic — against the
//! harness's cluster (`--upstream`), with a private cluster of its own, interrupted by SIGTERM,
//! and on a machine without PostgreSQL. Asserts on what it prints (the decisions, Alembic's
//! error, the audit report) and on what it leaves behind (nothing).
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The harness's venv (same pinned requirements as the demo's), so the tests download nothing.
fn venv() -> PathBuf {
    let py = python();
    py.parent()
        .and_then(Path::parent)
        .expect("venv of the python binary")
        .to_path_buf()
}

fn demo(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    cmd.arg("demo")
        .arg("--venv")
        .arg(venv())
        .args(args)
        .env_remove("PGUSER");
    run_cmd(cmd, None, Duration::from_secs(600))
}

/// The first whitespace-separated word after `marker` in `text`.
fn word_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in output:\n{text}"));
    text[at + marker.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches(',')
}

/// What every successful demo run must have printed: one decision of each kind, with the
/// statement, the rule, the rewritten text, Alembic's own error text and the audit report.
fn assert_shows_the_job(out: &CmdOutput) {
    let o = &out.stdout;
    let all = format!("{o}\n--- stderr ---\n{}", out.stderr);
    for needle in [
        "1,000,000 rows",
        "alembic upgrade d01: applied",
        "pgwarden allow   ALTER TABLE events ADD COLUMN note TEXT",
        "alembic upgrade d02: applied",
        "pgwarden rewrite CREATE INDEX ix_events_created_at ON events (created_at)  [require-concurrent-index-creation",
        "sent    CREATE INDEX CONCURRENTLY ix_events_created_at ON events (created_at)",
        "alembic upgrade d03: FAILED",
        "pgwarden reject  ALTER TABLE events ADD COLUMN shard FLOAT DEFAULT random() NOT NULL  [adding-field-with-default",
        "server  ERROR PW001",
        // Alembic's error, verbatim: the exception line with rule, table and size, then HINT.
        "| sqlalchemy.exc.InternalError: (psycopg2.InternalError) pgwarden: adding-field-with-default: ADD COLUMN shard rewrites events (~1.0M rows)",
        "| HINT:  Add the column without that default",
        "alembic_version = d02",
        "index ix_events_created_at valid: true",
        "events.shard exists: no",
        "pgwarden audit report: ",
        "decisions: allow 2, warn 0, rewrite 1, reject 1",
        "sent instead: CREATE INDEX CONCURRENTLY ix_events_created_at",
        "Demo finished in",
    ] {
        assert!(o.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // The decisions come in revision order.
    let d = |s: &str| o.find(s).unwrap_or(usize::MAX);
    assert!(
        d("pgwarden allow ") < d("pgwarden rewrite ")
            && d("pgwarden rewrite ") < d("pgwarden reject "),
        "{all}"
    );
}

/// No running process mentions `path` on its command line (the cluster is really stopped).
fn no_process_uses(path: &str) -> bool {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .all(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmdline).contains(path)
        })
}

#[test]
fn demo_against_an_existing_server_shows_each_decision_and_drops_its_database() {
    let c = Cluster::shared();
    let out = demo(&["--upstream", &c.addr(), "--user", SUPERUSER]);
    out.assert_success();
    assert_shows_the_job(&out);
    let db = word_after(&out.stdout, "works in a new database ");
    assert!(db.starts_with("pgwarden_demo_"), "{db}");
    assert!(
        out.stdout.contains(&format!("database {db} dropped on")),
        "{}",
        out.stdout
    );
    let left = c.sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
    );
    assert_eq!(left, "0", "the demo database is still there");
}

#[test]
fn demo_with_its_own_cluster_shows_each_decision_and_removes_the_cluster() {
    let out = demo(&[]);
    out.assert_success();
    assert_shows_the_job(&out);
    let pg = word_after(&out.stdout, "      in ");
    let work = Path::new(pg).parent().expect("work dir").to_path_buf();
    assert!(
        work.display().to_string().contains("pgwarden-demo-"),
        "{}",
        work.display()
    );
    assert!(!work.exists(), "{} left behind", work.display());
    assert!(
        no_process_uses(pg),
        "a process still runs on {pg} after the demo"
    );
}

/// Starts the demo with its own cluster, waits until the million rows are loading, sends
/// `signal`; returns the exit status, stdout so far, stderr and the cluster's data path.
fn interrupt_mid_run(signal: &str) -> (std::process::ExitStatus, String, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .arg("demo")
        .arg("--venv")
        .arg(venv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Terminate while the million rows load: psql is running and the cluster is up.
    for line in lines.by_ref() {
        let line = line.expect("read demo output");
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("[2/6]") {
            break;
        }
    }
    let pg = word_after(&seen, "      in ").to_string();
    run_cmd(
        {
            let mut k = Command::new("kill");
            k.args([signal, &child.id().to_string()]);
            k
        },
        None,
        Duration::from_secs(10),
    )
    .assert_success();
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().expect("wait demo");
    let stderr = err_reader.join().unwrap_or_default();
    (status, seen, stderr, pg)
}

#[test]
fn demo_cleans_up_when_terminated_mid_run() {
    let (status, seen, stderr, pg) = interrupt_mid_run("-TERM");
    assert_eq!(status.code(), Some(143), "{seen}\n{stderr}");
    assert!(
        stderr.contains("interrupted, cleaning up") && stderr.contains("removed"),
        "{stderr}"
    );
    let work = Path::new(&pg).parent().expect("work dir");
    assert!(!work.exists(), "{} left behind:\n{stderr}", work.display());
    assert!(no_process_uses(&pg), "the cluster on {pg} still runs");
}

/// SIGKILL leaves the demo no chance: its watchdog process stops the cluster and removes it.
#[test]
fn demo_killed_outright_is_cleaned_up_by_its_watchdog() {
    let (status, seen, stderr, pg) = interrupt_mid_run("-KILL");
    assert_eq!(status.code(), None, "{seen}\n{stderr}");
    let work = Path::new(&pg).parent().expect("work dir").to_path_buf();
    assert!(
        wait_until(Duration::from_secs(60), || !work.exists()
            && no_process_uses(&pg)),
        "{} or its server left behind after SIGKILL",
        work.display()
    );
}

#[test]
fn demo_without_postgres_stops_with_the_install_command_and_creates_nothing() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = demo(&["--pg-bindir", &empty.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("apt-get install -y postgresql-15 postgresql-client-15"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("initdb, pg_ctl, postgres, psql"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("[1/6]"),
        "it started before checking:\n{}",
        out.stdout
    );
}
