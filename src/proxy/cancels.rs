//! Which sessions want to hear about a client's CancelRequest themselves.
//!
//! A cancel is forwarded to the server, which cancels what that backend is running. While
//! pgwarden backs off between attempts of a statement the backend runs nothing, so the server
//! would drop the cancel: a session in a backoff registers here (backend pid and secret key,
//! as the client got them in BackendKeyData) and is woken instead.
//!
//! A cancel a registered session takes is not forwarded: the server would deliver it late,
//! into pgwarden's own next statement (the restore that reports the cancel), and the client
//! would see a bare 57014 instead of what pgwarden was doing. Registering and taking happen
//! under one lock, so a cancel is either taken (the session acts on it, even if its sleep
//! ended at the same moment) or forwarded, never lost.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What a waiting session shares with the registry.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    pub(crate) notify: Notify,
    cancelled: AtomicBool,
}

impl Wakeup {
    /// Whether a cancel was taken for this session.
    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Backend pid → (secret key, the waiting session's wakeup).
type Waiting = HashMap<i32, (Vec<u8>, Arc<Wakeup>)>;

/// The registry, shared by every session.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    waiting: Mutex<Waiting>,
}

/// A session's registration; removed when dropped.
pub(crate) struct Registration<'a> {
    cancels: &'a Cancels,
    pid: i32,
    pub(crate) wakeup: Arc<Wakeup>,
}

impl Cancels {
    pub(crate) fn register(&self, pid: i32, key: &[u8]) -> Registration<'_> {
        let wakeup = Arc::new(Wakeup::default());
        self.lock().insert(pid, (key.to_vec(), Arc::clone(&wakeup)));
        Registration {
            cancels: self,
            pid,
            wakeup,
        }
    }

    /// A CancelRequest packet (length, code, pid, key): wakes the registered session whose
    /// pid and key match. The key must match, as the server requires: a guessed pid alone
    /// cancels nothing. True when a session took it (then it must not go to the server).
    pub(crate) fn cancel(&self, raw: &[u8]) -> bool {
        let (Some(pid), Some(key)) = (raw.get(8..12), raw.get(12..)) else {
            return false;
        };
        let Ok(pid) = <[u8; 4]>::try_from(pid) else {
            return false;
        };
        let pid = i32::from_be_bytes(pid);
        match self.lock().get(&pid) {
            Some((k, wakeup)) if k.as_slice() == key => {
                wakeup.cancelled.store(true, Ordering::SeqCst);
                wakeup.notify.notify_one();
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.cancels.lock().remove(&self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: i32, key: &[u8]) -> Vec<u8> {
        let mut p = (16i32).to_be_bytes().to_vec();
        p.extend_from_slice(&80877102i32.to_be_bytes());
        p.extend_from_slice(&pid.to_be_bytes());
        p.extend_from_slice(key);
        p
    }

    #[tokio::test]
    async fn only_the_right_key_wakes_the_session() {
        let c = Cancels::default();
        let r = c.register(42, &[1, 2, 3, 4]);
        assert!(!c.cancel(&packet(42, &[9, 9, 9, 9])));
        assert!(!c.cancel(&packet(43, &[1, 2, 3, 4])));
        assert!(!c.cancel(&[0; 5]));
        let woke = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            r.wakeup.notify.notified(),
        );
        assert!(woke.await.is_err(), "a wrong key woke it");
        assert!(!r.wakeup.cancelled());
        assert!(c.cancel(&packet(42, &[1, 2, 3, 4])));
        r.wakeup.notify.notified().await;
        assert!(r.wakeup.cancelled());
        drop(r);
        assert!(c.lock().is_empty());
        assert!(!c.cancel(&packet(42, &[1, 2, 3, 4])), "taken after it left");
    }
}
