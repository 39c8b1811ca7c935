//! Session threads for `pgwarden serve`: `[server] session_threads` single-threaded tokio
//! runtimes (default 1; 0 = one per core), each with its own I/O driver; every session lives on
//! one of them for its whole life.
//!
//! Why not tokio's multi-threaded scheduler (measured in BENCHMARKS.md, "Proxy CPU per
//! transaction"): a session is a chain of short wake-ups (client readable → write to the server
//! → server readable → write to the client). On the work-stealing scheduler each wake-up that
//! lands on one worker also unparks the other one to look for work (a futex wake, a context
//! switch, an empty search, a futex wait), so pgwarden spent about 1.8 context switches per
//! `pgbench -S` transaction at 8 clients where pgbouncer, one thread on epoll, spends about 1.
//! Here a wake-up wakes only the thread whose epoll saw it, and a session's state never moves
//! between cores. One thread (the default) also batches the most ready sockets per
//! `epoll_wait`: measured, it made fewer syscalls per round trip than pgbouncer in simple and
//! extended mode, where one thread per core made more.
//!
//! What it costs: there is no stealing, so a session that computes for long (a huge DDL
//! statement's analysis, bounded by the prefilter's limits) delays the other sessions of its
//! thread (with one thread: every other session), where the multi-threaded scheduler's other
//! worker could have taken them over. New sessions go to the
//! thread with the fewest sessions, so long-lived load stays balanced.
//!
//! The runtimes have an I/O driver only: every timer a session makes is kept by
//! [`super::timer`]'s thread, so no turn of a session thread's event loop reads the clock or
//! walks a timer wheel.
//!
//! A socket is registered with the I/O driver of the runtime it was created on; an accepted
//! connection is therefore handed over as a std socket ([`super::stream::StdConn`]) and
//! registered again on the session's thread.
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The session threads; dropping this stops them (their remaining sessions are dropped).
pub struct Workers {
    threads: Vec<Worker>,
    /// Breaks ties between equally loaded threads.
    next: AtomicUsize,
}

struct Worker {
    handle: Handle,
    /// Sessions on this thread now.
    load: Arc<AtomicUsize>,
    /// Dropped with the [`Workers`]: the thread's `block_on` returns and it drops its runtime
    /// itself (a runtime must not be dropped inside another one's async context).
    _stop: oneshot::Sender<()>,
}

/// Decrements a thread's session count when the session's future ends or is dropped.
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` (at least 1) session threads.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        // The sessions' timers live on a thread of their own (`super::timer`); a session
        // thread has no time driver to turn on every wake-up.
        super::timer::start()?;
        let mut threads = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("pgwarden-session-{i}"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                    // Sessions still running here are abandoned by a shutdown that gave up on
                    // them; dropping the runtime drops them.
                    drop(runtime);
                })?;
            threads.push(Worker {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                _stop: stop,
            });
        }
        Ok(Workers {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// Number of session threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Always false: there is at least one thread.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Runs `make()`'s future on the least loaded thread. `make` runs on that thread, inside its
    /// runtime, so the sockets it registers belong to that thread's I/O driver.
    pub fn spawn<F, Fut>(&self, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.threads.len();
        let w = (0..n)
            .map(|k| &self.threads[(start + k) % n])
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .unwrap_or(&self.threads[start % n]);
        w.load.fetch_add(1, Ordering::Relaxed);
        let guard = LoadGuard(w.load.clone());
        w.handle.spawn(async move {
            let _guard = guard;
            make().await;
        });
    }

    /// Sessions on each thread now (for tests and logs).
    pub fn loads(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_spread_over_threads_and_are_counted_off() {
        let w = Workers::start(2).unwrap();
        assert_eq!(w.len(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut releases = Vec::new();
        for _ in 0..4 {
            let (release, wait) = oneshot::channel::<()>();
            releases.push(release);
            let tx = tx.clone();
            w.spawn(move || async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
                let _ = wait.await;
            });
        }
        let mut names: Vec<_> = (0..4).map(|_| rx.recv().unwrap().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "pgwarden-session-0",
                "pgwarden-session-0",
                "pgwarden-session-1",
                "pgwarden-session-1"
            ]
        );
        assert_eq!(w.loads(), [2, 2]);
        drop(releases);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while w.loads() != [0, 0] {
            assert!(
                std::time::Instant::now() < deadline,
                "loads {:?}",
                w.loads()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
