//! The liveness policy: every timing the engine uses after a connection is up, as data.

use std::time::Duration;

/// How the first probe of a silent path is timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeRto {
    /// A fixed initial RTO, doubled on every retransmission up to `max` (the `is` agent's rule).
    Fixed { initial: Duration, max: Duration },
    /// `factor` × the measured RTT, clamped to `min..=max`, doubled on every retransmission.
    RttDerived {
        factor: u32,
        min: Duration,
        max: Duration,
    },
}

/// Which side sends the keepalive of an idle connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveSender {
    /// Both ends (the reference design: WireGuard persistent keepalive on both).
    Both,
    /// Only the client (the ICE-controlling side); the gateway only listens.
    Client,
}

/// Liveness policy of a connection once it is established.
///
/// Two instances exist: [`LivenessPolicy::baseline`] (the reference design, for comparison) and
/// [`LivenessPolicy::ember`] (the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessPolicy {
    /// A human name, printed by the benchmark.
    pub name: &'static str,
    /// Give up a connection that is not established after this long.
    pub connect_timeout: Duration,
    /// ICE connectivity checks while connecting: the `is` agent's initial and maximum STUN RTO.
    pub ice_initial_rto: Duration,
    pub ice_max_rto: Duration,
    /// No application packet in either direction for this long makes a connection `Idle`.
    pub idle_after: Duration,
    /// Active state: probe every this often whatever the traffic (`None`: only when needed).
    pub active_probe_interval: Option<Duration>,
    /// Active state: start a probe when we have sent and heard nothing back for this long
    /// (`None`: never probe on silence). Also scaled by the RTT: at least 4 × RTT.
    pub probe_after_silence: Option<Duration>,
    /// Probe retransmission timing.
    pub probe_rto: ProbeRto,
    /// Unanswered probes (first send included) before an active connection is `Broken`.
    pub active_misses: u32,
    /// Idle state: probe every this often (`None`: no idle probes).
    pub idle_probe_interval: Option<Duration>,
    /// Unanswered probes before an idle connection is `Broken`.
    pub idle_misses: u32,
    /// WireGuard keepalive when nothing was sent for this long (`None`: off).
    pub wg_keepalive: Option<Duration>,
    /// Idle state: one authenticated STUN binding indication every this often (`None`: off).
    pub idle_keepalive: Option<Duration>,
    /// Who sends `idle_keepalive`.
    pub idle_keepalive_sender: KeepaliveSender,
    /// Idle timers are rounded up to a multiple of this, counted from the engine's start, so
    /// all idle connections of a process share wake-ups (`None`: every connection on its own).
    pub coalesce_idle_timers: Option<Duration>,
    /// Probe at once when the first packet after idle is sent (validates the path in parallel).
    pub probe_on_resume: bool,
    /// An idle connection that heard nothing from the peer for this long is `Broken` (the
    /// listening side's way to notice a peer that is gone; `None`: never).
    pub idle_peer_timeout: Option<Duration>,
}

impl LivenessPolicy {
    /// The reference design's timings (Firezone, Sept 2024; ARCHITECTURE §6).
    #[must_use]
    pub fn baseline() -> Self {
        Self {
            name: "baseline",
            connect_timeout: Duration::from_secs(15),
            ice_initial_rto: Duration::from_millis(250),
            ice_max_rto: Duration::from_millis(1500),
            idle_after: Duration::from_secs(10),
            active_probe_interval: Some(Duration::from_millis(1500)),
            probe_after_silence: None,
            probe_rto: ProbeRto::Fixed {
                initial: Duration::from_millis(250),
                max: Duration::from_millis(1500),
            },
            active_misses: 8,
            idle_probe_interval: Some(Duration::from_secs(60)),
            idle_misses: 4,
            wg_keepalive: Some(Duration::from_secs(25)),
            idle_keepalive: None,
            idle_keepalive_sender: KeepaliveSender::Both,
            coalesce_idle_timers: None,
            probe_on_resume: false,
            idle_peer_timeout: None,
        }
    }

    /// Ember's default: passive liveness, probes only when needed, one idle keepalive from the
    /// client, fast validation on resume, coalesced idle timers.
    #[must_use]
    pub fn ember() -> Self {
        Self {
            name: "ember",
            connect_timeout: Duration::from_secs(10),
            ice_initial_rto: Duration::from_millis(100),
            ice_max_rto: Duration::from_millis(1500),
            idle_after: Duration::from_secs(10),
            active_probe_interval: None,
            probe_after_silence: Some(Duration::from_millis(500)),
            probe_rto: ProbeRto::RttDerived {
                factor: 3,
                min: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            active_misses: 3,
            idle_probe_interval: None,
            idle_misses: 3,
            wg_keepalive: None,
            idle_keepalive: Some(Duration::from_secs(50)),
            idle_keepalive_sender: KeepaliveSender::Client,
            coalesce_idle_timers: Some(Duration::from_secs(50)),
            probe_on_resume: true,
            idle_peer_timeout: Some(Duration::from_secs(200)),
        }
    }

    /// The RTO of probe transmission number `attempt` (0-based) given the measured RTT.
    #[must_use]
    pub fn probe_timeout(&self, attempt: u32, rtt: Option<Duration>) -> Duration {
        let shift = attempt.min(10);
        match self.probe_rto {
            ProbeRto::Fixed { initial, max } => (initial * (1 << shift)).min(max),
            ProbeRto::RttDerived { factor, min, max } => {
                // Without a measurement yet, start from the upper bound's middle ground.
                let base = rtt.map_or(max / 2, |rtt| (rtt * factor).clamp(min, max));
                (base * (1 << shift)).min(max * 2)
            }
        }
    }
}

impl Default for LivenessPolicy {
    fn default() -> Self {
        Self::ember()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_probe_backoff_caps_at_max_rto() {
        let p = LivenessPolicy::baseline();
        let rtos: Vec<_> = (0..5).map(|n| p.probe_timeout(n, None)).collect();
        assert_eq!(
            rtos,
            [250, 500, 1000, 1500, 1500]
                .map(Duration::from_millis)
                .to_vec()
        );
    }

    #[test]
    fn ember_probe_timeout_follows_measured_rtt() {
        let p = LivenessPolicy::ember();
        let fast = p.probe_timeout(0, Some(Duration::from_millis(40)));
        let slow = p.probe_timeout(0, Some(Duration::from_millis(300)));
        assert_eq!(fast, Duration::from_millis(120));
        assert_eq!(slow, Duration::from_millis(900));
        assert!(p.probe_timeout(1, Some(Duration::from_millis(40))) > fast);
    }
}
