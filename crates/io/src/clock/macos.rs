//! macOS's pair of clocks. The names are the other way round from Linux: CLOCK_UPTIME_RAW
//! (`mach_absolute_time`, what `Instant` reads) stops while the machine sleeps, and
//! CLOCK_MONOTONIC_RAW (`mach_continuous_time`) goes on counting (clock_gettime(3) on macOS;
//! libc++ moved `steady_clock` from the first to the second for that reason, LLVM D74341). Both
//! count the same raw ticks, unslewed, so their difference is the time asleep and nothing else.
//!
//! Type-checked on Linux by `scripts/cross-check.sh`; the detector fed by it is tested there.

use std::time::Duration;

use nix::libc;
use nix::time::{ClockId, clock_gettime};

/// (awake time, awake and asleep time), as `SuspendDetector` wants them.
pub(super) fn read_clocks() -> Option<(Duration, Duration)> {
    let read = |id| {
        clock_gettime(ClockId::from_raw(id))
            .ok()
            .map(Duration::from)
    };
    Some((
        read(libc::CLOCK_UPTIME_RAW)?,
        read(libc::CLOCK_MONOTONIC_RAW)?,
    ))
}
