//! The bound on bytes all sessions together hold whole in memory (`[server] max_held_bytes`).
//!
//! A Query/Parse/Bind must sit complete in its session's buffer before pgwarden can read it,
//! and the protocol allows such messages up to 1 GiB. One session's cap is
//! `max_message_size`; without a shared bound, a few clients each announcing a large message
//! would make the proxy's memory the sum of their announcements. A session that needs more
//! room than its ordinary read buffer reserves the whole message here first; when the shared
//! budget is spent it is told so (53200) instead of the proxy running out of memory.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes held whole by all sessions, against the configured cap.
#[derive(Debug)]
pub(crate) struct HeldBudget {
    used: AtomicUsize,
    cap: usize,
}

/// Bytes one session has reserved; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<HeldBudget>,
    bytes: usize,
}

impl HeldBudget {
    pub(crate) fn new(cap: usize) -> Arc<HeldBudget> {
        Arc::new(HeldBudget {
            used: AtomicUsize::new(0),
            cap,
        })
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Reserves `bytes`, or `None` when that would take the total over the cap.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.cap)
            })
            .ok()?;
        Some(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Reservation {
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_the_cap_and_are_given_back() {
        let b = HeldBudget::new(100);
        let r1 = b.reserve(60).unwrap();
        assert!(b.reserve(41).is_none(), "60 + 41 is over the cap");
        let r2 = b.reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(r1);
        assert_eq!(b.used(), 40);
        assert!(b.reserve(usize::MAX).is_none(), "no overflow");
        drop(r2);
        assert_eq!(b.used(), 0);
    }
}
