//! The transaction-control reader: which transaction command one statement is, with the
//! savepoint name or prepared-transaction id as the server keeps it. One reader for the audit
//! log's transaction-fate tracker (`audit::txfate`) and the completion steps' bookkeeping
//! (`rewrite::completion`), so both place a savepoint exactly where the server does.
use super::tokens::{string_value, tokenize, Kind, Token, Tokens};

/// A transaction-control statement, read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TxCommand {
    /// `SAVEPOINT s`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] s`.
    Release(String),
    /// `ROLLBACK|ABORT [WORK|TRANSACTION] TO [SAVEPOINT] s`.
    RollbackTo(String),
    /// `ROLLBACK|ABORT [WORK|TRANSACTION] [AND [NO] CHAIN]`.
    Rollback,
    /// `COMMIT|END [WORK|TRANSACTION] [AND [NO] CHAIN]` (the server answers `ROLLBACK` to it in a
    /// failed transaction).
    Commit,
    /// `PREPARE TRANSACTION 'gid'`.
    Prepare(String),
    /// `COMMIT PREPARED 'gid'` / `ROLLBACK PREPARED 'gid'`.
    FinishPrepared(String),
}

/// The words a transaction-control statement can start with (what [`TxCommand::parse`] reads).
const LEADING: [&str; 7] = [
    "savepoint",
    "release",
    "prepare",
    "commit",
    "rollback",
    "abort",
    "end",
];

impl TxCommand {
    /// Reads one statement's text; `None` when empty or not transaction control.
    pub(crate) fn parse(sql: &str) -> Option<TxCommand> {
        // Every transaction-control statement starts with one of these words: any other text
        // (every DDL statement the audit log records) is answered from its first token, not
        // tokenized whole.
        let first = Tokens::new(sql, true).next()?;
        if !LEADING.iter().any(|w| first.is_word(sql, w)) {
            return None;
        }
        let toks = tokenize(sql, true);
        let word = |i: usize, k: &str| toks.get(i).is_some_and(|t| t.is_word(sql, k));
        let first = toks.first()?;
        let gid = |i: usize| {
            let t = toks.get(i)?;
            (t.kind == Kind::String).then(|| string_value(t.text(sql), true))?
        };
        if first.is_word(sql, "savepoint") {
            return savepoint_name(toks.get(1)?, sql).map(TxCommand::Savepoint);
        }
        if first.is_word(sql, "release") {
            let i = if word(1, "savepoint") { 2 } else { 1 };
            return savepoint_name(toks.get(i)?, sql).map(TxCommand::Release);
        }
        if first.is_word(sql, "prepare") && word(1, "transaction") {
            return gid(2).map(TxCommand::Prepare);
        }
        if (first.is_word(sql, "commit") || first.is_word(sql, "rollback")) && word(1, "prepared") {
            return gid(2).map(TxCommand::FinishPrepared);
        }
        if first.is_word(sql, "rollback") || first.is_word(sql, "abort") {
            let mut i = 1;
            if word(i, "work") || word(i, "transaction") {
                i += 1;
            }
            if !word(i, "to") {
                return Some(TxCommand::Rollback);
            }
            i += 1;
            if word(i, "savepoint") {
                i += 1;
            }
            return savepoint_name(toks.get(i)?, sql).map(TxCommand::RollbackTo);
        }
        if first.is_word(sql, "commit") || first.is_word(sql, "end") {
            return Some(TxCommand::Commit);
        }
        None
    }
}

/// A savepoint name as the server keeps it: unquoted names folded to lower case (ASCII only,
/// as PostgreSQL's `downcase_identifier` does for UTF-8), quoted ones as written with `""`
/// undoubled, both truncated to 63 bytes (NAMEDATALEN - 1).
fn savepoint_name(t: &Token, src: &str) -> Option<String> {
    let mut name = match t.kind {
        Kind::Word => t.text(src).to_ascii_lowercase(),
        Kind::QuotedIdent => {
            let s = t.text(src);
            let inner = s.strip_prefix('"')?;
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            inner.replace("\"\"", "\"")
        }
        _ => return None,
    };
    if name.len() > 63 {
        let mut end = 63;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_commands() {
        use TxCommand::*;
        assert_eq!(TxCommand::parse("ROLLBACK"), Some(Rollback));
        assert_eq!(
            TxCommand::parse("ROLLBACK TRANSACTION AND NO CHAIN"),
            Some(Rollback)
        );
        assert_eq!(TxCommand::parse("commit"), Some(Commit));
        assert_eq!(TxCommand::parse("END WORK AND CHAIN"), Some(Commit));
        assert_eq!(
            TxCommand::parse("rollback to savepoint \"Sp\""),
            Some(RollbackTo("Sp".into()))
        );
        assert_eq!(
            TxCommand::parse("ABORT WORK TO x"),
            Some(RollbackTo("x".into()))
        );
        assert_eq!(
            TxCommand::parse("RELEASE SAVEPOINT X"),
            Some(Release("x".into()))
        );
        assert_eq!(
            TxCommand::parse("release \"a\"\"b\""),
            Some(Release("a\"b".into()))
        );
        assert_eq!(
            TxCommand::parse("SAVEPOINT a1"),
            Some(Savepoint("a1".into()))
        );
        assert_eq!(TxCommand::parse("SAVEPOINT Ä"), Some(Savepoint("Ä".into())));
        let long = format!("SAVEPOINT {}", "x".repeat(70));
        assert_eq!(TxCommand::parse(&long), Some(Savepoint("x".repeat(63))));
        assert_eq!(
            TxCommand::parse("PREPARE TRANSACTION 'g'"),
            Some(Prepare("g".into()))
        );
        assert_eq!(
            TxCommand::parse("COMMIT PREPARED $$g$$"),
            Some(FinishPrepared("g".into()))
        );
        assert_eq!(TxCommand::parse("CREATE TABLE a ()"), None);
        assert_eq!(TxCommand::parse(""), None);
    }

    /// Read from the first token: comments and whitespace before it do not hide a COMMIT, and a
    /// word that only starts like one (or a string, an identifier in quotes) is not one.
    #[test]
    fn the_first_token_decides_what_is_read() {
        use TxCommand::*;
        assert_eq!(
            TxCommand::parse("  -- c\n/* a /* nested */ */ COMMIT"),
            Some(Commit)
        );
        assert_eq!(TxCommand::parse("\n\tEnd"), Some(Commit));
        for sql in [
            "commit$x",
            "committed",
            "\"commit\"",
            "E'commit'",
            "ALTER TABLE t ADD COLUMN c int; COMMIT",
            "/* COMMIT */ CREATE INDEX i ON t (c)",
            "-- ROLLBACK\nDROP TABLE t",
            "(COMMIT)",
        ] {
            assert_eq!(TxCommand::parse(sql), None, "{sql}");
        }
        // The first tokens are the whole text's first tokens.
        for sql in [
            "x 'a",
            "'unterminated",
            "$$ open",
            "/* open",
            "a.b::c -- x",
            "Ä ö",
        ] {
            let all = tokenize(sql, true);
            let first: Vec<Token> = Tokens::new(sql, true).take(all.len()).collect();
            assert_eq!(first, all, "{sql}");
        }
    }
}
