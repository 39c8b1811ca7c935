//! ban-alter-role-options: ALTER ROLE / USER options or settings change what clients may do.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER ROLE / USER ... <options>` (LOGIN, SUPERUSER, CONNECTION LIMIT, PASSWORD, VALID UNTIL, ...) and `ALTER ROLE ... SET / RESET <parameter>`.

## Why is this bad
Clients logging in as the role lose (or gain) abilities or get different session settings at their next connection.

## Example
```sql
ALTER ROLE app NOLOGIN;
```

## Use instead
Change roles through the access-management process, not schema migrations.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_object_options(
        f,
        out,
        Rule::BanAlterRoleOptions,
        |object, o| object == Some(ObjectType::Role) && matches!(o, ObjectOption::Options | ObjectOption::Config),
        |what| format!("changing options on {} changes what its clients may do", what),
        "Change roles through access management, not migrations",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterRoleOptions;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER ROLE r NOLOGIN").len(), 1, "ALTER ROLE r NOLOGIN");
        assert_eq!(run(R, "ALTER USER u SET work_mem = 1").len(), 1, "ALTER USER u SET work_mem = 1");
        assert!(run(R, "ALTER ROLE r RENAME TO s").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
