//! identifier-too-long: identifiers over 63 bytes.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags names of new tables, indexes, types, columns and constraints longer than 63 bytes.

## Why is this bad
Postgres silently truncates identifiers to 63 bytes (NAMEDATALEN - 1): two long names can collide, and the name in the database is not the one in the code.

## Example
```sql
CREATE INDEX index_on_a_very_long_table_name_and_an_even_longer_column_name_for_search ON t (a);
```

## Use instead
Shorter names (migration tools generate long index names: pass an explicit `name=`).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    let mut names: Vec<&str> = Vec::new();
    if matches!(
        f.kind,
        StatementKind::CreateTable
            | StatementKind::CreateTableAs
            | StatementKind::CreateIndex
            | StatementKind::CreateType
            | StatementKind::CreateDomain
    ) {
        names.extend(f.targets.iter().map(|t| t.name.as_str()));
    }
    names.extend(f.columns.iter().map(|c| c.name.as_str()));
    names.extend(f.constraints.iter().filter_map(|c| c.name.as_deref()));
    for a in &f.actions {
        names.extend(a.column_def.iter().map(|c| c.name.as_str()));
        names.extend(a.constraint.iter().filter_map(|c| c.name.as_deref()));
        names.extend(a.new_name.as_deref());
    }
    for name in names {
        if name.len() > 63 {
            out.push(Finding::new(
                Rule::IdentifierTooLong,
                f,
                format!(
                    "identifier `{name}` is {} bytes: Postgres silently truncates it to 63",
                    name.len()
                ),
                "Use a name of at most 63 bytes.".to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::IdentifierTooLong;

    #[test]
    fn fires_over_63_bytes() {
        let long = "x".repeat(64);
        assert_eq!(run(R, &format!("CREATE INDEX {long} ON t (a)")).len(), 1);
        assert_eq!(run(R, &format!("ALTER TABLE t ADD COLUMN {long} int")).len(), 1);
        assert!(run(R, &format!("CREATE TABLE {} (a int)", "y".repeat(63))).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
