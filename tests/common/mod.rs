//! Shared test harness: private PostgreSQL 15 clusters, the pgwarden binary, psql/pgbench, the Python venv.
//!
//! Every integration test binary does `mod common;` and gets:
//! - [`Cluster`]: a throw-away PostgreSQL cluster on a free loopback port (run as the `postgres`
//!   OS user when the tests run as root, because the server refuses to run as root), with a trust,
//!   an md5 and a scram-sha-256 role, optionally `ssl=on` with a generated CA and server
//!   certificate. [`Cluster::shared`] gives one cluster per test binary; each test then takes its
//!   own database with [`Cluster::fresh_db`] so tests stay parallel-safe.
//! - [`ProxyProcess`]: the real `pgwarden serve` binary with a generated config file, started on
//!   `127.0.0.1:0`; the harness reads the actual port from its `listening on ADDR` log line.
//! - [`psql`], [`pgbench`], [`python`]: run the real clients with a timeout and capture output.
//! - [`FrameRecorder`]: a tiny relay that records every `Query` and `Parse` a client sends, the
//!   independent witness the hook tests compare pgwarden's hook calls against.
//!
//! A missing PostgreSQL server is a loud panic that says what to install, never a skip.
// Each test binary uses a different subset of these helpers; unused ones are not a defect there.
#![allow(dead_code)]

pub mod alembic;
pub mod execute;
pub mod rewrite;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Passwords of the password roles; the test clusters listen on loopback only.
pub const MD5_PASSWORD: &str = "md5-secret";
pub const SCRAM_PASSWORD: &str = "scram-secret";
/// Role names: one per authentication method in pg_hba.conf.
pub const SUPERUSER: &str = "postgres";
pub const TRUST_USER: &str = "trust_user";
pub const MD5_USER: &str = "md5_user";
pub const SCRAM_USER: &str = "scram_user";

/// Generous default for any external command: a hang must fail the test, not the CI run.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// True when the test process runs as root (then the server must run as `postgres`).
pub fn is_root() -> bool {
    // /proc/self is owned by the effective uid of the process: no libc call, no unsafe.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Directory with the PostgreSQL 15 server binaries (initdb, pg_ctl, postgres, psql, pgbench).
pub fn pg_bindir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut candidates = Vec::new();
        if let Ok(dir) = std::env::var("PGWARDEN_PG_BINDIR") {
            candidates.push(PathBuf::from(dir));
        }
        candidates.push(PathBuf::from("/usr/lib/postgresql/15/bin"));
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                candidates.push(PathBuf::from(
                    String::from_utf8_lossy(&out.stdout).trim().to_string(),
                ));
            }
        }
        for dir in &candidates {
            if dir.join("initdb").is_file()
                && dir.join("pg_ctl").is_file()
                && dir.join("postgres").is_file()
            {
                return dir.clone();
            }
        }
        panic!(
            "PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) not found in {candidates:?}.\n\
             The integration tests need a real server: install it with\n    \
             apt-get update && apt-get install -y postgresql-15 postgresql-client-15\n\
             or point PGWARDEN_PG_BINDIR at a directory holding them."
        )
    })
    .clone()
}

/// Path of one PostgreSQL client/server program from [`pg_bindir`].
pub fn pg_bin(name: &str) -> PathBuf {
    let path = pg_bindir().join(name);
    assert!(
        path.is_file(),
        "{} not found; install postgresql-client-15 (apt-get install -y postgresql-client-15)",
        path.display()
    );
    path
}

/// The workspace root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (parent of CARGO_TARGET_TMPDIR), where machine-wide caches live.
pub fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

/// A free loopback TCP port (bound then released; callers retry if someone takes it meanwhile).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// Exit status and captured output of an external command.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// What was run, for failure messages.
    pub what: String,
}

impl CmdOutput {
    /// Panics with the full output unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed ({}): {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics with the full output if the command exited 0.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "command unexpectedly succeeded: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` with `stdin` fed to it, killing it after `timeout` (a hang is a test failure).
pub fn run_cmd(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let feeder = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin piped");
        std::thread::spawn(move || {
            // The command may exit before reading everything (that is its answer, not ours).
            let _ = pipe.write_all(&data);
        })
    });
    let out_reader = spawn_reader(child.stdout.take().expect("stdout piped"));
    let err_reader = spawn_reader(child.stderr.take().expect("stderr piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out_reader.join().unwrap_or_default();
                let stderr = err_reader.join().unwrap_or_default();
                panic!(
                    "command timed out after {timeout:?}: {what}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    CmdOutput {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        what,
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A command that runs as the `postgres` OS user when we are root (the server refuses root).
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn chown_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let out = run_cmd(
        {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(path);
            c
        },
        None,
        CMD_TIMEOUT,
    );
    out.assert_success();
}

// ---------------------------------------------------------------------------------------------
// Connection parameters
// ---------------------------------------------------------------------------------------------

/// Where and as whom a client connects; convertible to libpq env, a URL and tokio-postgres.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// libpq sslmode; `disable` unless a test asks for TLS.
    pub sslmode: String,
    /// CA certificate for verify-ca/verify-full.
    pub sslrootcert: Option<PathBuf>,
    /// libpq channel_binding (`disable | prefer | require`); libpq's default when None.
    pub channel_binding: Option<String>,
}

impl ConnInfo {
    /// Same parameters, other port (e.g. the proxy's instead of the server's).
    pub fn with_port(&self, port: u16) -> ConnInfo {
        ConnInfo {
            port,
            ..self.clone()
        }
    }

    pub fn with_user(&self, user: &str, password: Option<&str>) -> ConnInfo {
        ConnInfo {
            user: user.into(),
            password: password.map(str::to_string),
            ..self.clone()
        }
    }

    pub fn with_db(&self, db: &str) -> ConnInfo {
        ConnInfo {
            dbname: db.into(),
            ..self.clone()
        }
    }

    pub fn with_channel_binding(&self, cb: &str) -> ConnInfo {
        ConnInfo {
            channel_binding: Some(cb.into()),
            ..self.clone()
        }
    }

    /// Verify the server against this CA file (the proxy's or the cluster's).
    pub fn with_ca(&self, ca: &Path) -> ConnInfo {
        ConnInfo {
            sslrootcert: Some(ca.to_path_buf()),
            ..self.clone()
        }
    }

    pub fn with_sslmode(&self, mode: &str) -> ConnInfo {
        ConnInfo {
            sslmode: mode.into(),
            ..self.clone()
        }
    }

    /// libpq environment variables (PGHOST, ...), for psql and pgbench.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("PGHOST".into(), self.host.clone()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), self.user.clone()),
            ("PGDATABASE".into(), self.dbname.clone()),
            ("PGSSLMODE".into(), self.sslmode.clone()),
            // Never prompt: a wrong password must fail, not wait for a tty.
            ("PGCONNECT_TIMEOUT".into(), "20".into()),
        ];
        v.push((
            "PGPASSWORD".into(),
            self.password.clone().unwrap_or_default(),
        ));
        if let Some(ca) = &self.sslrootcert {
            v.push(("PGSSLROOTCERT".into(), ca.display().to_string()));
        }
        if let Some(cb) = &self.channel_binding {
            v.push(("PGCHANNELBINDING".into(), cb.clone()));
        }
        v
    }

    /// A `postgresql://` URL for the Python drivers.
    pub fn url(&self) -> String {
        let auth = match &self.password {
            Some(p) => format!("{}:{}", self.user, p),
            None => self.user.clone(),
        };
        let mut url = format!(
            "postgresql://{auth}@{}:{}/{}?sslmode={}",
            self.host, self.port, self.dbname, self.sslmode
        );
        if let Some(ca) = &self.sslrootcert {
            url.push_str(&format!("&sslrootcert={}", ca.display()));
        }
        if let Some(cb) = &self.channel_binding {
            url.push_str(&format!("&channel_binding={cb}"));
        }
        url
    }

    /// tokio-postgres configuration (plaintext; tokio-postgres tests do not use TLS).
    pub fn tokio_config(&self) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(Duration::from_secs(20));
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        cfg
    }

    /// Connects with tokio-postgres and drives the connection on a spawned task.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = self
            .tokio_config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("connect {}:{} as {}: {e}", self.host, self.port, self.user)
            });
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL cluster
// ---------------------------------------------------------------------------------------------

/// How to set up a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `ssl = on` with a generated CA and a server certificate for `localhost`/`127.0.0.1`.
    pub ssl: bool,
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
}

/// A private PostgreSQL cluster; stopped and deleted on drop (and by a watchdog if the test
/// process dies without dropping it, e.g. a static shared cluster at process exit).
pub struct Cluster {
    root: tempfile::TempDir,
    pub data: PathBuf,
    /// Unix socket directory (the harness's own admin connections go through it).
    pub socket_dir: PathBuf,
    pub port: u16,
    /// CA certificate that signed the server certificate (ssl clusters only).
    pub ca_cert: Option<PathBuf>,
    /// The CA's key, for tests that need to mint more certificates (e.g. pgwarden's own).
    pub ca: Option<Arc<TestCa>>,
    watchdog: Option<Child>,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();

impl Cluster {
    /// One plain (no TLS) cluster per test binary, started on first use.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| Cluster::start(ClusterOptions::default()))
    }

    /// Starts a new cluster (initdb, config, roles) and waits until it accepts connections.
    pub fn start(opts: ClusterOptions) -> Cluster {
        let bindir = pg_bindir();
        let root = tempfile::Builder::new()
            .prefix("pgwarden-pg-")
            .tempdir()
            .expect("create temp dir for cluster");
        let data = root.path().join("data");
        let socket_dir = root.path().join("sock");
        std::fs::create_dir(&socket_dir).expect("mkdir sock");
        chown_postgres(root.path());

        let mut initdb = pg_command(&bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run_cmd(initdb, None, CMD_TIMEOUT).assert_success();

        let ca = if opts.ssl {
            let ca = TestCa::new();
            let (cert, key) = ca.issue(&["localhost"], &["127.0.0.1"]);
            std::fs::write(data.join("server.crt"), cert).expect("write server.crt");
            std::fs::write(data.join("server.key"), key).expect("write server.key");
            set_mode(&data.join("server.key"), 0o600);
            std::fs::write(root.path().join("ca.crt"), ca.cert_pem()).expect("write ca.crt");
            Some(Arc::new(ca))
        } else {
            None
        };

        let mut conf = vec![
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("unix_socket_directories = '{}'", socket_dir.display()),
            // 200 concurrent clients through the proxy plus the test's own connections.
            "max_connections = 300".into(),
            "shared_buffers = 32MB".into(),
            // Durability is irrelevant for throw-away test data; speed is not.
            "fsync = off".into(),
            "synchronous_commit = off".into(),
            "full_page_writes = off".into(),
            "autovacuum = off".into(),
            "max_wal_size = 1GB".into(),
            "checkpoint_timeout = 30min".into(),
            "log_min_messages = warning".into(),
            "log_line_prefix = '%m [%p] %u@%d '".into(),
            "password_encryption = 'scram-sha-256'".into(),
            // Two-phase commit (PREPARE TRANSACTION) is off at the default 0.
            "max_prepared_transactions = 10".into(),
        ];
        if opts.ssl {
            conf.push("ssl = on".into());
            conf.push("ssl_cert_file = 'server.crt'".into());
            conf.push("ssl_key_file = 'server.key'".into());
        }
        conf.extend(opts.extra_conf.iter().cloned());
        append(&data.join("postgresql.conf"), &(conf.join("\n") + "\n"));
        // The admin socket is trust; TCP gets one line per authentication method.
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all {SUPERUSER} 127.0.0.1/32 trust\n\
                 host all {TRUST_USER} 127.0.0.1/32 trust\n\
                 host all {MD5_USER} 127.0.0.1/32 md5\n\
                 host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .expect("write pg_hba.conf");
        chown_postgres(root.path());

        let mut cluster = Cluster {
            ca_cert: opts.ssl.then(|| root.path().join("ca.crt")),
            ca,
            root,
            data,
            socket_dir,
            port: 0,
            watchdog: None,
        };
        cluster.watchdog = Some(cluster.spawn_watchdog());
        // A free port can be taken by a parallel test binary before the server binds it: retry.
        let mut last_err = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            let out = cluster.pg_ctl_start();
            if out.status.success() {
                cluster.create_roles();
                return cluster;
            }
            last_err = format!(
                "{}\n{}\n--- server log ---\n{}",
                out.stdout,
                out.stderr,
                cluster.server_log()
            );
        }
        panic!("PostgreSQL cluster did not start:\n{last_err}");
    }

    fn pg_ctl_start(&self) -> CmdOutput {
        let mut cmd = pg_command(&pg_bindir().join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port))
            .arg("start");
        run_cmd(cmd, None, CMD_TIMEOUT)
    }

    /// Stops the server (fast) and starts it again on the same port: sessions are cut.
    pub fn restart(&self) {
        let mut cmd = pg_command(&pg_bindir().join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"]);
        run_cmd(cmd, None, CMD_TIMEOUT).assert_success();
        self.pg_ctl_start().assert_success();
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Watches this test process and removes the cluster if it dies without dropping us.
    fn spawn_watchdog(&self) -> Child {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {runas} '{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            runas = if is_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            pg_ctl = pg_bindir().join("pg_ctl").display(),
            data = self.data.display(),
            root = self.root.path().display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C to the test run must not kill the cleaner.
            .process_group(0)
            .spawn()
            .expect("spawn cluster watchdog")
    }

    fn create_roles(&self) {
        self.sql(
            "postgres",
            &format!(
                "CREATE ROLE {TRUST_USER} LOGIN;\n\
                 SET password_encryption = 'md5';\n\
                 CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}';\n\
                 SET password_encryption = 'scram-sha-256';\n\
                 CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}';"
            ),
        );
    }

    /// Runs SQL as superuser over the unix socket and returns psql's unaligned output.
    #[track_caller]
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(pg_bin("psql"));
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        let out = run_cmd(cmd, Some(sql.as_bytes()), CMD_TIMEOUT);
        out.assert_success();
        out.stdout.trim_end_matches('\n').to_string()
    }

    /// Creates a new database `<tag>_<pid>_<n>` owned by the superuser, readable by the test roles.
    pub fn fresh_db(&self, tag: &str) -> String {
        let name = format!("{}_{}", tag.to_lowercase(), unique_suffix());
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
        // PG15 no longer lets PUBLIC create in schema public; the role tests may need it.
        self.sql(
            &name,
            &format!("GRANT ALL ON SCHEMA public TO {TRUST_USER}, {MD5_USER}, {SCRAM_USER}"),
        );
        name
    }

    /// A new database, a copy of the template database `setup` made (on first use; once per
    /// test binary and set-up script): a big table is loaded once per binary, and each test
    /// gets its copy in seconds.
    pub fn fresh_from_template(&self, setup: &'static str, tag: &str) -> String {
        static TEMPLATES: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());
        let tmpl = {
            // Held while a template is made: the binary's other tests wait for it.
            let mut templates = TEMPLATES.lock().unwrap_or_else(|p| p.into_inner());
            match templates.iter().find(|(s, _)| *s == setup) {
                Some((_, db)) => db.clone(),
                None => {
                    let db = self.fresh_db("tmpl");
                    self.sql(&db, setup);
                    templates.push((setup, db.clone()));
                    db
                }
            }
        };
        let name = format!("{}_{}", tag.to_lowercase(), unique_suffix());
        self.sql(
            "postgres",
            &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{tmpl}\""),
        );
        name
    }

    /// Direct TCP connection parameters as the superuser (trust).
    pub fn conn(&self, db: &str) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.port,
            user: SUPERUSER.into(),
            password: None,
            dbname: db.into(),
            sslmode: "disable".into(),
            sslrootcert: self.ca_cert.clone(),
            channel_binding: None,
        }
    }

    /// Upstream address for pgwarden's `--upstream`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop_immediate(&self) {
        let mut cmd = pg_command(&pg_bindir().join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"]);
        let _ = run_cmd(cmd, None, Duration::from_secs(60));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_immediate();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        // TempDir removes the directory itself.
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A throw-away certificate authority (rcgen) for TLS tests.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pgwarden test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("self-sign ca");
        TestCa { cert, key }
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for the given DNS names and IPs: (cert PEM, key PEM).
    pub fn issue(&self, dns: &[&str], ips: &[&str]) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("server params");
        for ip in ips {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(ip.parse().expect("ip literal")));
        }
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            dns.first().copied().unwrap_or("localhost"),
        );
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign server cert");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// The pgwarden binary
// ---------------------------------------------------------------------------------------------

/// A running `pgwarden serve`; killed on drop.
pub struct ProxyProcess {
    child: Child,
    /// Where it listens (from its `listening on` log line).
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
    /// The config file it was started with.
    pub config_path: PathBuf,
    /// Kills pgwarden if this test process dies without dropping us (e.g. killed by a timeout).
    watchdog: Option<Child>,
}

impl ProxyProcess {
    /// Starts pgwarden in front of `upstream` ("HOST:PORT") with `config_toml` as its config file.
    pub fn start(upstream: &str, config_toml: &str) -> ProxyProcess {
        Self::start_with_args(upstream, config_toml, &[])
    }

    /// Like [`ProxyProcess::start`] with extra command-line flags (e.g. `--log-format json`).
    pub fn start_with_args(upstream: &str, config_toml: &str, extra: &[&str]) -> ProxyProcess {
        Self::start_with_env(upstream, config_toml, extra, &[])
    }

    /// Like [`ProxyProcess::start_with_args`], with environment changes applied last
    /// (`None` removes the variable, e.g. `RUST_LOG` so that `log_level` decides).
    pub fn start_with_env(
        upstream: &str,
        config_toml: &str,
        extra: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> ProxyProcess {
        let dir = tempfile::Builder::new()
            .prefix("pgwarden-proxy-")
            .tempdir()
            .expect("temp dir for proxy");
        let config_path = dir.path().join("pgwarden.toml");
        std::fs::write(&config_path, config_toml).expect("write proxy config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
        // The proxy's own files (the audit log's default relative path) land in its temp dir.
        cmd.current_dir(dir.path())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("PGWARDEN_TEST_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.spawn().expect("spawn pgwarden binary");
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let line = strip_ansi(&line);
                    if let Some(addr) = parse_listen_line(&line) {
                        let _ = tx.send(addr);
                    }
                    let mut l = logs.lock().unwrap_or_else(|p| p.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => break addr,
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "pgwarden exited ({status}) before listening; output:\n{}",
                            logs.lock().unwrap_or_else(|p| p.into_inner())
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!(
                            "pgwarden did not log `listening on` within 60 s; output:\n{}",
                            logs.lock().unwrap_or_else(|p| p.into_inner())
                        );
                    }
                }
            }
        };
        ProxyProcess {
            child,
            addr,
            logs,
            _dir: dir,
            config_path,
            watchdog,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything pgwarden printed so far (stdout and stderr interleaved by line).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    pub fn sigterm(&self) {
        let out = run_cmd(
            {
                let mut c = Command::new("kill");
                c.args(["-TERM", &self.child.id().to_string()]);
                c
            },
            None,
            Duration::from_secs(10),
        );
        out.assert_success();
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "pgwarden did not exit within {timeout:?}; output:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Removes terminal colour codes a logger may emit.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Finds the address in a `listening on ADDR` log line (text or JSON log format).
pub fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    let at = line.find("listening on")?;
    let rest = &line[at + "listening on".len()..];
    // Take the first token that parses as a socket address, ignoring quotes/JSON punctuation.
    rest.split(|c: char| c.is_whitespace() || matches!(c, '"' | ',' | '}' | '=' | '\''))
        .find_map(|tok| tok.parse::<SocketAddr>().ok())
        .or_else(|| {
            // JSON logs may put the address in a field after the message.
            line.split(|c: char| c.is_whitespace() || matches!(c, '"' | ',' | '}' | '=' | '\''))
                .find_map(|tok| tok.parse::<SocketAddr>().ok())
        })
}

// ---------------------------------------------------------------------------------------------
// psql, pgbench, Python
// ---------------------------------------------------------------------------------------------

/// Runs psql with `-X` (no ~/.psqlrc) and the given arguments against `conn`.
pub fn psql(conn: &ConnInfo, args: &[&str]) -> CmdOutput {
    psql_stdin(conn, args, None)
}

/// Runs psql with `input` on stdin.
pub fn psql_stdin(conn: &ConnInfo, args: &[&str], input: Option<&[u8]>) -> CmdOutput {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.arg("-X").args(args).envs(conn.env());
    run_cmd(cmd, input, CMD_TIMEOUT)
}

/// Runs pgbench with the given arguments against `conn`.
pub fn pgbench(conn: &ConnInfo, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(pg_bin("pgbench"));
    cmd.args(args).envs(conn.env());
    run_cmd(cmd, None, CMD_TIMEOUT)
}

/// The Python interpreter of the test venv (target/test-venv), created on first use.
///
/// Parallel test binaries serialise on a file lock; the venv is reused across runs while
/// tests/python/requirements.txt is unchanged (tests/python/setup-venv.sh keeps a stamp).
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = std::env::var("PGWARDEN_TEST_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| target_dir().join("test-venv"));
        let lock_path = target_dir().join("test-venv.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
        lock.lock().expect("lock test-venv.lock");
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("tests/python/setup-venv.sh"))
            .arg(&venv);
        run_cmd(cmd, None, Duration::from_secs(900)).assert_success();
        let _ = lock.unlock();
        venv.join("bin/python")
    })
    .clone()
}

/// Runs `tests/python/<script>` in the venv with `args`.
pub fn run_python(script: &str, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/python").join(script))
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    run_cmd(cmd, None, CMD_TIMEOUT)
}

// ---------------------------------------------------------------------------------------------
// Frame recorder: the independent witness of what a client sent
// ---------------------------------------------------------------------------------------------

/// One statement-carrying message a client sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SentStatement {
    /// A simple `Query` with its full text.
    Query(String),
    /// A `Parse` with its statement name ("" = unnamed) and text.
    Parse { name: String, sql: String },
}

/// A relay on a loopback port that forwards bytes unchanged to `target` and records every
/// `Query`/`Parse` the clients send. Plaintext only (clients must use sslmode=disable or accept
/// the `N` the server/proxy answers to their SSLRequest).
pub struct FrameRecorder {
    pub addr: SocketAddr,
    pub sent: Arc<Mutex<Vec<SentStatement>>>,
}

impl FrameRecorder {
    /// Starts the relay on the current tokio runtime.
    pub async fn start(target: SocketAddr) -> FrameRecorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("recorder addr");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let rec = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rec = rec.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = relay_recording(client, server, rec).await;
                });
            }
        });
        FrameRecorder { addr, sent }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What was recorded so far.
    pub fn sent(&self) -> Vec<SentStatement> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn relay_recording(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    rec: Arc<Mutex<Vec<SentStatement>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    // Client → server: untyped packets until the StartupMessage, then typed frames.
    let mut startup_done = false;
    loop {
        let mut frame = Vec::new();
        if startup_done {
            let mut head = [0u8; 5];
            if cr.read_exact(&mut head).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4)];
            cr.read_exact(&mut body).await?;
            match head[0] {
                b'Q' => {
                    let sql = cstr(&body, 0).0;
                    rec.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(SentStatement::Query(sql));
                }
                b'P' => {
                    let (name, next) = cstr(&body, 0);
                    let (sql, _) = cstr(&body, next);
                    rec.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(SentStatement::Parse { name, sql });
                }
                _ => {}
            }
            frame.extend_from_slice(&head);
            frame.extend_from_slice(&body);
        } else {
            let mut head = [0u8; 8];
            if cr.read_exact(&mut head).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let mut body = vec![0u8; len.saturating_sub(8)];
            cr.read_exact(&mut body).await?;
            // SSLRequest/GSSENCRequest: another untyped packet follows (after `N`).
            if code != 80877103 && code != 80877104 {
                startup_done = true;
            }
            frame.extend_from_slice(&head);
            frame.extend_from_slice(&body);
        }
        sw.write_all(&frame).await?;
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
    Ok(())
}

fn cstr(buf: &[u8], from: usize) -> (String, usize) {
    let rest = buf.get(from..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    (
        String::from_utf8_lossy(&rest[..end]).into_owned(),
        from + end + 1,
    )
}

/// Polls `cond` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

// ---------------------------------------------------------------------------------------------
// pgwarden configuration for tests
// ---------------------------------------------------------------------------------------------

/// The settings tests vary, rendered as a pgwarden.toml (key names as in config/pgwarden.toml).
/// Listen and upstream addresses are passed as flags by [`ProxyProcess`], not written here.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    pub max_connections: Option<u32>,
    pub shutdown_grace_secs: Option<u64>,
    pub startup_timeout_secs: Option<u64>,
    /// Client-leg TLS: (certificate PEM file, key PEM file).
    pub client_tls: Option<(PathBuf, PathBuf)>,
    /// Upstream-leg TLS mode (`disable | prefer | require | verify-ca | verify-full`).
    pub upstream_sslmode: Option<String>,
    /// CA file for verifying the upstream.
    pub upstream_ca: Option<PathBuf>,
    /// Extra raw TOML lines inside `[server]`.
    pub extra_server: Vec<String>,
    /// Raw TOML lines of `[policy]`; empty = `mode = "dry-run"`: the transparency tests run
    /// the whole enforcement path (analysis, catalog lookups, audit) but must see every
    /// statement forwarded unchanged.
    pub policy: Vec<String>,
}

impl ProxyConfig {
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[server]\n");
        if let Some(n) = self.max_connections {
            s.push_str(&format!("max_connections = {n}\n"));
        }
        if let Some(n) = self.shutdown_grace_secs {
            s.push_str(&format!("shutdown_grace = \"{n}s\"\n"));
        }
        if let Some(n) = self.startup_timeout_secs {
            s.push_str(&format!("startup_timeout = \"{n}s\"\n"));
        }
        for line in &self.extra_server {
            s.push_str(line);
            s.push('\n');
        }
        if let Some((cert, key)) = &self.client_tls {
            s.push_str(&format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(m) = &self.upstream_sslmode {
            s.push_str(&format!("upstream_tls = \"{m}\"\n"));
        }
        if let Some(ca) = &self.upstream_ca {
            s.push_str(&format!("upstream_tls_ca_file = \"{}\"\n", ca.display()));
        }
        s.push_str("[policy]\n");
        if self.policy.is_empty() {
            s.push_str("mode = \"dry-run\"\n");
        }
        for line in &self.policy {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// Starts `pgwarden serve` with this config in front of `cluster`.
    pub fn start(&self, cluster: &Cluster) -> ProxyProcess {
        ProxyProcess::start(&cluster.addr(), &self.to_toml())
    }
}

/// Starts pgwarden with default settings in front of `cluster`.
pub fn start_proxy(cluster: &Cluster) -> ProxyProcess {
    ProxyConfig::default().start(cluster)
}

/// A certificate for pgwarden's client leg (localhost + 127.0.0.1), signed by a fresh CA.
pub struct ProxyCert {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA clients use to verify pgwarden.
    pub ca: PathBuf,
}

impl ProxyCert {
    pub fn generate() -> ProxyCert {
        let dir = tempfile::tempdir().expect("tempdir for proxy cert");
        let ca = TestCa::new();
        let (cert_pem, key_pem) = ca.issue(&["localhost"], &["127.0.0.1"]);
        let cert = dir.path().join("proxy.crt");
        let key = dir.path().join("proxy.key");
        let ca_path = dir.path().join("proxy-ca.crt");
        std::fs::write(&cert, cert_pem).expect("write proxy cert");
        std::fs::write(&key, key_pem).expect("write proxy key");
        set_mode(&key, 0o600);
        std::fs::write(&ca_path, ca.cert_pem()).expect("write proxy ca");
        ProxyCert {
            dir,
            cert,
            key,
            ca: ca_path,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw protocol helpers (for malformed-input tests)
// ---------------------------------------------------------------------------------------------

/// A protocol 3.0 StartupMessage for `user` and `db`.
pub fn startup_message(user: &str, db: &str) -> Vec<u8> {
    startup_message_with(0x0003_0000, &[("user", user), ("database", db)])
}

/// A StartupMessage with any protocol version and parameters.
pub fn startup_message_with(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    for &(k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// Reads until EOF (true) or until `timeout` passes with the socket still open (false).
pub fn closed_within(stream: &mut TcpStream, timeout: Duration) -> (bool, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset is a close too.
            Err(_) => return (true, got),
        }
    }
    (false, got)
}

/// SQLSTATE of the first ErrorResponse in `bytes`, if they start with one.
pub fn error_code(bytes: &[u8]) -> Option<String> {
    if bytes.first() != Some(&b'E') || bytes.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    let body = bytes.get(5..(1 + len).min(bytes.len()))?;
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let code = body[i];
        let end = body[i + 1..].iter().position(|&b| b == 0)? + i + 1;
        if code == b'C' {
            return Some(String::from_utf8_lossy(&body[i + 1..end]).into_owned());
        }
        i = end + 1;
    }
    None
}

/// Async polling for tests on a current-thread runtime (a blocking wait would starve the
/// connection tasks whose state `cond` reads).
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Reads one typed server message: (type byte, body).
pub fn read_message(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body)?;
    Ok((head[0], body))
}

/// A raw session authenticated as the trust superuser: the stream after ReadyForQuery and every
/// message the server sent until then (BackendKeyData, ParameterStatus, ...).
pub fn raw_session(addr: SocketAddr, db: &str) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&startup_message(SUPERUSER, db))
        .expect("startup");
    raw_until_ready(s)
}

/// Reads server messages until ReadyForQuery; panics on an ErrorResponse.
pub fn raw_until_ready(mut s: TcpStream) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut seen = Vec::new();
    loop {
        let (kind, body) = read_message(&mut s).expect("server message");
        assert_ne!(
            kind,
            b'E',
            "startup failed: {}",
            String::from_utf8_lossy(&body)
        );
        seen.push((kind, body));
        if kind == b'Z' {
            return (s, seen);
        }
    }
}

/// A simple Query message.
pub fn query_message(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

/// The records of a JSON-lines audit log, in file order; a line that is not JSON fails the
/// test, naming the line.
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read audit log");
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("audit line {} is not a JSON object ({e}): {l}", i + 1))
        })
        .collect()
}

/// The admin listener's `/metrics` response (headers included), read to its end.
pub fn admin_metrics(admin: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).expect("connect to admin listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read /metrics");
    raw
}

/// Injected catalog lookups so far (every result), from the admin listener's /metrics.
pub fn catalog_lookups(admin: u16) -> f64 {
    admin_metrics(admin)
        .lines()
        .filter(|l| l.starts_with("pgwarden_catalog_lookups_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
