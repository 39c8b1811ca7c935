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

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, lines.join("\n")).expect("write log");
        (dir, path)
    }

    #[test]
    fn statements_are_joined_with_their_outcome_and_a_torn_last_line_waits() {
        let (_d, path) = log(&[
            r#"{"type":"session_start","session_id":"s","time":"t"}"#,
            r#"{"type":"statement","session_id":"s","seq":3,"text":"CREATE INDEX i\n  ON t (a)","decision":"rewrite","rules":["require-concurrent-index-creation"],"rewritten":"CREATE INDEX CONCURRENTLY i ON t (a)"}"#,
            r#"{"type":"statement","session_id":"s","seq":4,"text":"ALTER TABLE t ADD c int DEFAULT random()","decision":"reject","rules":["adding-field-with-default"],"rewritten":"DO $pgwarden$ BEGIN RAISE ... END $pgwarden$"}"#,
            r#"{"type":"outcome","session_id":"s","seq":4,"outcome":{"result":"error","sqlstate":"PW001","message":"m"}}"#,
            r#"{"type":"outcome","session_id":"s","seq":3,"outcome":{"result":"ok","tag":"CREATE INDEX"}}"#,
            r#"{"type":"statement","session_id":"s","seq":5,"text":"tor"#,
        ]);
        let (ds, next) = read_since(&path, 0).expect("read");
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].decision, "rewrite");
        assert_eq!(ds[0].text, "CREATE INDEX i ON t (a)");
        assert_eq!(
            ds[0].sent.as_deref(),
            Some("CREATE INDEX CONCURRENTLY i ON t (a)")
        );
        assert_eq!(ds[0].answer, "CREATE INDEX");
        assert_eq!(ds[1].decision, "reject");
        // The DO block that makes the server refuse is not "what was sent" for a reader.
        assert_eq!(ds[1].sent, None);
        assert_eq!(ds[1].answer, "ERROR PW001");
        assert_eq!(ds[1].rules, vec!["adding-field-with-default".to_string()]);
        // The incomplete last line is not consumed: the next read starts at it.
        let bytes = std::fs::read(&path).expect("read back");
        assert_eq!(
            &bytes[next..],
            br#"{"type":"statement","session_id":"s","seq":5,"text":"tor"#
        );
        let (again, same) = read_since(&path, next).expect("read again");
        assert!(again.is_empty());
        assert_eq!(same, next);
    }

    #[test]
    fn a_missing_log_is_no_decisions() {
        let d = tempfile::tempdir().expect("tempdir");
        let (ds, next) = read_since(&d.path().join("none.jsonl"), 0).expect("read");
        assert!(ds.is_empty());
        assert_eq!(next, 0);
    }

    #[test]
    fn bookkeeping_is_noise_but_decisions_on_it_are_not() {
        let d = |decision: &str, text: &str| Decision {
            decision: decision.into(),
            text: text.into(),
            ..Decision::default()
        };
        assert!(is_noise(&d("allow", "BEGIN")));
        assert!(is_noise(&d(
            "allow",
            "CREATE TABLE alembic_version (version_num varchar(32))"
        )));
        assert!(!is_noise(&d(
            "allow",
            "ALTER TABLE events ADD COLUMN note text"
        )));
        assert!(!is_noise(&d("reject", "SET lock_timeout = 0")));
    }
}
