//! The relations the server created for this session, by oid: what "new table" means in the
//! proxy (issue 9 class 1, issue 11 deliver 1).
//!
//! A `CREATE TABLE` pgwarden forwards is a *candidate*: the lookup before it said where it
//! creates (`current_schema()` or the schema named) and what already had that qualified name.
//! At the next lookup the qualified name is resolved again; a relation is confirmed as created
//! by this session only if the name now resolves to a relation that is not the one it resolved
//! to before (`CREATE TABLE IF NOT EXISTS big` on an existing `big` confirms nothing). From then
//! on the oid is what counts, whatever the table is called (CKAN renames just-created tables)
//! and across commits (Alembic runs a whole upgrade in one session; warehouse commits mid-run
//! for CONCURRENTLY). A ROLLBACK, ROLLBACK TO SAVEPOINT or DROP needs no bookkeeping: the oid
//! of a relation that no longer exists is never resolved again (oids are not reused until the
//! 32-bit counter wraps). Once committed, a session-created table stays new only while it is
//! below the large-table thresholds: by then others may use it.
use crate::sql::facts::ObjectName;

use super::lookup::{RelName, RelationFacts, TargetFacts};

/// A CREATE TABLE forwarded, waiting for the next lookup to confirm what it created.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    name: ObjectName,
    /// What had that qualified name before the CREATE ran.
    before: Option<u32>,
    /// A transaction ended since the CREATE (it committed, or it is gone).
    committed: bool,
}

/// A relation confirmed as created by this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Created {
    oid: u32,
    committed: bool,
}

/// Bound on the oids remembered per session: a migration creates a few hundred tables at most;
/// past the bound the oldest are forgotten (they then count as ordinary tables: fail closed).
const MAX_CREATED: usize = 10_000;

/// One session's created relations.
#[derive(Debug, Default)]
pub struct SessionRelations {
    created: Vec<Created>,
    candidates: Vec<Candidate>,
}

impl SessionRelations {
    /// Qualified names the next lookup must resolve to confirm the candidates, in order.
    pub fn pending(&self) -> Vec<RelName> {
        self.candidates
            .iter()
            .map(|c| RelName {
                schema: c.name.schema.clone(),
                name: c.name.name.clone(),
            })
            .collect()
    }

    /// A transaction ended: what it created is committed (or rolled back, and then never
    /// resolved again).
    pub fn transaction_ended(&mut self) {
        for c in &mut self.created {
            c.committed = true;
        }
        for c in &mut self.candidates {
            c.committed = true;
        }
    }

    /// The lookup's answers for [`pending`](Self::pending), in order. `idle`: the session is
    /// outside a transaction block now (the CREATEs committed).
    pub fn confirm(&mut self, answers: &[Option<RelationFacts>], idle: bool) {
        for (c, answer) in std::mem::take(&mut self.candidates).iter().zip(answers) {
            let Some(oid) = answer.as_ref().and_then(|f| f.table_oid) else {
                continue;
            };
            if c.before == Some(oid) || self.created.iter().any(|k| k.oid == oid) {
                continue;
            }
            if self.created.len() >= MAX_CREATED {
                self.created.remove(0);
            }
            self.created.push(Created {
                oid,
                committed: c.committed || idle,
            });
        }
    }

    /// Decided without the server's answer, or refused: nothing is confirmed.
    pub fn discard_pending(&mut self) {
        self.candidates.clear();
    }

    /// A text was forwarded: its CREATE TABLEs (`targets`, with the lookup's `facts` for each)
    /// become candidates.
    pub fn expect_created(&mut self, targets: &[ObjectName], facts: &[TargetFacts]) {
        for (t, f) in targets.iter().zip(facts) {
            // No schema to create in: the CREATE fails.
            let Some(schema) = &f.schema else { continue };
            let name = ObjectName::new(Some(schema), &t.name);
            if self.candidates.iter().any(|c| c.name == name) {
                continue;
            }
            self.candidates.push(Candidate {
                name,
                before: f.existing_oid,
                committed: false,
            });
        }
    }

    /// The oids created in the transaction still open (a lock on them blocks no one).
    pub fn in_transaction(&self) -> Vec<u32> {
        self.created
            .iter()
            .filter(|c| !c.committed)
            .map(|c| c.oid)
            .collect()
    }

    /// The last `n` of [`in_transaction`](Self::in_transaction), oldest first.
    pub fn in_transaction_recent(&self, n: usize) -> Vec<u32> {
        let mut recent: Vec<u32> = self
            .created
            .iter()
            .rev()
            .filter(|c| !c.committed)
            .take(n)
            .map(|c| c.oid)
            .collect();
        recent.reverse();
        recent
    }

    /// Was the relation with this oid created by this session? `small`: it is below the
    /// large-table thresholds now (a committed table must be, to count as new).
    pub fn is_new(&self, oid: u32, small: bool) -> bool {
        self.created
            .iter()
            .any(|c| c.oid == oid && (!c.committed || small))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(oid: u32) -> Option<RelationFacts> {
        Some(RelationFacts::empty_table(oid))
    }

    fn target(existing: Option<u32>) -> TargetFacts {
        TargetFacts {
            schema: Some("public".into()),
            existing_oid: existing,
        }
    }

    #[test]
    fn create_if_not_exists_of_an_existing_table_confirms_nothing() {
        let mut s = SessionRelations::default();
        s.expect_created(&[ObjectName::new(None, "big")], &[target(Some(42))]);
        assert_eq!(s.pending()[0].schema.as_deref(), Some("public"));
        s.confirm(&[rel(42)], false);
        assert!(!s.is_new(42, true));
    }

    #[test]
    fn a_new_oid_is_confirmed_and_survives_commit_while_small() {
        let mut s = SessionRelations::default();
        s.expect_created(&[ObjectName::new(None, "t")], &[target(None)]);
        s.confirm(&[rel(7)], false);
        assert!(s.is_new(7, false), "uncommitted: new whatever its size");
        s.transaction_ended();
        assert!(s.is_new(7, true));
        assert!(
            !s.is_new(7, false),
            "committed and large: an ordinary table"
        );
        assert!(s.pending().is_empty());
    }

    #[test]
    fn the_recent_uncommitted_relations_are_the_last_created() {
        let mut s = SessionRelations::default();
        for oid in 1..=5 {
            s.expect_created(
                &[ObjectName::new(None, &format!("t{oid}"))],
                &[target(None)],
            );
            s.confirm(&[rel(oid)], false);
            if oid == 2 {
                s.transaction_ended();
            }
        }
        assert_eq!(s.in_transaction(), vec![3, 4, 5]);
        assert_eq!(s.in_transaction_recent(2), vec![4, 5]);
        assert_eq!(s.in_transaction_recent(10), vec![3, 4, 5]);
    }

    #[test]
    fn nothing_resolved_or_discarded_confirms_nothing() {
        let mut s = SessionRelations::default();
        s.expect_created(&[ObjectName::new(None, "t")], &[target(None)]);
        s.confirm(&[None], false);
        assert!(s.created.is_empty());
        s.expect_created(&[ObjectName::new(None, "t")], &[target(None)]);
        s.discard_pending();
        s.confirm(&[rel(9)], false);
        assert!(!s.is_new(9, true));
        // No schema to create in.
        s.expect_created(
            &[ObjectName::new(None, "t")],
            &[TargetFacts {
                schema: None,
                existing_oid: None,
            }],
        );
        assert!(s.pending().is_empty());
    }
}
