//! `pgwarden check`'s CI front door as the real binary: squawk's flags (--assume-in-transaction,
//! --include/--exclude, --exclude-path, --stdin-filepath), configuration found by walking up,
//! and the SARIF 2.1.0 (validated against the vendored OASIS schema) and GitLab reports.
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn pgwarden_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    if let Some(input) = stdin {
        let _ = child.stdin.take().expect("stdin").write_all(input);
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("binary finishes")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn rules_of(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("json report");
    v.as_array()
        .expect("array")
        .iter()
        .map(|d| d["rule"].as_str().expect("rule").to_string())
        .collect()
}

const DROP: &str = "ALTER TABLE orders DROP COLUMN old_code;\n";

#[test]
fn assume_in_transaction_flags_a_stray_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "m.sql", "CREATE TABLE t (a int);\nCOMMIT;\n");
    let plain = pgwarden_in(dir.path(), &["check", "--format", "json", "m.sql"], None);
    let assumed = pgwarden_in(
        dir.path(),
        &[
            "check",
            "--format",
            "json",
            "--assume-in-transaction",
            "m.sql",
        ],
        None,
    );
    let plain = out(&plain);
    let assumed_out = out(&assumed);
    assert!(plain.contains("without a BEGIN"), "{plain}");
    assert!(
        assumed_out.contains("migration tool opened"),
        "{assumed_out}"
    );
}

#[test]
fn include_and_exclude_switch_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "m.sql", "CREATE TABLE orders (id bigint);\nDROP INDEX CONCURRENTLY IF EXISTS orders_idx;\nALTER TABLE orders2 DROP COLUMN legacy;\n");
    let base = rules_of(&out(&pgwarden_in(
        dir.path(),
        &["check", "--format", "json", "m.sql"],
        None,
    )));
    assert!(base.contains(&"ban-drop-column".to_string()));
    assert!(
        !base.contains(&"ban-drop-index".to_string()),
        "opt-in rules are off: {base:?}"
    );
    let o = pgwarden_in(
        dir.path(),
        &[
            "check",
            "--format",
            "json",
            "--include",
            "ban-drop-index,require-table-schema",
            "--exclude",
            "ban-drop-column",
            "m.sql",
        ],
        None,
    );
    let rules = rules_of(&out(&o));
    assert!(rules.contains(&"ban-drop-index".to_string()), "{rules:?}");
    assert!(
        rules.contains(&"require-table-schema".to_string()),
        "{rules:?}"
    );
    assert!(!rules.contains(&"ban-drop-column".to_string()), "{rules:?}");
    // squawk's alias works on the command line too.
    let o = pgwarden_in(
        dir.path(),
        &[
            "check",
            "--format",
            "json",
            "--exclude",
            "require-timeout-settings",
            "m.sql",
        ],
        None,
    );
    let rules = rules_of(&out(&o));
    assert!(
        !rules
            .iter()
            .any(|r| r.starts_with("require-") && r.ends_with("-timeout")),
        "{rules:?}"
    );
    let bad = pgwarden_in(
        dir.path(),
        &["check", "--exclude", "ban-drop-colum", "m.sql"],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        err(&bad).contains("did you mean `ban-drop-column`"),
        "{}",
        err(&bad)
    );
}

#[test]
fn exclude_path_and_stdin_filepath() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "migrations/0001.sql", DROP);
    write(dir.path(), "migrations/legacy/0000.sql", DROP);
    let o = pgwarden_in(
        dir.path(),
        &[
            "check",
            "--format",
            "json",
            "--exclude-path",
            "migrations/legacy/*",
            "migrations",
        ],
        None,
    );
    let report = out(&o);
    assert!(
        report.contains("migrations/0001.sql") && !report.contains("legacy"),
        "{report}"
    );
    let o = pgwarden_in(
        dir.path(),
        &[
            "check",
            "--format",
            "json",
            "--stdin-filepath",
            "migrations/0002.sql",
            "-",
        ],
        Some(DROP.as_bytes()),
    );
    assert!(
        out(&o).contains("\"file\": \"migrations/0002.sql\""),
        "{}",
        out(&o)
    );
    let o = pgwarden_in(
        dir.path(),
        &[
            "check",
            "--stdin-filepath",
            "migrations/legacy/x.sql",
            "--exclude-path",
            "migrations/legacy/*",
            "-",
        ],
        Some(DROP.as_bytes()),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "an excluded stdin is not checked: {}",
        out(&o)
    );
}

#[test]
fn config_files_are_found_walking_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deep = dir.path().join("app/db/migrations");
    write(&deep, "m.sql", DROP);
    // Without configuration the drop rejects.
    assert_eq!(
        pgwarden_in(&deep, &["check", "m.sql"], None).status.code(),
        Some(1)
    );
    write(
        dir.path(),
        "app/.pgwarden.toml",
        "[policy.rules]\nban-drop-column = \"warn\"\n",
    );
    let o = pgwarden_in(&deep, &["check", "m.sql"], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("warning[ban-drop-column]"), "{}", out(&o));
    // .squawk.toml's keys: excluded_rules, pg_version, assume_in_transaction.
    write(
        dir.path(),
        "app/db/.squawk.toml",
        "excluded_rules = [\"ban-drop-column\"]\npg_version = \"15.2\"\nassume_in_transaction = true\n",
    );
    let o = pgwarden_in(&deep, &["check", "--format", "json", "m.sql"], None);
    assert!(
        !rules_of(&out(&o)).contains(&"ban-drop-column".to_string()),
        "{}",
        out(&o)
    );
    write(&deep, "c.sql", "COMMIT;\n");
    let o = pgwarden_in(&deep, &["check", "--format", "json", "c.sql"], None);
    assert!(out(&o).contains("migration tool opened"), "{}", out(&o));
}

#[test]
fn sarif_validates_against_the_sarif_2_1_0_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "migrations/0001 drop.sql", "ALTER TABLE orders DROP COLUMN legacy;\nCREATE INDEX ix ON orders (customer_id);\nALTER TABLE orders ADD COLUMN at timestamp;\n");
    let o = pgwarden_in(
        dir.path(),
        &["check", "--format", "sarif", "migrations"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let sarif = out(&o);
    let v: serde_json::Value = serde_json::from_str(&sarif).expect("sarif is json");
    assert!(v["runs"][0]["results"].as_array().expect("results").len() >= 3);
    let report = dir.path().join("report.sarif");
    std::fs::write(&report, &sarif).expect("write report");
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sarif/sarif-schema-2.1.0.json");
    // pip's jsonschema (pinned in tests/python/requirements.txt), with format checks on: the
    // artifact URIs must be valid uri-references.
    let script = "import json, sys, jsonschema\n\
                  schema = json.load(open(sys.argv[1]))\n\
                  log = json.load(open(sys.argv[2]))\n\
                  cls = jsonschema.validators.validator_for(schema)\n\
                  cls(schema, format_checker=cls.FORMAT_CHECKER).validate(log)\n\
                  print('valid')\n";
    let run = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(&report)
        .output()
        .expect("python runs");
    assert!(
        run.status.success() && String::from_utf8_lossy(&run.stdout).contains("valid"),
        "schema validation failed: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // The validator is not a rubber stamp: a log with a bad level fails it.
    let mut broken = v.clone();
    broken["runs"][0]["results"][0]["level"] = serde_json::json!("fatal");
    std::fs::write(&report, broken.to_string()).expect("write broken");
    let run = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(&report)
        .output()
        .expect("python runs");
    assert!(
        !run.status.success(),
        "a level outside the enum must not validate"
    );
}

#[test]
fn gitlab_code_quality_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "m.sql", DROP);
    let o = pgwarden_in(dir.path(), &["check", "--format", "gitlab", "m.sql"], None);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).expect("json");
    let issue = v
        .as_array()
        .expect("array")
        .iter()
        .find(|i| i["check_name"] == "ban-drop-column")
        .expect("the drop is reported");
    assert_eq!(issue["check_name"], "ban-drop-column");
    assert_eq!(issue["location"]["path"], "m.sql");
    assert_eq!(issue["location"]["lines"]["begin"], 1);
    assert_eq!(issue["severity"], "critical");
    assert_eq!(
        issue["fingerprint"].as_str().expect("fingerprint").len(),
        16
    );
}

#[test]
fn stats_reads_sizes_from_a_live_database_and_check_uses_them() {
    let cluster = common::Cluster::shared();
    let db = cluster.fresh_db("stats");
    cluster.sql(
        &db,
        "CREATE TABLE orders (id bigint, customer_id bigint);\n\
         INSERT INTO orders SELECT g, g % 100 FROM generate_series(1, 5000) g;\n\
         CREATE SCHEMA billing;\n\
         CREATE TABLE billing.invoices (id bigint);\n\
         CREATE TABLE never_analysed (id bigint);\n\
         ANALYZE orders; ANALYZE billing.invoices;",
    );
    let conn = cluster.conn(&db);
    let psql = common::pg_bin("psql");
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("stats.json");
    let o = pgwarden_in(
        dir.path(),
        &[
            "stats",
            "--url",
            &conn.url(),
            "--psql",
            &psql.display().to_string(),
            "--output",
            &stats.display().to_string(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats file")).expect("json");
    assert_eq!(v["orders"]["rows"], 5000, "{v}");
    assert!(v["orders"]["bytes"].as_u64().expect("bytes") >= 8192, "{v}");
    assert_eq!(v["billing.invoices"]["rows"], 0, "{v}");
    assert_eq!(
        v["never_analysed"]["rows"], 0,
        "reltuples -1 counts as 0: {v}"
    );
    // The PG* environment variables instead of --url, to stdout.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    cmd.args(["stats", "--psql", &psql.display().to_string()])
        .envs(conn.env());
    let o = cmd.output().expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let from_env: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(from_env["orders"], v["orders"]);
    // check sizes the table from that file: 5000 rows is small, so the index build only warns.
    write(
        dir.path(),
        "m.sql",
        "CREATE INDEX ix ON orders (customer_id);\n",
    );
    let o = pgwarden_in(
        dir.path(),
        &["check", "--stats", &stats.display().to_string(), "m.sql"],
        None,
    );
    assert!(out(&o).contains("orders (~5.0k rows)"), "{}", out(&o));
    // A server that refuses the connection is a loud exit 2, not an empty file.
    let bad = pgwarden_in(
        dir.path(),
        &[
            "stats",
            "--url",
            "postgres://nobody@127.0.0.1:1/x",
            "--psql",
            &psql.display().to_string(),
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(err(&bad).contains("psql failed"), "{}", err(&bad));
}
