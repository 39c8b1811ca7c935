//! require-table-schema: a table named without its schema.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `CREATE TABLE`, `CREATE TABLE AS`, `ALTER TABLE` and `DROP TABLE` whose table name is not schema-qualified (temporary tables excepted).

## Why is this bad
An unqualified name resolves through the session's search_path: the same migration can create or change a table in another schema than intended.

## Example
```sql
CREATE TABLE orders (id bigint);
```

## Use instead
Qualify the name: `CREATE TABLE public.orders (id bigint);`

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let named = match f.kind {
        StatementKind::CreateTable | StatementKind::CreateTableAs if !f.flags.temporary => &f.targets,
        StatementKind::AlterTable | StatementKind::DropTable => &f.targets,
        _ => return,
    };
    for t in named.iter().filter(|t| t.schema.is_none()) {
        out.push(Finding::new(
            Rule::RequireTableSchema,
            f,
            format!("table {t} is not schema-qualified: it resolves through the session's search_path"),
            format!("Qualify it: public.{t} (or the schema it belongs to)."),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireTableSchema;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "CREATE TABLE t (a int)").len(), 1, "CREATE TABLE t (a int)");
        assert_eq!(run(R, "DROP TABLE t").len(), 1, "DROP TABLE t");
        assert!(run(R, "CREATE TABLE public.t (a int)").is_empty());
        assert!(run(R, "CREATE TEMP TABLE t (a int)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
