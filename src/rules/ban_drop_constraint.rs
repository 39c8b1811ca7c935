//! ban-drop-constraint: DROP CONSTRAINT / NOT ENFORCED removes a guarantee running code relies on.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... DROP CONSTRAINT`, `ALTER CONSTRAINT ... NOT ENFORCED` and `ALTER DOMAIN ... DROP CONSTRAINT` on existing objects.

## Why is this bad
Code (and other migrations, reports, replicas' consumers) assumes the guarantee: uniqueness, a valid reference, a CHECK. Once it is gone bad rows can arrive and stay.

## Example
```sql
ALTER TABLE orders DROP CONSTRAINT orders_customer_fk;
```

## Use instead
Drop a constraint only after the code that relies on it is gone; to change one, add the new constraint (NOT VALID, then VALIDATE) before dropping the old.

## Differences from squawk
Unlike squawk, dropping a `CHECK (col IS NOT NULL)` added earlier in the same file (the last step of the SET NOT NULL recipe, the column is NOT NULL by then) is not flagged.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    // The recipe's CHECK (col IS NOT NULL), made redundant by SET NOT NULL, loses nothing.
    let recipe = |name: &Option<String>| {
        cx.state
            .not_null_checks
            .iter()
            .any(|(t, n, _)| Some(n) == name.as_ref() && f.table.as_ref().is_some_and(|x| x.same_as(t)))
    };
    let pick = |f: &StatementFacts, a: &ActionFacts| match a.kind {
        ActionKind::DropConstraint if !recipe(&a.constraint_name) => Some("DROP CONSTRAINT"),
        ActionKind::AlterConstraint if f.kind == StatementKind::AlterTable && not_enforced(cx, a) => {
            Some("ALTER CONSTRAINT ... NOT ENFORCED")
        }
        _ => None,
    };
    flag_sub_commands(
        f,
        cx,
        out,
        Rule::BanDropConstraint,
        pick,
        "removes a guarantee that running code may rely on",
        "Add the replacement constraint first (NOT VALID, then VALIDATE), then drop the old one",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropConstraint;

    #[test]
    fn fires_on_drops_and_not_enforced() {
        assert_eq!(run(R, "ALTER TABLE t DROP CONSTRAINT c").len(), 1);
        assert_eq!(run(R, "ALTER DOMAIN d DROP CONSTRAINT c").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ALTER CONSTRAINT c NOT ENFORCED").len(), 1);
        assert!(run(R, "ALTER TABLE t ALTER CONSTRAINT c DEFERRABLE").is_empty());
        assert!(run(R, "CREATE TABLE t (a int CONSTRAINT c CHECK (a > 0)); ALTER TABLE t DROP CONSTRAINT c;").is_empty());
    }

    #[test]
    fn the_set_not_null_recipe_check_is_exempt() {
        let sql = "ALTER TABLE orders ADD CONSTRAINT nn CHECK (status IS NOT NULL) NOT VALID;\n\
                   ALTER TABLE orders VALIDATE CONSTRAINT nn;\n\
                   ALTER TABLE orders ALTER COLUMN status SET NOT NULL;\n\
                   ALTER TABLE orders DROP CONSTRAINT nn;";
        assert!(run(R, sql).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
