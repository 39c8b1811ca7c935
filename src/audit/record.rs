//! Audit records: one JSON object per line, tagged by `"type"`. docs/audit.md documents every
//! field; change both together.
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::fingerprint::fingerprint;
use super::migration::MigrationRevision;
use super::redact::{redact, redact_values, secret_values};
use crate::protocol::TxStatus;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A client connected (written after authentication, when the server's pid is known).
    SessionStart(SessionStart),
    /// A client disconnected.
    SessionEnd(SessionEnd),
    /// A DDL/utility (or rejected) statement, written before it is forwarded to the server.
    Statement(StatementRecord),
    /// What the server answered to an audited statement, written before the answer is
    /// forwarded to the client.
    Outcome(OutcomeRecord),
    /// Whether the transaction holding audited statements committed or rolled back.
    Fate(FateRecord),
    /// The attempts of a statement pgwarden retried (see `audit::attempts`).
    Attempts(super::attempts::AttemptsRecord),
    /// The steps of a statement pgwarden ran as a multi-step rewrite (see `audit::steps`).
    Steps(super::steps::StepsRecord),
}

/// `session_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Unique across proxy restarts (see [`super::writer::AuditHandle::session_id`]).
    pub session_id: String,
    /// Client's address as `ip:port` (or a socket path).
    pub client_addr: String,
    /// `user` from the StartupMessage.
    pub user: String,
    /// `database` from the StartupMessage (defaults to the user, as in Postgres).
    pub database: String,
    /// `application_name` at connect time (empty when the client sent none).
    pub application_name: String,
    /// Backend pid from BackendKeyData: joins the record with the server's own log.
    pub server_pid: Option<i32>,
    /// Whether the client leg uses TLS.
    pub tls: bool,
}

/// Per-session counters, the same as the disconnect summary in pgwarden's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCounts {
    /// Statements the session saw (every statement, DML included).
    pub statements: u64,
    /// Statements with decision `warn`.
    pub warned: u64,
    /// Statements with decision `reject`.
    pub rejected: u64,
    /// Statements with decision `rewrite`.
    pub rewritten: u64,
}

/// `session_end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Same id as the session's `session_start`.
    pub session_id: String,
    /// Client's address again, so the record stands alone in a rotated file.
    pub client_addr: String,
    /// User, database, application_name and server pid as at connect time.
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub server_pid: Option<i32>,
    pub tls: bool,
    /// What the session did.
    pub counts: SessionCounts,
}

/// pgwarden's decision on a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Warn,
    Rewrite,
    Reject,
}

impl Decision {
    /// Lower-case name as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Warn => "warn",
            Decision::Rewrite => "rewrite",
            Decision::Reject => "reject",
        }
    }
}

/// A table size the rules used (from pgwarden's catalog lookup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSize {
    /// Schema-qualified table name.
    pub table: String,
    /// Estimated rows (`pg_class.reltuples`); absent when unknown.
    pub rows: Option<i64>,
    /// Total bytes (`pg_total_relation_size`); absent when unknown.
    pub bytes: Option<i64>,
}

/// Transaction status as the server reported it, in the log's spelling.
#[derive(Serialize, Deserialize)]
#[serde(remote = "TxStatus", rename_all = "snake_case")]
enum TxStatusDef {
    Idle,
    InTransaction,
    Failed,
}

/// `statement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementRecord {
    /// When the statement was forwarded (RFC 3339 UTC, ms).
    pub time: String,
    pub session_id: String,
    /// The statement's number within its session; joins `outcome` and `fate` records.
    pub seq: u64,
    /// Transaction status when it was forwarded (from the last ReadyForQuery).
    #[serde(with = "TxStatusDef")]
    pub tx_status: TxStatus,
    /// The client's statement text, secrets redacted.
    pub text: String,
    /// Whether redaction changed `text` (and `rewritten`).
    pub redacted: bool,
    /// Fingerprint of the normalised statement (16 hex digits, FNV-1a 64).
    pub fingerprint: String,
    /// allow | warn | rewrite | reject.
    pub decision: Decision,
    /// Ids of the rules behind the decision (empty for a plain allow).
    pub rules: Vec<String>,
    /// Text actually sent instead of `text` (a rewrite, or the `DO ... RAISE` of a reject),
    /// redacted; absent when the client's text was sent unchanged.
    pub rewritten: Option<String>,
    /// Statements pgwarden sent on the session for this one (catalog lookups, `SET LOCAL
    /// lock_timeout`), in order.
    pub injected: Vec<String>,
    /// Table sizes the decision used.
    pub table_sizes: Vec<TableSize>,
    /// In `dry-run` mode: what enforce mode would have done (`reject`, `rewrite`) when that
    /// differs from `decision`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would: Option<Decision>,
    /// Findings accepted deliberately, `rule: reason` (`SET LOCAL pgwarden.allow = '...'` or a
    /// `-- pgwarden:allow` comment; the reason is mandatory); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Secret values found in the client's text, kept in memory only (never serialised) to
    /// scrub them from the rewritten text and from the server's error message.
    #[serde(skip)]
    secrets: Secrets,
}

/// Secret values of a statement. Debug never prints them; they never reach the log.
#[derive(Clone, Default)]
struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

impl PartialEq for Secrets {
    /// Not part of a record's identity (and absent after deserialising).
    fn eq(&self, _: &Secrets) -> bool {
        true
    }
}

impl StatementRecord {
    /// Builds a record from the client's text: redacts it and computes the fingerprint here, so
    /// no caller can forget to. `scs` is the session's `standard_conforming_strings`.
    pub fn new(
        session_id: &str,
        seq: u64,
        tx_status: TxStatus,
        sql: &str,
        scs: bool,
        decision: Decision,
    ) -> StatementRecord {
        let text = redact(sql, scs);
        let (text, secrets, redacted) = match text {
            std::borrow::Cow::Owned(t) => {
                let secrets = secret_values(sql, scs);
                // The same secret elsewhere in the text (a comment, another literal) goes too.
                let t = redact_values(&t, &secrets).into_owned();
                (t, secrets, true)
            }
            std::borrow::Cow::Borrowed(t) => (t.to_string(), Vec::new(), false),
        };
        StatementRecord {
            time: now_rfc3339(),
            session_id: session_id.to_string(),
            seq,
            tx_status,
            redacted,
            text,
            fingerprint: fingerprint(sql, scs),
            decision,
            rules: Vec::new(),
            rewritten: None,
            injected: Vec::new(),
            table_sizes: Vec::new(),
            would: None,
            allowed: Vec::new(),
            secrets: Secrets(secrets),
        }
    }

    /// Sets the text sent instead of the client's, redacted.
    /// The client's secrets are also scrubbed by value: a rejection's `DO ... RAISE` quotes the
    /// statement inside a string, where token-based redaction cannot see them.
    pub fn with_rewritten(mut self, sent: &str, scs: bool) -> StatementRecord {
        let r = redact(sent, scs);
        let r = redact_values(&r, &self.secrets.0).into_owned();
        self.redacted |= r != sent;
        self.rewritten = Some(r);
        self
    }

    /// Removes this statement's secrets from text derived from it (e.g. an injected statement).
    pub fn scrub(&self, text: &str) -> String {
        redact_values(text, &self.secrets.0).into_owned()
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// CommandComplete with its tag (`CREATE TABLE`, `ALTER TABLE`, ...).
    Ok { tag: String },
    /// ErrorResponse: SQLSTATE and primary message.
    Error { sqlstate: String, message: String },
    /// The server connection ended before an answer arrived.
    Unknown,
    /// The server never ran it: an earlier statement of the same simple Query (or
    /// extended-protocol batch) failed, and the server skips the rest up to ReadyForQuery.
    Skipped,
}

impl OutcomeRecord {
    /// The outcome of `statement`; an error message is scrubbed of the statement's secrets
    /// (a syntax error can echo the literal it stopped at).
    pub fn new(statement: &StatementRecord, outcome: Outcome, duration_ms: f64) -> OutcomeRecord {
        let outcome = match outcome {
            Outcome::Error { sqlstate, message } => Outcome::Error {
                sqlstate,
                message: statement.scrub(&message),
            },
            other => other,
        };
        OutcomeRecord {
            time: now_rfc3339(),
            session_id: statement.session_id.clone(),
            seq: statement.seq,
            outcome,
            duration_ms,
        }
    }
}

/// `outcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// When the answer arrived.
    pub time: String,
    pub session_id: String,
    /// The `seq` of the `statement` record it answers.
    pub seq: u64,
    /// Command tag, or SQLSTATE and message.
    pub outcome: Outcome,
    /// From forwarding the statement to its answer, in milliseconds (µs precision).
    pub duration_ms: f64,
}

/// How a transaction ended for the statements it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// The work is durable.
    Committed,
    /// The work was undone (ROLLBACK, failed transaction, failed COMMIT, savepoint rollback,
    /// failed autocommit statement, disconnect inside a transaction).
    RolledBack,
    /// `PREPARE TRANSACTION`: the outcome is decided later by COMMIT/ROLLBACK PREPARED, which
    /// may come from another session.
    Prepared,
    /// Cannot be known: the connection ended while a request that may have committed was in
    /// flight, or a savepoint rollback named a savepoint pgwarden did not see.
    Unknown,
}

impl Fate {
    /// Log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Committed => "committed",
            Fate::RolledBack => "rolled_back",
            Fate::Prepared => "prepared",
            Fate::Unknown => "unknown",
        }
    }
}

/// What ended the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FateReason {
    /// COMMIT (or END, COMMIT AND CHAIN) answered `COMMIT`.
    Commit,
    /// ROLLBACK/ABORT, or COMMIT of a failed transaction (the server answers `ROLLBACK`).
    Rollback,
    /// ROLLBACK TO SAVEPOINT undid these statements; the transaction went on.
    SavepointRollback,
    /// Statement(s) outside a transaction block (autocommit, or the implicit transaction of a
    /// multi-statement Query or of an extended-protocol batch up to Sync) finished without error.
    Autocommit,
    /// An error ended an implicit transaction, or a COMMIT failed (deferred constraint).
    Error,
    /// PREPARE TRANSACTION.
    Prepare,
    /// COMMIT PREPARED of this transaction's gid, through pgwarden (`finished_by` names the
    /// session).
    CommitPrepared,
    /// ROLLBACK PREPARED of this transaction's gid, through pgwarden.
    RollbackPrepared,
    /// The connection ended.
    Disconnect,
}

/// `fate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FateRecord {
    /// When the fate became known.
    pub time: String,
    pub session_id: String,
    /// `seq` of every audited statement the transaction held.
    pub seqs: Vec<u64>,
    /// committed | rolled_back | prepared | unknown.
    pub fate: Fate,
    /// What ended the transaction.
    pub reason: FateReason,
    /// Migration revisions recorded in the same transaction, in order, each with the audited
    /// statements it covers.
    pub migrations: Vec<MigrationInTx>,
    /// Two-phase commit: the transaction's gid (on `prepare` and on the later
    /// `commit_prepared` / `rollback_prepared` record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// `commit_prepared` / `rollback_prepared`: the session that ran COMMIT/ROLLBACK PREPARED
    /// (may differ from `session_id`, the session that prepared it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_by: Option<String>,
    /// Statements of `seqs` no revision covers, run after this migration revision's
    /// bookkeeping in the same session: they belong to the revision after it (its own
    /// bookkeeping never came in this transaction, e.g. the revision was refused). A later
    /// fate record naming them in its `migrations` supersedes this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_revision: Option<MigrationRevision>,
}

/// A migration revision recorded in a transaction, and the audited statements it covers: those
/// after the previous revision's bookkeeping row and before its own (every supported tool
/// writes its row after the migration's DDL; Alembic's UPDATE arrives last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationInTx {
    /// Tool, revision, description, dirty.
    #[serde(flatten)]
    pub revision: MigrationRevision,
    /// `seq` of the statements of this revision.
    pub seqs: Vec<u64>,
}

/// Current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-26T12:28:17.123Z`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339_ms(d.as_millis() as i64)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z");
    }
    // Two of these per audited statement: digits written in place, not through `format!`
    // (~3,000 instructions a call).
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for k in (at..at + width).rev() {
            out[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, i64::from(m));
    put(8, 2, i64::from(d));
    put(11, 2, hh);
    put(14, 2, mm);
    put(17, 2, ss);
    put(20, 3, ms);
    out.iter().map(|&b| char::from(b)).collect()
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm);
/// written out here rather than pulling in a date crate for one function.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            format_rfc3339_ms(1_796_300_897_005),
            "2026-12-03T12:28:17.005Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        // Outside four-digit years, the general spelling.
        assert_eq!(
            format_rfc3339_ms(-62_167_219_200_001),
            "-001-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_rfc3339_ms(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
        // Digits in place agree with `format!` over every day of a 400-year cycle and any time.
        for day in (-1_000_i64..146_097 + 1_000).step_by(7) {
            let unix_ms = day * 86_400_000 + (day * 7_919_311) % 86_400_000;
            let secs = unix_ms.div_euclid(1000);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60,
                unix_ms.rem_euclid(1000)
            );
            assert_eq!(format_rfc3339_ms(unix_ms), want, "{unix_ms}");
        }
        let now = now_rfc3339();
        assert_eq!(now.len(), 24);
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn statement_record_redacts_and_round_trips() {
        let r = StatementRecord::new(
            "abc-1",
            3,
            TxStatus::InTransaction,
            "ALTER ROLE app PASSWORD 'hunter2'",
            true,
            Decision::Allow,
        );
        assert!(r.redacted);
        assert!(!r.text.contains("hunter2"));
        let line = serde_json::to_string(&Record::Statement(r.clone())).unwrap();
        assert!(!line.contains("hunter2"));
        assert!(line.starts_with("{\"type\":\"statement\""));
        assert!(line.contains("\"tx_status\":\"in_transaction\""));
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, Record::Statement(r));
    }

    #[test]
    fn secrets_never_reach_rewritten_text_messages_or_debug() {
        let r = StatementRecord::new(
            "s",
            1,
            TxStatus::Idle,
            "CREATE ROLE x PASSWORD 'Tr0ub4dor' LOGIN",
            true,
            Decision::Reject,
        )
        .with_rewritten(
            "DO $pgwarden$ BEGIN RAISE EXCEPTION 'no' USING DETAIL = 'CREATE ROLE x PASSWORD ''Tr0ub4dor'' LOGIN'; END $pgwarden$",
            true,
        );
        let o = OutcomeRecord::new(
            &r,
            Outcome::Error {
                sqlstate: "42601".into(),
                message: "syntax error at or near \"'Tr0ub4dor'\"".into(),
            },
            1.0,
        );
        let lines = format!(
            "{}{}{:?}{:?}",
            serde_json::to_string(&Record::Statement(r.clone())).unwrap(),
            serde_json::to_string(&Record::Outcome(o.clone())).unwrap(),
            r,
            o
        );
        assert!(!lines.contains("Tr0ub4dor"), "{lines}");
        assert!(r.redacted);
        assert_eq!(o.seq, 1);
    }

    #[test]
    fn outcome_shapes() {
        let o = OutcomeRecord {
            time: now_rfc3339(),
            session_id: "s".into(),
            seq: 1,
            outcome: Outcome::Error {
                sqlstate: "42P07".into(),
                message: "relation \"t\" already exists".into(),
            },
            duration_ms: 1.25,
        };
        let line = serde_json::to_string(&Record::Outcome(o)).unwrap();
        assert!(line.contains("\"outcome\":{\"result\":\"error\",\"sqlstate\":\"42P07\""));
    }
}
