//! Naming the table of a rewrite's steps by its schema.
//!
//! Steps queued for the client's COMMIT run after it, when a `SET LOCAL search_path` (or a
//! `set_config(..., true)`) of the migration's transaction is gone: an unqualified table name
//! could then resolve to another schema's table of the same name (a schema per tenant), and the
//! index or constraint would land there, silently. So the steps name the table with the schema
//! the decision's own catalog lookup resolved it to, under the transaction's search_path, at the
//! moment the statement was sent.
use super::names::quote_ident;
use super::{Form, Shape};
use crate::sql::tokens::{ident_value, tokenize, Kind};

impl Shape {
    /// Names the table by `schema` in every step (the statement's own text as well, for the
    /// forms whose step is that text). Nothing changes for a name the statement qualified.
    /// Returns false, and changes nothing, when the text's table reference cannot be found
    /// exactly (the caller then runs nothing after COMMIT under an unqualified name).
    pub fn qualify(&mut self, schema: &str) -> bool {
        if self.table.schema.is_some() {
            return true;
        }
        if self.form == Form::Index {
            // The one step is the statement's text with CONCURRENTLY: its table reference
            // (after ON) is rewritten in place.
            let Some(span) = index_table_span(&self.text, self.concurrently_at, &self.table.name)
            else {
                return false;
            };
            let q = format!("{}.{}", quote_ident(schema), quote_ident(&self.table.name));
            self.text.replace_range(span, &q);
        }
        self.table.schema = Some(schema.to_string());
        true
    }
}

/// The byte range of the table name in `CREATE [UNIQUE] INDEX [name] ON [ONLY] table ...`,
/// searched from `from` (where CONCURRENTLY goes, before the name), when it is the unqualified
/// name `table`.
fn index_table_span(text: &str, from: usize, table: &str) -> Option<std::ops::Range<usize>> {
    let rest = text.get(from..)?;
    // Nothing between CREATE INDEX and the table name is a string literal, so
    // standard_conforming_strings cannot change where the tokens are.
    let toks = tokenize(rest, true);
    let on = toks.iter().position(|t| t.is_word(rest, "on"))?;
    let mut i = on + 1;
    if toks.get(i).is_some_and(|t| t.is_word(rest, "only")) {
        i += 1;
    }
    let t = toks.get(i)?;
    if !matches!(t.kind, Kind::Word | Kind::QuotedIdent) || ident_value(t, rest)? != table {
        return None;
    }
    if toks.get(i + 1).is_some_and(|n| n.is_punct(rest, ".")) {
        // Qualified after all: not this function's case.
        return None;
    }
    Some(from + t.start..from + t.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span_text(text: &str, table: &str) -> Option<String> {
        let from = text.to_ascii_lowercase().find("index")? + "index".len();
        index_table_span(text, from, table).map(|r| text[r].to_string())
    }

    #[test]
    fn finds_the_table_after_on() {
        assert_eq!(
            span_text("CREATE INDEX ix ON orders (a)", "orders").as_deref(),
            Some("orders")
        );
        assert_eq!(
            span_text(
                "create unique index on \"Orders\" using btree (a)",
                "Orders"
            )
            .as_deref(),
            Some("\"Orders\"")
        );
        assert_eq!(
            span_text("CREATE INDEX /* on x */ ix ON ONLY orders (a)", "orders").as_deref(),
            Some("orders")
        );
        // An index named "on" is a quoted identifier, not the keyword.
        assert_eq!(
            span_text("CREATE INDEX \"on\" ON orders (a)", "orders").as_deref(),
            Some("orders")
        );
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        assert_eq!(
            span_text("CREATE INDEX ix ON app.orders (a)", "orders"),
            None
        );
        assert_eq!(span_text("CREATE INDEX ix ON other (a)", "orders"), None);
        assert_eq!(span_text("CREATE INDEX ix (a)", "orders"), None);
    }
}
