//! adding-field-with-default: ADD COLUMN with a volatile default, or a stored generated column.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ADD COLUMN` with a default Postgres must compute per row (a volatile function such as `gen_random_uuid()`, `random()`, `clock_timestamp()`, `nextval()`), any default before PostgreSQL 11, and `GENERATED ALWAYS AS (...) STORED` columns.

## Why is this bad
Since PostgreSQL 11 a constant (or STABLE, like `now()`) default is stored once in the catalog and the ADD is instant. A volatile default, or a stored generated column, makes Postgres rewrite every row under ACCESS EXCLUSIVE: no reads, no writes until the rewrite ends.

## Example
```sql
ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();
```

## Use instead
Add the column without a default (or with a constant one), set the default for new rows, then backfill existing rows in batches in separate transactions:
```sql
ALTER TABLE orders ADD COLUMN token uuid;
ALTER TABLE orders ALTER COLUMN token SET DEFAULT gen_random_uuid();
UPDATE orders SET token = gen_random_uuid() WHERE id BETWEEN 1 AND 10000; -- repeat
```

## Rewrite safety
No rewrite. In the proxy, the live catalog answers the volatility of functions pgwarden does not know (`pg_proc.provolatile`).
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        let Some(col) = &a.column_def else { continue };
        let reason = if col.generated_stored {
            Some("a stored generated column is computed and written for every row".to_string())
        } else if let Some(d) = &col.default {
            if cx.version_at_least(11) == Some(false) {
                Some("before PostgreSQL 11 any default is written into every row".to_string())
            } else {
                match effective_volatility(d, cx) {
                    Volatility::Volatile => Some(format!(
                        "the default `{}` is volatile, so Postgres writes it into every row",
                        d.text.trim()
                    )),
                    Volatility::Unknown => Some(format!(
                        "the default `{}` calls a function pgwarden cannot prove non-volatile; \
                         if it is volatile Postgres writes it into every row",
                        d.text.trim()
                    )),
                    Volatility::Immutable | Volatility::Stable => None,
                }
            }
        } else {
            None
        };
        let Some(reason) = reason else { continue };
        out.push(
            Finding::new(
                Rule::AddingFieldWithDefault,
                f,
                format!(
                    "ADD COLUMN {} rewrites {} under an ACCESS EXCLUSIVE lock: {reason}",
                    col.name,
                    cx.describe(table)
                ),
                "Add the column without that default, SET DEFAULT for new rows, then backfill \
                 existing rows in batches in separate transactions."
                    .to_string(),
            )
            .at(a.span.clone())
            .lock(Some(a.lock))
            .sized(size, cx),
        );
    }
}

/// The parser's guess, corrected by the live catalog's `pg_proc.provolatile` when known.
fn effective_volatility(d: &DefaultFacts, cx: &Cx<'_>) -> Volatility {
    if d.volatility != Volatility::Unknown {
        return d.volatility;
    }
    let mut worst = Volatility::Immutable;
    for name in &d.functions {
        match cx.ctx.catalog.volatility.get(name) {
            Some(Volatility::Volatile) => return Volatility::Volatile,
            Some(_) => {}
            // Not `now`: the parser already reads a bare now() as stable, so a `now` here is a
            // call with arguments, some other function of that name.
            None if matches!(
                name.as_str(),
                "lower" | "upper" | "coalesce" | "current_setting"
            ) => {}
            None => worst = Volatility::Unknown,
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::AddingFieldWithDefault;

    #[test]
    fn volatile_and_generated_fire() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid()").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN r float8 DEFAULT random()").len(), 1);
        assert_eq!(
            run(R, "ALTER TABLE t ADD COLUMN total numeric GENERATED ALWAYS AS (a * b) STORED").len(),
            1
        );
    }

    #[test]
    fn constant_and_stable_defaults_are_fine_on_pg11() {
        assert!(run(R, "ALTER TABLE t ADD COLUMN b bool DEFAULT false NOT NULL").is_empty());
        assert!(run(R, "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()").is_empty());
        let mut c = ctx();
        c.pg_version = Some(10);
        assert_eq!(run_with(R, "ALTER TABLE t ADD COLUMN b bool DEFAULT false", &c).len(), 1);
    }

    #[test]
    fn live_volatility_answers_unknown_functions() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN x int DEFAULT my_fn()").len(), 1);
        let mut c = ctx();
        c.catalog.volatility.insert("my_fn".into(), Volatility::Immutable);
        assert!(run_with(R, "ALTER TABLE t ADD COLUMN x int DEFAULT my_fn()", &c).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
