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
    /// Reads what the socket has into `buf`, holding no buffer while it waits: an empty `buf`
    /// of at most `initial` bytes goes to this thread's buffer pool while the socket has
    /// nothing to read, and a pooled one (or a new one of `initial` bytes) comes back when it
    /// has, so an idle session holds no read buffer. `prepare` makes room in `buf` before each
    /// read. Ok(0) is end of stream.
    ///
    /// On a plain or unix socket the read goes from the event loop's readiness straight to one
    /// non-blocking read, in one future: no second readiness poll and no nested read future per
    /// read (`bench/proxy_callgrind.sh`, BENCHMARKS.md), and no syscall added — a short read
    /// clears the readiness as tokio's own `poll_read` does, and a spurious readiness
    /// (WouldBlock) clears it and waits again. TLS streams read through rustls as before (it
    /// keeps its own buffers and may have plaintext ready without the socket being readable).
    pub async fn read_idle(
        &mut self,
        buf: &mut bytes::BytesMut,
        initial: usize,
        mut prepare: impl FnMut(&mut bytes::BytesMut),
    ) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(s) => {
                let s: &TcpStream = s.as_ref();
                std::future::poll_fn(|cx| poll_read_idle(s, cx, buf, initial, &mut prepare)).await
            }
            ReadHalf::Unix(s) => {
                let s: &tokio::net::UnixStream = s.as_ref();
                std::future::poll_fn(|cx| poll_read_idle(s, cx, buf, initial, &mut prepare)).await
            }
            ReadHalf::Tls(s) => {
                if buf.capacity() == 0 {
                    *buf = super::bufpool::take(initial);
                }
                prepare(buf);
                tokio::io::AsyncReadExt::read_buf(s, buf).await
            }
        }
    }
}

/// The two socket types a session reads without TLS.
trait Socket {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_io<R>(
        &self,
        interest: tokio::io::Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R>;
    fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<usize>;
}

macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            #[inline]
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
            #[inline]
            fn try_io<R>(
                &self,
                interest: tokio::io::Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
            #[inline]
            fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
                <$t>::try_read_buf(self, buf)
            }
        }
    };
}
socket!(TcpStream);
socket!(tokio::net::UnixStream);

/// [`ReadHalf::read_idle`] on a plain or unix socket.
#[inline]
fn poll_read_idle<S: Socket>(
    s: &S,
    cx: &mut Context<'_>,
    buf: &mut bytes::BytesMut,
    initial: usize,
    prepare: &mut impl FnMut(&mut bytes::BytesMut),
) -> Poll<io::Result<usize>> {
    loop {
        match s.poll_read_ready(cx) {
            Poll::Pending => {
                if buf.capacity() != 0 && buf.is_empty() && buf.capacity() <= initial {
                    // Nothing to read: the buffer waits in the pool, not in the session.
                    super::bufpool::give(std::mem::take(buf));
                }
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        if buf.capacity() == 0 {
            *buf = super::bufpool::take(initial);
        }
        prepare(buf);
        match read_now(s, buf) {
            // Spurious readiness: it is cleared; poll again, which registers the waker.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

/// One non-blocking read into `buf`'s spare capacity. A read that did not fill it shows the
/// socket's receive queue drained (epoll is edge-triggered), so the readiness is cleared then,
/// as tokio's `poll_read` does; otherwise the next read would be a syscall that only returns
/// EAGAIN. The clearing is `try_io`'s: the closure returns WouldBlock after a short read and
/// `try_io` clears the readiness event it took *before* the read, so data that arrived since
/// (a newer event) stays ready and no wake-up is lost.
#[inline]
fn read_now<S: Socket>(s: &S, buf: &mut bytes::BytesMut) -> io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut short = None;
    let r = s.try_io(tokio::io::Interest::READABLE, || {
        let n = s.try_read_buf(buf)?;
        if n > 0 && n < spare {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (r, short) {
        (_, Some(n)) => Ok(n),
        (r, None) => r,
    }
}

impl WriteHalf<'_> {
    /// Writes all of `buf`. On a plain or unix socket it first writes straight from here: one
    /// non-blocking write, with no write future, readiness poll or budget check when the
    /// socket takes it all (the common case for a proxy's batches). What the socket did not
    /// take goes through `write_all`, which waits for writability.
    #[inline]
    pub async fn write_all_now(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let written = match self {
            WriteHalf::Plain(s) => send_now(s.as_ref(), buf)?,
            WriteHalf::Unix(s) => send_now(s.as_ref(), buf)?,
            WriteHalf::Tls(_) => 0,
        };
        if written < buf.len() {
            tokio::io::AsyncWriteExt::write_all(self, &buf[written..]).await?;
        }
        Ok(())
    }

    /// Flushes what rustls holds; a plain or unix socket has nothing to flush.
    #[inline]
    pub async fn flush_now(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Tls(_) => tokio::io::AsyncWriteExt::flush(self).await,
            WriteHalf::Plain(_) | WriteHalf::Unix(_) => Ok(()),
        }
    }
}

/// One non-blocking send(2) of `buf` on the socket, straight from here: what the socket took,
/// 0 when it took nothing now (a full send buffer, or a signal).
///
/// Not through tokio's `try_write`: on success the readiness tokio keeps for the socket is not
/// looked at or changed, and that is what tokio itself would leave (a write that did not
/// fail leaves the readiness as it was). When the socket took nothing, tokio's readiness is
/// left possibly stale ("writable"); the caller's `write_all` then tries once, gets EAGAIN,
/// clears it and waits for the event loop, so no wake-up is lost. The syscall is rustix's,
/// made directly (no libc wrapper): ~130 instructions less per write than tokio's readiness
/// check, mio, std and glibc's cancellation-point wrapper (BENCHMARKS.md). MSG_NOSIGNAL as
/// std and mio use for TCP: a peer that closed gives EPIPE, never SIGPIPE.
#[inline]
fn send_now(s: &impl std::os::fd::AsFd, buf: &[u8]) -> io::Result<usize> {
    use rustix::io::Errno;
    match rustix::net::send(s, buf, rustix::net::SendFlags::NOSIGNAL) {
        Ok(n) => Ok(n),
        Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use std::future::Future;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    const INITIAL: usize = 64;

    /// A connected loopback pair: the tokio side read by the test, the std side its peer.
    async fn tcp_pair() -> (Conn, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Conn::Plain(TcpStream::from_std(ours).unwrap()), peer)
    }

    fn prepare(b: &mut BytesMut) {
        if b.capacity() == b.len() {
            b.reserve(INITIAL);
        }
    }

    /// Polls once without a real waker: what the session's task sees on a wake-up.
    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    /// True when the socket's readiness is cleared (the next poll waits instead of reading).
    fn readiness_cleared(conn: &Conn) -> bool {
        let Conn::Plain(s) = conn else {
            panic!("plain")
        };
        s.poll_read_ready(&mut Context::from_waker(std::task::Waker::noop()))
            .is_pending()
    }

    #[tokio::test]
    async fn a_waiting_read_holds_no_buffer_and_reads_what_arrives() {
        let (mut conn, mut peer) = tcp_pair().await;
        let mut buf = BytesMut::with_capacity(INITIAL);
        {
            let (mut r, _w) = split(&mut conn);
            let fut = r.read_idle(&mut buf, INITIAL, prepare);
            tokio::pin!(fut);
            assert!(poll_once(fut.as_mut()).is_pending());
        }
        assert_eq!(buf.capacity(), 0, "the idle buffer went to the pool");
        peer.write_all(b"Q\0\0\0\x0dselect 1\0").unwrap();
        let (mut r, _w) = split(&mut conn);
        let n = r.read_idle(&mut buf, INITIAL, prepare).await.unwrap();
        assert_eq!(&buf[..n], b"Q\0\0\0\x0dselect 1\0");
        drop(r);
        assert!(
            readiness_cleared(&conn),
            "a short read clears the readiness: no EAGAIN read follows"
        );
    }

    #[tokio::test]
    async fn more_than_a_buffer_arrives_whole_over_several_reads() {
        let (mut conn, mut peer) = tcp_pair().await;
        let data: Vec<u8> = (0..10 * INITIAL as u32).map(|i| i as u8).collect();
        peer.write_all(&data).unwrap();
        let mut got = Vec::new();
        let mut buf = BytesMut::with_capacity(INITIAL);
        let (mut r, _w) = split(&mut conn);
        while got.len() < data.len() {
            let n = r.read_idle(&mut buf, INITIAL, prepare).await.unwrap();
            assert!(n > 0 && n <= INITIAL, "{n}");
            got.extend_from_slice(&buf.split());
        }
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn a_buffer_holding_bytes_is_kept_and_appended_to() {
        let (mut conn, mut peer) = tcp_pair().await;
        let mut buf = BytesMut::with_capacity(INITIAL);
        buf.extend_from_slice(b"Q\0\0");
        {
            let (mut r, _w) = split(&mut conn);
            let fut = r.read_idle(&mut buf, INITIAL, prepare);
            tokio::pin!(fut);
            assert!(poll_once(fut.as_mut()).is_pending());
        }
        assert_eq!(&buf[..], b"Q\0\0", "a partial frame is never given away");
        peer.write_all(b"\0\x0dselect 1\0").unwrap();
        let (mut r, _w) = split(&mut conn);
        r.read_idle(&mut buf, INITIAL, prepare).await.unwrap();
        assert_eq!(&buf[..], b"Q\0\0\0\x0dselect 1\0");
    }

    #[tokio::test]
    async fn spurious_readiness_waits_again_and_end_of_stream_is_zero() {
        let (mut conn, mut peer) = tcp_pair().await;
        peer.write_all(b"gone").unwrap();
        // Wait until the event loop has seen the bytes, then take them behind its back (a
        // second descriptor of the same socket): the readiness is now stale.
        {
            let Conn::Plain(s) = &conn else {
                panic!("plain")
            };
            s.readable().await.unwrap();
            let mut other = std::net::TcpStream::from(s.as_fd().try_clone_to_owned().unwrap());
            let mut four = [0u8; 4];
            other.read_exact(&mut four).unwrap();
            assert_eq!(&four, b"gone");
        }
        let mut buf = BytesMut::with_capacity(INITIAL);
        {
            let (mut r, _w) = split(&mut conn);
            let fut = r.read_idle(&mut buf, INITIAL, prepare);
            tokio::pin!(fut);
            // The read finds nothing (EAGAIN): not an error, not end of stream, a wait.
            assert!(poll_once(fut.as_mut()).is_pending());
        }
        assert_eq!(buf.capacity(), 0);
        assert!(readiness_cleared(&conn));
        peer.write_all(b"more").unwrap();
        let (mut r, _w) = split(&mut conn);
        let n = r.read_idle(&mut buf, INITIAL, prepare).await.unwrap();
        assert_eq!(&buf[..n], b"more");
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        buf.clear();
        assert_eq!(r.read_idle(&mut buf, INITIAL, prepare).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_reset_connection_is_an_error() {
        let (mut conn, peer) = tcp_pair().await;
        // Closed with a zero linger, the peer sends a reset instead of end of stream.
        peer.set_nonblocking(true).unwrap();
        let peer = TcpStream::from_std(peer).unwrap();
        peer.set_zero_linger().unwrap();
        drop(peer);
        let (mut r, _w) = split(&mut conn);
        let mut buf = BytesMut::with_capacity(INITIAL);
        let e = r.read_idle(&mut buf, INITIAL, prepare).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_unix_socket_reads_the_same_way() {
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut conn = Conn::Unix(tokio::net::UnixStream::from_std(ours).unwrap());
        let mut buf = BytesMut::with_capacity(INITIAL);
        {
            let (mut r, _w) = split(&mut conn);
            let fut = r.read_idle(&mut buf, INITIAL, prepare);
            tokio::pin!(fut);
            assert!(poll_once(fut.as_mut()).is_pending());
        }
        assert_eq!(buf.capacity(), 0);
        peer.write_all(b"X\0\0\0\x04").unwrap();
        let (mut r, _w) = split(&mut conn);
        let n = r.read_idle(&mut buf, INITIAL, prepare).await.unwrap();
        assert_eq!(&buf[..n], b"X\0\0\0\x04");
        drop(peer);
        buf.clear();
        assert_eq!(r.read_idle(&mut buf, INITIAL, prepare).await.unwrap(), 0);
    }

    /// Bytes the peer reads until end of stream, on a thread of its own, slowly at first so
    /// the sender's socket buffer fills.
    fn drain(mut peer: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        })
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_buffer_arrives_whole_and_in_order() {
        // 8 MiB cannot go in one send: the first takes what the buffer holds, the rest waits
        // for writability through tokio, whose readiness the direct send never touched.
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let (mut conn, peer) = tcp_pair().await;
        let reader = drain(peer);
        {
            let (_r, mut w) = split(&mut conn);
            w.write_all_now(b"head:").await.unwrap();
            w.write_all_now(&data).await.unwrap();
            w.write_all_now(b":tail").await.unwrap();
        }
        drop(conn);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), data.len() + 10);
        assert!(got[..5] == *b"head:" && got[got.len() - 5..] == *b":tail");
        assert!(got[5..got.len() - 5] == data[..], "bytes reordered or lost");
    }

    #[tokio::test]
    async fn a_write_to_a_closed_peer_is_an_error_not_a_signal() {
        let (mut conn, peer) = tcp_pair().await;
        peer.set_nonblocking(true).unwrap();
        let peer = TcpStream::from_std(peer).unwrap();
        peer.set_zero_linger().unwrap();
        drop(peer);
        let (mut r, mut w) = split(&mut conn);
        // The reset has arrived once the read side sees it.
        let mut buf = BytesMut::with_capacity(INITIAL);
        let _ = r.read_idle(&mut buf, INITIAL, prepare).await;
        let mut failed = None;
        for _ in 0..3 {
            if let Err(e) = w.write_all_now(b"Z\0\0\0\x05I").await {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("writes to a reset peer fail");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_unix_socket_writes_the_same_way() {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut conn = Conn::Unix(tokio::net::UnixStream::from_std(ours).unwrap());
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
        let reader = drain(peer);
        {
            let (_r, mut w) = split(&mut conn);
            w.write_all_now(&data).await.unwrap();
        }
        drop(conn);
        assert!(reader.join().unwrap() == data, "bytes reordered or lost");
    }
}
