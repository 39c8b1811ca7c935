//! Audit log of executed DDL: records, redaction, fingerprints, migration detection, transaction
//! fate, the writer task, and the report.
//!
//! A proxy session talks to this layer through [`AuditSession`] (what to call when is in its
//! module docs and in docs/audit.md, which also documents every record field).
pub mod attempts;
pub mod cli;
pub mod fingerprint;
pub mod group_commit;
pub mod migration;
pub mod record;
pub mod redact;
pub mod report;
pub mod session;
pub mod steps;
pub mod twophase;
pub mod txfate;
pub mod writer;

// The tokenizer moved to the SQL layer (shared with its transaction-control reader).
use crate::sql::tokens as lex;

pub use migration::{detect as detect_migration, MigrationRevision, MigrationTool};
pub use record::{
    Decision, Fate, FateReason, FateRecord, MigrationInTx, Outcome, OutcomeRecord, Record,
    SessionCounts, SessionEnd, SessionStart, StatementRecord, TableSize,
};
pub use session::{AuditSession, SessionInfo, StatementResult};
pub use txfate::{Completion, FateDecision, TxFateTracker};
pub use writer::{AuditHandle, AuditStats, Durability, SessionMark};

/// Errors of the audit layer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file could not be opened at start.
    #[error("cannot open audit log {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be written or made durable.
    #[error("cannot write audit log {path}: {message}")]
    Write { path: String, message: String },
    /// The writer task is gone (shut down, or it panicked).
    #[error("audit writer is not running")]
    Closed,
    /// serde_json refused a record (should not happen: records hold only strings and numbers).
    #[error("cannot encode audit record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The report could not read its input.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A line in the middle of an audit file is not a valid record.
    #[error("{path}:{line}: not a valid audit record: {message}")]
    BadLine {
        path: String,
        line: usize,
        message: String,
    },
}
