//! require-index-on-foreign-key: a foreign key without an index on its columns.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags a foreign key (table constraint, inline REFERENCES, or ADD CONSTRAINT) whose columns are not the leading columns of an index created in the same file or of the table primary key / unique constraint.

## Why is this bad
Every DELETE or key UPDATE on the referenced table must find the referencing rows: without an index that is a full scan of the referencing table per row, under lock.

## Example
```sql
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
```

## Use instead
```sql
CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);
```

## Rewrite safety
No rewrite. pgwarden sees indexes created in the same file and, in the proxy, existing ones from the live catalog.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(table) = f.table.as_ref().or_else(|| f.targets.first()) else {
        return;
    };
    let mut fks: Vec<&ConstraintFacts> = Vec::new();
    let mut keys: Vec<&[String]> = Vec::new();
    if f.kind == StatementKind::CreateTable {
        for c in f.constraints.iter().chain(f.columns.iter().flat_map(|c| c.constraints.iter())) {
            match c.kind {
                ConstraintKind::ForeignKey => fks.push(c),
                ConstraintKind::PrimaryKey | ConstraintKind::Unique => keys.push(&c.columns),
                _ => {}
            }
        }
    } else if f.kind == StatementKind::AlterTable {
        for a in &f.actions {
            fks.extend(a.constraint.iter().filter(|c| c.kind == ConstraintKind::ForeignKey));
            if let Some(col) = &a.column_def {
                fks.extend(col.constraints.iter().filter(|c| c.kind == ConstraintKind::ForeignKey));
            }
        }
    }
    // Most statements declare no foreign key: return before looking at every other statement
    // of the text, which made `pgwarden check` quadratic in the file's statement count.
    fks.retain(|fk| !fk.columns.is_empty());
    if fks.is_empty() {
        return;
    }
    let mut indexes: Vec<&[String]> = cx.ctx.catalog.indexes(table).iter().map(|c| c.as_slice()).collect();
    // The statement itself is never a CREATE INDEX here, so "every CREATE INDEX of the text"
    // is the same set as "every other statement that is a CREATE INDEX".
    indexes.extend(
        cx.text_indexes
            .iter()
            .filter(|(t, _)| t.same_as(table))
            .map(|(_, cols)| *cols),
    );
    for fk in fks {
        if fk.columns.is_empty() {
            continue;
        }
        let covered = keys.iter().chain(indexes.iter()).any(|cols| cols.starts_with(&fk.columns));
        if covered {
            continue;
        }
        out.push(
            Finding::new(
                Rule::RequireIndexOnForeignKey,
                f,
                format!(
                    "foreign key on {table} ({}) has no index: deletes and key updates on the \
                     referenced table scan {table} for every row",
                    fk.columns.join(", ")
                ),
                format!(
                    "CREATE INDEX CONCURRENTLY ON {table} ({}) in a separate statement.",
                    fk.columns.join(", ")
                ),
            )
            .at(fk.span.clone()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireIndexOnForeignKey;

    #[test]
    fn fires_without_index_in_file() {
        assert_eq!(
            run(R, "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id) NOT VALID").len(),
            1
        );
        let sql = "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id) NOT VALID;\n\
                   CREATE INDEX CONCURRENTLY o_c ON o (c, d);";
        assert!(run(R, sql).is_empty());
    }

    #[test]
    fn existing_index_from_the_catalog_covers() {
        let mut c = ctx();
        c.catalog
            .index_columns
            .insert("o".into(), vec![vec!["c".into(), "d".into()]]);
        let sql = "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id) NOT VALID";
        assert!(run_with(R, sql, &c).is_empty());
    }

    #[test]
    fn primary_key_covers_in_create_table() {
        assert!(run(R, "CREATE TABLE l (a int REFERENCES x (id), b int, PRIMARY KEY (a, b))").is_empty());
        assert_eq!(run(R, "CREATE TABLE l (a int REFERENCES x (id), b int, PRIMARY KEY (b, a))").len(), 1);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
