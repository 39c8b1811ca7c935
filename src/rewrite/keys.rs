//! Index-backed constraints (`UNIQUE`, `PRIMARY KEY`) read off their text, with every option
//! a direct `ADD CONSTRAINT` gives its index, so that `CREATE UNIQUE INDEX CONCURRENTLY` +
//! `ADD CONSTRAINT ... USING INDEX` end in the same catalog state (checked against
//! PostgreSQL 15: `pg_dump --schema-only` is equal for each option).
//!
//! Where each option goes:
//!
//! | constraint clause | index step | attach step |
//! |---|---|---|
//! | `(cols)` | `ON t (cols)` | |
//! | `INCLUDE (cols)` | `INCLUDE (cols)` | |
//! | `NULLS NOT DISTINCT` (UNIQUE, PG 15) | `NULLS NOT DISTINCT` | |
//! | `WITH (storage params)` | `WITH (...)` | |
//! | `USING INDEX TABLESPACE ts` | `TABLESPACE ts` | |
//! | `DEFERRABLE` / `INITIALLY ...` | | `USING INDEX i DEFERRABLE ...` |
//!
//! Anything else in the clause (a `USING INDEX name`, an unknown word) makes [`parse`] answer
//! `None`: the statement is then not rewritten, and the rule's refusal says what to write.

use super::names::quote_ident;

/// A `UNIQUE` / `PRIMARY KEY` table constraint, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeySpec {
    pub primary: bool,
    /// The key columns, folded as the server folds them.
    pub columns: Vec<String>,
    pub include: Vec<String>,
    pub nulls_not_distinct: bool,
    /// The text inside `WITH ( ... )`, as written.
    pub with: Option<String>,
    /// `USING INDEX TABLESPACE ts`: the tablespace as SQL text.
    pub tablespace: Option<String>,
    /// `DEFERRABLE`, `NOT DEFERRABLE`, `INITIALLY DEFERRED|IMMEDIATE`, in order.
    pub deferral: Vec<&'static str>,
}

impl KeySpec {
    /// The columns PostgreSQL names an unnamed constraint's index after: the key columns,
    /// then the INCLUDE columns (`ChooseIndexColumnNames` takes every index column).
    pub fn name_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .chain(self.include.iter())
            .cloned()
            .collect()
    }

    /// `CREATE UNIQUE INDEX CONCURRENTLY index ON table (...) ...`.
    pub fn build_sql(&self, index: &str, table: &str) -> String {
        let list = |cols: &[String]| {
            cols.iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
            quote_ident(index),
            list(&self.columns)
        );
        if !self.include.is_empty() {
            sql.push_str(&format!(" INCLUDE ({})", list(&self.include)));
        }
        if self.nulls_not_distinct {
            sql.push_str(" NULLS NOT DISTINCT");
        }
        if let Some(w) = &self.with {
            sql.push_str(&format!(" WITH ({w})"));
        }
        if let Some(ts) = &self.tablespace {
            sql.push_str(&format!(" TABLESPACE {ts}"));
        }
        sql
    }

    /// `ALTER TABLE table ADD CONSTRAINT name {UNIQUE|PRIMARY KEY} USING INDEX name ...`.
    pub fn attach_sql(&self, name: &str, table: &str) -> String {
        let q = quote_ident(name);
        let kind = if self.primary {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        };
        let mut sql = format!("ALTER TABLE {table} ADD CONSTRAINT {q} {kind} USING INDEX {q}");
        for d in &self.deferral {
            sql.push(' ');
            sql.push_str(d);
        }
        sql
    }
}

/// One token of a constraint clause.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An unquoted word, lower-cased.
    Word(String),
    /// A quoted identifier, as the server stores it.
    Quoted(String),
    Punct(char),
    /// Anything else (a literal, a number, an operator), as written.
    Other(String),
}

/// The tokens of `text`; `None` on a comment or an unterminated quote (not worth reading).
fn tokens(text: &str) -> Option<Vec<(Tok, std::ops::Range<usize>)>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') || c == b'/' && b.get(i + 1) == Some(&b'*') {
            return None;
        }
        if c == b'"' {
            let mut s = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let ch = text[i..].chars().next()?;
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            out.push((Tok::Quoted(s), start..i));
        } else if c == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            out.push((Tok::Other(text[start..i].to_string()), start..i));
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            // PostgreSQL folds only ASCII letters of an unquoted identifier.
            out.push((Tok::Word(text[start..i].to_ascii_lowercase()), start..i));
        } else if matches!(c, b'(' | b')' | b',' | b'=' | b'.') {
            i += 1;
            out.push((Tok::Punct(c as char), start..i));
        } else {
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && !matches!(b[i], b'(' | b')' | b',' | b'"' | b'\'')
            {
                i += 1;
            }
            out.push((Tok::Other(text[start..i].to_string()), start..i));
        }
    }
    Some(out)
}

struct Cursor<'a> {
    toks: &'a [(Tok, std::ops::Range<usize>)],
    at: usize,
}

impl Cursor<'_> {
    fn peek_word(&self) -> Option<&str> {
        match self.toks.get(self.at) {
            Some((Tok::Word(w), _)) => Some(w),
            _ => None,
        }
    }

    fn word(&mut self, w: &str) -> bool {
        if self.peek_word() == Some(w) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn punct(&mut self, p: char) -> bool {
        if matches!(self.toks.get(self.at), Some((Tok::Punct(c), _)) if *c == p) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        let t = match self.toks.get(self.at)? {
            (Tok::Word(w), _) => w.clone(),
            (Tok::Quoted(q), _) => q.clone(),
            _ => return None,
        };
        self.at += 1;
        Some(t)
    }

    /// `( ident, ident, ... )`.
    fn ident_list(&mut self) -> Option<Vec<String>> {
        if !self.punct('(') {
            return None;
        }
        let mut out = vec![self.ident()?];
        while self.punct(',') {
            out.push(self.ident()?);
        }
        self.punct(')').then_some(out)
    }

    /// `( ... )` with nested parentheses: the text inside.
    fn parenthesised<'t>(&mut self, text: &'t str) -> Option<&'t str> {
        let (Tok::Punct('('), open) = self.toks.get(self.at)? else {
            return None;
        };
        let mut depth = 0usize;
        for (j, (t, r)) in self.toks.iter().enumerate().skip(self.at) {
            match t {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        self.at = j + 1;
                        return text.get(open.end..r.start).map(str::trim);
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn done(&self) -> bool {
        self.at >= self.toks.len()
    }
}

/// Parses `[CONSTRAINT name] UNIQUE|PRIMARY KEY ...` (the constraint's span in the statement).
/// `None`: a form this rewrite does not carry (USING INDEX, an option it does not know).
pub fn parse(text: &str) -> Option<KeySpec> {
    let toks = tokens(text)?;
    let mut c = Cursor { toks: &toks, at: 0 };
    if c.word("constraint") {
        c.ident()?;
    }
    let mut k = KeySpec::default();
    if c.word("primary") {
        if !c.word("key") {
            return None;
        }
        k.primary = true;
    } else if !c.word("unique") {
        return None;
    }
    if !k.primary && c.word("nulls") {
        k.nulls_not_distinct = c.word("not");
        if !c.word("distinct") {
            return None;
        }
    }
    k.columns = c.ident_list()?;
    if c.word("include") {
        k.include = c.ident_list()?;
    }
    if c.word("with") {
        k.with = Some(c.parenthesised(text)?.to_string());
    }
    if c.word("using") {
        if !(c.word("index") && c.word("tablespace")) {
            return None;
        }
        k.tablespace = Some(quote_ident(&c.ident()?));
    }
    loop {
        if c.word("deferrable") {
            k.deferral.push("DEFERRABLE");
        } else if c.word("not") {
            if !c.word("deferrable") {
                return None;
            }
            k.deferral.push("NOT DEFERRABLE");
        } else if c.word("initially") {
            if c.word("deferred") {
                k.deferral.push("INITIALLY DEFERRED");
            } else if c.word("immediate") {
                k.deferral.push("INITIALLY IMMEDIATE");
            } else {
                return None;
            }
        } else {
            break;
        }
    }
    c.done().then_some(k)
}

/// The `INCLUDE (cols)` of a CREATE INDEX text: PostgreSQL names an unnamed index after
/// them too (`orders_amount_note_idx`). `None`: an INCLUDE pgwarden cannot read.
pub fn include_of_index(text: &str) -> Option<Vec<String>> {
    let toks = tokens(text)?;
    let Some(at) = toks
        .iter()
        .position(|(t, _)| *t == Tok::Word("include".into()))
    else {
        return Some(Vec::new());
    };
    let mut c = Cursor {
        toks: &toks,
        at: at + 1,
    };
    c.ident_list()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_read() {
        let k = parse(
            "CONSTRAINT \"U q\" UNIQUE NULLS NOT DISTINCT (a, \"B\") INCLUDE (c) \
             WITH (fillfactor = 70, deduplicate_items = off) USING INDEX TABLESPACE \"Fast\" \
             DEFERRABLE INITIALLY DEFERRED",
        )
        .expect("parsed");
        assert_eq!(k.columns, ["a", "B"]);
        assert_eq!(k.include, ["c"]);
        assert!(k.nulls_not_distinct && !k.primary);
        assert_eq!(
            k.with.as_deref(),
            Some("fillfactor = 70, deduplicate_items = off")
        );
        assert_eq!(
            k.build_sql("u", "orders"),
            "CREATE UNIQUE INDEX CONCURRENTLY u ON orders (a, \"B\") INCLUDE (c) NULLS NOT DISTINCT \
             WITH (fillfactor = 70, deduplicate_items = off) TABLESPACE \"Fast\""
        );
        assert_eq!(
            k.attach_sql("U q", "orders"),
            "ALTER TABLE orders ADD CONSTRAINT \"U q\" UNIQUE USING INDEX \"U q\" DEFERRABLE \
             INITIALLY DEFERRED"
        );
        assert_eq!(k.name_columns(), ["a", "B", "c"]);
    }

    #[test]
    fn primary_keys_and_refusals() {
        let k = parse("primary key (id)").expect("pk");
        assert!(k.primary);
        assert_eq!(
            k.attach_sql("orders_pkey", "public.orders"),
            "ALTER TABLE public.orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_pkey"
        );
        let k = parse("PRIMARY KEY (id) NOT DEFERRABLE INITIALLY IMMEDIATE").expect("pk");
        assert_eq!(k.deferral, ["NOT DEFERRABLE", "INITIALLY IMMEDIATE"]);
        for bad in [
            "UNIQUE USING INDEX i",
            "PRIMARY KEY USING INDEX i",
            "PRIMARY KEY NULLS NOT DISTINCT (a)",
            "UNIQUE (a) NOT VALID",
            "UNIQUE (a) -- x",
            "UNIQUE (lower(a))",
            "UNIQUE (a) INITIALLY LATER",
            "CHECK (a > 0)",
            "UNIQUE (a",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(
            include_of_index("CREATE INDEX ON t (a) INCLUDE (b, \"C\")"),
            Some(vec!["b".to_string(), "C".to_string()])
        );
        assert_eq!(include_of_index("CREATE INDEX ON t (a)"), Some(vec![]));
        assert_eq!(
            include_of_index("CREATE INDEX ON t (a) INCLUDE (lower(b))"),
            None
        );
        // NULLS DISTINCT is the default: nothing to carry.
        let k = parse("UNIQUE NULLS DISTINCT (a)").expect("unique");
        assert!(!k.nulls_not_distinct);
    }
}
