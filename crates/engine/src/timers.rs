//! Named timers: what the engine waits for, and one deadline per timer of a connection.

use std::fmt;
use std::time::Instant;

use ember_turn::RelayTimer;

/// The timers of one connection. Which ones run depends on the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionTimer {
    /// The ICE agent's next check or retransmission, while connecting.
    Ice,
    /// Give up a connection that is not established in time.
    ConnectTimeout,
    /// boringtun's timers need a tick (handshake retries, keepalives).
    WireguardTimers,
    /// No application packet for the policy's idle threshold: the connection goes idle.
    IdleThreshold,
    /// An unanswered probe of the path is sent again, or counted as a miss.
    ProbeRetransmit,
    /// The policy's periodic probe of an active path.
    ActiveProbe,
    /// We sent and heard nothing back for long enough to probe the path.
    PathSilent,
    /// The policy's periodic probe of an idle path.
    IdleProbe,
    /// The idle connection's authenticated STUN keepalive.
    IdleKeepalive,
    /// The idle peer's keepalives stopped.
    IdlePeerSilent,
    /// Nothing sent for the policy's WireGuard keepalive interval.
    WireguardKeepalive,
}

impl ConnectionTimer {
    /// Every timer, in the order `TimerTable::next` prefers on a tie.
    pub const ALL: [ConnectionTimer; 11] = [
        ConnectionTimer::Ice,
        ConnectionTimer::ConnectTimeout,
        ConnectionTimer::WireguardTimers,
        ConnectionTimer::IdleThreshold,
        ConnectionTimer::ProbeRetransmit,
        ConnectionTimer::ActiveProbe,
        ConnectionTimer::PathSilent,
        ConnectionTimer::IdleProbe,
        ConnectionTimer::IdleKeepalive,
        ConnectionTimer::IdlePeerSilent,
        ConnectionTimer::WireguardKeepalive,
    ];

    /// For logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionTimer::Ice => "ice",
            ConnectionTimer::ConnectTimeout => "connect timeout",
            ConnectionTimer::WireguardTimers => "wireguard timers",
            ConnectionTimer::IdleThreshold => "idle threshold",
            ConnectionTimer::ProbeRetransmit => "probe retransmit",
            ConnectionTimer::ActiveProbe => "active probe",
            ConnectionTimer::PathSilent => "path silent",
            ConnectionTimer::IdleProbe => "idle probe",
            ConnectionTimer::IdleKeepalive => "idle keepalive",
            ConnectionTimer::IdlePeerSilent => "idle peer silent",
            ConnectionTimer::WireguardKeepalive => "wireguard keepalive",
        }
    }

    /// Timers of idle connections, rounded up to the policy's coalescing grid so that idle
    /// connections share wake-ups.
    #[must_use]
    pub fn is_coalesced(self) -> bool {
        matches!(
            self,
            ConnectionTimer::IdleProbe
                | ConnectionTimer::IdleKeepalive
                | ConnectionTimer::IdlePeerSilent
        )
    }
}

impl fmt::Display for ConnectionTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the engine wants `handle_timeout` called: the timer that is due first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    Connection(ConnectionTimer),
    Relay(RelayTimer),
}

impl TimerKind {
    /// For logs (the connection's or the relay's timer name).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Connection(t) => t.as_str(),
            TimerKind::Relay(t) => t.as_str(),
        }
    }
}

impl fmt::Display for TimerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One deadline per [`ConnectionTimer`]; `None` when the timer does not run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; ConnectionTimer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: ConnectionTimer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    pub(crate) fn get(&self, timer: ConnectionTimer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// The timer runs and its deadline is `now` or earlier.
    pub(crate) fn is_expired(&self, timer: ConnectionTimer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline and its timer.
    pub(crate) fn next(&self) -> Option<(Instant, ConnectionTimer)> {
        let mut best: Option<(Instant, ConnectionTimer)> = None;
        for timer in ConnectionTimer::ALL {
            if let Some(at) = self.get(timer)
                && best.is_none_or(|(b, _)| at < b)
            {
                best = Some((at, timer));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_table_yields_its_earliest_timer_and_prefers_the_first_listed_on_a_tie() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(
            ConnectionTimer::WireguardKeepalive,
            t0 + Duration::from_secs(3),
        );
        table.set(ConnectionTimer::IdleThreshold, t0 + Duration::from_secs(1));
        table.set(ConnectionTimer::PathSilent, t0 + Duration::from_secs(1));
        assert_eq!(
            table.next(),
            Some((t0 + Duration::from_secs(1), ConnectionTimer::IdleThreshold))
        );
        assert!(table.is_expired(ConnectionTimer::PathSilent, t0 + Duration::from_secs(1)));
        assert!(!table.is_expired(ConnectionTimer::WireguardKeepalive, t0));
        assert!(!table.is_expired(ConnectionTimer::Ice, t0 + Duration::from_secs(9)));
    }

    #[test]
    fn every_timer_has_its_own_slot() {
        for (i, timer) in ConnectionTimer::ALL.into_iter().enumerate() {
            assert_eq!(timer as usize, i, "{timer}");
        }
    }
}
