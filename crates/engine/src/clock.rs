//! boringtun's clock.
//!
//! `boringtun::noise::Tunn` reads `Instant::now()` itself. With the `sim-clock` feature the
//! engine enables boringtun's `mock-instant` feature and, before every call into a `Tunn`, sets
//! that (thread-local) mock clock to the engine's `now`, so WireGuard's timers follow the
//! simulated time exactly. Without the feature this is a no-op and boringtun reads the real
//! clock, which the driver's `now` tracks.

use std::time::Instant;

#[cfg(feature = "sim-clock")]
pub(crate) fn sync(epoch: Instant, now: Instant) {
    // An offset keeps boringtun's own `now - x` arithmetic away from zero.
    const ORIGIN: std::time::Duration = std::time::Duration::from_secs(1 << 20);
    mock_instant::MockClock::set_time(ORIGIN + now.saturating_duration_since(epoch));
}

#[cfg(not(feature = "sim-clock"))]
pub(crate) fn sync(_epoch: Instant, _now: Instant) {}
