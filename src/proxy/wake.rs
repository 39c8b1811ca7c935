//! Polling only what a wake-up can have changed.
//!
//! A session is one task running two direction loops. Under `select!` every wake-up polls
//! both loops and every wait each loop sits in: the idle direction re-checks its socket's
//! readiness (a lock and a waker comparison inside tokio), the server side re-polls the
//! executor's replay signal and the shutdown watch, and `select!` draws a random number to pick
//! the first branch. That was about 1,500 instructions per forwarded round trip, spent on
//! futures whose answer could not have changed.
//!
//! [`first_of`] gives each of two futures a waker of its own and polls a future only after its
//! own waker fired. [`Registered`] keeps a wait that stays registered between polls (tokio's
//! `Notified`, a watch's `changed()`) from being polled again while the waker it registered
//! is still the current one and a cheap check says nothing happened.
//!
//! Both rely only on the `Future` contract: a future that returned `Pending` has arranged for
//! the waker it was given to be woken when it can progress. A future that broke it (returned
//! `Pending` counting on being polled anyway) would stall here; under `select!` it only
//! worked by accident.
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

const LEFT: u8 = 1;
const RIGHT: u8 = 2;

/// What both futures' wakers share: which of them fired, and the task to wake.
#[derive(Default)]
struct Hub {
    woken: AtomicU8,
    task: Mutex<Option<Waker>>,
}

impl Hub {
    fn fire(&self, bit: u8) {
        self.woken.fetch_or(bit, Ordering::AcqRel);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

/// The left future's waker; it holds the hub itself (one allocation fewer per session).
struct LeftWake(Hub);

/// The right future's waker.
struct RightWake(Arc<LeftWake>);

impl Wake for LeftWake {
    fn wake(self: Arc<Self>) {
        self.0.fire(LEFT);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fire(LEFT);
    }
}

impl Wake for RightWake {
    fn wake(self: Arc<Self>) {
        self.0 .0.fire(RIGHT);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0 .0.fire(RIGHT);
    }
}

/// Runs `left` and `right` in the calling task until one of them finishes, and returns its
/// output (the other stays where the caller pinned it). Each is polled only when its own waker
/// was woken (both on the first poll); `left` goes first when both were. The futures are
/// pinned by the caller: taken by value, a session's two large loops would be stored twice.
pub(crate) fn first_of<'a, T, L, R>(
    mut left: Pin<&'a mut L>,
    mut right: Pin<&'a mut R>,
) -> impl Future<Output = T> + 'a
where
    L: Future<Output = T> + ?Sized,
    R: Future<Output = T> + ?Sized,
{
    let hub = Arc::new(LeftWake(Hub {
        woken: AtomicU8::new(LEFT | RIGHT),
        task: Mutex::new(None),
    }));
    let left_waker = Waker::from(Arc::clone(&hub));
    let right_waker = Waker::from(Arc::new(RightWake(Arc::clone(&hub))));
    // The task's waker as last stored in the hub: compared without the lock on every poll,
    // stored again only when the task's waker changes (for a tokio task, never).
    let mut known: Option<Waker> = None;
    poll_fn(move |cx| {
        if !known.as_ref().is_some_and(|k| k.will_wake(cx.waker())) {
            let w = cx.waker().clone();
            *hub.0.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(w.clone());
            known = Some(w);
        }
        // A wake-up that arrives after this swap sets its bit again and wakes the task: it is
        // never lost, at worst it costs one more poll.
        let woken = hub.0.woken.swap(0, Ordering::AcqRel);
        if woken & LEFT != 0 {
            if let Poll::Ready(t) = left.as_mut().poll(&mut Context::from_waker(&left_waker)) {
                return Poll::Ready(t);
            }
        }
        if woken & RIGHT != 0 {
            if let Poll::Ready(t) = right.as_mut().poll(&mut Context::from_waker(&right_waker)) {
                return Poll::Ready(t);
            }
        }
        Poll::Pending
    })
}

/// A wait that stays registered between polls, polled again only when it may be done.
///
/// tokio's `Notified` and a watch's `changed()` keep the waker of their last poll and wake it;
/// polling them again while nothing happened only re-checks that waker under their lock.
/// `poll_if(cx, may_be_done)` polls the inner future when `may_be_done` (a cheap check of the
/// caller's, e.g. an atomic flag set next to the notification) or when the waker is not the
/// one the future registered with; otherwise it answers `Pending` at once.
pub(crate) struct Registered<'a, F> {
    fut: Pin<&'a mut F>,
    registered: Option<Waker>,
}

impl<'a, F: Future> Registered<'a, F> {
    pub(crate) fn new(fut: Pin<&'a mut F>) -> Registered<'a, F> {
        Registered {
            fut,
            registered: None,
        }
    }

    /// Replaces the wait (after it completed) with a fresh one, polled on its next turn.
    pub(crate) fn set(&mut self, fut: F) {
        self.fut.set(fut);
        self.registered = None;
    }

    pub(crate) fn poll_if(&mut self, cx: &mut Context<'_>, may_be_done: bool) -> Poll<F::Output> {
        if !may_be_done
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let out = self.fut.as_mut().poll(cx);
        self.registered = match out {
            Poll::Pending => Some(cx.waker().clone()),
            Poll::Ready(_) => None,
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::sync::Notify;

    /// `fut`, counting its polls in `polls`.
    async fn counted<F: Future>(polls: &AtomicUsize, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            fut.as_mut().poll(cx)
        })
        .await
    }

    /// Finishes once `notify` fired `n` times.
    async fn notified(notify: &Notify, n: usize, out: &'static str) -> &'static str {
        for _ in 0..n {
            notify.notified().await;
        }
        out
    }

    #[tokio::test]
    async fn each_side_is_polled_only_when_its_own_waker_fired() {
        let (lp, rp) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (ln, rn) = (Notify::new(), Notify::new());
        let left = pin!(counted(&lp, notified(&ln, 1, "left")));
        let right = pin!(counted(&rp, notified(&rn, 3, "right")));
        let both = first_of(left, right);
        let driver = async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
                rn.notify_one();
            }
            std::future::pending::<()>().await;
        };
        let out = tokio::select! {
            biased;
            o = both => o,
            _ = driver => unreachable!(),
        };
        assert_eq!(out, "right");
        // Left: polled once at the start, never again (nothing woke it), although the task
        // was woken six times. Right: once at the start, then once per notification.
        assert_eq!(lp.load(Ordering::Relaxed), 1);
        assert_eq!(rp.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_wake_from_another_thread_reaches_the_right_side() {
        let notify = Arc::new(Notify::new());
        let n2 = Arc::clone(&notify);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            n2.notify_one();
        });
        let left = pin!(async {
            std::future::pending::<()>().await;
            "left"
        });
        let right = pin!(async {
            notify.notified().await;
            "right"
        });
        let out = tokio::time::timeout(Duration::from_secs(30), first_of(left, right)).await;
        assert_eq!(out.ok(), Some("right"), "the right side's wake-up was lost");
        t.join().unwrap();
    }

    #[tokio::test]
    async fn left_goes_first_when_both_are_ready() {
        let (l, r) = (pin!(async { 1 }), pin!(async { 2 }));
        assert_eq!(first_of(l, r).await, 1);
    }

    /// Run in a spawned task: a tokio task's waker is the same from poll to poll (`will_wake`),
    /// as in a session; `block_on`'s own waker may not compare equal in a release build.
    #[tokio::test]
    async fn a_registered_wait_is_not_polled_until_it_may_be_done() {
        tokio::spawn(async move {
            let notify = Notify::new();
            let polls = AtomicUsize::new(0);
            let inner = pin!(async {
                let mut n = pin!(notify.notified());
                poll_fn(|cx| {
                    polls.fetch_add(1, Ordering::Relaxed);
                    n.as_mut().poll(cx)
                })
                .await
            });
            let mut wait = Registered::new(inner);
            // First poll registers; the next polls with the same waker and nothing done do not
            // reach the future.
            let mut turns = 0;
            poll_fn(|cx| {
                turns += 1;
                match turns {
                    1..=3 => {
                        assert!(wait.poll_if(cx, false).is_pending());
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    _ => Poll::Ready(()),
                }
            })
            .await;
            assert_eq!(polls.load(Ordering::Relaxed), 1);
            notify.notify_one();
            // Told it may be done: polled, and done.
            poll_fn(|cx| wait.poll_if(cx, true)).await;
            assert_eq!(polls.load(Ordering::Relaxed), 2);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_registered_wait_polled_with_another_waker_registers_again() {
        let notify = Arc::new(Notify::new());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inner = pin!({
            let n = Arc::clone(&notify);
            async move { n.notified().await }
        });
        let mut wait = Registered::new(inner);
        // Registered under one waker...
        assert!(wait
            .poll_if(&mut Context::from_waker(Waker::noop()), false)
            .is_pending());
        // ...then polled by the real task: it must register that task's waker, or the
        // notification below would wake nobody and the timeout would fail the test.
        let (n2, d2) = (Arc::clone(&notify), Arc::clone(&done));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            d2.store(true, Ordering::Release);
            n2.notify_one();
        });
        let woke = tokio::time::timeout(
            Duration::from_secs(30),
            poll_fn(|cx| wait.poll_if(cx, done.load(Ordering::Acquire))),
        )
        .await;
        assert!(woke.is_ok(), "the task's waker was never registered");
        t.join().unwrap();
    }
}
