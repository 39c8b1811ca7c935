//! require-enum-value-ordering: ADD VALUE without BEFORE/AFTER appends the label at the end of the sort order.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TYPE ... ADD VALUE` without `BEFORE` or `AFTER`.

## Why is this bad
Enum labels sort in declaration order: a label appended at the end changes `ORDER BY` and range comparisons (`status < 'shipped'`) for every query that relies on the order, often not where the author meant it to go.

## Example
```sql
ALTER TYPE order_status ADD VALUE 'refunded';
```

## Use instead
Say where the label goes: `ALTER TYPE order_status ADD VALUE 'refunded' AFTER 'paid';`

## Differences from squawk
No rewrite: only the author knows which label the new one belongs next to.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::AlterType || !f.flags.add_value || f.flags.value_positioned {
        return;
    }
    let label = f.enum_value.as_deref().unwrap_or_default();
    let ty = f.targets.first().map(ToString::to_string).unwrap_or_default();
    out.push(Finding::new(
        Rule::RequireEnumValueOrdering,
        f,
        format!("ADD VALUE '{label}' to {ty} without BEFORE or AFTER puts it last in the sort order"),
        format!("Add BEFORE '<label>' or AFTER '<label>' to place '{label}' where it belongs in the order."),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireEnumValueOrdering;

    #[test]
    fn fires_without_position() {
        assert_eq!(run(R, "ALTER TYPE mood ADD VALUE 'meh'").len(), 1);
        assert_eq!(run(R, "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh'").len(), 1);
        assert!(run(R, "ALTER TYPE mood ADD VALUE 'meh' BEFORE 'sad'").is_empty());
        assert!(run(R, "ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok'").is_empty());
        assert!(run(R, "ALTER TYPE mood RENAME VALUE 'meh' TO 'fine'").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
