//! A socket that is plain TCP, a unix-domain socket or TLS, on either leg, behind one AsyncRead/AsyncWrite type.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection to a client or to the upstream. TLS streams are boxed: they are much larger
/// than a TcpStream and most sessions are plaintext.
pub enum Conn {
    Plain(TcpStream),
    /// Client leg, TLS terminated at pgwarden.
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Upstream leg over TLS.
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Client leg on the unix-domain socket (`listen_unix`); never TLS, as in PostgreSQL.
    Unix(tokio::net::UnixStream),
}

/// An accepted, not yet encrypted connection detached from the runtime that accepted it, so
/// it can be registered with another one (`super::workers`).
pub enum StdConn {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl StdConn {
    /// Registers the socket with the current runtime's I/O driver (call on the thread whose
    /// runtime will drive it).
    pub fn into_conn(self) -> io::Result<Conn> {
        match self {
            StdConn::Tcp(s) => TcpStream::from_std(s).map(Conn::Plain),
            StdConn::Unix(s) => tokio::net::UnixStream::from_std(s).map(Conn::Unix),
        }
    }
}

impl Conn {
    /// Detaches a freshly accepted plaintext connection from its runtime (non-blocking mode is
    /// kept). TLS streams are never handed over: TLS starts inside the session.
    pub fn into_std(self) -> io::Result<StdConn> {
        match self {
            Conn::Plain(s) => s.into_std().map(StdConn::Tcp),
            Conn::Unix(s) => s.into_std().map(StdConn::Unix),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a TLS stream cannot change runtimes",
            )),
        }
    }

    /// True when the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Conn::Plain(_) | Conn::Unix(_))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::TlsServer(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::TlsClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::TlsServer(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::TlsClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::TlsServer(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::TlsClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::TlsServer(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::TlsClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::TlsServer(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Conn::TlsClient(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Conn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::TlsServer(s) => s.is_write_vectored(),
            Conn::TlsClient(s) => s.is_write_vectored(),
            Conn::Unix(s) => s.is_write_vectored(),
        }
    }
}

/// Read half of a [`Conn`]: borrowed halves for TCP (no lock), tokio's split for TLS.
pub enum ReadHalf<'a> {
    Plain(tokio::net::tcp::ReadHalf<'a>),
    Unix(tokio::net::unix::ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut Conn>),
}

/// Write half of a [`Conn`].
pub enum WriteHalf<'a> {
    Plain(tokio::net::tcp::WriteHalf<'a>),
    Unix(tokio::net::unix::WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut Conn>),
}

/// Splits a connection so both directions can be driven concurrently from one task.
pub fn split(conn: &mut Conn) -> (ReadHalf<'_>, WriteHalf<'_>) {
    match conn {
        Conn::Plain(tcp) => {
            let (r, w) = tcp.split();
            (ReadHalf::Plain(r), WriteHalf::Plain(w))
        }
        Conn::Unix(u) => {
            let (r, w) = u.split();
            (ReadHalf::Unix(r), WriteHalf::Unix(w))
        }
        other => {
            let (r, w) = tokio::io::split(other);
            (ReadHalf::Tls(r), WriteHalf::Tls(w))
        }
    }
}

impl ReadHalf<'_> {
    /// Waits until the socket has something to read; meanwhile an empty `buf` of at most
    /// `release_up_to` bytes is given to this thread's buffer pool, so an idle session holds
    /// no read buffer (the caller takes one back before it reads: `bufpool::take`). The wait
    /// is the event loop's readiness, as inside `read_buf`: no syscall is added, and the read
    /// that follows clears the readiness on a short read as before. TLS streams do not wait here (rustls keeps its
    /// own buffers and may have plaintext ready without the socket being readable).
    pub async fn readable_idle(
        &mut self,
        buf: &mut bytes::BytesMut,
        release_up_to: usize,
    ) -> io::Result<()> {
        if !buf.is_empty() || buf.capacity() > release_up_to {
            return Ok(());
        }
        match self {
            ReadHalf::Plain(s) => {
                super::bufpool::give(std::mem::take(buf));
                let s: &TcpStream = s.as_ref();
                std::future::poll_fn(|cx| s.poll_read_ready(cx)).await
            }
            ReadHalf::Unix(s) => {
                super::bufpool::give(std::mem::take(buf));
                let s: &tokio::net::UnixStream = s.as_ref();
                std::future::poll_fn(|cx| s.poll_read_ready(cx)).await
            }
            ReadHalf::Tls(_) => Ok(()),
        }
    }
}

impl AsyncRead for ReadHalf<'_> {
    // Inline: called on every read and write of every session from another module; the
    // session.rs split (c706bc1) moved the callers into other codegen units and these
    // dispatches became calls (BENCHMARKS.md, instructions per forwarded transaction).
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Unix(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Unix(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Unix(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Unix(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
