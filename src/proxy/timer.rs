//! Timers for the session threads, kept in the wheel of a thread of their own.
//!
//! Why: a tokio runtime with a time driver reads the clock and walks its timer wheel on every
//! turn of its event loop, even when no timer is in it: ~900 of the ~7,900 instructions
//! pgwarden spent per forwarded `pgbench -S` transaction at one client (BENCHMARKS.md, "Session
//! threads without a time driver"). A session needs a timer only at its edges (the startup
//! deadline, a connect timeout, the answer to a lookup, a retry's backoff, the farewell), never
//! per forwarded message. So the session threads run without a time driver
//! ([`super::workers`]), and every timer a session makes goes through here: tokio binds a
//! timer to the runtime that is current when the timer is *created*, so creating it while this
//! thread's runtime is entered puts it in this thread's wheel; polled from a session thread it
//! registers that session's waker, and its expiry wakes the session like any other waker.
//!
//! Cost where it is paid: a timer whose deadline is earlier than everything in this wheel
//! wakes this thread once to re-arm (an eventfd write); dropping a timer takes the wheel's
//! lock. Both happen per lookup or per connection, not per message.
//!
//! Before [`start`] (unit tests that run session code on a runtime of their own) a timer goes
//! to the current runtime, exactly as the plain `tokio::time` call would.
use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep, Timeout};

static TIMERS: OnceLock<Handle> = OnceLock::new();

/// Starts the timer thread (once; later calls return at once). Session threads without a time
/// driver must not run sessions before this succeeded: their first timer would panic.
pub fn start() -> std::io::Result<()> {
    if TIMERS.get().is_some() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let handle = runtime.handle().clone();
    if TIMERS.set(handle).is_err() {
        // Another caller won the race: its thread serves; this runtime was never used.
        return Ok(());
    }
    std::thread::Builder::new()
        .name("pgwarden-timers".into())
        // The runtime only has to exist and turn: its driver fires the timers while
        // `block_on` parks on a future that never ends (the thread lives as long as the
        // process; sessions' timers must never find it gone).
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(())
}

/// Runs `make` with the timer thread's runtime entered, when there is one.
#[inline]
fn on_timer_thread<T>(make: impl FnOnce() -> T) -> T {
    match TIMERS.get() {
        Some(h) => {
            let _entered = h.enter();
            make()
        }
        None => make(),
    }
}

/// `tokio::time::sleep`, in the timer thread's wheel.
pub fn sleep(d: Duration) -> Sleep {
    on_timer_thread(|| tokio::time::sleep(d))
}

/// `tokio::time::sleep_until`, in the timer thread's wheel.
pub fn sleep_until(deadline: Instant) -> Sleep {
    on_timer_thread(|| tokio::time::sleep_until(deadline))
}

/// `tokio::time::timeout`, its timer in the timer thread's wheel.
pub fn timeout<F: IntoFuture>(d: Duration, f: F) -> Timeout<F::IntoFuture> {
    on_timer_thread(|| tokio::time::timeout(d, f))
}

/// `tokio::time::timeout_at`, its timer in the timer thread's wheel.
pub fn timeout_at<F: IntoFuture>(deadline: Instant, f: F) -> Timeout<F::IntoFuture> {
    on_timer_thread(|| tokio::time::timeout_at(deadline, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime like a session thread's: I/O only, no time driver.
    fn session_like_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn timers_fire_on_a_runtime_without_a_time_driver() {
        start().unwrap_or_else(|e| panic!("timer thread: {e}"));
        let rt = session_like_runtime();
        rt.block_on(async {
            let t0 = Instant::now();
            sleep(Duration::from_millis(30)).await;
            assert!(t0.elapsed() >= Duration::from_millis(30));
            sleep_until(Instant::now() + Duration::from_millis(5)).await;
            // A timeout that expires, and one whose future wins.
            let never = std::future::pending::<()>();
            assert!(timeout(Duration::from_millis(20), never).await.is_err());
            let deadline = Instant::now() + Duration::from_secs(60);
            assert_eq!(timeout_at(deadline, async { 7 }).await.ok(), Some(7));
        });
    }

    #[test]
    fn many_sessions_timers_wake_each_their_own_task() {
        start().unwrap_or_else(|e| panic!("timer thread: {e}"));
        let rt = session_like_runtime();
        rt.block_on(async {
            // Deadlines in falling order: each new one is earlier than the wheel's next wake,
            // so each re-arms the timer thread (the path that unparks it).
            let tasks: Vec<_> = (0..20u64)
                .rev()
                .map(|k| {
                    tokio::spawn(async move {
                        sleep(Duration::from_millis(5 * k)).await;
                        k
                    })
                })
                .collect();
            let mut done = Vec::new();
            for t in tasks {
                done.push(t.await.unwrap_or_else(|e| panic!("task: {e}")));
            }
            assert_eq!(done.len(), 20);
        });
    }
}
