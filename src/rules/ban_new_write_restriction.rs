//! ban-new-write-restriction: a new constraint, SET NOT NULL or unique index can reject writes running code makes.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags, on existing relations: `ADD CONSTRAINT` of any kind (even NOT VALID: new writes are checked at once), `SET NOT NULL`, `ALTER DOMAIN ... ADD CONSTRAINT / SET NOT NULL`, and `CREATE UNIQUE INDEX`.

## Why is this bad
Writes that running code makes today (NULLs, duplicates, values outside the new CHECK) start failing the moment the restriction commits.

## Example
```sql
ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total > 0) NOT VALID;
```

## Use instead
Deploy code that never writes violating rows first, then add the restriction.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let pick = |f: &StatementFacts, a: &ActionFacts| match a.kind {
        ActionKind::AddConstraint(_) if f.kind != StatementKind::AlterType => Some("ADD CONSTRAINT"),
        ActionKind::SetNotNull => Some("SET NOT NULL"),
        _ => None,
    };
    flag_sub_commands(f, cx, out, Rule::BanNewWriteRestriction, pick, "can reject writes running code makes today", "Deploy code that never writes violating rows first");
    let domain_constraint = f.kind == StatementKind::AlterDomain && f.flags.add_constraint;
    let unique_index = f.kind == StatementKind::CreateIndex
        && f.flags.unique
        && f.table.as_ref().is_some_and(|t| !cx.state.is_new(t));
    if domain_constraint || unique_index {
        out.push(Finding::new(
            Rule::BanNewWriteRestriction,
            f,
            format!("{} can reject writes running code makes today", if unique_index { "CREATE UNIQUE INDEX" } else { "ALTER DOMAIN ... ADD CONSTRAINT" }),
            "Deploy code that never writes violating rows first.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanNewWriteRestriction;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID").len(), 1, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID");
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN a SET NOT NULL").len(), 1, "ALTER TABLE t ALTER COLUMN a SET NOT NULL");
        assert_eq!(run(R, "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)").len(), 1, "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)");
        assert_eq!(run(R, "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0)").len(), 1, "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0)");
        assert!(run(R, "CREATE INDEX i ON t (a)").is_empty());
        assert!(run(R, "CREATE TABLE t (a int); CREATE UNIQUE INDEX i ON t (a);").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
