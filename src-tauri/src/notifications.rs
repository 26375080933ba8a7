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
        if let Err(e) = platform::show(&notification) {
            tracing::warn!(key = %notification.key, "Cannot show a notification: {e}");
        }
    });
}

/// Linux (D-Bus) and Windows (toasts): notify-rust.
#[cfg(not(target_os = "macos"))]
mod platform {
    pub fn show(notification: &super::Notification) -> Result<(), notify_rust::error::Error> {
        notify_rust::Notification::new()
            .appname("Ember")
            .summary(&notification.title)
            .body(&notification.body)
            .show()
            .map(drop)
    }
}

/// macOS: the UserNotifications framework directly. notify-rust goes through
/// mac-notification-sys, whose Objective-C needs the SDK to build; objc2's bindings need
/// none, so the macOS build is checked on Linux (`scripts/cross-check.sh`).
#[cfg(target_os = "macos")]
mod platform {
    use objc2::runtime::Bool;
    use objc2_foundation::{NSBundle, NSError, NSString};
    use objc2_user_notifications::{
        UNAuthorizationOptions, UNMutableNotificationContent, UNNotificationRequest,
        UNUserNotificationCenter,
    };

    pub fn show(notification: &super::Notification) -> Result<(), &'static str> {
        // The notification center throws (aborting the app) in a process that is not an
        // app bundle, such as a development build run from the terminal.
        if NSBundle::mainBundle().bundleIdentifier().is_none() {
            return Err("not running from an app bundle");
        }
        let center = UNUserNotificationCenter::currentNotificationCenter();
        // macOS asks the user once and remembers the answer; later requests return at once.
        let answered = block2::RcBlock::new(|_granted: Bool, _error: *mut NSError| {});
        center.requestAuthorizationWithOptions_completionHandler(
            UNAuthorizationOptions::Alert,
            &answered,
        );
        let content = UNMutableNotificationContent::new();
        content.setTitle(&NSString::from_str(&notification.title));
        content.setBody(&NSString::from_str(&notification.body));
        let request = UNNotificationRequest::requestWithIdentifier_content_trigger(
            &NSString::from_str(&notification.key),
            &content,
            None,
        );
        center.addNotificationRequest_withCompletionHandler(&request, None);
        Ok(())
    }
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
