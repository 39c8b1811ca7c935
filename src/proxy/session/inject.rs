//! A catalog lookup injected on the client's own connection at a sync point (DESIGN.md
//! decision 7): sent once every earlier request is answered, its rows swallowed by the
//! server→client side.
use super::*;

/// Longest wait for the answer to an injected lookup. Past it the position in the server's
/// stream is unknown, so the session is closed rather than guessed at.
pub(super) const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends the catalog lookup once every earlier client request has been answered, and waits
/// for the server→client side to hand back its rows (DESIGN.md decision 7).
///
/// The lookup binds the statements an earlier lookup of this session prepared
/// (`lookup::Prepared`). When the client has deallocated them, the Bind fails: a guarded
/// lookup's savepoint is rolled back (the client's transaction is as it was) and the lookup is
/// sent once more, parsing everything.
pub(super) async fn inject_lookup(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    req: &lookup::LookupRequest,
) -> Result<Result<LiveFacts, String>, SessionError> {
    wait_answered(ctx, state).await;
    let mut prepared = {
        let st = lock(state);
        if st.closing {
            return Ok(Err("the session is closing".into()));
        }
        st.lookup_prepared
    };
    loop {
        let in_block = lock(state).tx_status == TxStatus::InTransaction;
        let mut bytes = BytesMut::new();
        let batch = match lookup::encode(req, prepared, in_block, &mut bytes) {
            Ok(batch) => batch,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let reader = ReplyReader::new(req, &batch);
        let result = match round_trip(state, sw, &bytes, reader, false).await? {
            Ok(result) => result,
            Err(why) => return Ok(Err(why)),
        };
        match result {
            Ok(facts) => {
                lock(state).lookup_prepared = prepared.union(batch.parses);
                return Ok(Ok(facts));
            }
            Err(e) => {
                // Whatever failed, count on nothing: the next lookup parses everything.
                lock(state).lookup_prepared = lookup::Prepared::NONE;
                if batch.guarded {
                    let mut bytes = BytesMut::new();
                    if let Err(r) = lookup::encode_recovery(&mut bytes) {
                        return Ok(Err(format!("{e}; {r}")));
                    }
                    match round_trip(state, sw, &bytes, ReplyReader::recovery(), true).await? {
                        Ok(Ok(_)) => {}
                        Ok(Err(r)) => {
                            return Ok(Err(format!(
                                "{e}; and rolling back pgwarden's savepoint failed: {r}"
                            )))
                        }
                        Err(why) => return Ok(Err(format!("{e}; {why}"))),
                    }
                }
                if batch.relies && matches!(e, lookup::LookupError::StatementGone(_)) {
                    prepared = lookup::Prepared::NONE;
                    continue;
                }
                return Ok(Err(e.to_string()));
            }
        }
    }
}

/// One injected batch: written once nothing else is in flight, its replies read by `reader`
/// on the server→client side. `Err` (inner): why it was not sent or not answered. Only a
/// `recovery` batch (the rollback of pgwarden's own savepoint) is sent into a failed
/// transaction.
async fn round_trip(
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    bytes: &[u8],
    reader: ReplyReader,
    recovery: bool,
) -> Result<Result<Result<LiveFacts, lookup::LookupError>, String>, SessionError> {
    let (tx, rx) = oneshot::channel();
    {
        let mut st = lock(state);
        if st.tx_status == TxStatus::Failed && !recovery {
            return Ok(Err(
                "the transaction has failed: pgwarden sends nothing in it".into(),
            ));
        }
        st.injecting = Some(Box::new(Injection { reader, done: tx }));
    }
    sw.write_all(bytes).await.map_err(SessionError::ServerIo)?;
    sw.flush().await.map_err(SessionError::ServerIo)?;
    match crate::proxy::timer::timeout(LOOKUP_TIMEOUT, rx).await {
        Ok(Ok(result)) => Ok(Ok(result)),
        // The server→client side ended (server gone): the select! ends the session anyway.
        Ok(Err(_)) => Ok(Err("the server connection ended during the lookup".into())),
        Err(_) => Err(SessionError::ServerIo(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer to pgwarden's catalog lookup",
        ))),
    }
}
