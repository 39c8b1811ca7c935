//! ban-alter-extension: ALTER EXTENSION UPDATE / DROP member changes functions clients call.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER EXTENSION ... UPDATE` and `ALTER EXTENSION ... DROP <member>`.

## Why is this bad
An update can change or remove the extension's functions and operators under running code; dropping a member detaches an object clients use.

## Example
```sql
ALTER EXTENSION postgis UPDATE;
```

## Use instead
Upgrade extensions in a maintenance step tested against the running application.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_object_options(
        f,
        out,
        Rule::BanAlterExtension,
        |object, o| object == Some(ObjectType::Extension) && matches!(o, ObjectOption::ExtensionUpdate | ObjectOption::ExtensionDrop),
        |what| format!("ALTER EXTENSION on {} can change functions running code calls", what),
        "Upgrade extensions in a tested maintenance step",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterExtension;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER EXTENSION e UPDATE").len(), 1, "ALTER EXTENSION e UPDATE");
        assert_eq!(run(R, "ALTER EXTENSION e DROP FUNCTION f()").len(), 1, "ALTER EXTENSION e DROP FUNCTION f()");
        assert!(run(R, "ALTER EXTENSION e SET SCHEMA s").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
