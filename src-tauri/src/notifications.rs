//! Desktop notifications that never block the app and never come as a storm.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// At most this many notifications…
pub const BURST: usize = 3;
/// …within this window.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);
/// The same notification again only after this long.
pub const REPEAT_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Identifies "the same" notification for [`REPEAT_AFTER`], e.g. `service-stopped`.
    pub key: String,
    pub title: String,
    pub body: String,
}

/// Decides which notifications are shown.
#[derive(Debug, Default)]
pub struct NotificationGate {
    recent: VecDeque<Instant>,
    last_by_key: HashMap<String, Instant>,
}

impl NotificationGate {
    pub fn admit(&mut self, key: &str, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|sent| now.saturating_duration_since(*sent) >= BURST_WINDOW)
        {
            self.recent.pop_front();
        }
        let repeated = self
            .last_by_key
            .get(key)
            .is_some_and(|sent| now.saturating_duration_since(*sent) < REPEAT_AFTER);
        if repeated || self.recent.len() >= BURST {
            tracing::debug!(key, "Notification suppressed");
            return false;
        }
        self.recent.push_back(now);
        self.last_by_key.insert(key.to_owned(), now);
        true
    }
}

/// Shows a notification through the desktop's notification service, on a blocking thread so
/// a slow or missing notification daemon never stalls the app.
pub fn show(notification: Notification) {
    std::thread::spawn(move || {
        let result = notify_rust::Notification::new()
            .appname("Ember")
            .summary(&notification.title)
            .body(&notification.body)
            .show();
        if let Err(e) = result {
            tracing::warn!(key = %notification.key, "Cannot show a notification: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_at_once_make_at_most_a_burst() {
        let mut gate = NotificationGate::default();
        let now = Instant::now();
        let shown = (0..10)
            .filter(|i| gate.admit(&format!("unreachable-{i}"), now))
            .count();
        assert_eq!(shown, BURST);
        assert!(gate.admit("unreachable-9", now + BURST_WINDOW));
    }

    #[test]
    fn the_same_notification_is_not_repeated_within_a_minute() {
        let mut gate = NotificationGate::default();
        let now = Instant::now();
        assert!(gate.admit("service-stopped", now));
        assert!(!gate.admit("service-stopped", now + Duration::from_secs(30)));
        assert!(gate.admit("service-stopped", now + REPEAT_AFTER));
    }
}
