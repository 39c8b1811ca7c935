//! ban-revoke: REVOKE / OWNER TO / DROP OWNED / REASSIGN OWNED take access away from clients.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `REVOKE`, `DROP OWNED`, `REASSIGN OWNED` and `OWNER TO` on any object.

## Why is this bad
Clients that relied on the privilege (or on owning the object) get permission errors from their next statement.

## Example
```sql
REVOKE INSERT ON orders FROM app;
```

## Use instead
Check which roles the running code uses first; grant the replacement access before revoking.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind == StatementKind::Revoke {
        out.push(Finding::new(
            Rule::BanRevoke,
            f,
            "taking privileges or ownership away breaks clients that rely on them".to_string(),
            "Grant the replacement access first; check which roles the running code uses.".to_string(),
        ));
    }
    flag_sub_commands(f, cx, out, Rule::BanRevoke, only(ActionKind::OwnerTo, "OWNER TO"), "can take access away from clients that relied on owning it", "Check which roles the running code uses first");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanRevoke;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "REVOKE SELECT ON t FROM r").len(), 1, "REVOKE SELECT ON t FROM r");
        assert_eq!(run(R, "ALTER TABLE t OWNER TO x").len(), 1, "ALTER TABLE t OWNER TO x");
        assert_eq!(run(R, "DROP OWNED BY r").len(), 1, "DROP OWNED BY r");
        assert!(run(R, "GRANT SELECT ON t TO r").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
