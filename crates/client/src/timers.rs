//! The client's own timers (the engine keeps its connections' timers): one `Option<Instant>`
//! per kind, so the next deadline is a scan of a few slots and never allocates.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Read the engine's statistics again for the views.
    Stats,
    /// Ask again for the grants of a site whose gateway went offline.
    Rejoin,
}

impl Timer {
    const ALL: [Timer; 2] = [Timer::Stats, Timer::Rejoin];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Timer::Stats => "statistics for the views",
            Timer::Rejoin => "asking again for a site whose gateway went offline",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer as usize] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer as usize] = None;
    }

    /// Whether `timer` was due at `now`; a due timer is stopped.
    pub(crate) fn expired(&mut self, timer: Timer, now: Instant) -> bool {
        let slot = &mut self.slots[timer as usize];
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            return true;
        }
        false
    }

    /// The earliest timer that is set.
    pub(crate) fn next(&self) -> Option<(Instant, Timer)> {
        Timer::ALL
            .iter()
            .filter_map(|timer| Some((self.slots[*timer as usize]?, *timer)))
            .min_by_key(|(at, _)| *at)
    }
}
