//! ban-alter-system-options: ALTER SYSTEM changes the whole server.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER SYSTEM SET / RESET`.

## Why is this bad
It rewrites postgresql.auto.conf: after the next reload every database and client of the server is affected, and the change outlives the migration's rollback.

## Example
```sql
ALTER SYSTEM SET work_mem = '64MB';
```

## Use instead
Change server settings through configuration management, not migrations.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_object_options(
        f,
        out,
        Rule::BanAlterSystemOptions,
        |object, o| object == Some(ObjectType::System) && *o == ObjectOption::Config,
        |what| format!("ALTER SYSTEM on {} changes every database and client of the server", what),
        "Change server settings through configuration management",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterSystemOptions;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER SYSTEM SET work_mem = 1").len(), 1, "ALTER SYSTEM SET work_mem = 1");
        assert_eq!(run(R, "ALTER SYSTEM RESET work_mem").len(), 1, "ALTER SYSTEM RESET work_mem");
        assert!(run(R, "SET work_mem = 1").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
