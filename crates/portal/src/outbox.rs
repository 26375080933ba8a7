//! The queue between the hub and one peer's connection task. A message that does not fit is
//! never dropped on its own: the queue counts as overflowed and the connection closes, so a
//! gateway that falls behind cannot miss a revocation and keep serving it. A gateway that
//! reconnects must have every grant confirmed again (the gateway drops what the portal does not
//! send again), and a client that reconnects asks again for what it needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc};
use tracing::warn;

/// What a connection task is told to send.
#[derive(Debug)]
pub enum Outbound {
    Message(String),
    /// Send this last message, then close.
    Close(String),
}

/// The hub's end: queues without waiting.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    overflow: Arc<Overflow>,
}

/// The connection task's end.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Outbound>,
    overflow: Arc<Overflow>,
}

#[derive(Debug)]
struct Overflow {
    happened: AtomicBool,
    wake: Notify,
    /// The last message the peer gets when its queue overflowed.
    farewell: String,
}

/// A queue of `capacity` messages; `farewell` is sent before the close when it overflows.
pub fn outbox(capacity: usize, farewell: String) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(capacity);
    let overflow = Arc::new(Overflow {
        happened: AtomicBool::new(false),
        wake: Notify::new(),
        farewell,
    });
    (
        Outbox {
            tx,
            overflow: overflow.clone(),
        },
        Inbox { rx, overflow },
    )
}

impl Outbox {
    /// Queues `message`; false when it was not queued (the connection is gone, or closing
    /// because its queue overflowed).
    pub fn send(&self, message: Outbound) -> bool {
        if self.overflow.happened.load(Ordering::Acquire) {
            return false;
        }
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!("a peer does not keep up with its messages; closing its connection");
                self.overflow.happened.store(true, Ordering::Release);
                self.overflow.wake.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Inbox {
    /// The next thing to send. After an overflow: the farewell as a close, before anything
    /// still queued (which may be out of date without what was lost). `None`: the hub dropped
    /// this connection.
    pub async fn recv(&mut self) -> Option<Outbound> {
        if self.overflow.happened.load(Ordering::Acquire) {
            return Some(Outbound::Close(self.overflow.farewell.clone()));
        }
        tokio::select! {
            biased;
            () = self.overflow.wake.notified() => {
                Some(Outbound::Close(self.overflow.farewell.clone()))
            }
            message = self.rx.recv() => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_overflow_closes_before_anything_queued_is_sent() {
        let (outbox, mut inbox) = outbox(2, "behind".into());
        assert!(outbox.send(Outbound::Message("1".into())));
        assert!(outbox.send(Outbound::Message("2".into())));
        assert!(!outbox.send(Outbound::Message("3".into())));
        assert!(
            !outbox.send(Outbound::Message("4".into())),
            "nothing after it"
        );
        assert!(matches!(inbox.recv().await, Some(Outbound::Close(m)) if m == "behind"));
    }

    #[tokio::test]
    async fn messages_that_fit_arrive_in_order() {
        let (outbox, mut inbox) = outbox(2, "behind".into());
        for text in ["1", "2"] {
            assert!(outbox.send(Outbound::Message(text.into())));
            assert!(matches!(inbox.recv().await, Some(Outbound::Message(m)) if m == text));
        }
        drop(outbox);
        assert!(inbox.recv().await.is_none());
    }
}
