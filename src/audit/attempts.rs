//! `attempts`: how pgwarden ran one audited statement when it retried lock timeouts (every
//! attempt, its wait, the lock_timeout used and who blocked it). Written after the last
//! attempt and before the statement's answer reaches the client; joined to its `statement`
//! record by `session_id` and `seq`.
use serde::{Deserialize, Serialize};

use crate::execute::Attempt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptsRecord {
    pub time: String,
    pub session_id: String,
    /// The `seq` of the statement record.
    pub seq: u64,
    pub attempts: Vec<Attempt>,
}

impl AttemptsRecord {
    pub fn new(session_id: &str, seq: u64, attempts: &[Attempt]) -> AttemptsRecord {
        AttemptsRecord {
            time: super::record::now_rfc3339(),
            session_id: session_id.to_string(),
            seq,
            attempts: attempts.to_vec(),
        }
    }
}

/// One line per attempt for the text report.
pub fn describe(a: &Attempt) -> String {
    let mut s = format!(
        "attempt {}: {} after {} ms",
        a.number, a.outcome, a.waited_ms
    );
    if let Some(lt) = a.lock_timeout_ms {
        s.push_str(&format!(" (lock_timeout {lt} ms)"));
    }
    if !a.blockers.is_empty() {
        let b: Vec<String> = a.blockers.iter().map(|b| b.describe()).collect();
        s.push_str(&format!("; blocked by {}", b.join("; ")));
    }
    if let Some(w) = a.backoff_ms {
        s.push_str(&format!("; waited {w} ms before the next"));
    }
    s
}
