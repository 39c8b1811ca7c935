//! ban-create-policy: CREATE POLICY changes which rows clients see on a table with row level security.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `CREATE POLICY`.

## Why is this bad
On a table with row level security enabled a new permissive policy shows more rows and a restrictive one hides rows, from the next query of every client it applies to.

## Example
```sql
CREATE POLICY managers_see_all ON documents FOR SELECT TO managers USING (true);
```

## Use instead
Review the policy against every role that queries the table, and ship it with the code that expects it.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind == StatementKind::CreatePolicy {
        out.push(Finding::new(
            Rule::BanCreatePolicy,
            f,
            "CREATE POLICY changes which rows its roles see or may write on a table with row level security".to_string(),
            "Review it against every role that queries the table; ship it with the code that expects it.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanCreatePolicy;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "CREATE POLICY p ON t USING (true)").len(), 1, "CREATE POLICY p ON t USING (true)");
        assert!(run(R, "DROP POLICY p ON t").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
