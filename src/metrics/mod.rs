//! pgwarden's metrics: names, what they count, and the calls the other layers make.
//!
//! Everything goes through the `metrics` facade (DESIGN.md names it) into [`registry`], a
//! recorder of pgwarden's own that the admin listener renders as Prometheus text. Names follow
//! Prometheus conventions: `pgwarden_` prefix, `_total` for counters, base units (`_seconds`,
//! `_bytes`), and labels whose values come from a fixed set (a reason, a direction, a decision,
//! a statement kind, a rule id from the catalogue) — never a table name or SQL text.
//!
//! Hot path: bytes and messages forwarded are counted per read batch through [`Hot`], which
//! holds the counters' atomics directly: one relaxed `fetch_add` each, no lookup, no lock.
//! Everything else (per session, per DDL statement, per audit batch) uses the facade macros.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub mod registry;

use registry::{AtomicCounter, Registry, StaticRecorder};

static REGISTRY: OnceLock<&'static Registry> = OnceLock::new();
static HOT: OnceLock<Hot> = OnceLock::new();

/// Counters of the forwarding loop, held as atomics.
pub struct Hot {
    pub client_bytes: Arc<AtomicCounter>,
    pub client_messages: Arc<AtomicCounter>,
    pub server_bytes: Arc<AtomicCounter>,
    pub server_messages: Arc<AtomicCounter>,
}

/// Why a client connection did not become a session (the `reason` label).
pub const REFUSED_REASONS: [&str; 6] = [
    "max_connections",
    "shutting_down",
    "upstream_unreachable",
    "unknown_database",
    "protocol_error",
    "startup_timeout",
];

/// Installs the recorder (once per process; later calls do nothing) and creates every series
/// that must be visible before it first moves (counters at zero).
pub fn install() {
    REGISTRY.get_or_init(|| {
        let r: &'static Registry = Box::leak(Box::default());
        // Fails only if another recorder is installed (an embedding program): then pgwarden's
        // own registry still counts what the hot path counts, and the rest goes there.
        let _ = metrics::set_global_recorder(StaticRecorder(r));
        describe_all();
        HOT.get_or_init(|| Hot {
            client_bytes: r.counter_handle(
                "pgwarden_forwarded_bytes_total",
                &[("direction", "client_to_server")],
            ),
            client_messages: r.counter_handle(
                "pgwarden_forwarded_messages_total",
                &[("direction", "client_to_server")],
            ),
            server_bytes: r.counter_handle(
                "pgwarden_forwarded_bytes_total",
                &[("direction", "server_to_client")],
            ),
            server_messages: r.counter_handle(
                "pgwarden_forwarded_messages_total",
                &[("direction", "server_to_client")],
            ),
        });
        r
    });
}

/// The Prometheus text of every metric (empty before [`install`]).
pub fn render() -> String {
    REGISTRY.get().map(|r| r.render()).unwrap_or_default()
}

fn describe_all() {
    describe_gauge!(
        "pgwarden_build_info",
        "Always 1; the version label says which pgwarden is running."
    );
    gauge!("pgwarden_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(
        "pgwarden_client_connections_total",
        "Client connections accepted on a listener (TCP or unix socket)."
    );
    counter!("pgwarden_client_connections_total").absolute(0);
    describe_gauge!(
        "pgwarden_client_sessions",
        "Client sessions open now (startup accepted, upstream connected)."
    );
    gauge!("pgwarden_client_sessions").set(0.0);
    describe_counter!(
        "pgwarden_client_sessions_total",
        "Client sessions started (startup accepted, upstream connected)."
    );
    counter!("pgwarden_client_sessions_total").absolute(0);
    describe_counter!(
        "pgwarden_client_sessions_refused_total",
        "Client connections refused before a session started, by reason."
    );
    for reason in REFUSED_REASONS {
        counter!("pgwarden_client_sessions_refused_total", "reason" => reason).absolute(0);
    }
    describe_counter!(
        "pgwarden_upstream_connect_failures_total",
        "Failed connections to an upstream server, by reason (io, timeout, tls)."
    );
    for reason in ["io", "timeout", "tls"] {
        counter!("pgwarden_upstream_connect_failures_total", "reason" => reason).absolute(0);
    }
    describe_counter!(
        "pgwarden_forwarded_bytes_total",
        "Bytes read from one side and forwarded to the other, by direction."
    );
    describe_counter!(
        "pgwarden_forwarded_messages_total",
        "Protocol messages read from one side and forwarded to the other, by direction."
    );
    describe_counter!(
        "pgwarden_statements_analysed_total",
        "DDL and utility statement texts the enforcer decided on, by statement kind and decision."
    );
    describe_counter!(
        "pgwarden_rule_findings_total",
        "Rule findings on analysed statements, by rule id and the decision taken."
    );
    describe_histogram!(
        "pgwarden_analysis_duration_seconds",
        "Time to analyse one statement text (lexing, parsing, rules), without the catalog lookup."
    );
    describe_histogram!(
        "pgwarden_catalog_lookup_duration_seconds",
        "Time of pgwarden's injected catalog lookup round trip on the client's connection."
    );
    describe_counter!(
        "pgwarden_catalog_lookups_total",
        "Injected catalog lookups, by result (ok, error)."
    );
    for result in ["ok", "error"] {
        counter!("pgwarden_catalog_lookups_total", "result" => result).absolute(0);
    }
    describe_gauge!(
        "pgwarden_audit_queue_depth",
        "Audit records queued for the writer, sampled at scrape time."
    );
    gauge!("pgwarden_audit_queue_depth").set(0.0);
    describe_counter!(
        "pgwarden_audit_records_written_total",
        "Audit records written to the audit log."
    );
    counter!("pgwarden_audit_records_written_total").absolute(0);
    describe_counter!(
        "pgwarden_audit_records_dropped_total",
        "Non-critical audit records dropped because the writer queue was full."
    );
    counter!("pgwarden_audit_records_dropped_total").absolute(0);
    describe_counter!(
        "pgwarden_audit_write_failures_total",
        "Audit records that could not be written (I/O error)."
    );
    counter!("pgwarden_audit_write_failures_total").absolute(0);
    describe_counter!(
        "pgwarden_audit_fsyncs_total",
        "fdatasync calls of the audit log that succeeded (group commit: one per transaction end, not per record)."
    );
    counter!("pgwarden_audit_fsyncs_total").absolute(0);
    describe_histogram!(
        "pgwarden_audit_write_duration_seconds",
        "Time to append one audit record to the file."
    );
    describe_histogram!(
        "pgwarden_audit_fsync_duration_seconds",
        "Time of one fsync of the audit log."
    );
    // Hooks for safe execution (src/execute/, issue 10): at zero until it calls them.
    describe_counter!(
        "pgwarden_injected_timeouts_total",
        "Statements pgwarden sent with a lock_timeout/statement_timeout it injected."
    );
    counter!("pgwarden_injected_timeouts_total").absolute(0);
    describe_counter!(
        "pgwarden_lock_wait_retries_total",
        "Retries of a DDL statement after its lock wait timed out."
    );
    counter!("pgwarden_lock_wait_retries_total").absolute(0);
    describe_histogram!(
        "pgwarden_lock_wait_duration_seconds",
        "Time a DDL statement waited for its lock before it got it or gave up."
    );
    describe_counter!(
        "pgwarden_completion_steps_total",
        "Steps of a multi-step safe rewrite that pgwarden ran itself (VALIDATE CONSTRAINT, SET NOT NULL, CREATE INDEX CONCURRENTLY, ...), in sequence or after the client's COMMIT, by result (ok, failed)."
    );
    for result in ["ok", "failed"] {
        counter!("pgwarden_completion_steps_total", "result" => result).absolute(0);
    }
    describe_counter!(
        "pgwarden_config_reloads_total",
        "Configuration reloads on SIGHUP, by result (ok, error)."
    );
    for result in ["ok", "error"] {
        counter!("pgwarden_config_reloads_total", "result" => result).absolute(0);
    }
    describe_gauge!(
        "pgwarden_config_last_reload_successful",
        "1 if the last SIGHUP reload was applied (or none was asked for), 0 if it was refused."
    );
    gauge!("pgwarden_config_last_reload_successful").set(1.0);
}

/// `n` bytes in `messages` frames read from the client and forwarded.
#[inline]
pub fn client_to_server(bytes: usize, messages: u64) {
    if let Some(h) = HOT.get() {
        h.client_bytes.add(bytes as u64);
        h.client_messages.add(messages);
    }
}

/// `n` bytes in `messages` frames read from the server and forwarded.
#[inline]
pub fn server_to_client(bytes: usize, messages: u64) {
    if let Some(h) = HOT.get() {
        h.server_bytes.add(bytes as u64);
        h.server_messages.add(messages);
    }
}

pub fn connection_accepted() {
    counter!("pgwarden_client_connections_total").increment(1);
}

/// A client refused before its session started; `reason` is one of [`REFUSED_REASONS`].
pub fn session_refused(reason: &'static str) {
    counter!("pgwarden_client_sessions_refused_total", "reason" => reason).increment(1);
}

pub fn session_started() {
    counter!("pgwarden_client_sessions_total").increment(1);
    gauge!("pgwarden_client_sessions").increment(1.0);
}

pub fn session_ended() {
    gauge!("pgwarden_client_sessions").decrement(1.0);
}

/// `reason`: io, timeout or tls.
pub fn upstream_connect_failed(reason: &'static str) {
    counter!("pgwarden_upstream_connect_failures_total", "reason" => reason).increment(1);
}

/// One enforcer decision: statement kind (snake_case from the analysis), decision, rule ids.
pub fn statement_decided(kind: &str, decision: &'static str, rules: &[String]) {
    counter!("pgwarden_statements_analysed_total", "kind" => kind.to_owned(), "decision" => decision)
        .increment(1);
    for rule in rules {
        counter!("pgwarden_rule_findings_total", "rule" => rule.clone(), "decision" => decision)
            .increment(1);
    }
}

pub fn analysis_took(d: Duration) {
    histogram!("pgwarden_analysis_duration_seconds").record(d.as_secs_f64());
}

pub fn lookup_took(d: Duration, ok: bool) {
    histogram!("pgwarden_catalog_lookup_duration_seconds").record(d.as_secs_f64());
    let result = if ok { "ok" } else { "error" };
    counter!("pgwarden_catalog_lookups_total", "result" => result).increment(1);
}

/// Audit writer totals, taken from its own counters at scrape time.
pub fn audit_totals(queued: usize, stats: crate::audit::AuditStats) {
    gauge!("pgwarden_audit_queue_depth").set(queued as f64);
    counter!("pgwarden_audit_records_written_total").absolute(stats.written);
    counter!("pgwarden_audit_records_dropped_total").absolute(stats.dropped);
    counter!("pgwarden_audit_write_failures_total").absolute(stats.failed);
    counter!("pgwarden_audit_fsyncs_total").absolute(stats.fsyncs);
}

pub fn audit_write_took(d: Duration) {
    histogram!("pgwarden_audit_write_duration_seconds").record(d.as_secs_f64());
}

pub fn audit_fsync_took(d: Duration) {
    histogram!("pgwarden_audit_fsync_duration_seconds").record(d.as_secs_f64());
}

pub fn config_reloaded(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!("pgwarden_config_reloads_total", "result" => result).increment(1);
    gauge!("pgwarden_config_last_reload_successful").set(if ok { 1.0 } else { 0.0 });
}

/// Calls for safe execution (src/execute/, issue 10) to make.
pub mod execute {
    use super::*;

    /// A statement was sent with a timeout pgwarden injected.
    pub fn injected_timeout() {
        counter!("pgwarden_injected_timeouts_total").increment(1);
    }

    /// A lock wait ended (`retry`: it timed out and the statement will be tried again).
    pub fn lock_wait(waited: Duration, retry: bool) {
        histogram!("pgwarden_lock_wait_duration_seconds").record(waited.as_secs_f64());
        if retry {
            counter!("pgwarden_lock_wait_retries_total").increment(1);
        }
    }

    /// A completion step ran (`ok`) or failed.
    pub fn completion_step(ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        counter!("pgwarden_completion_steps_total", "result" => result).increment(1);
    }
}

/// A statement kind's label value: "ALTER TABLE" → "alter_table".
pub fn kind_label(display: &str) -> String {
    display.to_ascii_lowercase().replace(' ', "_")
}

/// The `kind` label of an analysed text: its first statement's kind ("other" without facts).
pub fn kind_of(analysis: &crate::sql::Analysis) -> String {
    analysis
        .statements
        .iter()
        .find_map(|s| s.facts())
        .map(|f| kind_label(f.kind.label()))
        .unwrap_or_else(|| "other".into())
}
