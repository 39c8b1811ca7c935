//! ban-alter-function-options: ALTER FUNCTION options change how existing callers' calls run.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags option changes of `ALTER FUNCTION / PROCEDURE / ROUTINE` (SECURITY DEFINER, volatility, STRICT, PARALLEL, SET parameter, ...).

## Why is this bad
Callers keep calling the same name, but with other privileges, NULL handling, planning (volatility) or settings: results and permissions change silently.

## Example
```sql
ALTER FUNCTION order_total(bigint) SECURITY DEFINER;
```

## Use instead
Create a new function with the new options, switch callers, then drop the old one.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_object_options(
        f,
        out,
        Rule::BanAlterFunctionOptions,
        |object, o| matches!(object, Some(ObjectType::Function | ObjectType::Procedure | ObjectType::Routine)) && matches!(o, ObjectOption::Options | ObjectOption::Config),
        |what| format!("changing options on {} silently changes how existing calls run", what),
        "Create a new function, switch callers, then drop the old one",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterFunctionOptions;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER FUNCTION f() SECURITY DEFINER").len(), 1, "ALTER FUNCTION f() SECURITY DEFINER");
        assert_eq!(run(R, "ALTER PROCEDURE p() SET search_path = public").len(), 1, "ALTER PROCEDURE p() SET search_path = public");
        assert!(run(R, "ALTER FUNCTION f() RENAME TO g").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
