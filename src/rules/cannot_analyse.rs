//! cannot-analyse: a statement pgwarden cannot read (DESIGN.md decision 10: fail closed).
use super::*;
use crate::sql::lexer::Unanalysable;
use crate::sql::ParseError;

pub const DOC: &str = r#"## What it does
Reports a statement pgwarden could not analyse: a syntax error, a psql backslash command, an
unterminated string or comment, or a statement over the length / nesting bounds.

## Why is this bad
What pgwarden cannot read, it cannot check: the statement might take any lock on any table.
pgwarden fails closed by default (DESIGN.md decision 10).

## Example
```sql
ALTER TABLE orders ADD COLUMN;
```

## Use instead
Fix the statement, run psql meta-commands (`\copy`, `\set`) outside pgwarden, or allow the
statement explicitly with `-- pgwarden:allow cannot-analyse reason="..."`.

## Rewrite safety
No rewrite.
"#;

/// The finding for a statement the analysis gave up on.
pub fn finding(stmt: &AnalysedStatement) -> Finding {
    let why = match &stmt.outcome {
        Outcome::ParseError(ParseError::Syntax { message, .. }) => format!("syntax error: {message}"),
        Outcome::ParseError(ParseError::PsqlMetaCommand { .. })
        | Outcome::Unanalysable(Unanalysable::PsqlMetaCommand) => {
            "psql meta-command: psql runs it, the server never sees it".to_string()
        }
        Outcome::Unanalysable(Unanalysable::TooLong) => {
            "statement longer than the analysis bound".to_string()
        }
        Outcome::Unanalysable(Unanalysable::TooDeep) => {
            "brackets or a chain of operators nest deeper than the analysis bound".to_string()
        }
        Outcome::Unanalysable(Unanalysable::Unterminated) => {
            "unterminated string, quoted identifier, comment or dollar quote".to_string()
        }
        Outcome::Unanalysable(Unanalysable::UnknownSettings) => {
            "it reads differently under the client_encoding / standard_conforming_strings an \
             earlier request still in flight may have set; send it after that request's \
             answer (after its Sync)"
                .to_string()
        }
        _ => "not analysable".to_string(),
    };
    let at = match &stmt.outcome {
        Outcome::ParseError(ParseError::Syntax { offset, .. })
        | Outcome::ParseError(ParseError::PsqlMetaCommand { offset }) => *offset,
        _ => stmt.span.start,
    };
    Finding {
        rule: Rule::CannotAnalyse,
        message: format!("pgwarden cannot analyse this statement ({why})"),
        help: "Fix the statement, or allow it with `-- pgwarden:allow cannot-analyse reason=\"...\"`."
            .to_string(),
        span: at..(at + 1).min(stmt.span.end.max(at)),
        statement: stmt.span.clone(),
        lock: None,
        rewrite: None,
        small_table: false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::ctx;
    use super::*;
    use crate::sql::analyze;

    fn findings(sql: &str) -> Vec<Finding> {
        let c = ctx();
        evaluate(sql, &analyze(sql, &c), &c, &SizeThresholds::default())
            .findings
            .into_iter()
            .filter(|f| f.rule == Rule::CannotAnalyse)
            .collect()
    }

    #[test]
    fn syntax_error_and_psql_command_fire() {
        let f = findings("ALTER TABLE orders ADD COLUMN");
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("syntax error"));
        assert_eq!(findings("\\set ON_ERROR_STOP on").len(), 1);
        let deep = format!("ALTER TABLE t ADD CHECK {}a{}", "(".repeat(5000), ")".repeat(5000));
        assert!(findings(&deep)[0].message.contains("nest deeper"));
        // A 1 MB chain of operators used to overflow the stack inside squawk's tree builder.
        let chain = format!("ALTER TABLE t ADD CHECK ({}a)", "a+".repeat(500_000));
        assert!(findings(&chain)[0].message.contains("chain of operators"));
    }

    #[test]
    fn good_sql_does_not_fire() {
        assert!(findings("ALTER TABLE t ADD COLUMN a int; SELECT 1;").is_empty());
    }
}
