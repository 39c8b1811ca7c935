//! ban-exclusion-constraint: ADD CONSTRAINT ... EXCLUDE.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ADD CONSTRAINT ... EXCLUDE` on an existing table.

## Why is this bad
Postgres builds the exclusion index and checks every pair of conflicting rows while holding ACCESS EXCLUSIVE. There is no concurrent or NOT VALID form.

## Example
```sql
ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);
```

## Use instead
Declare exclusion constraints when the table is created, or enforce the rule in a trigger / application code with a concurrently built supporting index.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        if a.kind == ActionKind::AddConstraint(ConstraintKind::Exclude) {
            out.push(
                Finding::new(
                    Rule::BanExclusionConstraint,
                    f,
                    format!(
                        "ADD EXCLUDE builds and checks an index on {} under an ACCESS EXCLUSIVE \
                         lock: no reads or writes until it finishes",
                        cx.describe(table)
                    ),
                    "Declare exclusion constraints at CREATE TABLE time; there is no online way \
                     to add one."
                        .to_string(),
                )
                .at(a.span.clone())
                .lock(Some(a.lock))
                .sized(size, cx),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanExclusionConstraint;

    #[test]
    fn fires() {
        assert_eq!(
            run(R, "ALTER TABLE b ADD CONSTRAINT x EXCLUDE USING gist (room WITH =, during WITH &&)").len(),
            1
        );
        assert!(run(R, "CREATE TABLE b (r int, EXCLUDE USING gist (r WITH =))").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
