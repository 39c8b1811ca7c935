//! ban-drop-default: DROP DEFAULT breaks inserts that leave the column out.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... DROP DEFAULT` on an existing table and `ALTER DOMAIN ... DROP DEFAULT`.

## Why is this bad
Running code that inserts without the column now stores NULL instead of the default, or fails when the column is NOT NULL.

## Example
```sql
ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;
```

## Use instead
Deploy code that always sets the column first, then drop the default in a later release.

## Differences from squawk
In the proxy the live catalog says which of the two happens: on a NOT NULL column inserts that leave it out fail (23502 not-null violation) from the moment the migration commits; on a nullable one they silently store NULL. The finding names the case (`pgwarden check` without a database cannot tell and names both).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let mut what: Option<String> = None;
    for a in f.actions.iter().filter(|a| a.kind == ActionKind::DropDefault) {
        if what.is_none() {
            what = subject(f, cx);
        }
        // An existing table created elsewhere: exempt, as every breaking-change rule.
        let Some(what) = what.as_deref() else { return };
        let column = match (f.kind, &f.table, &a.column) {
            (StatementKind::AlterTable, Some(t), Some(c)) => Some((t, c.as_str())),
            _ => None,
        };
        // The live catalog (the proxy asks for every DROP DEFAULT's column) says which case.
        let catalog = &cx.ctx.catalog;
        let consequence = match column.filter(|(t, c)| catalog.column_type(t, c).is_some()) {
            Some((t, c)) if catalog.is_not_null(t, c) => format!(
                "(column {c}, NOT NULL) makes inserts that leave the column out fail with a \
                 not-null violation (23502)"
            ),
            Some((_, c)) => format!(
                "(column {c}, nullable) makes inserts that leave the column out silently store NULL"
            ),
            None => format!(
                "{}makes inserts that leave the column out store NULL (or fail on a NOT NULL column)",
                column.map(|(_, c)| format!("(column {c}) ")).unwrap_or_default()
            ),
        };
        out.push(
            Finding::new(
                Rule::BanDropDefault,
                f,
                format!("DROP DEFAULT on {what} {consequence}"),
                "Deploy code that always sets the column first, then drop the default in a later release"
                    .to_string(),
            )
            .at(a.span.clone())
            .lock(Some(a.lock)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropDefault;

    #[test]
    fn fires_on_tables_and_domains() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN a DROP DEFAULT").len(), 1);
        assert_eq!(run(R, "ALTER DOMAIN d DROP DEFAULT").len(), 1);
        assert!(run(R, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0").is_empty());
    }

    #[test]
    fn the_live_catalog_names_the_case() {
        let sql = "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT";
        let key = || ("orders".to_string(), "status".to_string());
        let mut c = ctx();
        c.catalog.column_types.insert(key(), "text".into());
        let nullable = run_with(R, sql, &c);
        assert_eq!(nullable.len(), 1);
        assert!(nullable[0].message.contains("(column status, nullable)"), "{}", nullable[0].message);
        assert!(nullable[0].message.contains("silently store NULL"), "{}", nullable[0].message);
        c.catalog.not_null_columns.insert(key());
        let not_null = run_with(R, sql, &c);
        assert!(not_null[0].message.contains("(column status, NOT NULL)"), "{}", not_null[0].message);
        assert!(not_null[0].message.contains("23502"), "{}", not_null[0].message);
        // Without the catalog (check without a database) both cases are named.
        let unknown = run(R, sql);
        assert!(unknown[0].message.contains("(or fail on a NOT NULL column)"), "{}", unknown[0].message);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
