//! Statements that lock only relations the open transaction created itself run without the
//! executor.
//!
//! Why that is safe: the catalog rows of a relation created by a transaction that has not
//! committed are visible to no other session, so no other session can hold, or queue for, a
//! lock on that relation. A statement whose every lock is on such relations can neither wait
//! for a lock nor make anyone wait, and the executor's lock_timeout, savepoint, release and
//! restore (five round trips around a statement that needs one, BENCHMARKS.md "DDL on real
//! histories") protect nothing there. Alembic on a new database sends almost only such
//! statements: a revision's CREATE TABLE, then its indexes, columns and constraints, in the
//! same transaction.
//!
//! "Created by this transaction" is the server's word, by oid (`enforce::identity`), never a
//! name: a table dropped and created again under the same name elsewhere does not count.
use crate::enforce::lookup::{LiveFacts, RelName};
use crate::execute::Plan;

/// True when every relation `plan` would lock resolved, in this decision's lookup, to a
/// relation in `plan.created_oids` (created by the open transaction). `asked`: the relations
/// of the lookup request, in the order of `live.relations`.
pub(super) fn only_fresh_targets(plan: &Plan, asked: &[RelName], live: &LiveFacts) -> bool {
    !plan.targets.is_empty()
        && plan.targets.iter().all(|(target, _)| {
            asked
                .iter()
                .position(|r| r == target)
                .and_then(|i| live.relations.get(i))
                .and_then(Option::as_ref)
                .and_then(|f| f.table_oid)
                .is_some_and(|oid| plan.created_oids.contains(&oid))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::lookup::RelationFacts;
    use crate::sql::facts::LockMode;

    fn rel(name: &str) -> RelName {
        RelName {
            schema: None,
            name: name.into(),
        }
    }

    fn facts(oid: u32) -> Option<RelationFacts> {
        Some(RelationFacts::empty_table(oid))
    }

    fn plan(targets: &[&str], created: &[u32]) -> Plan {
        let cfg = crate::config::ExecuteConfig::default();
        let f = crate::sql::reparse("ALTER TABLE a ADD COLUMN x int").expect("parses");
        let mut p = crate::execute::plan(
            &f,
            &cfg,
            crate::execute::Situation {
                in_transaction: true,
                lock_timeout_ms: Some(0),
                statement_timeout_ms: Some(0),
                created_in_transaction: &[],
                ascii_only: false,
                seed: 1,
            },
        )
        .expect("an ALTER TABLE is planned");
        p.targets = targets
            .iter()
            .map(|t| (rel(t), LockMode::AccessExclusive))
            .collect();
        p.created_oids = created.to_vec();
        p
    }

    #[test]
    fn every_target_must_be_created_by_the_open_transaction() {
        let asked = [rel("a"), rel("b")];
        let live = LiveFacts {
            relations: vec![facts(10), facts(20)],
            ..LiveFacts::default()
        };
        assert!(only_fresh_targets(&plan(&["a"], &[10]), &asked, &live));
        assert!(only_fresh_targets(
            &plan(&["a", "b"], &[10, 20]),
            &asked,
            &live
        ));
        // One relation that existed before the transaction: the executor runs.
        assert!(!only_fresh_targets(
            &plan(&["a", "b"], &[10]),
            &asked,
            &live
        ));
        // Same name, other oid (dropped and created again elsewhere): not fresh.
        assert!(!only_fresh_targets(&plan(&["b"], &[10]), &asked, &live));
        // Not asked about, or not found: not fresh.
        assert!(!only_fresh_targets(&plan(&["c"], &[10, 20]), &asked, &live));
        let missing = LiveFacts {
            relations: vec![None, facts(20)],
            ..LiveFacts::default()
        };
        assert!(!only_fresh_targets(&plan(&["a"], &[10]), &asked, &missing));
        // Nothing to lock is not "only fresh relations".
        assert!(!only_fresh_targets(&plan(&[], &[10]), &asked, &live));
    }
}
