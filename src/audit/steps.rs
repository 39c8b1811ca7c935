//! `steps`: the statements pgwarden sent for one audited statement it ran as a multi-step
//! rewrite (`crate::rewrite`): each step as sent, when it ran (in place, after the client's
//! COMMIT, as an undo or clean-up) and its outcome. Joined to its `statement` record by
//! `session_id` and `seq`; a statement whose completion steps ran after COMMIT has two.
use serde::{Deserialize, Serialize};

/// One step as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub sql: String,
    /// `step`, `in place`, `after COMMIT`, `undo`, `clean-up`.
    pub phase: String,
    /// `ok` or the server's SQLSTATE.
    pub outcome: String,
    /// The server's error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepsRecord {
    pub time: String,
    pub session_id: String,
    /// The `seq` of the statement record.
    pub seq: u64,
    pub steps: Vec<Step>,
}

impl StepsRecord {
    pub fn new(session_id: &str, seq: u64, steps: Vec<Step>) -> StepsRecord {
        StepsRecord {
            time: super::record::now_rfc3339(),
            session_id: session_id.to_string(),
            seq,
            steps,
        }
    }
}

/// One line per step for the text report.
pub fn describe(s: &Step) -> String {
    match &s.error {
        Some(e) => format!("step ({}): {} -> {} {e}", s.phase, s.sql, s.outcome),
        None => format!("step ({}): {} -> {}", s.phase, s.sql, s.outcome),
    }
}
