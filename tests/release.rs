//! Release hygiene of the binary: `--version` names the commit, and SIGHUP (what
//! `systemctl reload` and logrotate send) never ends `pgwarden serve`.
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn version_names_the_package_version_and_the_git_commit() {
    let out = run_cmd(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
            c.arg("--version");
            c
        },
        None,
        Duration::from_secs(30),
    );
    out.assert_success();
    // The commit the tree is at, as git says (build.rs falls back to "unknown" without git).
    let head = Command::new("git")
        .args(["-C", &repo_root().display().to_string()])
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let want = std::env::var("PGWARDEN_GIT_COMMIT").unwrap_or(head);
    assert_eq!(
        out.stdout.trim(),
        format!("pgwarden {} ({want})", env!("CARGO_PKG_VERSION"))
    );
}

/// With the audit log off nothing else listens for SIGHUP; its default action would end the
/// process. With it on, the reopen is logged. In both cases pgwarden keeps serving.
#[test]
fn sighup_does_not_stop_serve_with_or_without_the_audit_log() {
    let c = Cluster::shared();
    let db = c.fresh_db("sighup");
    let dir = tempfile::tempdir().expect("tempdir");
    for audit in [
        "[audit]\nenabled = false\n".to_string(),
        format!(
            "[audit]\npath = \"{}\"\n",
            dir.path().join("audit.jsonl").display()
        ),
    ] {
        let mut px = ProxyProcess::start(&c.addr(), &audit);
        // One at a time: signals sent together may be delivered as one.
        for n in 1..=2 {
            run_cmd(
                {
                    let mut k = Command::new("kill");
                    k.args(["-HUP", &px.pid().to_string()]);
                    k
                },
                None,
                Duration::from_secs(10),
            )
            .assert_success();
            assert!(
                wait_until(Duration::from_secs(30), || px
                    .logs()
                    .matches("received SIGHUP")
                    .count()
                    == n),
                "{audit}: SIGHUP {n} not logged:\n{}",
                px.logs()
            );
        }
        assert!(px.is_running(), "{audit}: SIGHUP ended pgwarden");
        let out = psql(
            &c.conn(&db).with_port(px.port()),
            &["-At", "-c", "SELECT 42"],
        );
        out.assert_success();
        assert_eq!(out.stdout.trim(), "42", "{audit}");
    }
}
