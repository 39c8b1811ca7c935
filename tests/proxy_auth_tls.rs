//! Authentication relayed through pgwarden (trust, md5, SCRAM) and the TLS matrix README claims:
//! client leg TLS, server leg TLS, both (SCRAM without channel binding), plaintext-after-`S`.
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// One `ssl=on` cluster for this test binary (the watchdog removes it at exit).
fn ssl_cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        Cluster::start(ClusterOptions {
            ssl: true,
            ..Default::default()
        })
    })
}

const USERS: [(&str, Option<&str>); 3] = [
    (TRUST_USER, None),
    (MD5_USER, Some(MD5_PASSWORD)),
    (SCRAM_USER, Some(SCRAM_PASSWORD)),
];

fn current_user_and_server_ssl(conn: &ConnInfo) -> CmdOutput {
    psql(
        conn,
        &[
            "-At",
            "-c",
            "SELECT current_user || CASE WHEN ssl THEN ' t' ELSE ' f' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            "-c",
            "\\conninfo",
        ],
    )
}

/// Logs in through `proxy` with psql as `user` and checks which legs are encrypted: the server
/// leg (pg_stat_ssl, as the server sees pgwarden) and, when given, the client leg (psql's
/// `\conninfo`).
fn assert_login(
    via: &ConnInfo,
    proxy: &ProxyProcess,
    user: &str,
    server_leg_tls: bool,
    client_leg_tls: Option<bool>,
) {
    let out = current_user_and_server_ssl(via);
    assert!(
        out.status.success(),
        "{user} via proxy: {}\nproxy log:\n{}",
        out.stderr,
        proxy.logs()
    );
    let flag = if server_leg_tls { "t" } else { "f" };
    assert!(
        out.stdout.starts_with(&format!("{user} {flag}\n")),
        "{}",
        out.stdout
    );
    if let Some(tls) = client_leg_tls {
        assert_eq!(out.stdout.contains("SSL connection"), tls, "{}", out.stdout);
    }
}

// ------------------------------------------------------------------------------------ auth

#[test]
fn trust_md5_scram_through_proxy() {
    let c = Cluster::shared();
    let db = c.fresh_db("auth_ok");
    let proxy = start_proxy(c);
    for (user, pw) in USERS {
        let via = c.conn(&db).with_user(user, pw).with_port(proxy.port());
        assert_login(&via, &proxy, user, false, None);
    }
    // The Python drivers implement md5/SCRAM themselves (asyncpg's SCRAM is its own code).
    for (user, pw) in USERS {
        let direct = c.conn(&db).with_user(user, pw);
        let a = run_python("clients.py", &["auth", &direct.url()]);
        let b = run_python(
            "clients.py",
            &["auth", &direct.with_port(proxy.port()).url()],
        );
        a.assert_success();
        b.assert_success();
        assert!(
            a.stdout.contains(&format!("\"asyncpg\": \"{user}\"")),
            "{}",
            a.stdout
        );
        assert_eq!(a.stdout, b.stdout, "{user}");
    }
}

#[tokio::test]
async fn wrong_password_gives_the_same_error_as_direct() {
    let c = Cluster::shared();
    let db = c.fresh_db("auth_bad");
    let proxy = start_proxy(c);
    for user in [MD5_USER, SCRAM_USER] {
        let direct = c.conn(&db).with_user(user, Some("not-the-password"));
        let via = direct.with_port(proxy.port());
        let a = psql(&direct, &["-c", "SELECT 1"]);
        let b = psql(&via, &["-c", "SELECT 1"]);
        a.assert_failure();
        b.assert_failure();
        assert_eq!(
            a.stderr.replace(&direct.port.to_string(), "PORT"),
            b.stderr.replace(&via.port.to_string(), "PORT"),
            "{user}"
        );
        assert!(b.stderr.contains(&format!(
            "password authentication failed for user \"{user}\""
        )));
        let pa = run_python("clients.py", &["auth", &direct.url()]);
        let pb = run_python("clients.py", &["auth", &via.url()]);
        pa.assert_success();
        assert_eq!(pa.stdout, pb.stdout, "{user}: Python drivers' errors");
        assert!(pa.stdout.contains("28P01"), "{}", pa.stdout);
        for conn in [&direct, &via] {
            let err = conn
                .tokio_config()
                .connect(tokio_postgres::NoTls)
                .await
                .err()
                .unwrap_or_else(|| panic!("{user} logged in with a wrong password"));
            assert_eq!(
                err.as_db_error().map(|e| e.code().code()),
                Some("28P01"),
                "{err:?}"
            );
        }
    }
    // The proxy is still serving after failed logins.
    let ok = psql(
        &c.conn(&db).with_port(proxy.port()),
        &["-Atc", "SELECT 'alive'"],
    );
    assert_eq!(ok.assert_success().stdout.trim(), "alive");
}

// ------------------------------------------------------------------------------------ TLS

#[test]
fn client_plaintext_server_tls() {
    let c = ssl_cluster();
    let db = c.fresh_db("tls_server_leg");
    let proxy = ProxyConfig {
        upstream_sslmode: Some("verify-full".into()),
        upstream_ca: c.ca_cert.clone(),
        ..Default::default()
    }
    .start(c);
    for (user, pw) in USERS {
        let via = c
            .conn(&db)
            .with_user(user, pw)
            .with_port(proxy.port())
            .with_sslmode("disable");
        // Server leg encrypted, client leg not.
        assert_login(&via, &proxy, user, true, Some(false));
    }
}

#[tokio::test]
async fn upstream_tls_required_but_refused_or_unverifiable_gives_08006() {
    // A plaintext server while TLS is required, and a TLS server whose CA pgwarden does not trust.
    let plain = Cluster::shared();
    let other_ca = ProxyCert::generate();
    let cases = [
        (plain, "require", None),
        (ssl_cluster(), "verify-full", Some(other_ca.ca.clone())),
    ];
    for (cluster, mode, ca) in cases {
        let proxy = ProxyConfig {
            upstream_sslmode: Some(mode.into()),
            upstream_ca: ca,
            ..Default::default()
        }
        .start(cluster);
        let via = cluster.conn("postgres").with_port(proxy.port());
        let err = via
            .tokio_config()
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode}: connected although the upstream TLS check fails"));
        assert_eq!(
            err.as_db_error().map(|e| e.code().code()),
            Some("08006"),
            "{mode}: {err:?}"
        );
    }
}

#[test]
fn client_tls_server_plaintext() {
    let c = Cluster::shared();
    let db = c.fresh_db("tls_client_leg");
    let cert = ProxyCert::generate();
    let proxy = ProxyConfig {
        client_tls: Some((cert.cert.clone(), cert.key.clone())),
        upstream_sslmode: Some("disable".into()),
        ..Default::default()
    }
    .start(c);
    for (user, pw) in USERS {
        let via = c
            .conn(&db)
            .with_user(user, pw)
            .with_port(proxy.port())
            .with_sslmode("verify-full")
            .with_ca(&cert.ca);
        assert_login(&via, &proxy, user, false, Some(true));
        // The Python drivers' own TLS handshakes (asyncpg uses Python's ssl module).
        let py = run_python("clients.py", &["auth", &via.url()]);
        py.assert_success();
        assert_eq!(
            py.stdout.trim(),
            format!(
                "{{\"asyncpg\": \"{user}\", \"psycopg\": \"{user}\", \"psycopg2\": \"{user}\"}}"
            )
        );
    }
    // Clients that do not ask for TLS still get plaintext.
    let plain = psql(
        &c.conn(&db).with_port(proxy.port()).with_sslmode("disable"),
        &["-Atc", "SELECT 1"],
    );
    assert_eq!(plain.assert_success().stdout.trim(), "1");
}

#[test]
fn both_legs_tls_scram_without_channel_binding() {
    let c = ssl_cluster();
    let db = c.fresh_db("tls_both");
    let cert = ProxyCert::generate();
    let proxy = ProxyConfig {
        client_tls: Some((cert.cert.clone(), cert.key.clone())),
        upstream_sslmode: Some("verify-full".into()),
        upstream_ca: c.ca_cert.clone(),
        ..Default::default()
    }
    .start(c);
    let base = c
        .conn(&db)
        .with_port(proxy.port())
        .with_sslmode("verify-full")
        .with_ca(&cert.ca);
    for (user, pw) in USERS {
        let via = base.with_user(user, pw).with_channel_binding("disable");
        assert_login(&via, &proxy, user, true, Some(true));
    }
    // libpq's default channel_binding=prefer does NOT work: pgwarden removes SCRAM-SHA-256-PLUS
    // from the offer, libpq then answers "client supports binding, server does not" (gs2 flag
    // `y`), and the server, which does support it over its TLS leg, refuses that as a downgrade.
    // This is why README requires channel_binding=disable when both legs are TLS.
    for cb in ["prefer", "require"] {
        let out = psql(
            &base
                .with_user(SCRAM_USER, Some(SCRAM_PASSWORD))
                .with_channel_binding(cb),
            &["-Atc", "SELECT 1"],
        );
        out.assert_failure();
        assert!(
            out.stderr.contains("channel binding"),
            "{cb}: {}",
            out.stderr
        );
    }
    // Control: directly, the same server does channel binding.
    let direct = psql(
        &c.conn(&db)
            .with_user(SCRAM_USER, Some(SCRAM_PASSWORD))
            .with_sslmode("verify-full")
            .with_channel_binding("require"),
        &["-Atc", "SELECT 1"],
    );
    direct.assert_success();
}

#[test]
fn plaintext_buffered_after_s_is_disconnected() {
    let c = Cluster::shared();
    let db = c.fresh_db("tls_stuffing");
    let cert = ProxyCert::generate();
    let proxy = ProxyConfig {
        client_tls: Some((cert.cert.clone(), cert.key.clone())),
        ..Default::default()
    }
    .start(c);
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    // SSLRequest and a plaintext StartupMessage in one write: the CVE-2021-23214 pattern.
    let mut packet = vec![0, 0, 0, 8, 4, 210, 22, 47];
    packet.extend_from_slice(&startup_message(SUPERUSER, &db));
    s.write_all(&packet).expect("write");
    let (closed, got) = closed_within(&mut s, Duration::from_secs(10));
    assert!(closed, "connection stayed open; got {got:?}");
    // Either `S` and then nothing (the TLS handshake can never start), or a protocol-violation
    // error instead of `S`; never anything that shows the plaintext startup was processed.
    let rest = got.strip_prefix(b"S").unwrap_or(&got);
    assert!(
        rest.is_empty() || error_code(rest).as_deref() == Some("08P01"),
        "unexpected answer to SSLRequest + plaintext: {got:?}"
    );
    // Another session is unaffected.
    let ok = psql(
        &c.conn(&db)
            .with_port(proxy.port())
            .with_sslmode("verify-full")
            .with_ca(&cert.ca),
        &["-Atc", "SELECT 'still serving'"],
    );
    assert_eq!(ok.assert_success().stdout.trim(), "still serving");
}
