//! The `pgwarden serve` command-line contract: listen address logged in text and JSON formats,
//! clear non-zero exits on a bad config file or a port in use.
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn serve(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    cmd.arg("serve").args(args).env("NO_COLOR", "1");
    run_cmd(cmd, None, Duration::from_secs(60))
}

#[test]
fn listen_address_is_logged_in_text_and_json() {
    let c = Cluster::shared();
    for format in ["text", "json"] {
        let proxy = ProxyProcess::start_with_args(&c.addr(), "", &["--log-format", format]);
        let out = psql(
            &c.conn("postgres").with_port(proxy.port()),
            &["-Atc", "SELECT 1"],
        );
        assert_eq!(out.assert_success().stdout.trim(), "1", "{format}");
        if format == "json" {
            let line = proxy
                .logs()
                .lines()
                .find(|l| l.contains("listening on"))
                .map(str::to_string)
                .expect("listening line");
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            assert!(v.is_object(), "{line}");
        }
    }
}

#[test]
fn unknown_config_key_is_named_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nmax_conections = 10\n").expect("write");
    let out = serve(&[
        "--config",
        path.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:0",
    ]);
    out.assert_failure();
    assert!(
        out.stderr.contains("max_conections") || out.stdout.contains("max_conections"),
        "error must name the key:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn port_in_use_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = serve(&["--listen", &addr, "--upstream", "127.0.0.1:1"]);
    out.assert_failure();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains(&addr), "error must name the address: {text}");
}
