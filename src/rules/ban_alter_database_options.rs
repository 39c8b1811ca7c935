//! ban-alter-database-options: ALTER DATABASE options / settings change every session.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER DATABASE ... WITH <options>` and `ALTER DATABASE ... SET / RESET <parameter>`.

## Why is this bad
Every new session of every client of the database gets the new setting (or connection limit, template flag, ...): behaviour changes far beyond the migration.

## Example
```sql
ALTER DATABASE shop SET statement_timeout = '5s';
```

## Use instead
Set it per role or per session where it is needed, after checking every client.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_object_options(
        f,
        out,
        Rule::BanAlterDatabaseOptions,
        |object, o| object == Some(ObjectType::Database) && matches!(o, ObjectOption::Options | ObjectOption::Config),
        |what| format!("changing options on {} changes every new session of every client", what),
        "Set it per role or per session where needed",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterDatabaseOptions;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER DATABASE d SET work_mem = 1").len(), 1, "ALTER DATABASE d SET work_mem = 1");
        assert_eq!(run(R, "ALTER DATABASE d CONNECTION LIMIT 5").len(), 1, "ALTER DATABASE d CONNECTION LIMIT 5");
        assert!(run(R, "ALTER DATABASE d RENAME TO e").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
