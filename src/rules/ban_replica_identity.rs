//! ban-replica-identity: REPLICA IDENTITY changes what logical replication sends.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... REPLICA IDENTITY`.

## Why is this bad
Logical replication consumers (CDC pipelines, subscribers) get different old-row data for UPDATE/DELETE, or the table stops accepting them (`NOTHING` on a published table).

## Example
```sql
ALTER TABLE orders REPLICA IDENTITY FULL;
```

## Use instead
Coordinate with every replication consumer first.

## Differences from squawk
Opt-in, as in squawk: squawk also reports DROP / ALTER PUBLICATION under this id; pgwarden does not read publication statements yet.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanReplicaIdentity, only(ActionKind::ReplicaIdentity, "REPLICA IDENTITY"), "changes what logical replication sends to its consumers", "Coordinate with every replication consumer first");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanReplicaIdentity;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE t REPLICA IDENTITY FULL").len(), 1, "ALTER TABLE t REPLICA IDENTITY FULL");
        assert!(run(R, "ALTER TABLE t OWNER TO x").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
