//! A simple Query carrying several statements (`psql -c "BEGIN; ALTER TABLE ...; COMMIT"`,
//! psycopg2's `execute("stmt1; stmt2")`) with a lock-taking one: pgwarden runs that statement
//! under the executor and the client sees what a direct run shows.
//!
//! # The decision
//! Injecting around the whole batch would put every statement of it under the quick class's
//! timeouts (a long UPDATE next to the ALTER would be cancelled at 30 s) and would have to retry
//! statements pgwarden did not plan for. So pgwarden splits the Query at the statement
//! boundaries its lexer shares with the server's (the text is read exactly: settings known,
//! text identical in the client encoding) and sends each statement as a Query of its own, in
//! order, collecting the replies; the lock-taking ones go through the executor (SET LOCAL,
//! savepoint, retries, blockers) with the session's timeouts read just before each (a `SET`
//! earlier in the batch counts). The client gets one answer: each statement's CommandComplete
//! (or rows) in order, the first error and nothing after it, one ReadyForQuery.
//!
//! The server runs a multi-statement Query in one *implicit* transaction block unless a
//! statement of it opens an explicit one: the statements before an error are rolled back, and
//! statements that refuse a transaction block (CREATE INDEX CONCURRENTLY, VACUUM) fail. pgwarden
//! keeps that: statements that would run in the implicit block run between a `BEGIN` and a
//! `COMMIT` of pgwarden's own (`ROLLBACK` after an error), whose answers the client never sees.
//! Statements inside an explicit block (the client's `BEGIN` in the batch or before it) run as
//! they are. Where the two behave differently the batch is forwarded unchanged, without
//! injection, and the log and the audit record say why: transaction control (`BEGIN`, `COMMIT`,
//! `SAVEPOINT`...) after statements of an implicit block (the server folds them into it, and
//! `COMMIT` there warns), `SAVEPOINT`/`ROLLBACK TO` outside a block, `AND CHAIN`, a statement
//! pgwarden cannot read. What does differ from a direct run: each statement is its own Query in
//! the server's log, `pg_stat_activity.query` and `statement_timestamp()`, and the replies of
//! a batch are held until it ends (psql and the drivers read them only then anyway).
use std::sync::Mutex;

use bytes::{BufMut, BytesMut};

use super::execute::{self, ClientStatement, Pending};
use super::{lock, Ctx, SessionError, State};
use crate::config::ExecuteConfig;
use crate::execute::{Reply, Request};
use crate::protocol::TxStatus;
use crate::proxy::stream::WriteHalf;
use crate::sql::facts::StatementKind;
use crate::sql::{Analysis, ObjectName, Outcome, StatementFacts};

/// The session's timeouts, read before each lock-taking statement of a batch.
const TIMEOUTS_SQL: &str = "SELECT pg_catalog.current_setting('lock_timeout'), \
     pg_catalog.current_setting('statement_timeout')";

/// One step of a split batch.
#[derive(Debug)]
enum Step {
    /// pgwarden's `BEGIN` in place of the server's implicit transaction block.
    Begin,
    /// A statement of the client's, as it wrote it; its reply is the client's.
    Client(Vec<u8>),
    /// A lock-taking statement: run under the executor.
    Exec {
        text: Vec<u8>,
        facts: Box<StatementFacts>,
        /// Tables created earlier in the transaction or the batch.
        created: Vec<ObjectName>,
        /// Its index among the batch's statements (its audit record).
        index: usize,
    },
    /// pgwarden's `COMMIT` where the server would end the implicit block.
    Commit,
}

/// A multi-statement Query split for the executor.
#[derive(Debug)]
pub(super) struct Batch {
    steps: Vec<Step>,
    /// The audit records' `seq`s of the statements, in order (empty: not audited).
    seqs: Vec<u64>,
    ascii_only: bool,
    seed: u64,
}

impl Batch {
    pub(super) fn set_seqs(&mut self, seqs: Vec<u64>) {
        self.seqs = seqs;
    }

    /// How many statements of it run under the executor.
    pub(super) fn executed(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Exec { .. }))
            .count()
    }
}

/// Splits a multi-statement Query for the executor: `Ok(None)` when no statement of it takes
/// a lock the executor would time, `Err(why)` when it cannot be split faithfully (see the module
/// docs). `bytes`: the Query text as sent; `text`: the same read by the server's lexer (they
/// must be the same bytes, so that the analysis's spans cut the bytes).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    analysis: &Analysis,
    bytes: &[u8],
    text: &str,
    tx_status: TxStatus,
    created: &[ObjectName],
    cfg: &ExecuteConfig,
    ascii_only: bool,
    seed: u64,
) -> Result<Option<Batch>, &'static str> {
    let statements: Vec<_> = analysis
        .statements
        .iter()
        .filter(|s| !matches!(s.outcome, Outcome::Empty))
        .collect();
    if statements.len() < 2 || !cfg.enabled {
        return Ok(None);
    }
    if bytes != text.as_bytes() {
        return Err("the Query text is not UTF-8 as sent, so pgwarden does not cut it");
    }
    let mut explicit = match tx_status {
        TxStatus::InTransaction => true,
        TxStatus::Idle => false,
        TxStatus::Failed => return Ok(None),
    };
    let mut open = false;
    let mut created: Vec<ObjectName> = created.to_vec();
    let mut steps = Vec::new();
    let mut executed = 0;
    for (index, st) in statements.iter().enumerate() {
        let Some(piece) = bytes.get(st.span.clone()) else {
            return Err(UNREADABLE);
        };
        let piece = piece.to_vec();
        let facts = match &st.outcome {
            Outcome::Facts(f) => Some(f.as_ref()),
            Outcome::Dml => None,
            _ => return Err(UNREADABLE),
        };
        let kind = facts.map(|f| f.kind);
        if facts.is_some_and(|f| f.flags.and_chain) {
            return Err("COMMIT/ROLLBACK AND CHAIN in a multi-statement Query");
        }
        let control = matches!(
            kind,
            Some(
                StatementKind::Begin
                    | StatementKind::Commit
                    | StatementKind::Rollback
                    | StatementKind::Savepoint
            )
        );
        if !explicit && control {
            if open {
                return Err(
                    "transaction control after statements that the server runs in \
                            the Query's implicit transaction block",
                );
            }
            match kind {
                Some(StatementKind::Begin) => explicit = true,
                // Alone or first, COMMIT/ROLLBACK outside a block warn alike.
                Some(StatementKind::Commit | StatementKind::Rollback) => {}
                _ => return Err("SAVEPOINT/RELEASE/ROLLBACK TO outside a transaction block"),
            }
            steps.push(Step::Client(piece));
            continue;
        }
        if !explicit && !open {
            steps.push(Step::Begin);
            open = true;
        }
        let lock_taking = facts.filter(|f| {
            let probe = crate::execute::Situation {
                in_transaction: true,
                lock_timeout_ms: None,
                statement_timeout_ms: None,
                created_in_transaction: &created,
                ascii_only,
                seed,
            };
            crate::execute::plan(f, cfg, probe).is_some()
        });
        match lock_taking {
            Some(f) => {
                executed += 1;
                steps.push(Step::Exec {
                    text: piece,
                    facts: Box::new(f.clone()),
                    created: created.clone(),
                    index,
                });
            }
            None => steps.push(Step::Client(piece)),
        }
        if let Some(f) = facts {
            if matches!(
                f.kind,
                StatementKind::CreateTable | StatementKind::CreateTableAs
            ) {
                created.extend(f.targets.iter().cloned());
            }
            if explicit && matches!(f.kind, StatementKind::Commit | StatementKind::Rollback) {
                explicit = false;
            }
        }
    }
    if open {
        steps.push(Step::Commit);
    }
    if executed == 0 {
        return Ok(None);
    }
    Ok(Some(Batch {
        steps,
        seqs: Vec::new(),
        ascii_only,
        seed,
    }))
}

const UNREADABLE: &str = "a statement of the Query pgwarden cannot read";

/// The first lock-taking statement of a batch, for the decision's timeout rules.
pub(super) fn first_plan(batch: &Batch, cfg: &ExecuteConfig) -> Option<crate::execute::Plan> {
    batch.steps.iter().find_map(|s| match s {
        Step::Exec { facts, created, .. } => crate::execute::plan(
            facts,
            cfg,
            crate::execute::Situation {
                in_transaction: true,
                lock_timeout_ms: None,
                statement_timeout_ms: None,
                created_in_transaction: created,
                ascii_only: batch.ascii_only,
                seed: batch.seed,
            },
        ),
        _ => None,
    })
}

/// Runs a split batch and leaves its one answer for the server→client side to replay.
pub(super) async fn run(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    batch: Batch,
) -> Result<(), SessionError> {
    let cfg = &ctx.shared.config.execute;
    let mut owed = BytesMut::new();
    let mut ready = BytesMut::new();
    let mut open = false;
    let mut failed = false;
    for step in batch.steps {
        match step {
            Step::Begin => {
                let r = own(state, sw, "BEGIN").await?;
                ready = r.ready.clone();
                if r.error.is_some() {
                    owed.extend_from_slice(&r.frames);
                    failed = true;
                    break;
                }
                open = true;
            }
            Step::Commit => {
                let r = own(state, sw, "COMMIT").await?;
                open = false;
                ready = r.ready.clone();
                if r.error.is_some() {
                    // A deferred constraint: the server reports it where the implicit block ends.
                    owed.extend_from_slice(&r.frames);
                    failed = true;
                }
            }
            Step::Client(text) => {
                let r = execute::send(state, sw, &query(&text), true).await?;
                owed.extend_from_slice(&r.frames);
                ready = r.ready.clone();
                if r.error.is_some() {
                    failed = true;
                    break;
                }
            }
            Step::Exec {
                text,
                facts,
                created,
                index,
            } => {
                let (lock_ms, stmt_ms) = timeouts(state, sw).await?;
                let situation = crate::execute::Situation {
                    in_transaction: true,
                    lock_timeout_ms: lock_ms,
                    statement_timeout_ms: stmt_ms,
                    created_in_transaction: &created,
                    ascii_only: batch.ascii_only,
                    seed: batch.seed.wrapping_add(index as u64),
                };
                let frame = query(&text);
                let mut answer = match crate::execute::plan(&facts, cfg, situation) {
                    // The session's own timeouts are what pgwarden would set: as it is.
                    None => {
                        let r = execute::send(state, sw, &frame, true).await?;
                        r.into_answer()
                    }
                    Some(plan) => {
                        let pending = Pending {
                            plan,
                            kind: facts.kind.label(),
                            seq: batch.seqs.get(index).copied().unwrap_or(0),
                        };
                        execute::answer(ctx, state, sw, pending, ClientStatement::query(frame))
                            .await?
                    }
                };
                let Some(at) = answer.len().checked_sub(6).filter(|&at| answer[at] == b'Z') else {
                    return Err(SessionError::ServerIo(std::io::Error::other(
                        "the executor's answer has no ReadyForQuery",
                    )));
                };
                ready = answer.split_off(at);
                let error = has_error(&answer);
                owed.extend_from_slice(&answer);
                if error {
                    failed = true;
                    break;
                }
            }
        }
    }
    if failed && open {
        // The server rolls an implicit block back after an error: so does pgwarden.
        let r = own(state, sw, "ROLLBACK").await?;
        ready = r.ready;
    }
    owed.extend_from_slice(&ready);
    lock(state).replay = Some(owed);
    ctx.post_replay();
    Ok(())
}

/// One of pgwarden's own fixed statements; its reply is pgwarden's.
async fn own(
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    sql: &'static str,
) -> Result<Reply, SessionError> {
    let mut bytes = BytesMut::new();
    Request::Simple(sql)
        .encode(&mut bytes)
        .map_err(|e| SessionError::ServerIo(std::io::Error::other(e.to_string())))?;
    // Part of the client's work (a COMMIT may run deferred triggers): no lookup deadline.
    execute::send(state, sw, &bytes, true).await
}

/// The session's lock_timeout and statement_timeout now (ms); `None` where unreadable.
async fn timeouts(
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
) -> Result<(Option<u64>, Option<u64>), SessionError> {
    let mut bytes = BytesMut::new();
    Request::Extended(vec![(TIMEOUTS_SQL, Vec::new())])
        .encode(&mut bytes)
        .map_err(|e| SessionError::ServerIo(std::io::Error::other(e.to_string())))?;
    let r = execute::send(state, sw, &bytes, false).await?;
    let row = r
        .results
        .first()
        .and_then(|rs| rs.rows.first())
        .cloned()
        .unwrap_or_default();
    let ms = |i: usize| {
        row.get(i)
            .cloned()
            .flatten()
            .and_then(|v| crate::sql::context::parse_duration_ms(&v))
    };
    Ok((ms(0), ms(1)))
}

/// A Query frame for a statement's bytes as the client wrote them.
fn query(text: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(text.len() + 6);
    out.put_u8(b'Q');
    out.put_u32((4 + text.len() + 1) as u32);
    out.put_slice(text);
    out.put_u8(0);
    out
}

/// Whether frames hold an ErrorResponse.
fn has_error(frames: &[u8]) -> bool {
    let mut pos = 0;
    while let Some(len) = frames
        .get(pos + 1..pos + 5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize + 1)
    {
        if frames[pos] == b'E' {
            return true;
        }
        pos += len;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{analyze, AnalysisContext};

    fn split(sql: &str, status: TxStatus) -> Result<Option<Vec<String>>, &'static str> {
        let a = analyze(sql, &AnalysisContext::default());
        let cfg = ExecuteConfig::default();
        Ok(
            plan(&a, sql.as_bytes(), sql, status, &[], &cfg, false, 1)?.map(|b| {
                b.steps
                    .iter()
                    .map(|s| match s {
                        Step::Begin => "<begin>".to_string(),
                        Step::Commit => "<commit>".to_string(),
                        Step::Client(t) => String::from_utf8_lossy(t).into_owned(),
                        Step::Exec { text, .. } => {
                            format!("exec {}", String::from_utf8_lossy(text))
                        }
                    })
                    .collect()
            }),
        )
    }

    #[test]
    fn explicit_blocks_run_as_written() {
        assert_eq!(
            split(
                "BEGIN; ALTER TABLE orders ADD COLUMN x int; COMMIT",
                TxStatus::Idle
            ),
            Ok(Some(vec![
                "BEGIN".into(),
                "exec ALTER TABLE orders ADD COLUMN x int".into(),
                "COMMIT".into()
            ]))
        );
        // psycopg2 sent BEGIN before: the whole batch is in the client's block.
        assert_eq!(
            split(
                "UPDATE t SET a = 1; ALTER TABLE orders ADD COLUMN x int",
                TxStatus::InTransaction
            ),
            Ok(Some(vec![
                "UPDATE t SET a = 1".into(),
                "exec ALTER TABLE orders ADD COLUMN x int".into()
            ]))
        );
    }

    #[test]
    fn implicit_blocks_get_pgwardens_begin_and_commit() {
        assert_eq!(
            split(
                "CREATE TABLE n (a int); ALTER TABLE orders ADD COLUMN x int",
                TxStatus::Idle
            ),
            Ok(Some(vec![
                "<begin>".into(),
                "CREATE TABLE n (a int)".into(),
                "exec ALTER TABLE orders ADD COLUMN x int".into(),
                "<commit>".into()
            ]))
        );
        // After the client's COMMIT the rest is an implicit block again.
        assert_eq!(
            split(
                "BEGIN; ALTER TABLE orders ADD COLUMN x int; COMMIT; ALTER TABLE orders ADD COLUMN y int",
                TxStatus::Idle
            ),
            Ok(Some(vec![
                "BEGIN".into(),
                "exec ALTER TABLE orders ADD COLUMN x int".into(),
                "COMMIT".into(),
                "<begin>".into(),
                "exec ALTER TABLE orders ADD COLUMN y int".into(),
                "<commit>".into()
            ]))
        );
    }

    #[test]
    fn batches_that_would_behave_otherwise_are_not_split() {
        for sql in [
            "ALTER TABLE orders ADD COLUMN x int; COMMIT",
            "ALTER TABLE orders ADD COLUMN x int; BEGIN; SELECT 1",
            "SAVEPOINT a; ALTER TABLE orders ADD COLUMN x int",
            "BEGIN; ALTER TABLE orders ADD COLUMN x int; COMMIT AND CHAIN",
            "BEGIN; ALTER TABLE orders ADD COLUMN x int; \\gset",
        ] {
            assert!(split(sql, TxStatus::Idle).is_err(), "{sql}");
        }
        // Nothing to time: forwarded as it is.
        assert_eq!(split("SELECT 1; SELECT 2", TxStatus::Idle), Ok(None));
        assert_eq!(
            split(
                "CREATE TABLE n (a int); ALTER TABLE n ADD b int",
                TxStatus::Idle
            ),
            Ok(None)
        );
        assert_eq!(
            split("ALTER TABLE orders ADD COLUMN x int", TxStatus::Idle),
            Ok(None),
            "one statement: the executor's own path"
        );
    }

    #[test]
    fn error_frames_are_found() {
        let frames = [b'C', 0, 0, 0, 5, 0, b'E', 0, 0, 0, 4];
        assert!(has_error(&frames));
        assert!(!has_error(&frames[..6]));
    }
}
