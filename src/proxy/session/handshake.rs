//! The first packets of a client connection: SSLRequest/GSSENCRequest answered, TLS
//! accepted, until a StartupMessage (or a CancelRequest) arrives.
use super::*;

/// How negotiation ended when it did not produce a StartupMessage.
pub(super) enum NegotiateEnd {
    /// Client went away; nothing to say.
    Quiet,
    /// Tell the client this and close.
    Error(PgError),
    /// A CancelRequest to deliver.
    Cancel(Vec<u8>),
}

/// Reads first packets until a StartupMessage arrives, answering SSLRequest/GSSENCRequest.
pub(super) async fn negotiate_client(
    shared: &Shared,
    slot: &mut Option<Conn>,
    buf: &mut BytesMut,
) -> Result<StartupMessage, NegotiateEnd> {
    loop {
        let Some(client) = slot.as_mut() else {
            return Err(NegotiateEnd::Quiet);
        };
        let len = loop {
            match check_startup(buf) {
                Ok(Some(len)) => break len,
                Ok(None) => {}
                Err(e) => return Err(NegotiateEnd::Error(errors::from_protocol(&e))),
            }
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(NegotiateEnd::Quiet),
                Ok(_) => {}
            }
        };
        let packet = buf.split_to(len);
        let req =
            parse_startup(&packet).map_err(|e| NegotiateEnd::Error(errors::from_protocol(&e)))?;
        match req {
            StartupRequest::SslRequest => {
                if client.is_tls() {
                    return Err(NegotiateEnd::Error(errors::protocol_violation(
                        "SSLRequest on an encrypted connection",
                    )));
                }
                // No TLS on the unix socket, as PostgreSQL: the socket file's permissions guard it.
                let tcp_client = matches!(client, Conn::Plain(_));
                let Some(acceptor) = shared.live.now().acceptor.clone().filter(|_| tcp_client)
                else {
                    write_byte(client, b'N').await?;
                    continue;
                };
                // Bytes that came with the SSLRequest were sent before encryption started:
                // accepting them would let a man in the middle inject commands (CVE-2021-23214).
                if !buf.is_empty() {
                    return Err(NegotiateEnd::Error(errors::protocol_violation(
                        "received unencrypted data after SSL request",
                    )));
                }
                write_byte(client, b'S').await?;
                let Some(Conn::Plain(tcp)) = slot.take() else {
                    return Err(NegotiateEnd::Quiet);
                };
                match acceptor.accept(tcp).await {
                    Ok(tls) => *slot = Some(Conn::TlsServer(Box::new(tls))),
                    Err(e) => {
                        debug!("client TLS handshake failed: {e}");
                        return Err(NegotiateEnd::Quiet);
                    }
                }
            }
            // pgwarden cannot relay GSSAPI encryption (the Debian server would answer 'G').
            StartupRequest::GssEncRequest => write_byte(client, b'N').await?,
            StartupRequest::Cancel { raw, .. } => return Err(NegotiateEnd::Cancel(raw)),
            // Bytes after the startup packet (pipelining clients) stay in `buf` and are
            // forwarded after it, as the server would read them.
            StartupRequest::Startup(m) => return Ok(m),
        }
    }
}

pub(super) async fn write_byte(client: &mut Conn, b: u8) -> Result<(), NegotiateEnd> {
    client
        .write_all(&[b])
        .await
        .map_err(|_| NegotiateEnd::Quiet)?;
    client.flush().await.map_err(|_| NegotiateEnd::Quiet)
}
