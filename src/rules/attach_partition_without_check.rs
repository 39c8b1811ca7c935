//! attach-partition-without-check: ATTACH PARTITION without a matching CHECK constraint.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... ATTACH PARTITION` of an existing table.

## Why is this bad
Postgres scans the whole partition under ACCESS EXCLUSIVE (on the partition) to prove every row fits the bounds — unless a validated CHECK constraint already implies them. A DEFAULT partition is scanned too.

## Example
```sql
ALTER TABLE measurements ATTACH PARTITION m_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
```

## Use instead
```sql
ALTER TABLE m_2024 ADD CONSTRAINT m_2024_bounds CHECK (ts >= '2024-01-01' AND ts < '2025-01-01') NOT VALID;
ALTER TABLE m_2024 VALIDATE CONSTRAINT m_2024_bounds;
ALTER TABLE measurements ATTACH PARTITION m_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
ALTER TABLE m_2024 DROP CONSTRAINT m_2024_bounds;
```

## Rewrite safety
No rewrite. pgwarden cannot see existing constraints in file mode, so this rule warns by default.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::AlterTable {
        return;
    }
    for a in &f.actions {
        if a.kind != ActionKind::AttachPartition {
            continue;
        }
        let Some(part) = &a.partition else { continue };
        let size = cx.size(part);
        if size == Size::New {
            continue;
        }
        out.push(
            Finding::new(
                Rule::AttachPartitionWithoutCheck,
                f,
                format!(
                    "ATTACH PARTITION scans {} under an ACCESS EXCLUSIVE lock on it unless a \
                     validated CHECK constraint already matches the partition bounds",
                    cx.describe(part)
                ),
                "Add a CHECK matching the bounds NOT VALID, VALIDATE it, ATTACH, then drop the CHECK."
                    .to_string(),
            )
            .at(a.span.clone())
            .lock(Some(LockMode::AccessExclusive))
            .sized(size, cx),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::AttachPartitionWithoutCheck;

    #[test]
    fn fires_unless_partition_is_new() {
        assert_eq!(run(R, "ALTER TABLE m ATTACH PARTITION p FOR VALUES IN (1)").len(), 1);
        assert!(run(R, "BEGIN; CREATE TABLE p (a int); ALTER TABLE m ATTACH PARTITION p FOR VALUES IN (1); COMMIT;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
