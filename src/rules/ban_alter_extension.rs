//! ban-alter-extension: ALTER EXTENSION UPDATE / DROP member changes functions clients call.
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
    if f.kind != StatementKind::AlterObject {
        return;
    }
    let what = format!(
        "{} {}",
        f.object.unwrap_or(ObjectType::Other).label(),
        f.targets.first().map(ToString::to_string).unwrap_or_default()
    );
    for (o, span) in &f.options {
        if f.object == Some(ObjectType::Extension) && matches!(o, ObjectOption::ExtensionUpdate | ObjectOption::ExtensionDrop) {
            out.push(
                Finding::new(Rule::BanAlterExtension, f, format!("ALTER EXTENSION on {} can change functions running code calls", what.trim()), "Upgrade extensions in a tested maintenance step".to_string())
                    .at(span.clone()),
            );
        }
    }
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
