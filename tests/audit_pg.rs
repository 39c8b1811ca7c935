//! The audit layer driven by a real PostgreSQL 15, the way the session will drive it: every
//! fate the tracker decides is checked against what is really in the database afterwards.
//!
//! A small simple-protocol client (startup, Query, CommandComplete/ErrorResponse/ReadyForQuery)
//! stands in for the proxy's session: it writes the `statement` record before sending, the
//! `outcome` record when the answer arrives, and `fate` records at ReadyForQuery, following the
//! contract in docs/audit.md. Then `pgwarden audit report` reads the file.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgwarden::audit::{
    AuditHandle, AuditSession, Decision, Fate, Outcome, Record, SessionInfo, StatementResult,
};
use pgwarden::config::audit::AuditConfig;
use pgwarden::protocol::TxStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throw-away PostgreSQL cluster on a free loopback port, stopped on drop.
struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
}

fn as_postgres(cmd: &str, args: &[&str]) -> Command {
    // The server refuses to run as root.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &format!("{BIN}/{cmd}")]);
        c.args(args);
        c
    } else {
        let mut c = Command::new(format!("{BIN}/{cmd}"));
        c.args(args);
        c
    }
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new(&format!("{BIN}/postgres")).exists(),
            "PostgreSQL 15 server binaries not found in {BIN}: install postgresql-15"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        // chown fails when not root; then we are the server's user already.
        let _ = st;
        let data = dir.path().join("data");
        let data_s = data.display().to_string();
        let out = as_postgres(
            "initdb",
            &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        )
        .output()
        .unwrap_or_else(|e| panic!("initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
        };
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("log").display().to_string();
        let out = as_postgres(
            "pg_ctl",
            &["-D", &data_s, "-o", &opts, "-l", &log, "-w", "start"],
        )
        .output()
        .unwrap_or_else(|e| panic!("pg_ctl: {e}"));
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Cluster {
            _dir: dir,
            data,
            port,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "stop",
            ],
        )
        .output();
    }
}

/// What the server said about one request.
#[derive(Debug)]
enum Ev {
    Complete(String),
    Error { sqlstate: String, message: String },
    Row(Vec<Option<String>>),
    Ready(TxStatus),
}

struct Conn {
    s: TcpStream,
}

impl Conn {
    async fn connect(port: u16) -> Conn {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes());
        for kv in ["user", "postgres", "database", "postgres"] {
            body.extend_from_slice(kv.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        s.write_all(&msg).await.unwrap_or_else(|e| panic!("{e}"));
        let mut c = Conn { s };
        c.read_until_ready().await;
        c
    }

    async fn read_msg(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 5];
        self.s
            .read_exact(&mut h)
            .await
            .unwrap_or_else(|e| panic!("read: {e}"));
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let mut b = vec![0u8; len - 4];
        self.s
            .read_exact(&mut b)
            .await
            .unwrap_or_else(|e| panic!("read: {e}"));
        (h[0], b)
    }

    async fn read_until_ready(&mut self) -> Vec<Ev> {
        let mut evs = Vec::new();
        loop {
            let (t, b) = self.read_msg().await;
            match t {
                b'C' => evs.push(Ev::Complete(cstr(&b))),
                b'E' => {
                    let f = fields(&b);
                    evs.push(Ev::Error {
                        sqlstate: f.get(&b'C').cloned().unwrap_or_default(),
                        message: f.get(&b'M').cloned().unwrap_or_default(),
                    });
                }
                b'D' => evs.push(Ev::Row(data_row(&b))),
                b'Z' => {
                    let st = match b.first() {
                        Some(b'T') => TxStatus::InTransaction,
                        Some(b'E') => TxStatus::Failed,
                        _ => TxStatus::Idle,
                    };
                    evs.push(Ev::Ready(st));
                    return evs;
                }
                _ => {}
            }
        }
    }

    async fn send_query(&mut self, sql: &str) {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.s
            .write_all(&msg)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.send_query(sql).await;
        self.read_until_ready()
            .await
            .into_iter()
            .filter_map(|e| match e {
                Ev::Row(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or_default()).into_owned()
}

fn fields(b: &[u8]) -> BTreeMap<u8, String> {
    let mut m = BTreeMap::new();
    let mut i = 0;
    while i < b.len() && b[i] != 0 {
        let code = b[i];
        let rest = &b[i + 1..];
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        m.insert(code, String::from_utf8_lossy(&rest[..end]).into_owned());
        i += 1 + end + 1;
    }
    m
}

fn data_row(b: &[u8]) -> Vec<Option<String>> {
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut i = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        i += 4;
        if len < 0 {
            out.push(None);
        } else {
            let l = len as usize;
            out.push(Some(String::from_utf8_lossy(&b[i..i + l]).into_owned()));
            i += l;
        }
    }
    out
}

/// Plays the proxy session's part of the audit contract over a real connection, through
/// the same `AuditSession` calls the proxy makes.
struct Session {
    conn: Conn,
    audit: AuditSession,
    seq: u64,
}

fn is_audited(stmt: &str) -> bool {
    let w = stmt
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(w.as_str(), "CREATE" | "ALTER" | "DROP" | "COMMENT")
}

impl Session {
    async fn new(port: u16, audit: &AuditHandle, n: u64) -> Session {
        let conn = Conn::connect(port).await;
        let info = SessionInfo {
            client_addr: "127.0.0.1:1".into(),
            user: "postgres".into(),
            database: "postgres".into(),
            application_name: "audit_pg".into(),
            server_pid: None,
            tls: false,
        };
        Session {
            conn,
            audit: AuditSession::start(audit, n, info),
            seq: 0,
        }
    }

    /// One simple Query (statements separated by `;`, none inside literals in these tests).
    async fn query(&mut self, sql: &str) {
        let stmts: Vec<String> = sql
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let first_seq = self.seq + 1;
        for s in &stmts {
            self.seq += 1;
            self.audit.seen(Decision::Allow);
            if is_audited(s) {
                let rec = self.audit.statement(self.seq, s, Decision::Allow);
                self.audit
                    .before_forward(rec)
                    .await
                    .unwrap_or_else(|e| panic!("audit refused: {e}"));
            } else {
                self.audit.dml(s, &[]);
            }
        }
        self.conn.send_query(sql).await;
        let evs = self.conn.read_until_ready().await;
        let mut i = 0;
        for ev in evs {
            let stmt = stmts.get(i).map(String::as_str).unwrap_or("");
            let seq = first_seq + i as u64;
            let r = match &ev {
                Ev::Complete(tag) => StatementResult::Ok { tag },
                Ev::Error { sqlstate, message } => StatementResult::Error { sqlstate, message },
                Ev::Row(_) => continue,
                Ev::Ready(st) => {
                    self.audit
                        .ready_for_query(*st)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    break;
                }
            };
            self.audit
                .completed(seq, stmt, r)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            i += 1;
        }
    }

    async fn drop_connection(self) {
        let Session {
            mut conn, audit, ..
        } = self;
        audit.closed(false).await;
        let _ = conn.s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fates_match_what_postgres_really_kept() {
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("audit.jsonl");
    let audit = AuditHandle::start(&AuditConfig {
        path: log.display().to_string(),
        ..AuditConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let mut s = Session::new(pg.port, &audit, 1).await;
    // Alembic, default: one transaction for the run, version row after each revision.
    s.query("BEGIN").await;
    s.query("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))").await;
    s.query("\nCREATE TABLE t_a1 (\n\tid SERIAL NOT NULL, \n\tPRIMARY KEY (id)\n)\n\n")
        .await;
    s.query("INSERT INTO alembic_version (version_num) VALUES ('0001') RETURNING alembic_version.version_num").await;
    s.query("ALTER TABLE t_a1 ADD COLUMN name TEXT").await;
    s.query("CREATE TABLE t_a2 (id int)").await;
    s.query(
        "UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001'",
    )
    .await;
    s.query("COMMIT").await;
    // A failing revision (transaction_per_migration): Alembic rolls back.
    s.query("BEGIN ISOLATION LEVEL READ COMMITTED").await;
    s.query("CREATE TABLE t_f1 (id int)").await;
    s.query("ALTER TABLE t_missing ADD COLUMN x int").await;
    s.query("ROLLBACK").await;
    // psql without ON_ERROR_STOP: COMMIT after an error answers ROLLBACK.
    s.query("BEGIN").await;
    s.query("CREATE TABLE t_p1 ()").await;
    s.query("CREATE TABLE t_p2 (x no_such_type)").await;
    s.query("COMMIT").await;
    // Multi-statement Query outside a transaction: one implicit transaction.
    s.query("CREATE TABLE t_m1 (); CREATE TABLE t_m2 (x no_such_type); CREATE TABLE t_m3 ()")
        .await;
    s.query("CREATE TABLE t_m4 (); CREATE TABLE t_m5 ()").await;
    // Autocommit.
    s.query("CREATE TABLE t_c1 ()").await;
    s.query("CREATE INDEX CONCURRENTLY t_c1_idx ON t_a1 (name)")
        .await;
    // Savepoints.
    s.query("BEGIN").await;
    s.query("CREATE TABLE t_s1 ()").await;
    s.query("SAVEPOINT Sp").await;
    s.query("CREATE TABLE t_s2 ()").await;
    s.query("CREATE TABLE t_s2b (x no_such_type)").await;
    s.query("ROLLBACK TO SAVEPOINT sp").await;
    s.query("SAVEPOINT sp2").await;
    s.query("CREATE TABLE t_s3 ()").await;
    s.query("RELEASE sp2").await;
    s.query("COMMIT").await;
    // COMMIT AND CHAIN keeps a transaction open.
    s.query("BEGIN").await;
    s.query("CREATE TABLE t_ch1 ()").await;
    s.query("COMMIT AND CHAIN").await;
    s.query("CREATE TABLE t_ch2 ()").await;
    s.query("ROLLBACK").await;
    // BEGIN inside a multi-statement Query takes the earlier statements along.
    s.query("CREATE TABLE t_b1 (); BEGIN; CREATE TABLE t_b2 ()")
        .await;
    s.query("ROLLBACK").await;
    // Deferred constraint: COMMIT itself fails.
    s.query("CREATE TABLE t_d_parent (id int PRIMARY KEY)")
        .await;
    s.query("BEGIN").await;
    s.query("CREATE TABLE t_d1 (p int REFERENCES t_d_parent DEFERRABLE INITIALLY DEFERRED)")
        .await;
    s.query("INSERT INTO t_d1 VALUES (1)").await;
    s.query("COMMIT").await;
    // Django bookkeeping in the migration's transaction.
    s.query("CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255) NOT NULL, name varchar(255) NOT NULL, applied timestamptz NOT NULL)").await;
    s.query("BEGIN").await;
    s.query("CREATE TABLE t_dj1 (id int)").await;
    s.query("INSERT INTO \"django_migrations\" (\"app\", \"name\", \"applied\") VALUES ('polls', '0001_initial', '2026-11-26T02:00:00+00:00'::timestamptz) RETURNING \"django_migrations\".\"id\"").await;
    s.query("COMMIT").await;
    // A secret.
    s.query("CREATE ROLE r_audit LOGIN PASSWORD 'hunter2'")
        .await;
    s.query("ALTER ROLE r_audit PASSWORD E'hun\\'ter3'").await;
    // A syntax error whose message echoes the secret literal.
    s.query("ALTER ROLE r_audit PASSWORD 'hunter4' VALID UNTIL 'hunter4'")
        .await;
    // Disconnect inside a transaction: the server rolls it back.
    let mut s2 = Session::new(pg.port, &audit, 2).await;
    s2.query("BEGIN").await;
    s2.query("CREATE TABLE t_x1 ()").await;
    let pid_rows = s2.conn.rows("SELECT pg_backend_pid()").await;
    let pid = pid_rows[0][0].clone().unwrap_or_default();
    s2.drop_connection().await;
    audit.shutdown().await;

    // What does the database really hold?
    let mut check = Conn::connect(pg.port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check
        .rows(&format!("SELECT 1 FROM pg_stat_activity WHERE pid = {pid}"))
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "backend {pid} did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let existing: HashSet<String> = check
        .rows("SELECT relname FROM pg_class WHERE relname LIKE 't\\_%' AND relkind = 'r'")
        .await
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();

    // Join statement and fate records from the file.
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !text.contains("hunter2") && !text.contains("ter3") && !text.contains("hunter4"),
        "secret leaked"
    );
    let mut created: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut fates: BTreeMap<(String, u64), Fate> = BTreeMap::new();
    let mut outcomes: BTreeMap<(String, u64), Outcome> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let rec: Record =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        match rec {
            Record::Statement(st) => {
                let mut w = st.text.split_whitespace();
                if let (Some("CREATE"), Some("TABLE"), Some(name)) = (w.next(), w.next(), w.next())
                {
                    if name.starts_with("t_") {
                        created.insert((st.session_id, st.seq), name.to_string());
                    }
                }
            }
            Record::Fate(f) => {
                for s in f.seqs {
                    fates.insert((f.session_id.clone(), s), f.fate);
                }
            }
            Record::Outcome(o) => {
                outcomes.insert((o.session_id, o.seq), o.outcome);
            }
            _ => {}
        }
    }
    assert!(created.len() >= 20, "{created:?}");
    let mut mismatches = Vec::new();
    for (key, table) in &created {
        let fate = fates.get(key).copied();
        let exists = existing.contains(table);
        if exists != (fate == Some(Fate::Committed)) {
            mismatches.push(format!("{table}: exists={exists} fate={fate:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "tracker disagrees with the database: {mismatches:#?}"
    );
    // Spot checks of the expected shape, so a tracker that said "rolled back" everywhere
    // could not pass.
    for t in [
        "t_a1", "t_a2", "t_m4", "t_m5", "t_c1", "t_s1", "t_s3", "t_ch1", "t_dj1",
    ] {
        assert!(existing.contains(t), "{t} should exist");
    }
    for t in [
        "t_f1", "t_p1", "t_m1", "t_m3", "t_s2", "t_ch2", "t_b1", "t_b2", "t_d1", "t_x1",
    ] {
        assert!(!existing.contains(t), "{t} should not exist");
    }
    assert!(outcomes
        .values()
        .any(|o| matches!(o, Outcome::Error { sqlstate, .. } if sqlstate == "42P01")));

    // The report over the same file.
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["audit", "report"])
        .arg(&log)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    // Shown with --nocapture (and on failure): what a CI log would show.
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "revision alembic 0001 (upgrade): committed",
        "revision alembic 0002 (upgrade from 0001): committed",
        "revision django polls.0001_initial (upgrade): committed",
        "ERROR 42P01: relation \"t_missing\" does not exist",
        "ALTER ROLE r_audit PASSWORD '[REDACTED]'",
        "ERROR 22007: invalid input syntax for type timestamp with time zone: \"[REDACTED]\"",
        "rolled_back (savepoint_rollback)",
        "rolled_back (disconnect)",
        // session_end of the dropped session, with its counters.
        "statements seen 2, warned 0, rejected 0, rewritten 0",
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }
    // Alembic revision 0001 covers the version table and t_a1; 0002 covers the ALTER and t_a2.
    let r1 = report.find("revision alembic 0001").unwrap_or(0);
    let r2 = report.find("revision alembic 0002").unwrap_or(0);
    let a1 = report.find("CREATE TABLE t_a1").unwrap_or(0);
    let a2 = report.find("CREATE TABLE t_a2").unwrap_or(0);
    assert!(r1 < a1 && a1 < r2 && r2 < a2, "{report}");
}
