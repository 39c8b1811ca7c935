//! ban-drop-function: DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE`.

## Why is this bad
Running application code (and views, functions or defaults that refer to it) still uses the function / procedure / routine / aggregate: they fail from the moment the migration commits, and what was dropped cannot be brought back by a rollback of the application.

## Example
```sql
DROP FUNCTION order_total(bigint);
```

## Use instead
Stop calling the function (in code, triggers, defaults and views) first, then drop it in a later release; to change a signature, create the new function beside the old one.

## Differences from squawk
In the proxy pgwarden asks the live catalog which routine the DROP names, resolved as the server resolves it (schema or search_path, argument types, overloads), and what `pg_depend` records as depending on it: views, column defaults, triggers, check constraints, index expressions, operators, casts and functions with SQL-standard bodies (`RETURN ...` / `BEGIN ATOMIC`). The finding names them:
- dependents and no CASCADE: refused, naming them; the server would refuse the statement anyway (2BP01, "cannot drop function ... because other objects depend on it"), so the user sees the same failure with the list and the recipe. Never relaxed;
- dependents and CASCADE: refused, naming what CASCADE would drop with it (a default or check constraint dropped this way changes what the table accepts). Never relaxed;
- nothing depends on it: the rule's default (refused) with the sharper message, because pg_depend cannot see calls from application code, PL/pgSQL bodies, SQL functions with a string body (`AS $$ ... $$`) or dynamic SQL; the finding lists routines whose body mentions the name. As for every object drop, it is a warning in a database no other session is connected to (see "Empty tables in an unused database");
- no such routine, or (without an argument list) several: the message says what the server will answer (42883 unless IF EXISTS; 42725 not unique).
`pgwarden check` has no database and keeps the message as written.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let before = out.len();
    flag_drops(f, out, Rule::BanDropFunction, &[ObjectType::Function, ObjectType::Procedure, ObjectType::Routine, ObjectType::Aggregate], "Stop calling it first (code, triggers, defaults, views), then drop it in a later release");
    if out.len() == before {
        return;
    }
    let Some(live) = cx.ctx.catalog.dropped_routines.get(&f.span.start) else {
        return;
    };
    let said: Vec<String> = live
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| describe(f, i, r)))
        .collect();
    if let Some(finding) = out.last_mut() {
        if !said.is_empty() {
            finding.message.push_str(": ");
            finding.message.push_str(&said.join("; "));
        }
        if has_dependents(f, cx) {
            finding.help = "Change or drop what depends on it first (views, defaults, triggers, \
                            constraints, indexes, functions), stop calling it in code, then drop \
                            it in a later release"
                .to_string();
        }
    }
}

/// The live catalog records something that depends on a routine this statement drops: never
/// relaxed (`unused::relax`), whatever the database's use.
pub(crate) fn has_dependents(f: &StatementFacts, cx: &Cx<'_>) -> bool {
    cx.ctx
        .catalog
        .dropped_routines
        .get(&f.span.start)
        .is_some_and(|v| v.iter().flatten().any(|r| r.matches == 1 && !r.dependents.is_empty()))
}

/// At most this many names of a list go into a message.
const LISTED: usize = 10;

fn list(items: &[String]) -> String {
    let mut s = items.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > LISTED {
        s.push_str(&format!(" and {} more", items.len() - LISTED));
    }
    s
}

/// What the live catalog says about the `i`-th routine of the statement.
fn describe(f: &StatementFacts, i: usize, r: &crate::sql::context::RoutineLive) -> String {
    let written = f.targets.get(i).map(ToString::to_string).unwrap_or_else(|| "it".into());
    let statement = f.object.map(|o| o.label().to_uppercase()).unwrap_or_default();
    match r.matches {
        0 if f.flags.if_exists => format!("{written} with these argument types does not exist: nothing is dropped"),
        0 => format!("{written} with these argument types does not exist (the server refuses: 42883)"),
        1 => {
            let sig = r.signatures.first().cloned().unwrap_or(written);
            let kind = match r.kind {
                Some('p') => "a procedure",
                Some('a') => "an aggregate",
                _ => "a function",
            };
            let wrong = match (f.object, r.kind) {
                (Some(ObjectType::Function), Some(k)) => k == 'p' || k == 'a',
                (Some(ObjectType::Procedure), Some(k)) => k != 'p',
                (Some(ObjectType::Aggregate), Some(k)) => k != 'a',
                _ => false,
            };
            if wrong {
                return format!("{sig} is {kind}: DROP {statement} refuses it (42809)");
            }
            if !r.dependents.is_empty() {
                let tail = if f.flags.cascade {
                    "; CASCADE drops them with it (a default or check constraint dropped this \
                     way changes what the table accepts)"
                } else {
                    "; without CASCADE the server refuses the drop (2BP01: other objects depend on it)"
                };
                return format!("{sig} is used by {}{tail}", list(&r.dependents));
            }
            let mut s = format!(
                "nothing in the database depends on {sig} (pg_depend records no view, default, \
                 trigger, constraint, index or SQL-standard function body using it)"
            );
            if r.mentions.is_empty() {
                s.push_str(", but calls from application code, PL/pgSQL bodies and dynamic SQL are not recorded there");
            } else {
                s.push_str(&format!(
                    ", but the bodies of {} mention its name, and pg_depend does not record calls \
                     from PL/pgSQL or string-bodied SQL functions (nor from application code)",
                    list(&r.mentions)
                ));
            }
            s
        }
        n => format!(
            "{written} matches {n} routines ({}): without an argument list the server refuses \
             (42725: not unique)",
            list(&r.signatures)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropFunction;

    #[test]
    fn fires_on_every_routine_kind() {
        for sql in ["DROP FUNCTION f(int)", "DROP PROCEDURE p()", "DROP ROUTINE r", "DROP AGGREGATE a(int)"] {
            assert_eq!(run(R, sql).len(), 1, "{sql}");
        }
        assert!(run(R, "DROP TRIGGER t ON x").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
