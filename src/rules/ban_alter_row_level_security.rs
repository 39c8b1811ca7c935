//! ban-alter-row-level-security: ENABLE / DISABLE / FORCE ROW LEVEL SECURITY changes which rows clients see.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... ENABLE / DISABLE / [NO] FORCE ROW LEVEL SECURITY`.

## Why is this bad
Enabling it hides every row no policy grants (queries return nothing); disabling it shows rows the policies hid.

## Example
```sql
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
```

## Use instead
Create and test the policies first, then enable RLS in a deploy that is checked against every client.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanAlterRowLevelSecurity, only(ActionKind::RowLevelSecurity, "ROW LEVEL SECURITY"), "changes which rows every client sees", "Create and test the policies first, then enable it");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterRowLevelSecurity;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE t ENABLE ROW LEVEL SECURITY").len(), 1, "ALTER TABLE t ENABLE ROW LEVEL SECURITY");
        assert_eq!(run(R, "ALTER TABLE t NO FORCE ROW LEVEL SECURITY").len(), 1, "ALTER TABLE t NO FORCE ROW LEVEL SECURITY");
        assert!(run(R, "ALTER TABLE t ENABLE TRIGGER x").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
