//! Machine reports of `pgwarden check` for code-review tools: SARIF 2.1.0 (GitHub code
//! scanning and other SARIF consumers) and GitLab Code Quality.
use std::hash::Hasher;

use serde_json::{json, Value};

use super::Diagnostic;
use crate::rules::Rule;

/// A SARIF 2.1.0 log with one run: the rules that fired (with their documentation) and one
/// result per diagnostic, located by line and column.
pub fn render_sarif(diags: &[Diagnostic]) -> String {
    let mut rules: Vec<Rule> = Vec::new();
    let mut results = Vec::new();
    for d in diags {
        let Ok(rule) = d.rule.parse::<Rule>() else {
            continue;
        };
        let index = match rules.iter().position(|r| *r == rule) {
            Some(i) => i,
            None => {
                rules.push(rule);
                rules.len() - 1
            }
        };
        let mut result = json!({
            "ruleId": d.rule,
            "ruleIndex": index,
            "level": d.level(),
            "message": { "text": format!("{}\nhelp: {}", d.message, d.help) },
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": { "uri": uri_reference(&d.file) },
                    "region": {
                        "startLine": d.line,
                        "startColumn": d.column,
                        "endLine": d.end_line,
                        "endColumn": d.end_column.max(1),
                    }
                }
            }],
        });
        if let Some(lock) = &d.lock {
            result["properties"] = json!({ "lock": lock });
        }
        results.push(result);
    }
    let descriptors: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": r.id(),
                "shortDescription": { "text": r.summary() },
                "fullDescription": { "text": r.summary() },
                "help": { "text": r.doc(), "markdown": r.doc() },
                "defaultConfiguration": { "level": sarif_level(r.default_action()) },
            })
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "pgwarden",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": descriptors,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    serde_json::to_string_pretty(&log).unwrap_or_default() + "\n"
}

fn sarif_level(action: crate::rules::Action) -> &'static str {
    use crate::rules::Action;
    match action {
        Action::Off => "none",
        Action::Warn => "warning",
        Action::Reject | Action::Rewrite => "error",
    }
}

/// A file path as a relative URI reference: `/` separators, everything outside RFC 3986's
/// unreserved characters percent-encoded (spaces, `<stdin>`, non-ASCII names).
fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GitLab Code Quality: a JSON array of issues with a stable fingerprint each (GitLab uses it
/// to tell new findings from ones already on the target branch).
pub fn render_gitlab(diags: &[Diagnostic]) -> String {
    let issues: Vec<Value> = diags
        .iter()
        .map(|d| {
            json!({
                "description": format!("{} (help: {})", d.message, d.help),
                "check_name": d.rule,
                "fingerprint": fingerprint(d),
                "severity": if d.severity == "reject" { "critical" } else { "minor" },
                "location": {
                    "path": d.file,
                    "lines": { "begin": d.line, "end": d.end_line },
                },
            })
        })
        .collect();
    serde_json::to_string_pretty(&issues).unwrap_or_default() + "\n"
}

/// FNV-1a over what identifies a finding: rule, file, line and message.
fn fingerprint(d: &Diagnostic) -> String {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for part in [
        d.rule.as_str(),
        d.file.as_str(),
        &d.line.to_string(),
        d.message.as_str(),
    ] {
        h.write(part.as_bytes());
        h.write(&[0]);
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_text, CheckOptions};
    use crate::policy::Policy;

    fn diags() -> Vec<Diagnostic> {
        check_text(
            "migrations/0001 add.sql",
            "ALTER TABLE orders DROP COLUMN legacy;\nALTER TABLE orders ADD COLUMN at timestamp;\n",
            &Policy::default(),
            &CheckOptions::default(),
        )
    }

    #[test]
    fn sarif_has_one_result_per_diagnostic_and_indexes_its_rules() {
        let d = diags();
        let v: Value = serde_json::from_str(&render_sarif(&d)).unwrap();
        assert_eq!(v["version"], "2.1.0");
        let run = &v["runs"][0];
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), d.len());
        for r in results {
            let i = r["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(run["tool"]["driver"]["rules"][i]["id"], r["ruleId"]);
            assert_eq!(
                r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                "migrations/0001%20add.sql"
            );
        }
        assert!(results
            .iter()
            .any(|r| r["ruleId"] == "ban-drop-column" && r["level"] == "error"));
    }

    #[test]
    fn gitlab_issues_have_unique_fingerprints() {
        let d = diags();
        let v: Value = serde_json::from_str(&render_gitlab(&d)).unwrap();
        let issues = v.as_array().unwrap();
        assert_eq!(issues.len(), d.len());
        let mut prints: Vec<&str> = issues
            .iter()
            .map(|i| i["fingerprint"].as_str().unwrap())
            .collect();
        prints.sort_unstable();
        prints.dedup();
        assert_eq!(prints.len(), issues.len());
        assert!(issues
            .iter()
            .all(|i| i["location"]["lines"]["begin"].as_u64().unwrap() >= 1));
        assert!(issues
            .iter()
            .any(|i| i["check_name"] == "ban-drop-column" && i["severity"] == "critical"));
    }
}
