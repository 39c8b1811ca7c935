//! Which sessions want to hear about a client's CancelRequest themselves.
//!
//! A cancel is forwarded to the server, which cancels what that backend is running. While
//! pgwarden backs off between attempts of a statement the backend runs nothing, so the server
//! would drop the cancel: a session in a backoff registers here (backend pid and secret key,
//! as the client got them in BackendKeyData) and is woken instead.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Backend pid → (secret key, the waiting session's wakeup).
type Waiting = HashMap<i32, (Vec<u8>, Arc<Notify>)>;

/// The registry, shared by every session.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    waiting: Mutex<Waiting>,
}

/// A session's registration; removed when dropped.
pub(crate) struct Registration<'a> {
    cancels: &'a Cancels,
    pid: i32,
    pub(crate) notify: Arc<Notify>,
}

impl Cancels {
    pub(crate) fn register(&self, pid: i32, key: &[u8]) -> Registration<'_> {
        let notify = Arc::new(Notify::new());
        self.lock().insert(pid, (key.to_vec(), Arc::clone(&notify)));
        Registration {
            cancels: self,
            pid,
            notify,
        }
    }

    /// A CancelRequest packet (length, code, pid, key): wakes the registered session whose
    /// pid and key match. The key must match, as the server requires: a guessed pid alone
    /// cancels nothing.
    pub(crate) fn cancel(&self, raw: &[u8]) {
        let (Some(pid), Some(key)) = (raw.get(8..12), raw.get(12..)) else {
            return;
        };
        let Ok(pid) = <[u8; 4]>::try_from(pid) else {
            return;
        };
        let pid = i32::from_be_bytes(pid);
        if let Some((k, notify)) = self.lock().get(&pid) {
            if k.as_slice() == key {
                notify.notify_one();
            }
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
        c.cancel(&packet(42, &[9, 9, 9, 9]));
        c.cancel(&packet(43, &[1, 2, 3, 4]));
        c.cancel(&[0; 5]);
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), r.notify.notified());
        assert!(woke.await.is_err(), "a wrong key woke it");
        c.cancel(&packet(42, &[1, 2, 3, 4]));
        r.notify.notified().await;
        drop(r);
        assert!(c.lock().is_empty());
    }
}
