//! pgwarden's decisions as the demo prints them: read back from the audit log the proxy wrote,
//! so what is shown is what pgwarden recorded, not what the demo expected.
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::DemoError;

/// One audited statement: pgwarden's decision and the server's answer.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub decision: String,
    pub rules: Vec<String>,
    pub text: String,
    /// What was sent instead of `text` on a rewrite (the `DO ... RAISE` of a reject is not shown).
    pub sent: Option<String>,
    /// `CREATE INDEX`, or `ERROR PW001`, or `no answer`.
    pub answer: String,
}

/// Reads the complete lines of the audit log from byte `from`; returns the decisions on the
/// statements in them, in order, and the offset after the last complete line.
pub fn read_since(path: &Path, from: usize) -> Result<(Vec<Decision>, usize), DemoError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), from)),
        Err(e) => return Err(DemoError::io(path, e)),
    };
    let tail = bytes.get(from..).unwrap_or_default();
    let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut order = Vec::new();
    let mut by_key: BTreeMap<(String, u64), Decision> = BTreeMap::new();
    for line in tail[..complete].split(|&b| b == b'\n') {
        let Ok(rec) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let key = (
            rec["session_id"].as_str().unwrap_or("").to_string(),
            rec["seq"].as_u64().unwrap_or(0),
        );
        match rec["type"].as_str() {
            Some("statement") => {
                let decision = rec["decision"].as_str().unwrap_or("").to_string();
                let sent = match decision.as_str() {
                    "rewrite" => rec["rewritten"].as_str().map(str::to_string),
                    _ => None,
                };
                let d = Decision {
                    decision,
                    rules: rec["rules"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|r| r.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    text: one_line(rec["text"].as_str().unwrap_or("")),
                    sent: sent.map(|s| one_line(&s)),
                    answer: "no answer".into(),
                };
                order.push(key.clone());
                by_key.insert(key, d);
            }
            Some("outcome") => {
                if let Some(d) = by_key.get_mut(&key) {
                    let o = &rec["outcome"];
                    d.answer = match o["result"].as_str() {
                        Some("ok") => o["tag"].as_str().unwrap_or("ok").to_string(),
                        Some("error") => {
                            format!("ERROR {}", o["sqlstate"].as_str().unwrap_or(""))
                        }
                        _ => "no answer".into(),
                    };
                }
            }
            _ => {}
        }
    }
    let decisions = order.iter().filter_map(|k| by_key.remove(k)).collect();
    Ok((decisions, from + complete))
}

/// Transaction control and Alembic's own bookkeeping: audited, but not what the demo is about.
pub fn is_noise(d: &Decision) -> bool {
    let t = d.text.trim_start().to_ascii_uppercase();
    d.decision == "allow"
        && (["BEGIN", "COMMIT", "ROLLBACK", "SET ", "SHOW "]
            .iter()
            .any(|p| t.starts_with(p))
            || t.contains("ALEMBIC_VERSION"))
}

/// The lines the demo prints for one decision.
pub fn render(d: &Decision) -> Vec<String> {
    let rules = if d.rules.is_empty() {
        String::new()
    } else {
        format!("  [{}]", d.rules.join(", "))
    };
    let mut lines = vec![format!(
        "pgwarden {:<7} {}{rules}",
        d.decision,
        shorten(&d.text, 110)
    )];
    if let Some(sent) = &d.sent {
        lines.push(format!("         sent    {}", shorten(sent, 110)));
    }
    lines.push(format!("         server  {}", d.answer));
    lines
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}
