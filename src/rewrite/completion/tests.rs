//! The completion queue's bookkeeping: savepoints, rollbacks, refusals, the dependency list.
use super::*;
use crate::sql::{analyze, AnalysisContext};

fn queued(sql: &str) -> Queued {
    let a = analyze(sql, &AnalysisContext::default());
    let f = a.statements[0].facts().cloned().expect("facts");
    let shape = crate::rewrite::shape(sql, &f).expect("a safe form");
    let name = shape
        .name
        .clone()
        .unwrap_or_else(|| shape.candidates[0].clone());
    let steps = shape.steps(&name);
    let from = shape.in_place();
    Queued::new(shape, name, steps, from, 7, false)
}

fn names(c: &Completion) -> Vec<&str> {
    c.queued().iter().map(|q| q.name.as_str()).collect()
}

/// Follows one simple Query; `true`: it is refused.
fn follow(c: &mut Completion, sql: &str) -> bool {
    c.follow_query(1, sql.as_bytes(), &AnalysisContext::default().lex)
        .is_some()
}

const FK: &str = "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)";

#[test]
fn savepoints_keep_exactly_the_steps_the_transaction_still_holds() {
    let mut c = Completion::default();
    assert!(
        !follow(&mut c, "SAVEPOINT a"),
        "nothing queued: nothing followed"
    );
    c.push(queued(FK), 3);
    assert_eq!(c.epoch, 3);
    assert!(!follow(&mut c, "SAVEPOINT \"B\""));
    c.push(queued("CREATE INDEX ix_gone ON orders (amount)"), 3);
    assert_eq!(c.deferred.names, ["ix_gone"]);
    // ROLLBACK TO the most recent "B": the index goes, the foreign key stays.
    assert!(!follow(&mut c, "ROLLBACK TO SAVEPOINT \"B\""));
    assert_eq!(names(&c), ["orders_customer_id_fkey"]);
    assert!(c.deferred.is_empty(), "{:?}", c.deferred);
    // "B" stays after ROLLBACK TO; RELEASE folds the steps after it into the level below.
    c.push(queued("CREATE INDEX ix_kept ON orders (amount)"), 3);
    assert!(!follow(&mut c, "RELEASE \"B\""));
    assert!(!follow(&mut c, "savepoint s2; SELECT 1"));
    c.push(queued("CREATE INDEX ix_rolled ON orders (ref)"), 3);
    assert!(!follow(&mut c, "ROLLBACK TO S2"));
    assert_eq!(names(&c), ["orders_customer_id_fkey", "ix_kept"]);
    assert_eq!(c.deferred.names, ["ix_kept"]);
    // A savepoint taken before the first queued step: rolling back to it undoes them all.
    assert!(!follow(&mut c, "ROLLBACK TO a"));
    assert!(c.is_empty());
}

#[test]
fn a_rollback_discards_everything_and_a_commit_takes_it() {
    for rollback in [
        "ROLLBACK",
        "abort work",
        "ROLLBACK AND CHAIN",
        "SELECT 1; ROLLBACK",
    ] {
        let mut c = Completion::default();
        c.push(queued(FK), 1);
        assert!(!follow(&mut c, "SAVEPOINT a"));
        assert!(!follow(&mut c, rollback), "{rollback}");
        assert!(c.is_empty(), "{rollback}");
        assert!(c.deferred.is_empty(), "{rollback}");
    }
    let mut c = Completion::default();
    c.push(queued("ALTER TABLE orders ADD UNIQUE (ref)"), 1);
    assert!(!follow(&mut c, "SAVEPOINT a"));
    assert_eq!(c.deferred.unique.len(), 1);
    // The lone COMMIT is the session's to run the steps after: followed as nothing.
    assert!(!follow(&mut c, "COMMIT;"));
    let taken = c.take_for_commit();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].from, 0);
    assert_eq!(taken[0].seq, 7);
    assert!(c.is_empty() && c.deferred.is_empty());
    // The savepoints went with the transaction: a later queue starts at level 0.
    c.push(queued(FK), 2);
    assert!(!follow(&mut c, "ROLLBACK TO a"));
    assert!(c.is_empty(), "an unknown name is older than the queue");
}

#[test]
fn ends_where_the_steps_cannot_run_are_refused() {
    for sql in [
        "COMMIT AND CHAIN",
        "PREPARE TRANSACTION 'g'",
        "SELECT 1; COMMIT",
        "END; BEGIN",
        "RELEASE",
    ] {
        let mut c = Completion::default();
        c.push(queued(FK), 1);
        let r = c.follow_query(1, sql.as_bytes(), &AnalysisContext::default().lex);
        let text = r.unwrap_or_else(|| panic!("{sql}: not refused"));
        assert!(text.contains("owes completion steps"), "{sql}: {text}");
        assert!(
            text.starts_with("DO "),
            "{sql}: a server-side raise: {text}"
        );
        assert_eq!(names(&c), ["orders_customer_id_fkey"], "{sql}");
    }
    let mut c = Completion::default();
    for sql in ["COMMIT AND CHAIN", "PREPARE TRANSACTION 'g'"] {
        assert!(!follow(&mut c, sql), "nothing owed: {sql}");
    }
}

#[test]
fn discard_forgets_the_savepoints_too() {
    let mut c = Completion::default();
    c.push(queued(FK), 1);
    assert!(!follow(&mut c, "SAVEPOINT a"));
    c.discard(1, "test");
    assert!(c.is_empty());
    c.push(queued("CREATE INDEX ix_one ON orders (amount)"), 2);
    assert!(!follow(&mut c, "SAVEPOINT a"));
    c.push(queued("CREATE INDEX ix_two ON orders (ref)"), 2);
    assert!(!follow(&mut c, "ROLLBACK TO a"));
    assert_eq!(names(&c), ["ix_one"]);
}

#[test]
fn transaction_ends() {
    for c in ["COMMIT", "commit;", "\nEND TRANSACTION ; ", "COMMIT WORK"] {
        assert!(is_commit(c.as_bytes()), "{c}");
    }
    for c in [
        "COMMIT AND CHAIN",
        "COMMIT PREPARED 'x'",
        "ROLLBACK",
        "SELECT 1",
    ] {
        assert!(!is_commit(c.as_bytes()), "{c}");
    }
    assert!(is_rollback(b"ROLLBACK;") && is_rollback(b"abort"));
    assert!(!is_rollback(b"ROLLBACK TO SAVEPOINT a"));
}

#[test]
fn prepared_transaction_control() {
    for sql in ["COMMIT", "SAVEPOINT a", "RELEASE a", "ROLLBACK TO a", "END"] {
        assert!(extended_tx_control(sql.as_bytes()), "{sql}");
    }
    for sql in ["ROLLBACK", "BEGIN", "SELECT 1", "CREATE INDEX i ON t (c)"] {
        assert!(!extended_tx_control(sql.as_bytes()), "{sql}");
    }
    assert!(extended_commit_refusal().contains("prepared statement"));
}
