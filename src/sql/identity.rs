//! Which relation a name really is, and whether the server created it for this session:
//! the facts "created in this transaction/session" and "does not exist" are decided on.
//!
//! Offline (`pgwarden check`) the script is the only truth: a table the file created earlier is
//! new, by name. In the proxy a name proves nothing (`CREATE TABLE IF NOT EXISTS big` creates
//! nothing when `big` exists; `CREATE TEMP TABLE big` and `other.big` are other relations; a
//! ROLLBACK undoes a CREATE): there a relation is new only when the server resolved the name,
//! under the search_path the statement runs with, to an oid pgwarden saw the session create
//! (see `enforce::identity`), or when the name resolves to nothing before the text runs and the
//! same text creates it first. Without the server's answer nothing is new (fail closed).
use std::collections::HashMap;

use super::context::{AnalysisContext, ScriptState};
use super::facts::{ObjectName, StatementFacts, StatementKind};

/// What the server said about one name before the text ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The table's oid (the index's table for an index).
    pub oid: u32,
    /// Created by this session and still the same relation (or a temporary table): empty or
    /// invisible to everyone else, so no lock on it hurts anybody.
    pub new: bool,
}

/// The server's resolution of every name the text's statements lock (proxy only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveIdentity {
    /// Keyed by the name as written (`ObjectName`'s `Display`); `None` = no such relation.
    pub names: HashMap<String, Option<Resolved>>,
}

impl LiveIdentity {
    /// `Some(None)`: the server said there is no such relation; `None`: it was not asked.
    pub fn get(&self, name: &ObjectName) -> Option<Option<Resolved>> {
        match &name.schema {
            // An unqualified name displays as itself: no key to format (the rules ask for
            // several names per statement).
            None => self.names.get(name.name.as_str()).copied(),
            Some(_) => self.names.get(&name.to_string()).copied(),
        }
    }
}

/// Is `table` new (created by this session/transaction/file, so exempt from size rules)?
pub fn is_new(ctx: &AnalysisContext, state: &ScriptState, table: &ObjectName) -> bool {
    if ctx.file_mode {
        return state.is_new(table);
    }
    let Some(live) = &ctx.catalog.live else {
        // The proxy decided without the server's word: a name alone proves nothing.
        return false;
    };
    if table.schema.is_none() && state.search_path_changed {
        // The text changed the search_path before this statement: the server resolved the
        // name under another one.
        return false;
    }
    match live.get(table) {
        Some(Some(r)) => r.new,
        // Nothing had that name before the text ran: new if the text created it first.
        Some(None) | None => state.is_new(table),
    }
}

/// Did the server size another relation than the one this statement will touch? In the proxy,
/// an unqualified name after the text changed the search_path: the lookup resolved it under
/// the old one, so its size is unknown (counted as large by default).
pub fn resolved_elsewhere(ctx: &AnalysisContext, state: &ScriptState, table: &ObjectName) -> bool {
    !ctx.file_mode && table.schema.is_none() && state.search_path_changed
}

/// A statement the server will run as a no-op: `DROP ... IF EXISTS` / `ALTER TABLE IF EXISTS`
/// of relations that do not exist (and that the text did not create first). Only with the
/// server's answer, under the search_path the statement runs with.
pub fn is_noop(ctx: &AnalysisContext, state: &ScriptState, f: &StatementFacts) -> bool {
    if ctx.file_mode || !f.flags.if_exists {
        return false;
    }
    if !matches!(
        f.kind,
        StatementKind::DropTable | StatementKind::DropIndex | StatementKind::AlterTable
    ) {
        return false;
    }
    let Some(live) = &ctx.catalog.live else {
        return false;
    };
    !f.targets.is_empty()
        && f.targets.iter().all(|t| {
            live.get(t) == Some(None)
                && !state.is_new(t)
                && (t.schema.is_some() || !state.search_path_changed)
        })
}

/// Can this statement text change the search_path the next statements run with? `SET
/// search_path`, `SET SCHEMA`, `RESET`, `DISCARD ALL`, `set_config('search_path', ...)` in a
/// SELECT or a DO block. Textual and generous on purpose: a false "yes" only makes unqualified
/// names count as unknown (large) for the rest of the text. A user function that changes the
/// search_path as a hidden side effect is not seen (README: what pgwarden cannot see).
pub fn may_change_search_path(statement: &str) -> bool {
    mentions_search_path_word(statement.as_bytes()) && !is_plain_ddl_mentioning_schema(statement)
}

/// Does `bytes` contain, in any ASCII case, `search_path`, `set_config`, `schema`, `reset` or
/// `discard`? Runs for every statement the proxy decides on. Every word starts with `s`, `r`
/// or `d`, so only the positions holding one of those letters are compared: one table load
/// per byte, where comparing every window with every word cost ~20 instructions per byte.
fn mentions_search_path_word(bytes: &[u8]) -> bool {
    const S_WORDS: [&[u8]; 3] = [b"search_path", b"set_config", b"schema"];
    const R_WORDS: [&[u8]; 1] = [b"reset"];
    const D_WORDS: [&[u8]; 1] = [b"discard"];
    /// 1, 2, 3 for the first letter of a word (either case), 0 for every other byte.
    static FIRST: [u8; 256] = {
        let mut t = [0u8; 256];
        t[b's' as usize] = 1;
        t[b'S' as usize] = 1;
        t[b'r' as usize] = 2;
        t[b'R' as usize] = 2;
        t[b'd' as usize] = 3;
        t[b'D' as usize] = 3;
        t
    };
    bytes.iter().enumerate().any(|(i, &b)| {
        let words: &[&[u8]] = match FIRST[usize::from(b)] {
            0 => return false,
            1 => &S_WORDS,
            2 => &R_WORDS,
            _ => &D_WORDS,
        };
        let rest = &bytes[i..];
        words
            .iter()
            .any(|w| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w))
    })
}

/// `CREATE SCHEMA x`, `ALTER TABLE t SET SCHEMA s`, `DROP SCHEMA`: they mention "schema" but do
/// not change the search_path.
fn is_plain_ddl_mentioning_schema(statement: &str) -> bool {
    let lower = statement.trim_start().to_ascii_lowercase();
    let first = lower.split_whitespace().next().unwrap_or_default();
    matches!(
        first,
        "create" | "alter" | "drop" | "comment" | "grant" | "revoke"
    ) && !lower.contains("search_path")
        && !lower.contains("set_config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_changers() {
        assert!(may_change_search_path("SET search_path = other"));
        assert!(may_change_search_path("set SCHEMA 'other'"));
        assert!(may_change_search_path("RESET ALL"));
        assert!(may_change_search_path("DISCARD ALL"));
        assert!(may_change_search_path(
            "SELECT pg_catalog.set_config('search_path', 'x', false)"
        ));
        assert!(!may_change_search_path("CREATE SCHEMA other"));
        assert!(!may_change_search_path("ALTER TABLE t SET SCHEMA other"));
        assert!(!may_change_search_path("SELECT 1"));
        assert!(!may_change_search_path("ALTER TABLE t ADD COLUMN a int"));
    }

    /// The first version: every window of the text against every word.
    fn mentions_by_windows(statement: &str) -> bool {
        let bytes = statement.as_bytes();
        [
            &b"search_path"[..],
            b"set_config",
            b"schema",
            b"reset",
            b"discard",
        ]
        .iter()
        .any(|w| {
            bytes.len() >= w.len()
                && bytes
                    .windows(w.len())
                    .any(|win| win.eq_ignore_ascii_case(w))
        })
    }

    #[test]
    fn word_scan_agrees_with_every_window() {
        let texts = [
            "",
            "s",
            "d",
            "reset",
            "RESE",
            "xxRESETxx",
            "DiScArD ALL",
            "discar",
            "select pg_catalog.SET_CONFIG('a', 'b', true)",
            "set_confi",
            "SEARCH_PATH",
            "search_pat",
            "sssschema",
            "schem",
            "CREATE TABLE a (b int DEFAULT 1)",
            "ALTER TABLE t RENAME TO discarded",
            "COMMENT ON TABLE \u{e9}schema IS 'r\u{e9}set'",
            "r\u{e9}set d\u{c9}scard s\u{1f600}chema",
            "SELECT 'Schéma', 'RESET'",
            "ſchema reſet",
        ];
        for t in texts {
            assert_eq!(
                mentions_search_path_word(t.as_bytes()),
                mentions_by_windows(t),
                "{t:?}"
            );
        }
        // Every word at every position, in every case pattern of its first two letters, and cut
        // one byte short.
        for w in ["search_path", "set_config", "schema", "reset", "discard"] {
            for prefix in ["", "x", "é", "sss", "rrr ddd "] {
                for (a, b) in [(false, false), (true, false), (false, true), (true, true)] {
                    let mut word: Vec<char> = w.chars().collect();
                    if a {
                        word[0] = word[0].to_ascii_uppercase();
                    }
                    if b {
                        word[1] = word[1].to_ascii_uppercase();
                    }
                    let word: String = word.into_iter().collect();
                    for t in [
                        format!("{prefix}{word}"),
                        format!("{prefix}{word} tail"),
                        format!("{prefix}{}", &word[..word.len() - 1]),
                    ] {
                        assert_eq!(
                            mentions_search_path_word(t.as_bytes()),
                            mentions_by_windows(&t),
                            "{t:?}"
                        );
                    }
                }
            }
        }
    }
}
