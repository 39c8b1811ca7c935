//! require-concurrent-refresh: REFRESH MATERIALIZED VIEW without CONCURRENTLY.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `REFRESH MATERIALIZED VIEW` without `CONCURRENTLY`.

## Why is this bad
A plain refresh holds ACCESS EXCLUSIVE on the view for the whole rebuild: every query reading it waits.

## Example
```sql
REFRESH MATERIALIZED VIEW daily_sales;
```

## Use instead
```sql
REFRESH MATERIALIZED VIEW CONCURRENTLY daily_sales;
```
which needs a unique index on the view.

## Rewrite safety
pgwarden inserts `CONCURRENTLY` only when the live catalog shows a unique index on the view, outside a transaction block, and never with `WITH NO DATA`.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::RefreshMaterializedView || f.flags.concurrently {
        return;
    }
    let Some(view) = f.targets.first() else { return };
    let size = cx.size(view);
    if size == Size::New {
        return;
    }
    let has_unique = cx.ctx.catalog.unique_indexed_matviews.contains(&view.to_string())
        || cx.ctx.catalog.unique_indexed_matviews.contains(&view.name);
    let rewrite = match (cx.idle() && has_unique && !f.flags.with_no_data, f.concurrently_at) {
        (true, Some(p)) => Some(TextEdit::insert(p.at, " CONCURRENTLY")),
        _ => None,
    };
    out.push(
        Finding::new(
            Rule::RequireConcurrentRefresh,
            f,
            format!(
                "REFRESH MATERIALIZED VIEW {} blocks every read of the view until the refresh finishes",
                cx.describe(view)
            ),
            "Use REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view) \
             outside a transaction block."
                .to_string(),
        )
        .rewrite(rewrite)
        .sized(size, cx),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireConcurrentRefresh;

    #[test]
    fn rewrite_only_with_unique_index() {
        assert!(run(R, "REFRESH MATERIALIZED VIEW v")[0].rewrite.is_none());
        let mut c = ctx();
        c.catalog.unique_indexed_matviews.insert("v".into());
        let f = run_with(R, "REFRESH MATERIALIZED VIEW v", &c);
        let fixed = f[0].rewrite.clone().unwrap().apply("REFRESH MATERIALIZED VIEW v").unwrap();
        assert_eq!(fixed, "REFRESH MATERIALIZED VIEW CONCURRENTLY v");
        assert!(run_with(R, &fixed, &c).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
