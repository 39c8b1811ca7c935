//! changing-column-type: ALTER COLUMN TYPE that is not binary-coercible.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... TYPE` on an existing table unless the live catalog shows the change is binary-coercible (no rewrite): `varchar(n)` → `varchar(m ≥ n)`, `varchar` → `text`, `numeric(p,s)` → `numeric(q ≥ p,s)`, to an unconstrained `varchar`/`numeric`, or no change at all.

## Why is this bad
Any other type change rewrites the table and rebuilds every index on it under ACCESS EXCLUSIVE: no reads, no writes for the whole rewrite. A `USING` clause always rewrites.

## Example
```sql
ALTER TABLE orders ALTER COLUMN amount TYPE bigint;
```

## Use instead
Expand and contract: add a new column of the new type, write both from the application, backfill in batches, switch reads, then drop the old column.

## Rewrite safety
No rewrite. In file mode pgwarden cannot see the current type: it flags every change and says why.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        if a.kind != ActionKind::AlterColumnType {
            continue;
        }
        let Some(col) = &a.column else { continue };
        let current = cx.ctx.catalog.column_type(table, col);
        if let (Some(cur), Some(new), false) = (current, &a.new_type, a.using_expr) {
            if binary_coercible(cur, new) {
                continue;
            }
        }
        let new_name = a
            .new_type
            .as_ref()
            .and_then(|t| cx.text.get(t.span.clone()))
            .unwrap_or("the new type");
        let from = current.map(|c| format!(" from {c}")).unwrap_or_default();
        out.push(
            Finding::new(
                Rule::ChangingColumnType,
                f,
                format!(
                    "changing {table}.{col}{from} to {new_name} rewrites {} and rebuilds its \
                     indexes under an ACCESS EXCLUSIVE lock: no reads or writes until it finishes",
                    cx.describe(table)
                ),
                "Expand/contract: add a new column, dual-write, backfill in batches, switch \
                 reads, drop the old column. (Widening varchar(n) or varchar→text is safe.)"
                    .to_string(),
            )
            .at(a.span.clone())
            .lock(Some(a.lock))
            .sized(size, cx),
        );
    }
}

/// Splits Postgres' `format_type` spelling (`character varying(50)`, `numeric(10,2)`) into a
/// canonical name and its modifiers.
fn split_current(cur: &str) -> (String, Option<String>) {
    let cur = cur.trim().to_lowercase();
    let (name, mods) = match cur.find('(') {
        Some(i) => (
            cur[..i].trim().to_string(),
            Some(cur[i + 1..].trim_end_matches(')').replace(' ', "")),
        ),
        None => (cur.clone(), None),
    };
    let name = match name.as_str() {
        "character varying" => "varchar",
        "character" => "bpchar",
        "integer" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "decimal" => "numeric",
        other => other,
    }
    .to_string();
    (name, mods)
}

fn binary_coercible(current: &str, new: &TypeFacts) -> bool {
    if new.is_array {
        return false;
    }
    let (cur, cur_mods) = split_current(current);
    let new_mods = new.modifiers.as_ref().map(|m| m.replace(' ', ""));
    if cur == new.name && cur_mods == new_mods {
        return true;
    }
    match (cur.as_str(), new.name.as_str()) {
        ("varchar" | "text", "text") => true,
        ("varchar" | "text", "varchar") => match (&cur_mods, &new_mods) {
            (_, None) => true,
            (Some(a), Some(b)) if cur == "varchar" => {
                matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if b >= a)
            }
            _ => false,
        },
        ("numeric", "numeric") => match (&cur_mods, &new_mods) {
            (_, None) => true,
            (Some(a), Some(b)) => {
                let pa: Vec<&str> = a.split(',').collect();
                let pb: Vec<&str> = b.split(',').collect();
                let scale = |p: &Vec<&str>| p.get(1).copied().unwrap_or("0").to_string();
                let prec = |p: &Vec<&str>| p[0].parse::<u32>().ok();
                scale(&pa) == scale(&pb)
                    && matches!((prec(&pa), prec(&pb)), (Some(x), Some(y)) if y >= x)
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::ChangingColumnType;

    #[test]
    fn fires_without_live_type() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN a TYPE bigint").len(), 1);
    }

    #[test]
    fn binary_coercible_changes_pass_with_live_type() {
        let mut c = ctx();
        c.catalog
            .column_types
            .insert(("t".into(), "a".into()), "character varying(50)".into());
        assert!(run_with(R, "ALTER TABLE t ALTER COLUMN a TYPE varchar(100)", &c).is_empty());
        assert!(run_with(R, "ALTER TABLE t ALTER COLUMN a TYPE text", &c).is_empty());
        assert_eq!(run_with(R, "ALTER TABLE t ALTER COLUMN a TYPE varchar(20)", &c).len(), 1);
        assert_eq!(run_with(R, "ALTER TABLE t ALTER COLUMN a TYPE int USING a::int", &c).len(), 1);
        c.catalog
            .column_types
            .insert(("t".into(), "n".into()), "numeric(10,2)".into());
        assert!(run_with(R, "ALTER TABLE t ALTER COLUMN n TYPE numeric(12, 2)", &c).is_empty());
        assert_eq!(run_with(R, "ALTER TABLE t ALTER COLUMN n TYPE numeric(12, 3)", &c).len(), 1);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
