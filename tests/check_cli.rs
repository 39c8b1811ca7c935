//! `pgwarden check` / `rules` / `explain` run as the real binary: output formats and exit codes.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn pgwarden(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    if let Some(input) = stdin {
        // The binary may exit before reading (usage errors): a broken pipe is expected then.
        let _ = child.stdin.take().expect("stdin").write_all(input);
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("binary finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

const UNSAFE: &str = "BEGIN;\nCREATE INDEX ix_orders_customer ON orders (customer_id);\nCOMMIT;\n";
const SAFE: &str = "SET lock_timeout = '2s';\nSET statement_timeout = '5min';\n\
                    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON orders (customer_id);\n\
                    ALTER TABLE orders ADD COLUMN note text;\n";

#[test]
fn unsafe_file_exits_1_with_rustc_style_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "0001.sql", UNSAFE);
    let stats = write(
        dir.path(),
        "stats.json",
        r#"{"orders": {"rows": 12400000, "bytes": 4000000000}}"#,
    );
    let o = pgwarden(&["check", "--stats", &stats, &f], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("error[require-concurrent-index-creation]: CREATE INDEX on orders (~12.4M rows) blocks all writes to orders until the build finishes"), "{out}");
    assert!(out.contains(&format!("--> {f}:2:1")), "{out}");
    assert!(
        out.contains("2 | CREATE INDEX ix_orders_customer ON orders (customer_id);"),
        "{out}"
    );
    assert!(out.contains("^^^^^^"), "{out}");
    assert!(out.contains("autocommit_block"), "{out}");
}

#[test]
fn safe_file_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "safe.sql", SAFE);
    let o = pgwarden(&["check", &f], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn small_table_from_stats_only_warns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "m.sql", UNSAFE);
    let stats = write(
        dir.path(),
        "s.json",
        r#"{"orders": {"rows": 300, "bytes": 65536}}"#,
    );
    let o = pgwarden(&["check", "--format", "json", "--stats", &stats, &f], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let first = &v.as_array().expect("array")[0];
    assert_eq!(first["rule"], "require-concurrent-index-creation");
    assert_eq!(first["severity"], "warn");
}

#[test]
fn json_has_the_documented_fields() {
    let o = pgwarden(&["check", "--format", "json", "-"], Some(UNSAFE.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let items = v.as_array().expect("array");
    let idx = items
        .iter()
        .find(|i| i["rule"] == "require-concurrent-index-creation")
        .expect("finding");
    for key in [
        "rule", "severity", "file", "line", "column", "message", "help",
    ] {
        assert!(!idx[key].is_null(), "missing {key}: {idx}");
    }
    assert_eq!(idx["severity"], "reject");
    assert_eq!(idx["file"], "<stdin>");
    assert_eq!(idx["line"], 2);
    assert_eq!(idx["column"], 1);
}

#[test]
fn github_annotations() {
    let o = pgwarden(
        &["check", "--format", "github", "-"],
        Some(UNSAFE.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("::error file=<stdin>,line=2,col=1,")
                && l.contains("title=pgwarden require-concurrent-index-creation::")),
        "{out}"
    );
}

#[test]
fn directories_recurse_into_sql_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a/0001_safe.sql", SAFE);
    write(
        dir.path(),
        "a/b/0002_drop.sql",
        "ALTER TABLE orders DROP COLUMN legacy;\n",
    );
    write(dir.path(), "a/notes.txt", "DROP TABLE everything;\n");
    let o = pgwarden(
        &[
            "check",
            "--format",
            "json",
            &dir.path().display().to_string(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let files: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .filter(|i| i["severity"] == "reject")
        .map(|i| i["file"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        files.iter().all(|f| f.ends_with("0002_drop.sql")),
        "{files:?}"
    );
    assert!(!files.is_empty());
}

#[test]
fn io_errors_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.sql").display().to_string();
    let o = pgwarden(&["check", &missing], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&missing), "{}", stderr(&o));

    let bad = dir.path().join("latin1.sql");
    std::fs::write(&bad, b"COMMENT ON TABLE t IS 'caf\xe9';\n").expect("write");
    let o = pgwarden(&["check", &bad.display().to_string()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));
    assert!(stderr(&o).contains("latin1.sql"), "{}", stderr(&o));

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let o = pgwarden(&["check", &empty.display().to_string()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("contains no .sql files"),
        "{}",
        stderr(&o)
    );

    let o = pgwarden(&["check", "--format", "xml", "-"], Some(b"SELECT 1"));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn config_misspelled_rule_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "pgwarden.toml",
        "[policy.rules]\nban-drop-colum = \"off\"\n",
    );
    let o = pgwarden(&["check", "--config", &cfg, "-"], Some(b"SELECT 1;"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ban-drop-colum"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean `ban-drop-column`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_turns_a_rule_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "pgwarden.toml",
        "[policy.rules]\nban-drop-column = \"off\"\n",
    );
    let o = pgwarden(
        &["check", "--config", &cfg, "-"],
        Some(
            b"SET lock_timeout = '1s'; SET statement_timeout = '1s'; ALTER TABLE t DROP COLUMN a;",
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn inline_allow_with_reason_passes() {
    let sql = "SET lock_timeout = '1s';\nSET statement_timeout = '1s';\n\
               -- pgwarden:allow ban-drop-column reason=\"unused since v42\"\n\
               ALTER TABLE t DROP COLUMN a;\n";
    let o = pgwarden(&["check", "-"], Some(sql.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn pg_version_flag_changes_the_answer() {
    let sql = "SET lock_timeout = '1s'; SET statement_timeout = '1s'; \
               ALTER TABLE t ADD COLUMN flag bool DEFAULT false;";
    let o = pgwarden(
        &["check", "--pg-version", "10", "--format", "json", "-"],
        Some(sql.as_bytes()),
    );
    assert!(
        stdout(&o).contains("adding-field-with-default"),
        "{}",
        stdout(&o)
    );
    let o = pgwarden(
        &["check", "--pg-version", "15", "--format", "json", "-"],
        Some(sql.as_bytes()),
    );
    assert!(
        !stdout(&o).contains("adding-field-with-default"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rules_lists_every_rule() {
    let o = pgwarden(&["rules"], None);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("require-concurrent-index-creation"));
    assert!(out.lines().count() >= 45);
    let o = pgwarden(&["rules", "--format", "markdown"], None);
    assert!(stdout(&o).starts_with("| rule | default | what it flags |"));
}

#[test]
fn explain_prints_the_doc_or_suggests() {
    let o = pgwarden(&["explain", "adding-foreign-key-constraint"], None);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for h in [
        "## What it does",
        "## Why is this bad",
        "## Example",
        "## Use instead",
        "## Rewrite safety",
    ] {
        assert!(out.contains(h), "{out}");
    }
    let o = pgwarden(&["explain", "ban-drop-colum"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `ban-drop-column`"),
        "{}",
        stderr(&o)
    );
}

/// Snapshot of the whole text report for a small migration: the format users and CI read.
#[test]
fn text_report_snapshot() {
    let sql = "SET lock_timeout = '2s';\nSET statement_timeout = '1min';\nALTER TABLE orders\n    \
               ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id);\n";
    let o = pgwarden(&["check", "-"], Some(sql.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    let expected = "\
error[adding-foreign-key-constraint]: ADD FOREIGN KEY blocks all writes to orders and customers while every row of orders is validated
 --> <stdin>:4:5
  |
4 |     ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id);
  |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  |
  = lock: SHARE ROW EXCLUSIVE
  = help: Append NOT VALID, commit, then VALIDATE CONSTRAINT in a separate transaction (Alembic: op.create_foreign_key(..., postgresql_not_valid=True), then op.execute(\"ALTER TABLE ... VALIDATE CONSTRAINT ...\") in a later revision; Rails: validate: false, then validate_foreign_key).
  = fix: ALTER TABLE orders
             ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID

warning[require-index-on-foreign-key]: foreign key on orders (customer_id) has no index: deletes and key updates on the referenced table scan orders for every row
 --> <stdin>:4:9
  |
4 |     ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id);
  |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  |
  = lock: SHARE ROW EXCLUSIVE
  = help: CREATE INDEX CONCURRENTLY ON orders (customer_id) in a separate statement.

1 file checked: 1 rejected, 1 warning
";
    assert_eq!(stdout(&o), expected);
}
