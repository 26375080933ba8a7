//! Windows: the unbiased interrupt time stops while the machine sleeps or hibernates; the tick
//! count does not. Both count from boot; only their differences matter here.

#![allow(unsafe_code)] // two Win32 clock reads with no safe wrapper in std

use std::time::Duration;

use windows_sys::Win32::System::SystemInformation::GetTickCount64;
use windows_sys::Win32::System::WindowsProgramming::QueryUnbiasedInterruptTime;

/// `(awake time, time including sleep)`, the pair `SuspendDetector` compares.
pub(super) fn read_clocks() -> Option<(Duration, Duration)> {
    let mut unbiased_100ns = 0u64;
    // SAFETY: the pointer is to a live, writable u64, which is all the call writes.
    let ok = unsafe { QueryUnbiasedInterruptTime(&mut unbiased_100ns) };
    if ok == 0 {
        return None;
    }
    // SAFETY: no arguments, no preconditions.
    let ticks_ms = unsafe { GetTickCount64() };
    Some((
        Duration::from_nanos(unbiased_100ns.saturating_mul(100)),
        Duration::from_millis(ticks_ms),
    ))
}
