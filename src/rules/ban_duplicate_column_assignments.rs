//! ban-duplicate-column-assignments: the same column defined twice in one CREATE TABLE / ALTER TABLE ADD COLUMN.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags a column named twice in one `CREATE TABLE` (or two `ADD COLUMN`s of one name in one `ALTER TABLE`).

## Why is this bad
Postgres refuses the statement (42701 duplicate column): the migration fails at deploy time instead of in review. In a long generated column list the duplicate is easy to miss.

## Example
```sql
CREATE TABLE invoices (id bigint, total numeric, total numeric);
```

## Use instead
Keep one definition of each column.

## Differences from squawk
pgwarden differs from squawk: squawk also checks UPDATE ... SET, INSERT column lists, MERGE and view/SELECT INTO target lists. pgwarden does not parse DML (the prefilter passes it through, DESIGN.md), so those are not covered.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let defined: Vec<(&str, &std::ops::Range<usize>)> = match f.kind {
        StatementKind::CreateTable => f.columns.iter().map(|c| (c.name.as_str(), &c.name_span)).collect(),
        StatementKind::AlterTable => f
            .actions
            .iter()
            .filter_map(|a| a.column_def.as_ref())
            .map(|c| (c.name.as_str(), &c.name_span))
            .collect(),
        _ => return,
    };
    for (i, (name, span)) in defined.iter().enumerate() {
        if defined[..i].iter().any(|(n, _)| n == name) {
            out.push(
                Finding::new(
                    Rule::BanDuplicateColumnAssignments,
                    f,
                    format!("column {name} is defined twice in this statement: Postgres refuses it (42701)"),
                    "Remove the second definition.".to_string(),
                )
                .at((*span).clone()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDuplicateColumnAssignments;

    #[test]
    fn fires_on_the_second_definition() {
        assert_eq!(run(R, "CREATE TABLE t (a int, b int, a text)").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN a int, ADD COLUMN a int").len(), 1);
        assert!(run(R, "CREATE TABLE t (a int, \"A\" int)").is_empty());
        assert!(run(R, "CREATE TABLE t (a int, b int)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
