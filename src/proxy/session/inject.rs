//! A catalog lookup injected on the client's own connection at a sync point (DESIGN.md
//! decision 7): sent once every earlier request is answered, its rows swallowed by the
//! server→client side.
use super::*;

/// Longest wait for the answer to an injected lookup. Past it the position in the server's
/// stream is unknown, so the session is closed rather than guessed at.
pub(super) const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends the catalog lookup once every earlier client request has been answered, and waits
/// for the server→client side to hand back its rows (DESIGN.md decision 7).
pub(super) async fn inject_lookup(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    req: &lookup::LookupRequest,
) -> Result<Result<LiveFacts, String>, SessionError> {
    wait_answered(ctx, state).await;
    if lock(state).closing {
        return Ok(Err("the session is closing".into()));
    }
    let mut bytes = BytesMut::new();
    if let Err(e) = lookup::encode(req, &mut bytes) {
        return Ok(Err(e.to_string()));
    }
    let (tx, rx) = oneshot::channel();
    {
        let mut st = lock(state);
        if st.tx_status == TxStatus::Failed {
            return Ok(Err(
                "the transaction has failed: pgwarden sends nothing in it".into(),
            ));
        }
        st.injecting = Some(Injection {
            reader: ReplyReader::new(req),
            done: tx,
        });
    }
    sw.write_all(&bytes).await.map_err(SessionError::ServerIo)?;
    sw.flush().await.map_err(SessionError::ServerIo)?;
    match tokio::time::timeout(LOOKUP_TIMEOUT, rx).await {
        Ok(Ok(result)) => Ok(result.map_err(|e| e.to_string())),
        // The server→client side ended (server gone): the select! ends the session anyway.
        Ok(Err(_)) => Ok(Err("the server connection ended during the lookup".into())),
        Err(_) => Err(SessionError::ServerIo(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer to pgwarden's catalog lookup",
        ))),
    }
}
