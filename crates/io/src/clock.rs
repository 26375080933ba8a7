//! Noticing suspend. `Instant` (CLOCK_MONOTONIC on Linux) stops while the machine sleeps;
//! CLOCK_BOOTTIME does not (on macOS: CLOCK_UPTIME_RAW and CLOCK_MONOTONIC_RAW, see
//! `clock/macos.rs`). When the second ran ahead of the first, the machine was asleep and
//! every timer of the engine is stale: NAT mappings are likely gone, so connections should be
//! reset rather than probed to death.

use std::time::Duration;

/// A gap shorter than this is scheduling noise, not a suspend.
pub const MIN_SUSPEND: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct SuspendDetector {
    last: Option<Readings>,
}

#[derive(Debug, Clone, Copy)]
struct Readings {
    monotonic: Duration,
    boottime: Duration,
}

impl Default for SuspendDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl SuspendDetector {
    pub fn new() -> Self {
        Self { last: None }
    }

    /// How long the machine slept since the previous call, if it did.
    pub fn check(&mut self) -> Option<Duration> {
        let (monotonic, boottime) = read_clocks()?;
        self.observe(monotonic, boottime)
    }

    fn observe(&mut self, monotonic: Duration, boottime: Duration) -> Option<Duration> {
        let now = Readings {
            monotonic,
            boottime,
        };
        let last = self.last.replace(now)?;
        let awake = monotonic.saturating_sub(last.monotonic);
        let total = boottime.saturating_sub(last.boottime);
        let slept = total.saturating_sub(awake);
        (slept >= MIN_SUSPEND).then_some(slept)
    }
}

#[cfg(target_os = "linux")]
fn read_clocks() -> Option<(Duration, Duration)> {
    use nix::time::{ClockId, clock_gettime};
    let read = |id| clock_gettime(id).ok().map(Duration::from);
    Some((
        read(ClockId::CLOCK_MONOTONIC)?,
        read(ClockId::CLOCK_BOOTTIME)?,
    ))
}

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos::read_clocks;
#[cfg(windows)]
#[path = "clock/windows.rs"]
mod windows;
#[cfg(windows)]
use windows::read_clocks;

/// Elsewhere the OS reports sleep and wake through its own notifications (a later change);
/// without readings nothing is detected.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn read_clocks() -> Option<(Duration, Duration)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_gap_between_boottime_and_monotonic_is_a_suspend() {
        let mut detector = SuspendDetector::new();
        assert_eq!(detector.observe(S(100), S(100)), None);
        assert_eq!(detector.observe(S(110), S(110)), None);
        assert_eq!(detector.observe(S(111), S(411)), Some(S(300)));
        assert_eq!(detector.observe(S(120), S(420)), None);
    }

    #[test]
    fn scheduling_noise_is_not_a_suspend() {
        let mut detector = SuspendDetector::new();
        detector.observe(S(0), S(0));
        assert_eq!(detector.observe(S(5), S(6)), None);
    }

    #[test]
    fn reads_the_real_clocks() {
        let mut detector = SuspendDetector::new();
        assert_eq!(detector.check(), None);
        assert_eq!(detector.check(), None);
    }
}
