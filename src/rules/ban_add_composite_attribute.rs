//! ban-add-composite-attribute: ALTER TYPE ... ADD ATTRIBUTE changes a composite type's shape.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TYPE ... ADD ATTRIBUTE` on a composite type.

## Why is this bad
Code that builds or reads the composite positionally (row constructors, `(val).*`, client-side type mapping) breaks or misreads values once the type has another attribute.

## Example
```sql
ALTER TYPE address ADD ATTRIBUTE country text;
```

## Use instead
Create a new type beside the old one and migrate the columns and code to it.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanAddCompositeAttribute, |f: &StatementFacts, a: &ActionFacts| (a.kind == ActionKind::AddColumn && f.kind == StatementKind::AlterType).then_some("ADD ATTRIBUTE"), "changes the composite's shape for code that builds or reads it positionally", "Create a new type and migrate to it");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAddCompositeAttribute;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TYPE address ADD ATTRIBUTE country text").len(), 1, "ALTER TYPE address ADD ATTRIBUTE country text");
        assert!(run(R, "ALTER TABLE t ADD COLUMN a int").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
