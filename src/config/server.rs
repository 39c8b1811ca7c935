//! The `[server]` section of the configuration file: listener, upstream, TLS, limits, shutdown,
//! logging. Every key and its default is documented in `config/pgwarden.toml`.
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::protocol::FrameLimits;

/// Settings of the `[server]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address clients connect to.
    pub listen: String,
    /// Unix-domain socket path clients may connect to as well (libpq: host = its directory).
    pub listen_unix: Option<PathBuf>,
    /// PostgreSQL server every session is forwarded to (`host:port`).
    pub upstream: String,
    /// Concurrent client sessions; more get FATAL 53300.
    pub max_connections: usize,
    /// Threads that run client sessions (one single-threaded runtime each); 0 = one per core.
    /// Default 1: on a small host the CPU per transaction matters more than spreading
    /// sessions over cores (BENCHMARKS.md, proxy CPU).
    pub session_threads: usize,
    /// How long a client may take from connect until authentication is complete.
    #[serde(deserialize_with = "duration")]
    pub startup_timeout: Duration,
    /// How long connecting to the upstream (TCP + TLS) may take.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// How long sessions inside a transaction get to finish after SIGTERM/SIGINT.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Cap for Query/Parse/Bind/CopyData/FunctionCall and every server message, in bytes.
    pub max_message_size: usize,
    /// Cap for every other client message, in bytes.
    pub max_small_message_size: usize,
    /// Cap for password/SASL messages, in bytes.
    pub max_auth_message_size: usize,
    /// Bytes of messages that all sessions together may hold whole while pgwarden reads them
    /// (a Query/Parse/Bind over the ordinary read buffer); past it a session gets FATAL 53200.
    pub max_held_bytes: usize,
    /// `text` or `json`.
    pub log_format: String,
    /// tracing filter, e.g. `info` or `pgwarden=debug`; `RUST_LOG` overrides it.
    pub log_level: String,
    /// PEM certificate chain offered to clients; TLS to clients is on when both files are set.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// TLS to the upstream, named like libpq's sslmode.
    pub upstream_tls: UpstreamTls,
    /// PEM CA bundle for `verify-ca` / `verify-full`.
    pub upstream_tls_ca_file: Option<PathBuf>,
    /// Name checked against the upstream certificate in `verify-full` (default: the upstream host).
    pub upstream_tls_server_name: Option<String>,
}

/// TLS mode of the upstream leg, with libpq's `sslmode` meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, certificate not checked; plaintext otherwise.
    Prefer,
    /// TLS or fail, certificate not checked.
    Require,
    /// TLS or fail, certificate chain checked against the CA file.
    VerifyCa,
    /// As verify-ca, and the certificate must name the server.
    VerifyFull,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = FrameLimits::default();
        ServerConfig {
            listen: "127.0.0.1:6432".into(),
            listen_unix: None,
            upstream: "127.0.0.1:5432".into(),
            max_connections: 1000,
            session_threads: 1,
            startup_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            max_message_size: limits.large,
            max_small_message_size: limits.small,
            max_auth_message_size: limits.auth,
            max_held_bytes: 512 * 1024 * 1024,
            log_format: "text".into(),
            log_level: "info".into(),
            tls_cert_file: None,
            tls_key_file: None,
            upstream_tls: UpstreamTls::Prefer,
            upstream_tls_ca_file: None,
            upstream_tls_server_name: None,
        }
    }
}

impl ServerConfig {
    /// Checks values serde cannot check (ranges, combinations).
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("[server] max_connections must be at least 1".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "[server] log_format must be \"text\" or \"json\", not {:?}",
                self.log_format
            ));
        }
        let large_max = FrameLimits::default().large;
        for (key, v) in [
            ("max_message_size", self.max_message_size),
            ("max_small_message_size", self.max_small_message_size),
            ("max_auth_message_size", self.max_auth_message_size),
        ] {
            if !(5..=large_max).contains(&v) {
                return Err(format!(
                    "[server] {key} must be between 5 and {large_max}, not {v}"
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(format!(
                "[server] log_level {:?} is not a valid filter: {e}",
                self.log_level
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("[server] tls_cert_file and tls_key_file must be set together".into());
        }
        if matches!(
            self.upstream_tls,
            UpstreamTls::VerifyCa | UpstreamTls::VerifyFull
        ) && self.upstream_tls_ca_file.is_none()
        {
            return Err(
                "[server] upstream_tls verify-ca/verify-full needs upstream_tls_ca_file".into(),
            );
        }
        if self.max_held_bytes < self.max_small_message_size {
            return Err(format!(
                "[server] max_held_bytes must be at least max_small_message_size ({}), not {}",
                self.max_small_message_size, self.max_held_bytes
            ));
        }
        split_host_port(&self.upstream)
            .map_err(|e| format!("[server] upstream {:?}: {e}", self.upstream))?;
        Ok(())
    }

    /// Frame caps for the session.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            large: self.max_message_size,
            small: self.max_small_message_size,
            auth: self.max_auth_message_size,
        }
    }

    /// True when clients may upgrade to TLS.
    pub fn client_tls_enabled(&self) -> bool {
        self.tls_cert_file.is_some() && self.tls_key_file.is_some()
    }
}

/// Splits `host:port` (or `[v6]:port`) into its parts.
pub fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port {port:?}"))?;
    Ok((host, port))
}

/// Accepts `"500ms"`, `"5s"`, `"2m"`, `"1h"` or an integer number of milliseconds.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Ms(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Ms(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h`.
pub fn parse_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {t:?} needs a unit (ms, s, m, h)"))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {t:?}"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("invalid duration unit in {t:?} (use ms, s, m, h)")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("duration {t:?} is too large"))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn shipped_example_config_matches_defaults() {
        let text = include_str!("../../config/pgwarden.toml");
        let cfg = Config::from_toml(text).unwrap();
        let d = super::ServerConfig::default();
        assert_eq!(cfg.server.listen, d.listen);
        assert_eq!(cfg.server.upstream, d.upstream);
        assert_eq!(cfg.server.max_connections, d.max_connections);
        assert_eq!(cfg.server.startup_timeout, d.startup_timeout);
        assert_eq!(cfg.server.shutdown_grace, d.shutdown_grace);
        assert_eq!(cfg.server.max_message_size, d.max_message_size);
        assert_eq!(cfg.server.max_held_bytes, d.max_held_bytes);
        assert_eq!(cfg.server.upstream_tls, d.upstream_tls);
        let a = crate::config::AdminConfig::default();
        assert_eq!(cfg.admin.listen, a.listen);
        assert_eq!(cfg.admin.ready_timeout, a.ready_timeout);
    }

    #[test]
    fn durations_and_errors() {
        let c = Config::from_toml("[server]\nstartup_timeout = \"5s\"\nshutdown_grace = 250\n")
            .unwrap();
        assert_eq!(c.server.startup_timeout, Duration::from_secs(5));
        assert_eq!(c.server.shutdown_grace, Duration::from_millis(250));
        assert!(Config::from_toml("[server]\nstartup_timeout = \"5 parsecs\"\n").is_err());
        let e = Config::from_toml("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        assert!(Config::from_toml("[server]\nupstream_tls = \"sometimes\"\n").is_err());
        assert!(Config::from_toml("[server]\nupstream_tls = \"verify-full\"\n").is_err());
        assert!(Config::from_toml("[server]\ntls_cert_file = \"a.pem\"\n").is_err());
        assert!(Config::from_toml("[server]\nupstream = \"nohost\"\n").is_err());
        assert!(Config::from_toml("[server]\nlog_level = \"info,=[\"\n").is_err());
        assert!(Config::from_toml("[server]\nmax_connections = 0\n").is_err());
        assert!(Config::from_toml("[server]\nmax_held_bytes = 100\n").is_err());
        let c = Config::from_toml("[server]\nmax_held_bytes = 4194304\n").unwrap();
        assert_eq!(c.server.max_held_bytes, 4 << 20);
    }
}
