//! The prefilter against the real thing: a PostgreSQL 15 server started here splits generated
//! multi-statement query strings (simple protocol), and the number of statements it runs must
//! equal the number the lexer finds — with standard_conforming_strings on and off. This is
//! what keeps a `DROP TABLE` from hiding behind something the lexer mistook for a string.
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use pgwarden::sql::lexer::{split, LexOptions, StatementClass};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway cluster on a free loopback port, stopped on drop.
struct Server {
    /// Keeps the directory alive for the cluster's lifetime.
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn as_postgres(args: &[&str]) -> Command {
    // The server refuses to run as root: run its tools as the `postgres` OS user then.
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    }
}

fn run(mut c: Command, what: &str) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let root_dir = dir.path().to_path_buf();
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["postgres:postgres", root_dir.to_str().unwrap_or_default()]);
            run(c, "chown");
        }
        let data = root_dir.join("data");
        let initdb = format!("{BINDIR}/initdb");
        let pg_ctl = format!("{BINDIR}/pg_ctl");
        let d = data.to_str().unwrap_or_default().to_owned();
        run(
            as_postgres(&[
                &initdb,
                "-D",
                &d,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            root_dir.display()
        );
        let log = root_dir.join("log").to_str().unwrap_or_default().to_owned();
        run(
            as_postgres(&[&pg_ctl, "-D", &d, "-o", &opts, "-l", &log, "-w", "start"]),
            "pg_ctl start",
        );
        Server {
            _dir: dir,
            data,
            port,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pg_ctl = format!("{BINDIR}/pg_ctl");
        let d = self.data.to_str().unwrap_or_default().to_owned();
        let _ = as_postgres(&[&pg_ctl, "-D", &d, "-m", "immediate", "stop"]).output();
    }
}

async fn connect(port: u16) -> Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        NoTls,
    )
    .await
    .expect("connect to the test server");
    tokio::spawn(conn);
    client
}

/// Statements the server ran for `text`, or its error message.
async fn server_count(client: &Client, text: &str) -> Result<usize, String> {
    let msgs = client
        .simple_query(text)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count())
}

fn lexer_count(text: &str, scs: bool) -> (usize, bool) {
    let o = LexOptions {
        standard_conforming_strings: scs,
        ..LexOptions::default()
    };
    let st: Vec<_> = split(text, &o)
        .filter(|s| s.class != StatementClass::Empty)
        .collect();
    let all_dml = st
        .iter()
        .all(|s| s.class == StatementClass::Dml && s.unanalysable.is_none());
    (st.len(), all_dml)
}

/// A select-list item whose text is full of `;`, quotes, comment openers and backslashes.
fn item(scs: bool) -> BoxedStrategy<String> {
    let plain = if scs {
        // Backslashes are ordinary characters in standard strings.
        "'([a-z; \"$*/\\\\-]|''){0,6}'"
    } else {
        "'([a-z; \"$*/-]|''|\\\\\\\\|\\\\'){0,6}'"
    };
    let mut leaves: Vec<BoxedStrategy<String>> = vec![
        plain.boxed(),
        "E'([a-z; \"$*/-]|''|\\\\\\\\|\\\\'|\\\\n){0,6}'".boxed(),
        "\\$\\$[a-z; '\"*/\\\\-]{0,6}\\$\\$".boxed(),
        "\\$q\\$[a-z; '\"$*/\\\\-]{0,6}\\$q\\$"
            // The first `$q$` after the opening one must be the closing one: content ending in `$q`
            // would close early together with the tag's first characters (`$q$$q$q$`).
            .prop_filter("no early close", |s| {
                s[3..].find("$q$") == Some(s.len() - 6)
            })
            .boxed(),
        "[0-9]{1,3}(\\.[0-9]{1,2})?".boxed(),
        "B'[01]{0,6}'".boxed(),
        "X'[0-9a-f]{0,6}'".boxed(),
        // A continued literal: the continuation keeps the first part's escape mode.
        "E'[a-z;]{0,3}'\n'([a-z; ]|\\\\'|\\\\\\\\){0,4}'".boxed(),
        "'[a-z;]{0,3}' -- c;'\n '[a-z; ]{0,4}'".boxed(),
        "\\(ARRAY\\[[0-9], [0-9]\\]\\)\\[1\\]".boxed(),
        "\\(\\(\\([0-9]\\)\\)\\)".boxed(),
    ];
    if scs {
        leaves.push("U&'[a-z; ]{0,6}'".boxed());
    }
    let leaf = proptest::strategy::Union::new(leaves);
    let alias = "\"([a-z; '$*/-]|\"\"){1,6}\"";
    let gap = prop_oneof![
        Just(" ".to_owned()),
        "/\\*[a-z; '\"$]{0,5}(/\\*[a-z; ']{0,3}\\*/[a-z; ]{0,3})?\\*/",
        "--[a-z; '\"$*/]{0,5}\n",
    ];
    (leaf, proptest::option::of(alias), gap)
        .prop_map(|(v, a, g)| match a {
            Some(a) => format!("{v} AS {a}{g}"),
            None => format!("{v}{g}"),
        })
        .boxed()
}

fn query(scs: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(item(scs), 1..4), 1..5).prop_map(|stmts| {
        stmts
            .iter()
            .map(|items| format!("SELECT {}", items.join(", ")))
            .collect::<Vec<_>>()
            .join(";\n")
    })
}

fn check_mode(rt: &tokio::runtime::Runtime, client: &Client, scs: bool, cases: u32) {
    let setting = if scs { "on" } else { "off" };
    rt.block_on(client.simple_query(&format!("SET standard_conforming_strings = {setting}")))
        .expect("SET standard_conforming_strings");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&query(scs), |text| {
        let server = rt.block_on(server_count(client, &text));
        let (ours, all_dml) = lexer_count(&text, scs);
        match server {
            Ok(n) => {
                prop_assert_eq!(n, ours, "scs={} text={:?}", setting, text);
                prop_assert!(all_dml, "scs={} text={:?}", setting, text);
                Ok(())
            }
            Err(e) => Err(TestCaseError::fail(format!(
                "server rejected generated SQL {text:?}: {e}"
            ))),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn statement_counts_match_the_server() {
    let server = Server::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(connect(server.port));

    // Hand-picked cases where a lexer that is slightly wrong would disagree.
    for (text, scs) in [
        ("SELECT E'a'\n'\\'; SELECT 1; --'", true),
        ("SELECT E'a' -- c\n '\\'; SELECT 1; --'", true),
        ("SELECT 'a' /* c */\n; SELECT '\\'", true),
        ("SELECT '\\'; SELECT 1; --'", false),
        ("SELECT B'1'\n'0'; SELECT 1", false),
        ("SELECT $a$ $b$ ; $a$; SELECT $$;$$", true),
        ("SELECT 1 AS a$$b; SELECT 2 AS c$$", true),
        ("SELECT /* /* ; */ ; */ 1; SELECT 2", true),
        ("SELECT 1 +-- ;\n 2; SELECT 3", true),
        (
            "SELECT \"a;\"\"b\" FROM (SELECT 1 AS \"a;\"\"b\") s; SELECT 2",
            true,
        ),
        ("SELECT U&'d\\0061t;' ; SELECT 2", true),
        ("SELECT 1 AS \"U&\" ; SELECT 2", true),
        // `;` inside a SQL-standard function body (psql's BEGIN ATOMIC heuristic).
        (
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 3",
            true,
        ),
    ] {
        rt.block_on(client.simple_query(&format!(
            "SET standard_conforming_strings = {}",
            if scs { "on" } else { "off" }
        )))
        .expect("SET");
        let n = rt
            .block_on(server_count(&client, text))
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(lexer_count(text, scs).0, n, "scs={scs} {text:?}");
    }

    check_mode(&rt, &client, true, 300);
    check_mode(&rt, &client, false, 300);
}
