//! Connecting to the upstream PostgreSQL server: TCP, then TLS per `upstream_tls`.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::Conn;
use super::Shared;
use crate::config::server::UpstreamTls;
use crate::protocol::startup::SSL_REQUEST_CODE;

/// Why the upstream could not be used; the text goes into the client's FATAL 08006.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Tls(String),
}

/// Opens a server connection, negotiating TLS as configured.
pub(crate) async fn connect(
    shared: &Shared,
    upstream: &super::route::Upstream,
) -> Result<Conn, UpstreamError> {
    // Reloadable: the value in force when this connection starts.
    let connect_timeout = shared.live.now().config.server.connect_timeout;
    let work = async {
        // A literal address skips tokio's resolver, which runs on a blocking thread.
        let mut tcp = match upstream.addr {
            Some(addr) => TcpStream::connect(addr).await?,
            None => TcpStream::connect(&upstream.name).await?,
        };
        // Protocol messages are small and latency-bound; Nagle would add round trips.
        tcp.set_nodelay(true)?;
        let Some(connector) = &upstream.connector else {
            return Ok(Conn::Plain(tcp));
        };
        let mut req = [0u8; 8];
        req[..4].copy_from_slice(&8i32.to_be_bytes());
        req[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        tcp.write_all(&req).await?;
        // Read into a buffer larger than the one-byte answer: anything after it was sent in
        // plaintext before the handshake, which is the CVE-2021-23222 buffer-stuffing pattern.
        let mut answer = [0u8; 64];
        let n = tcp.read(&mut answer).await?;
        if n == 0 {
            return Err(UpstreamError::Tls(
                "server closed the connection during TLS negotiation".into(),
            ));
        }
        match answer[0] {
            b'S' if n == 1 => {
                let tls = connector
                    .connect(upstream.server_name.clone(), tcp)
                    .await
                    .map_err(|e| UpstreamError::Tls(format!("TLS handshake failed: {e}")))?;
                Ok(Conn::TlsClient(Box::new(tls)))
            }
            b'S' | b'N' if n > 1 => Err(UpstreamError::Tls(
                "server sent unencrypted data after its TLS answer".into(),
            )),
            b'N' if upstream.tls == UpstreamTls::Prefer => Ok(Conn::Plain(tcp)),
            b'N' => Err(UpstreamError::Tls(
                "server does not support TLS, but upstream_tls requires it".into(),
            )),
            _ => Err(UpstreamError::Tls(
                "server answered the TLS request with an error".into(),
            )),
        }
    };
    let r = match super::timer::timeout(connect_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout(connect_timeout)),
    };
    if let Err(e) = &r {
        crate::metrics::upstream_connect_failed(match e {
            UpstreamError::Io(_) => "io",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Tls(_) => "tls",
        });
    }
    r
}

/// Delivers a client's CancelRequest unchanged to every upstream (also those a reload routed
/// away from, where older sessions still are): a CancelRequest names only
/// a backend pid and secret key, not a database, and a server ignores a key it did not issue.
/// The server answers nothing and closes the connection, so neither does pgwarden.
pub(crate) async fn send_cancel(shared: &Shared, raw: &[u8]) -> Result<(), UpstreamError> {
    let mut last = Ok(());
    for upstream in shared.live.cancel_targets() {
        if let Err(e) = cancel_on(shared, &upstream, raw).await {
            last = Err(e);
        }
    }
    last
}

async fn cancel_on(
    shared: &Shared,
    upstream: &super::route::Upstream,
    raw: &[u8],
) -> Result<(), UpstreamError> {
    let mut conn = connect(shared, upstream).await?;
    conn.write_all(raw).await?;
    conn.flush().await?;
    // Wait (bounded) for the server to close, so the cancel is processed before we return.
    let mut sink = [0u8; 16];
    let wait = shared.live.now().config.server.connect_timeout;
    let _ = super::timer::timeout(wait, conn.read(&mut sink)).await;
    Ok(())
}
