//! The executor against scripted server replies: no sockets, no clock.
use std::time::Duration;

use super::reply::script::*;
use super::*;
use crate::enforce::lookup::RelName;
use crate::sql::facts::LockMode;

fn plan(in_transaction: bool) -> Plan {
    Plan {
        class: Class::Quick,
        in_transaction,
        lock_timeout_ms: Some(1000),
        statement_timeout_ms: Some(30_000),
        targets: vec![(
            RelName {
                schema: None,
                name: "orders".into(),
            },
            LockMode::AccessExclusive,
        )],
        created_in_transaction: vec![],
        created_oids: vec![],
        retry_budget: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        seed: 7,
        ascii_only: false,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn set_reply(status: u8) -> Reply {
    reply(&[
        row(&[Some("0"), Some("0"), Some("1s"), Some("30s")]),
        complete("SELECT 1"),
        ready(status),
    ])
}

fn ok_reply(tag: &str, status: u8) -> Reply {
    reply(&[complete(tag), ready(status)])
}

fn lock_timeout(status: u8) -> Reply {
    reply(&[
        error("55P03", "canceling statement due to lock timeout"),
        ready(status),
    ])
}

fn blockers_reply(own_locks: &[&[Option<&str>]]) -> Reply {
    let mut frames = vec![
        row(&[
            Some("4711"),
            Some("app"),
            Some("blocker"),
            Some("idle in transaction"),
            Some("42.5"),
            Some("SELECT * FROM orders"),
            Some("AccessShareLock"),
        ]),
        complete("SELECT 1"),
    ];
    for r in own_locks {
        frames.push(row(r));
    }
    frames.push(complete("SELECT"));
    frames.push(ready(b'T'));
    reply(&frames)
}

fn expect_send(a: Action) -> Request {
    match a {
        Action::Send(r) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn extended_sql(r: &Request) -> Vec<&'static str> {
    match r {
        Request::Extended(q) => q.iter().map(|(sql, _)| *sql).collect(),
        other => panic!("expected pgwarden's own queries, got {other:?}"),
    }
}

#[test]
fn outside_a_transaction_sets_runs_restores_and_answers_once() {
    let mut e = Executor::new(plan(false), "ALTER TABLE");
    let set = expect_send(e.start());
    match &set {
        Request::Extended(q) => {
            assert_eq!(q[0].0, wire::SET_SQL);
            assert_eq!(
                q[0].1,
                vec![
                    Some("1000ms".into()),
                    Some("30000ms".into()),
                    Some("false".into())
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        expect_send(e.on_reply(set_reply(b'I'), ms(1))),
        Request::Client
    );
    let restore = expect_send(e.on_reply(ok_reply("ALTER TABLE", b'I'), ms(5)));
    match &restore {
        Request::Extended(q) => {
            assert_eq!(q[0].0, wire::RESTORE_SQL);
            assert_eq!(
                q[0].1,
                vec![Some("0".into()), Some("0".into()), Some("false".into())],
                "the values read before are put back"
            );
        }
        other => panic!("{other:?}"),
    }
    let answer = e.on_reply(ok_reply("SELECT 1", b'I'), ms(6));
    assert_eq!(
        answer,
        Action::Answer(bytes(&[complete("ALTER TABLE"), ready(b'I')]))
    );
    assert_eq!(e.attempts().len(), 1);
    assert_eq!(e.attempts()[0].outcome, "ok");
}

#[test]
fn in_a_transaction_a_lock_timeout_is_rolled_back_to_the_savepoint_and_retried() {
    let mut e = Executor::new(plan(true), "ALTER TABLE");
    let set = expect_send(e.start());
    assert!(matches!(&set, Request::Extended(q) if q[0].1[2].as_deref() == Some("true")));
    assert_eq!(
        expect_send(e.on_reply(set_reply(b'T'), ms(1))),
        Request::Simple(wire::SAVEPOINT)
    );
    assert_eq!(
        expect_send(e.on_reply(ok_reply("SAVEPOINT", b'T'), ms(2))),
        Request::Client
    );
    assert_eq!(
        expect_send(e.on_reply(lock_timeout(b'E'), ms(1002))),
        Request::Simple(wire::ROLLBACK_TO)
    );
    let inspect = expect_send(e.on_reply(ok_reply("ROLLBACK", b'T'), ms(1003)));
    assert_eq!(
        extended_sql(&inspect),
        vec![blockers::BLOCKERS_SQL, blockers::OWN_LOCKS_SQL]
    );
    let wait = match e.on_reply(blockers_reply(&[]), ms(1004)) {
        Action::Sleep(d) => d,
        other => panic!("{other:?}"),
    };
    assert!(wait >= ms(100) && wait <= ms(200), "{wait:?}");
    assert_eq!(e.attempts()[0].outcome, "lock_timeout");
    assert_eq!(e.attempts()[0].blockers[0].pid, 4711);
    assert_eq!(e.attempts()[0].waited_ms, 1000);
    assert_eq!(e.on_woke(ms(1200)), Action::Send(Request::Client));
    assert_eq!(
        expect_send(e.on_reply(ok_reply("ALTER TABLE", b'T'), ms(1210))),
        Request::Simple(wire::RELEASE)
    );
    let restore = expect_send(e.on_reply(ok_reply("RELEASE", b'T'), ms(1211)));
    assert_eq!(extended_sql(&restore), vec![wire::RESTORE_SQL]);
    assert_eq!(
        e.on_reply(ok_reply("SELECT 1", b'T'), ms(1212)),
        Action::Answer(bytes(&[complete("ALTER TABLE"), ready(b'T')]))
    );
    let outcomes: Vec<&str> = e.attempts().iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["lock_timeout", "ok"]);
    assert_eq!(e.attempts()[1].number, 2);
}

/// Drives an executor to its first lock timeout and the blocker query.
fn to_first_inspection(e: &mut Executor) {
    let in_tx = e.plan().in_transaction;
    let status = if in_tx { b'T' } else { b'I' };
    e.start();
    let mut a = e.on_reply(set_reply(status), ms(1));
    if in_tx {
        a = e.on_reply(ok_reply("SAVEPOINT", b'T'), ms(2));
    }
    assert_eq!(a, Action::Send(Request::Client));
    let a = e.on_reply(lock_timeout(if in_tx { b'E' } else { b'I' }), ms(1002));
    if in_tx {
        assert_eq!(a, Action::Send(Request::Simple(wire::ROLLBACK_TO)));
        e.on_reply(ok_reply("ROLLBACK", b'T'), ms(1003));
    }
}

#[test]
fn a_transaction_holding_a_strong_lock_fails_at_once_with_the_reason() {
    let mut e = Executor::new(plan(true), "ALTER TABLE");
    to_first_inspection(&mut e);
    let own = [
        Some("public"),
        Some("customers"),
        Some("AccessExclusiveLock"),
    ];
    let raise = match expect_send(e.on_reply(blockers_reply(&[&own]), ms(1004))) {
        Request::Raise(sql) => sql,
        other => panic!("{other:?}"),
    };
    assert!(raise.contains("ERRCODE = '55P03'"), "{raise}");
    assert!(
        raise.contains("AccessExclusiveLock on public.customers"),
        "{raise}"
    );
    assert!(raise.contains("transaction_per_migration=True"), "{raise}");
    assert!(raise.contains("pid 4711"), "{raise}");
    let answer = reply(&[error("55P03", "pgwarden: ..."), ready(b'E')]);
    assert_eq!(
        e.on_reply(answer.clone(), ms(1005)),
        Action::Answer(answer.into_answer())
    );
    assert_eq!(e.attempts().len(), 1);
}

#[test]
fn a_lock_on_a_table_created_in_the_transaction_does_not_stop_the_retry() {
    let mut p = plan(true);
    p.created_in_transaction = vec![crate::sql::ObjectName::new(None, "fresh")];
    let mut e = Executor::new(p, "ALTER TABLE");
    to_first_inspection(&mut e);
    let own = [Some("public"), Some("fresh"), Some("AccessExclusiveLock")];
    assert!(matches!(
        e.on_reply(blockers_reply(&[&own]), ms(1004)),
        Action::Sleep(_)
    ));
    // The proxy knows new tables by oid (whatever they are called now).
    let mut p = plan(true);
    p.created_oids = vec![16_400];
    let mut e = Executor::new(p, "ALTER TABLE");
    to_first_inspection(&mut e);
    let own = [
        Some("public"),
        Some("alembic_version"),
        Some("AccessExclusiveLock"),
        Some("16400"),
    ];
    assert!(matches!(
        e.on_reply(blockers_reply(&[&own]), ms(1004)),
        Action::Sleep(_)
    ));
}

#[test]
fn the_budget_ends_the_retries_outside_a_transaction_after_the_restore() {
    let mut p = plan(false);
    p.retry_budget = Duration::from_secs(5);
    let mut e = Executor::new(p, "ALTER TABLE");
    to_first_inspection(&mut e);
    let mut now = 1004;
    let mut inspection = reply(&[complete("SELECT 0"), ready(b'I')]);
    loop {
        match e.on_reply(inspection.clone(), ms(now)) {
            Action::Sleep(d) => {
                now += d.as_millis() as u64;
                assert_eq!(e.on_woke(ms(now)), Action::Send(Request::Client));
                now += 1000;
                let a = expect_send(e.on_reply(lock_timeout(b'I'), ms(now)));
                assert_eq!(extended_sql(&a), vec![blockers::BLOCKERS_SQL]);
                now += 1;
                inspection = reply(&[complete("SELECT 0"), ready(b'I')]);
            }
            Action::Send(r) => {
                assert_eq!(extended_sql(&r), vec![wire::RESTORE_SQL]);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(now <= 5000, "gave up within the budget: {now}");
    let tries = e.attempts().len();
    assert!(tries >= 3, "{tries}");
    let raise = match expect_send(e.on_reply(ok_reply("SELECT 1", b'I'), ms(now))) {
        Request::Raise(sql) => sql,
        other => panic!("{other:?}"),
    };
    assert!(raise.contains(&format!("tried {tries} times")), "{raise}");
    assert!(raise.contains("ERRCODE = '55P03'"));
    assert!(
        raise.contains("No session held a conflicting lock"),
        "{raise}"
    );
    let answer = reply(&[error("55P03", "x"), ready(b'I')]);
    assert!(matches!(e.on_reply(answer, ms(now)), Action::Answer(_)));
}

#[test]
fn a_cancel_between_attempts_ends_with_57014() {
    let mut e = Executor::new(plan(true), "ALTER TABLE");
    to_first_inspection(&mut e);
    assert!(matches!(
        e.on_reply(blockers_reply(&[]), ms(1004)),
        Action::Sleep(_)
    ));
    let raise = match e.on_cancel(ms(1050)) {
        Some(Action::Send(Request::Raise(sql))) => sql,
        other => panic!("{other:?}"),
    };
    assert!(raise.contains("ERRCODE = '57014'"), "{raise}");
    assert!(raise.contains("canceling statement due to user request"));
    assert!(raise.contains("after 1 lock timeout."), "{raise}");
    // A cancel while a request is in flight is the server's to answer.
    let mut e = Executor::new(plan(true), "ALTER TABLE");
    e.start();
    assert_eq!(e.on_cancel(ms(0)), None);
}

#[test]
fn the_clients_own_lock_timeout_is_its_answer() {
    let mut p = plan(true);
    p.lock_timeout_ms = None;
    let mut e = Executor::new(p, "ALTER TABLE");
    e.start();
    e.on_reply(set_reply(b'T'), ms(1));
    e.on_reply(ok_reply("SAVEPOINT", b'T'), ms(2));
    let r = lock_timeout(b'E');
    assert_eq!(
        e.on_reply(r.clone(), ms(3)),
        Action::Answer(r.into_answer()),
        "not retried, handed on as the server sent it"
    );
    assert_eq!(e.attempts()[0].outcome, "55P03");
}

#[test]
fn another_error_outside_a_transaction_is_answered_after_the_restore() {
    let mut e = Executor::new(plan(false), "ALTER TABLE");
    e.start();
    e.on_reply(set_reply(b'I'), ms(1));
    let err = reply(&[error("42701", "column exists"), ready(b'I')]);
    let restore = expect_send(e.on_reply(err, ms(2)));
    assert_eq!(extended_sql(&restore), vec![wire::RESTORE_SQL]);
    assert_eq!(
        e.on_reply(ok_reply("SELECT 1", b'I'), ms(3)),
        Action::Answer(bytes(&[error("42701", "column exists"), ready(b'I')]))
    );
}

/// A late second SIGINT of the cancel that ended the statement hits the restore: outside a
/// block the restore is sent again (the session gets its timeouts back), and the client's
/// answer is still the statement's.
#[test]
fn a_stray_cancel_of_the_restore_sends_it_again() {
    let mut e = Executor::new(plan(false), "CREATE INDEX");
    e.start();
    e.on_reply(set_reply(b'I'), ms(1));
    let cancelled = || {
        reply(&[
            error("57014", "canceling statement due to user request"),
            ready(b'I'),
        ])
    };
    let restore = expect_send(e.on_reply(cancelled(), ms(2)));
    assert_eq!(extended_sql(&restore), vec![wire::RESTORE_SQL]);
    let again = expect_send(e.on_reply(cancelled(), ms(3)));
    assert_eq!(extended_sql(&again), vec![wire::RESTORE_SQL]);
    assert_eq!(
        e.on_reply(ok_reply("SELECT 1", b'I'), ms(4)),
        Action::Answer(bytes(&[
            error("57014", "canceling statement due to user request"),
            ready(b'I')
        ]))
    );
    // Not forever: after three, the answer goes to the client as it is.
    let mut e = Executor::new(plan(false), "CREATE INDEX");
    e.start();
    e.on_reply(set_reply(b'I'), ms(1));
    expect_send(e.on_reply(cancelled(), ms(2)));
    for _ in 0..3 {
        expect_send(e.on_reply(cancelled(), ms(3)));
    }
    assert!(matches!(e.on_reply(cancelled(), ms(4)), Action::Answer(_)));
}

#[test]
fn a_failed_blocker_query_is_rolled_back_and_said() {
    let mut e = Executor::new(plan(true), "ALTER TABLE");
    to_first_inspection(&mut e);
    let failed = reply(&[error("42501", "permission denied"), ready(b'E')]);
    assert_eq!(
        e.on_reply(failed, ms(1004)),
        Action::Send(Request::Simple(wire::ROLLBACK_TO))
    );
    assert!(matches!(
        e.on_reply(ok_reply("ROLLBACK", b'T'), ms(1005)),
        Action::Sleep(_)
    ));
    assert!(e.blocker_detail().contains("permission denied"));
}

#[test]
fn a_failing_step_of_pgwardens_is_the_answer() {
    let mut e = Executor::new(plan(true), "ALTER TABLE");
    e.start();
    let failed = reply(&[error("57014", "canceling statement"), ready(b'E')]);
    assert_eq!(
        e.on_reply(failed.clone(), ms(1)),
        Action::Answer(failed.into_answer())
    );
}

#[test]
fn backoff_doubles_with_jitter_up_to_its_cap() {
    let mut e = Executor::new(plan(false), "ALTER TABLE");
    for (i, cap) in [200u64, 400, 800, 1600, 2000, 2000].iter().enumerate() {
        e.attempts.push(Attempt {
            number: i as u32 + 1,
            started_ms: 0,
            waited_ms: 0,
            lock_timeout_ms: None,
            outcome: String::new(),
            blockers: vec![],
            backoff_ms: None,
        });
        let d = e.next_delay().as_millis() as u64;
        assert!(
            d >= cap / 2 && d <= *cap,
            "attempt {}: {d} not in [{}, {cap}]",
            i + 1,
            cap / 2
        );
    }
}

/// An extended-protocol request (Parse/Bind/Describe/Execute/Sync) that pgwarden gives up on:
/// the client gets the acknowledgements the server sent before the lock timeout, then
/// pgwarden's error, as a direct run would have shown them.
#[test]
fn giving_up_on_an_extended_request_keeps_its_acknowledgements() {
    let mut p = plan(true);
    p.retry_budget = ms(1500);
    let mut e = Executor::new(p, "ALTER TABLE");
    e.start();
    e.on_reply(set_reply(b'T'), ms(1));
    assert_eq!(
        e.on_reply(ok_reply("SAVEPOINT", b'T'), ms(2)),
        Action::Send(Request::Client)
    );
    let acks = [frame(b'1', b""), frame(b'2', b""), frame(b'n', b"")];
    let mut timed_out: Vec<Vec<u8>> = acks.to_vec();
    timed_out.push(error("55P03", "canceling statement due to lock timeout"));
    timed_out.push(ready(b'E'));
    assert_eq!(
        e.on_reply(reply(&timed_out), ms(1002)),
        Action::Send(Request::Simple(wire::ROLLBACK_TO))
    );
    e.on_reply(ok_reply("ROLLBACK", b'T'), ms(1003));
    // Budget spent: the raise, then the answer.
    assert!(matches!(
        e.on_reply(blockers_reply(&[]), ms(1004)),
        Action::Send(Request::Raise(_))
    ));
    let raised = [error("55P03", "pgwarden: ..."), ready(b'E')];
    let mut expect: Vec<Vec<u8>> = acks.to_vec();
    expect.extend(raised.iter().cloned());
    assert_eq!(
        e.on_reply(reply(&raised), ms(1005)),
        Action::Answer(bytes(&expect))
    );
}

/// A failed step of pgwarden's own (its SET, sent as Parse/Bind/Execute) reaches the client as
/// the error alone: the acknowledgements of pgwarden's Parse and Bind are not the client's.
#[test]
fn a_failed_step_of_pgwardens_own_shows_only_its_error() {
    let mut e = Executor::new(plan(false), "ALTER TABLE");
    e.start();
    let failed = reply(&[
        frame(b'1', b""),
        frame(b'2', b""),
        error("XX000", "boom"),
        ready(b'I'),
    ]);
    assert_eq!(
        e.on_reply(failed, ms(1)),
        Action::Answer(bytes(&[error("XX000", "boom"), ready(b'I')]))
    );
}
