//! The audit writer against real files: permissions, line integrity under concurrency, reopen
//! after logrotate's rename, disk full, unwritable paths, and a real `kill -9` mid-write.
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgwarden::audit::{
    AuditError, AuditHandle, Decision, Outcome, OutcomeRecord, Record, SessionStart,
    StatementRecord,
};
use pgwarden::config::audit::{AuditConfig, FsyncPolicy, OnAuditFailure};
use pgwarden::protocol::TxStatus;

fn cfg(path: &std::path::Path) -> AuditConfig {
    AuditConfig {
        path: path.display().to_string(),
        ..AuditConfig::default()
    }
}

fn statement(session: &str, seq: u64, text: &str) -> Record {
    Record::Statement(StatementRecord::new(
        session,
        seq,
        TxStatus::InTransaction,
        text,
        true,
        Decision::Allow,
    ))
}

fn session_start(session: &str) -> Record {
    Record::SessionStart(SessionStart {
        time: pgwarden::audit::record::now_rfc3339(),
        session_id: session.into(),
        client_addr: "127.0.0.1:5555".into(),
        user: "app".into(),
        database: "app".into(),
        application_name: "test".into(),
        server_pid: Some(1),
        tls: false,
    })
}

/// Every line parses as a complete record; returns them.
fn read_records(path: &std::path::Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "file does not end with a newline"
    );
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<Record>(l)
                .unwrap_or_else(|e| panic!("{path:?} line {}: {e}: {l:.200}", i + 1))
        })
        .collect()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

#[tokio::test]
async fn file_is_created_0600_and_appended() {
    let dir = tmp();
    let p = dir.path().join("audit.jsonl");
    let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 1, "CREATE TABLE a ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.shutdown().await;
    let mode = std::fs::metadata(&p)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // A second run appends.
    let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 2, "CREATE TABLE b ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.shutdown().await;
    assert_eq!(read_records(&p).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_produce_one_complete_object_per_line() {
    let dir = tmp();
    let p = dir.path().join("audit.jsonl");
    let h = AuditHandle::start(&AuditConfig {
        channel_capacity: 64,
        ..cfg(&p)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Large texts with newlines, quotes and non-ASCII: a record must still be one line.
    let big = format!(
        "CREATE FUNCTION f() RETURNS text AS $$\nselect 'x''y'; -- «ü»\n{}\n$$ LANGUAGE sql",
        "select 1;\n".repeat(20_000)
    );
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let h = h.clone();
        let big = big.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                let seq = t * 1000 + i;
                let text = if i % 10 == 0 {
                    big.as_str()
                } else {
                    "ALTER TABLE t ADD c int"
                };
                h.ddl(&statement(&format!("s{t}"), seq, text))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                h.record(&session_start(&format!("s{t}")));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    h.shutdown().await;
    let recs = read_records(&p);
    let stats = h.stats();
    assert_eq!(stats.failed, 0);
    assert_eq!(recs.len() as u64, stats.written);
    let seqs: HashSet<u64> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Statement(s) => Some(s.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs.len(),
        400,
        "every acknowledged DDL record is in the file"
    );
    assert_eq!(recs.len() as u64 + stats.dropped, 800);
}

#[tokio::test]
async fn reopen_after_rename_like_logrotate() {
    let dir = tmp();
    let p = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 1, "CREATE TABLE a ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&p, &rotated).unwrap_or_else(|e| panic!("{e}"));
    // Before the reopen, records still go to the renamed file (same inode).
    h.ddl(&statement("s", 2, "CREATE TABLE b ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.reopen().await.unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 3, "CREATE TABLE c ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.shutdown().await;
    let seqs = |path: &std::path::Path| -> Vec<u64> {
        read_records(path)
            .into_iter()
            .filter_map(|r| match r {
                Record::Statement(s) => Some(s.seq),
                _ => None,
            })
            .collect()
    };
    assert_eq!(seqs(&rotated), vec![1, 2]);
    assert_eq!(seqs(&p), vec![3]);
    let mode = std::fs::metadata(&p)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn disk_full_refuses_ddl_but_never_blocks_records() {
    // /dev/full accepts the open and fails every write with ENOSPC.
    let h = AuditHandle::start(&AuditConfig {
        path: "/dev/full".into(),
        ..AuditConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let err = h
        .ddl(&statement("s", 1, "DROP TABLE t"))
        .await
        .err()
        .unwrap_or_else(|| panic!("ddl() must fail on a full disk"));
    assert!(matches!(err, AuditError::Write { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/dev/full") && msg.contains("No space left"),
        "{msg}"
    );
    // Non-critical records neither wait nor panic: record() is synchronous and only tries
    // the queue (a full queue drops and counts, it never blocks), so this loop ends.
    for i in 0..10_000 {
        h.record(&session_start(&format!("s{i}")));
    }
    h.shutdown().await;
    let stats = h.stats();
    assert!(stats.failed >= 1, "{stats:?}");
    assert_eq!(stats.written, 0, "{stats:?}");

    // on_audit_failure = "continue": the DDL goes on, the failure is counted.
    let h = AuditHandle::start(&AuditConfig {
        path: "/dev/full".into(),
        on_audit_failure: OnAuditFailure::Continue,
        ..AuditConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 1, "DROP TABLE t"))
        .await
        .unwrap_or_else(|e| panic!("continue mode must not refuse: {e}"));
    h.shutdown().await;
    assert_eq!(h.stats().failed, 1);
}

#[tokio::test]
async fn unwritable_path_fails_at_start_and_after_a_failed_reopen() {
    let dir = tmp();
    let missing = dir.path().join("no-such-dir").join("audit.jsonl");
    let err = AuditHandle::start(&cfg(&missing))
        .err()
        .unwrap_or_else(|| panic!("start must fail"));
    assert!(err.to_string().contains("no-such-dir"), "{err}");

    // The directory disappears under a running writer: reopen fails, DDL is refused, and
    // once the directory is back the writer recovers on its own.
    let sub = dir.path().join("logs");
    std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
    let p = sub.join("audit.jsonl");
    let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 1, "CREATE TABLE a ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
    assert!(h.reopen().await.is_err());
    assert!(h
        .ddl(&statement("s", 2, "CREATE TABLE b ()"))
        .await
        .is_err());
    std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 3, "CREATE TABLE c ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.shutdown().await;
    assert_eq!(read_records(&p).len(), 1);
}

#[tokio::test]
async fn fsync_policies_all_write_every_record() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let dir = tmp();
        let p = dir.path().join("a.jsonl");
        let h = AuditHandle::start(&AuditConfig {
            fsync: policy,
            fsync_interval: Duration::from_millis(5),
            ..cfg(&p)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..20 {
            h.ddl(&statement("s", i, "CREATE TABLE a ()"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if i % 5 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        h.shutdown().await;
        assert_eq!(read_records(&p).len(), 20, "{policy:?}");
    }
}

/// Group commit: records written with `Durability::Written` are in the file when the call
/// returns (what a `kill -9` keeps) and cost no fsync; one barrier fsyncs them all; a barrier
/// over lines an fsync already covered costs nothing; a durable record's fsync covers every
/// written line before it. Counted, not timed.
#[tokio::test]
async fn written_records_share_one_fsync_at_the_barrier() {
    use pgwarden::audit::{Durability, SessionMark};
    let dir = tmp();
    let p = dir.path().join("a.jsonl");
    let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
    let mark = SessionMark::default();
    assert!(!h.unsynced(&mark), "nothing written yet");
    for i in 1..=10 {
        let line = h
            .ddl_all_with(
                &[statement("s", i, "CREATE TABLE a ()")],
                Durability::Written,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(line, i, "line numbers count the lines written");
        mark.note(line);
        // On disk (in the page cache) before the call returned: every record so far.
        assert_eq!(read_records(&p).len() as u64, i);
    }
    assert_eq!(
        h.stats().fsyncs,
        0,
        "written-only records waited for no fsync"
    );
    assert!(h.unsynced(&mark));
    h.barrier(&mark).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.stats().fsyncs, 1, "one fsync for the ten records");
    assert!(!h.unsynced(&mark));
    h.barrier(&mark).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.stats().fsyncs, 1, "a covered barrier costs no fsync");

    // A durable record fsyncs, and that fsync covers the written lines before it.
    let line = h
        .ddl_all_with(
            &[statement("s", 11, "CREATE TABLE b ()")],
            Durability::Written,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    mark.note(line);
    let other = SessionMark::default();
    h.ddl(&statement("t", 1, "CREATE TABLE c ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.stats().fsyncs, 2);
    assert!(
        !h.unsynced(&mark),
        "another session's durable record covered it"
    );
    assert!(!h.unsynced(&other));
    h.barrier(&mark).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.stats().fsyncs, 2);

    // Non-critical records (session_start/end) need no fsync of their own.
    h.record(&session_start("u"));
    h.barrier(&SessionMark::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.stats().fsyncs, 2);
    h.shutdown().await;
    assert_eq!(
        h.stats().fsyncs,
        3,
        "shutdown makes the last record durable"
    );
    assert_eq!(read_records(&p).len(), 13);
}

/// Under `interval` and `never` a written-only record never needs a barrier (the policy says
/// when the file is fsynced), and a barrier returns at once.
#[tokio::test]
async fn barrier_follows_the_fsync_policy() {
    use pgwarden::audit::{Durability, SessionMark};
    for policy in [FsyncPolicy::Interval, FsyncPolicy::Never] {
        let dir = tmp();
        let p = dir.path().join("a.jsonl");
        let h = AuditHandle::start(&AuditConfig {
            fsync: policy,
            fsync_interval: Duration::from_secs(3600),
            ..cfg(&p)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let mark = SessionMark::default();
        let line = h
            .ddl_all_with(
                &[statement("s", 1, "CREATE TABLE a ()")],
                Durability::Written,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        mark.note(line);
        assert!(!h.unsynced(&mark), "{policy:?}");
        h.barrier(&mark).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.stats().fsyncs, 0, "{policy:?}");
        h.shutdown().await;
    }
}

#[tokio::test]
async fn stdout_sink_accepts_records() {
    let h = AuditHandle::start(&AuditConfig {
        path: "-".into(),
        ..AuditConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 1, "CREATE TABLE a ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.reopen().await.unwrap_or_else(|e| panic!("{e}"));
    h.shutdown().await;
    assert_eq!(h.stats().written, 1);
}

const CHILD_ENV: &str = "PGWARDEN_AUDIT_CRASH_CHILD";
const SESSION_ENV: &str = "PGWARDEN_AUDIT_CRASH_SESSION";

/// Not a test on its own: the body of the child process of `kill_dash_9_leaves_only_complete_lines`.
/// It writes records as a session would (statement, then outcome; "acked N" on stdout plays the
/// role of forwarding the answer to the client) until it is killed.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let session = std::env::var(SESSION_ENV).unwrap_or_else(|_| "crash".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async move {
        let h = AuditHandle::start(&AuditConfig {
            path,
            fsync: FsyncPolicy::Never, // as fast as possible: more writes in flight at the kill
            ..AuditConfig::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        // Background noise: non-critical records from other "sessions".
        let noise = h.clone();
        tokio::spawn(async move {
            loop {
                noise.record(&session_start("noise"));
                tokio::task::yield_now().await;
            }
        });
        let big = "x".repeat(256 * 1024);
        let mut seq = 0u64;
        loop {
            seq += 1;
            let text = if seq.is_multiple_of(7) {
                format!("COMMENT ON TABLE t IS '{big}'")
            } else {
                format!("ALTER TABLE t ADD COLUMN c{seq} int")
            };
            if h.ddl(&statement(&session, seq, &text)).await.is_err() {
                std::process::exit(3);
            }
            let out = Record::Outcome(OutcomeRecord {
                time: pgwarden::audit::record::now_rfc3339(),
                session_id: session.clone(),
                seq,
                outcome: Outcome::Ok {
                    tag: "ALTER TABLE".into(),
                },
                duration_ms: 0.1,
            });
            if h.ddl(&out).await.is_err() {
                std::process::exit(3);
            }
            println!("acked {seq}");
        }
    });
}

#[test]
fn kill_dash_9_leaves_only_complete_lines() {
    let dir = tmp();
    let p = dir.path().join("audit.jsonl");
    for round in 0..3 {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new(exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &p)
            .env(SESSION_ENV, format!("crash-{round}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn child: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a varying number of acknowledged statements, mid-stream.
        let target = 150 + round * 97;
        while acked.len() < target {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(n) = l.strip_prefix("acked ") {
                        acked.push(n.parse::<u64>().unwrap_or_else(|e| panic!("{e}")));
                    }
                }
                other => panic!("child stopped early: {other:?}"),
            }
        }
        child.kill().unwrap_or_else(|e| panic!("kill: {e}")); // SIGKILL
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success());

        // Before any restart repairs it, the file may end in a torn record: all *complete*
        // lines must parse, and only the last may be incomplete.
        let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&raw);
        let torn = raw.len() - raw.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        eprintln!(
            "round {round}: {} acked, file {} bytes, torn tail {torn} bytes",
            acked.len(),
            raw.len()
        );
        let complete: Vec<&str> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .collect();
        for (i, l) in complete.iter().enumerate() {
            serde_json::from_str::<Record>(l.trim_end())
                .unwrap_or_else(|e| panic!("round {round} line {}: {e}", i + 1));
        }
        // Every statement whose outcome "reached the client" has both records on disk.
        let session = format!("crash-{round}");
        let mut have_stmt = HashSet::new();
        let mut have_outcome = HashSet::new();
        for l in &complete {
            match serde_json::from_str::<Record>(l.trim_end()) {
                Ok(Record::Statement(s)) if s.session_id == session => {
                    have_stmt.insert(s.seq);
                }
                Ok(Record::Outcome(o)) if o.session_id == session => {
                    have_outcome.insert(o.seq);
                }
                _ => {}
            }
        }
        for seq in &acked {
            assert!(
                have_stmt.contains(seq),
                "round {round}: statement {seq} acked but missing"
            );
            assert!(
                have_outcome.contains(seq),
                "round {round}: outcome {seq} acked but missing"
            );
        }
        // A restart (next round, or the final check) repairs a torn tail before appending.
    }
    // After a clean start on the crashed file, every line is a complete object.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
        h.ddl(&statement("after", 1, "CREATE TABLE z ()"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        h.shutdown().await;
    });
    let recs = read_records(&p);
    assert!(recs.len() > 450);
}

/// Numbers, not a pass/fail check: `cargo test --test audit_writer throughput -- --ignored
/// --nocapture`. Sessions each write statement records one after another, as DDL would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    for (policy, sessions) in [
        (FsyncPolicy::Always, 1u64),
        (FsyncPolicy::Always, 16),
        (FsyncPolicy::Never, 1),
        (FsyncPolicy::Never, 16),
    ] {
        let dir = tmp();
        let p = dir.path().join("a.jsonl");
        let h = AuditHandle::start(&AuditConfig {
            fsync: policy,
            ..cfg(&p)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let per = 400u64;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for s in 0..sessions {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per as usize);
                for i in 0..per {
                    let t = Instant::now();
                    h.ddl(&statement(
                        &format!("s{s}"),
                        i,
                        "ALTER TABLE orders ADD COLUMN note text",
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
        }
        let secs = t0.elapsed().as_secs_f64();
        h.shutdown().await;
        lat.sort();
        let n = lat.len();
        println!(
            "fsync={policy:?} sessions={sessions}: {:.0} records/s, ack p50 {:?} p99 {:?}",
            n as f64 / secs,
            lat[n / 2],
            lat[n * 99 / 100]
        );
    }
}

#[tokio::test]
async fn sighup_reopens_the_file() {
    let dir = tmp();
    let p = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
    let _hup = h.reopen_on_sighup().unwrap_or_else(|e| panic!("{e}"));
    h.ddl(&statement("s", 1, "CREATE TABLE a ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&p, &rotated).unwrap_or_else(|e| panic!("{e}"));
    // What logrotate's postrotate does: kill -HUP <pid>.
    let st = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        assert!(Instant::now() < deadline, "SIGHUP did not reopen {p:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.ddl(&statement("s", 2, "CREATE TABLE b ()"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.shutdown().await;
    assert_eq!(read_records(&rotated).len(), 1);
    assert_eq!(read_records(&p).len(), 1);
}
