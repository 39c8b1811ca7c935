//! Read buffers that sessions waiting for input gave back, kept per thread for the next read.
//!
//! A session frees its empty read buffer while its socket has nothing to read, so an idle
//! connection holds none (`ReadHalf::read_idle`). Freed to the allocator and allocated
//! again on every read, that cost ~840 instructions per pgbench transaction (two reads): with
//! one buffer live at a time the allocator's page empties on each free and is retired, and
//! the next allocation takes the slow path (`bench/proxy_callgrind.sh`, BENCHMARKS.md). Here
//! the buffer goes to a small per-thread stack instead and the next read on this thread takes
//! it back; the stack is bounded, so what it holds does not grow with the number of idle
//! connections. Sessions run on single-threaded runtimes, so the stack needs no lock.

use bytes::BytesMut;
use std::cell::RefCell;

/// Most buffers kept per thread: enough for the reads in flight on one session thread at a
/// time in a busy moment, at most `MAX_POOLED` × the sessions' initial buffer (64 KiB) of
/// memory however many connections are idle.
const MAX_POOLED: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Keeps an empty buffer for the next [`take`] on this thread; drops it when the stack is
/// full or `buf` still holds bytes (never handed to another session with data in it).
#[inline]
pub fn give(buf: BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 {
        return;
    }
    let rejected = POOL
        .try_with(|p| match p.try_borrow_mut() {
            Ok(mut p) if p.len() < MAX_POOLED => {
                p.push(buf);
                None
            }
            _ => Some(buf),
        })
        .unwrap_or_default();
    // Dropped outside the borrow.
    drop(rejected);
}

/// An empty buffer: one given back on this thread, or a new one of `capacity` bytes.
#[inline]
pub fn take(capacity: usize) -> BytesMut {
    POOL.try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten()
        .unwrap_or_else(|| BytesMut::with_capacity(capacity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_back_empty_with_its_memory() {
        let mut b = BytesMut::with_capacity(2048);
        b.extend_from_slice(b"select 1");
        let _ = b.split();
        let cap = b.capacity();
        give(b);
        let t = take(2048);
        assert!(t.is_empty());
        assert_eq!(t.capacity(), cap, "the pooled buffer, not a new one");
        // The stack is empty again: a new buffer of the asked size.
        assert_eq!(take(100).capacity(), 100);
    }

    #[test]
    fn a_buffer_with_bytes_is_never_pooled() {
        let mut b = BytesMut::with_capacity(64);
        b.extend_from_slice(b"Q\0\0\0\x0dselect 1\0");
        give(b);
        let t = take(16);
        assert!(t.is_empty());
        assert_eq!(t.capacity(), 16);
    }

    #[test]
    fn the_stack_is_bounded() {
        for _ in 0..MAX_POOLED + 10 {
            give(BytesMut::with_capacity(32));
        }
        let held = POOL.with(|p| p.borrow().len());
        assert_eq!(held, MAX_POOLED);
        POOL.with(|p| p.borrow_mut().clear());
    }
}
