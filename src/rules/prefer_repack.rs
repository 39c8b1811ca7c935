//! prefer-repack: VACUUM FULL and CLUSTER.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `VACUUM FULL` and `CLUSTER`.

## Why is this bad
Both write a new copy of the table and its indexes while holding ACCESS EXCLUSIVE: no reads, no writes for the whole rewrite, and twice the disk space meanwhile.

## Example
```sql
VACUUM FULL orders;
```

## Use instead
`pg_repack` (or `pg_squeeze`), which rebuilds the table online and takes the exclusive lock only briefly at the end. Plain `VACUUM` reclaims space for reuse without a rewrite.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !matches!(f.kind, StatementKind::VacuumFull | StatementKind::Cluster) {
        return;
    }
    let targets: Vec<ObjectName> = if f.targets.is_empty() {
        vec![ObjectName::new(None, "every table")]
    } else {
        f.targets.clone()
    };
    for t in &targets {
        let size = if f.targets.is_empty() { Size::Unknown } else { cx.size(t) };
        if size == Size::New {
            continue;
        }
        out.push(
            Finding::new(
                Rule::PreferRepack,
                f,
                format!(
                    "{} rewrites {} under an ACCESS EXCLUSIVE lock: no reads or writes until it \
                     finishes",
                    f.kind.label(),
                    cx.describe(t)
                ),
                "Use pg_repack (or pg_squeeze) to rebuild online; plain VACUUM needs no \
                 exclusive lock."
                    .to_string(),
            )
            .sized(size, cx),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::PreferRepack;

    #[test]
    fn fires_on_both() {
        assert_eq!(run(R, "VACUUM FULL orders").len(), 1);
        assert_eq!(run(R, "VACUUM (FULL) orders").len(), 1);
        assert_eq!(run(R, "CLUSTER orders USING orders_pkey").len(), 1);
        assert_eq!(run(R, "CLUSTER").len(), 1);
        assert!(run(R, "VACUUM orders").is_empty());
        assert!(run(R, "VACUUM (ANALYZE) orders").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
