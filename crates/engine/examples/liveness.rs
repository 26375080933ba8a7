//! The liveness benchmark: the reference design's policy and Ember's, in the same simulated
//! network, in one run. Prints one table.
//!
//! `cargo run -p ember-engine --release --example liveness`

#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ember_engine::{ConnectionState, Event, LivenessPolicy, Role};
use ember_sim::{HostId, NatConfig, Sim, app_packet, app_seq};

const NAT_TIMEOUT: Duration = Duration::from_secs(120);
/// Each access link: 10 ms, so host to host is 20 ms one way.
const LINK: Duration = Duration::from_millis(10);
const HOUR: Duration = Duration::from_secs(3600);

fn main() {
    let policies = [LivenessPolicy::baseline(), LivenessPolicy::ember()];
    let rows: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "idle wire cost: datagrams/connection/hour, both directions, after the first idle minute",
            "<= 120",
            policies
                .iter()
                .map(|p| idle_wire_cost(p).to_string())
                .collect(),
        ),
        (
            "per-client fixed idle cost: relay control datagrams/hour (both directions)",
            "reported",
            policies
                .iter()
                .map(|p| relay_fixed_cost(p).to_string())
                .collect(),
        ),
        (
            "active dead-path detection: cut during 50 pkt/s two-way flow -> Broken",
            "<= 3 s",
            policies
                .iter()
                .map(|p| secs(dead_path_detection(p)))
                .collect(),
        ),
        (
            "probe overhead while traffic flows both ways: extra datagrams/minute",
            "0",
            policies
                .iter()
                .map(|p| probe_overhead(p).to_string())
                .collect(),
        ),
        (
            "probe overhead, one-way 50 pkt/s flow (no replies): extra datagrams/minute",
            "reported",
            policies
                .iter()
                .map(|p| one_way_overhead(p).to_string())
                .collect(),
        ),
        (
            "resume after silent death while idle, NAT forgot the mappings: first packet -> delivered",
            "<= 1.5 s",
            policies
                .iter()
                .map(|p| secs(resume_after_death(p, Death::NatForgot)))
                .collect(),
        ),
        (
            "resume after silent death while idle, the gateway's address changed",
            "<= 1.5 s",
            policies
                .iter()
                .map(|p| secs(resume_after_death(p, Death::PeerMoved)))
                .collect(),
        ),
        (
            "process wake-ups per idle hour, 100 idle connections (client)",
            "<= 2 x keepalives of one connection",
            policies
                .iter()
                .map(|p| {
                    let (wakeups, keepalives) = wakeups_100(p);
                    format!("{wakeups} (keepalives/conn: {keepalives})")
                })
                .collect(),
        ),
        (
            "connect time, first packet -> delivered (incl. 20 ms signalling): direct",
            "reported",
            policies
                .iter()
                .map(|p| secs(connect_time(p, false)))
                .collect(),
        ),
        (
            "connect time, first packet -> delivered (incl. 20 ms signalling): relayed",
            "reported",
            policies
                .iter()
                .map(|p| secs(connect_time(p, true)))
                .collect(),
        ),
        (
            "connect time after an hour without connections (relay allocations released): relayed",
            "reported",
            policies
                .iter()
                .map(|p| secs(connect_time_after_idle_hour(p)))
                .collect(),
        ),
        (
            "one idle relayed connection: relay control datagrams/hour, both hosts, both directions",
            "reported",
            policies
                .iter()
                .map(|p| relayed_idle_relay_cost(p).to_string())
                .collect(),
        ),
    ];
    println!("20 ms one-way latency host to host, NAT UDP timeout 120 s, simulated time.\n");
    println!(
        "| figure | goal | {} | {} |",
        policies[0].name, policies[1].name
    );
    println!("|---|---|---|---|");
    for (figure, goal, values) in rows {
        println!("| {figure} | {goal} | {} | {} |", values[0], values[1]);
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("{:.2} s", d.as_secs_f64()),
    )
}

/// A client and a gateway behind friendly NATs, with one relay, connected.
fn pair(policy: &LivenessPolicy, symmetric: bool) -> (Sim, HostId, HostId) {
    let mut sim = Sim::new(42);
    sim.add_relay();
    let nat = if symmetric {
        NatConfig::symmetric(NAT_TIMEOUT)
    } else {
        NatConfig::friendly(NAT_TIMEOUT)
    };
    let c = sim.add_host("client", Role::Client, policy.clone(), Some(nat), LINK);
    let g = sim.add_host("gateway", Role::Gateway, policy.clone(), Some(nat), LINK);
    sim.run_for(Duration::from_secs(1));
    (sim, c, g)
}

fn delivered(sim: &Sim, at: HostId, seq: u64) -> bool {
    sim.hosts[at.0]
        .delivered
        .iter()
        .any(|d| app_seq(&d.packet) == Some(seq))
}

fn establish(sim: &mut Sim, c: HostId, g: HostId) {
    sim.send_app(c, g, &app_packet(0, 100));
    let ok = sim.run_until_cond(Duration::from_secs(15), |s| delivered(s, g, 0));
    assert!(ok, "benchmark setup: no connection");
    sim.send_app(g, c, &app_packet(1, 100));
    sim.run_for(Duration::from_millis(200));
}

fn idle_wire_cost(policy: &LivenessPolicy) -> u64 {
    let (mut sim, c, g) = pair(policy, false);
    establish(&mut sim, c, g);
    sim.run_for(policy.idle_after + Duration::from_secs(60));
    let before = conn_traffic(&sim, &[c, g]);
    sim.run_for(HOUR);
    let cost = conn_traffic(&sim, &[c, g]) - before;
    assert_eq!(
        sim.hosts[c.0].engine.state(g.peer()),
        Some(ConnectionState::Idle)
    );
    cost
}

fn conn_traffic(sim: &Sim, hosts: &[HostId]) -> u64 {
    hosts
        .iter()
        .map(|h| sim.hosts[h.0].counters.connection_traffic())
        .sum()
}

fn relay_fixed_cost(policy: &LivenessPolicy) -> u64 {
    let (mut sim, c, _g) = pair(policy, false);
    sim.run_for(Duration::from_secs(60));
    let k = sim.hosts[c.0].counters;
    sim.run_for(HOUR);
    let k2 = sim.hosts[c.0].counters;
    (k2.sent_relay_control - k.sent_relay_control)
        + (k2.received_relay_control - k.received_relay_control)
}

/// A 50 pkt/s flow each way; returns the counters' overhead and the sim.
fn flow(
    sim: &mut Sim,
    c: HostId,
    g: HostId,
    duration: Duration,
    mut until: impl FnMut(&Sim) -> bool,
) -> u64 {
    let mut seq = 10;
    let end = sim.now + duration;
    while sim.now < end {
        sim.send_app(c, g, &app_packet(seq, 200));
        sim.send_app(g, c, &app_packet(seq, 200));
        seq += 1;
        sim.run_for(Duration::from_millis(20));
        if until(sim) {
            break;
        }
    }
    seq
}

fn dead_path_detection(policy: &LivenessPolicy) -> Option<Duration> {
    let (mut sim, c, g) = pair(policy, false);
    establish(&mut sim, c, g);
    flow(&mut sim, c, g, Duration::from_secs(5), |_| false);
    sim.set_cut(g, true);
    let cut_at = sim.now;
    flow(&mut sim, c, g, Duration::from_secs(30), |s| {
        broken_at(s, c, g, cut_at).is_some()
    });
    broken_at(&sim, c, g, cut_at).map(|t| t - cut_at)
}

fn broken_at(sim: &Sim, c: HostId, g: HostId, after: Instant) -> Option<Instant> {
    sim.hosts[c.0].events.iter().find_map(|(t, e)| match e {
        Event::StateChanged {
            peer,
            to: ConnectionState::Broken,
            ..
        } if *peer == g.peer() && *t >= after => Some(*t),
        _ => None,
    })
}

fn probe_overhead(policy: &LivenessPolicy) -> u64 {
    let (mut sim, c, g) = pair(policy, false);
    establish(&mut sim, c, g);
    flow(&mut sim, c, g, Duration::from_secs(10), |_| false);
    let before: u64 = [c, g]
        .iter()
        .map(|h| sim.hosts[h.0].counters.sent_peer_stun + sim.hosts[h.0].counters.sent_wg_keepalive)
        .sum();
    flow(&mut sim, c, g, Duration::from_secs(60), |_| false);
    let after: u64 = [c, g]
        .iter()
        .map(|h| sim.hosts[h.0].counters.sent_peer_stun + sim.hosts[h.0].counters.sent_wg_keepalive)
        .sum();
    after - before
}

fn one_way_overhead(policy: &LivenessPolicy) -> u64 {
    let (mut sim, c, g) = pair(policy, false);
    establish(&mut sim, c, g);
    let mut seq = 10;
    let mut run = |sim: &mut Sim, d: Duration| {
        let end = sim.now + d;
        while sim.now < end {
            sim.send_app(c, g, &app_packet(seq, 200));
            seq += 1;
            sim.run_for(Duration::from_millis(20));
        }
    };
    run(&mut sim, Duration::from_secs(10));
    let overhead = |sim: &Sim| -> u64 {
        [c, g]
            .iter()
            .map(|h| sim.hosts[h.0].counters.overhead())
            .sum()
    };
    let before = overhead(&sim);
    run(&mut sim, Duration::from_secs(60));
    overhead(&sim) - before
}

#[derive(Clone, Copy)]
enum Death {
    NatForgot,
    PeerMoved,
}

fn resume_after_death(policy: &LivenessPolicy, death: Death) -> Option<Duration> {
    let (mut sim, c, g) = pair(policy, false);
    establish(&mut sim, c, g);
    sim.run_for(Duration::from_secs(300));
    match death {
        Death::NatForgot => {
            sim.flush_nat(c);
            sim.flush_nat(g);
        }
        Death::PeerMoved => sim.rebind_nat(g),
    }
    let start = sim.now;
    sim.send_app(c, g, &app_packet(500, 100));
    let ok = sim.run_until_cond(Duration::from_secs(60), |s| delivered(s, g, 500));
    ok.then(|| {
        sim.hosts[g.0]
            .delivered
            .iter()
            .find(|d| app_seq(&d.packet) == Some(500))
            .map_or(Duration::ZERO, |d| d.at - start)
    })
}

fn wakeups_100(policy: &LivenessPolicy) -> (u64, u64) {
    let mut sim = Sim::new(7);
    sim.add_relay();
    let c = sim.add_host(
        "client",
        Role::Client,
        policy.clone(),
        Some(NatConfig::friendly(NAT_TIMEOUT)),
        LINK,
    );
    let gateways: Vec<HostId> = (0..100)
        .map(|i| sim.add_host(&format!("gw{i}"), Role::Gateway, policy.clone(), None, LINK))
        .collect();
    for (i, g) in gateways.iter().enumerate() {
        sim.send_app(c, *g, &app_packet(i as u64, 100));
        // Connections start at scattered times, as they would in real use.
        sim.run_for(Duration::from_millis(997));
    }
    sim.run_for(policy.idle_after + Duration::from_secs(60));
    let up: BTreeSet<_> = gateways
        .iter()
        .filter(|g| sim.hosts[c.0].engine.state(g.peer()) == Some(ConnectionState::Idle))
        .collect();
    assert_eq!(
        up.len(),
        100,
        "benchmark setup: not every connection is idle"
    );
    let wakeups = sim.hosts[c.0].wakeups;
    let g0 = gateways[0];
    let ka_before = sim.hosts[c.0].counters;
    let g_before = sim.hosts[g0.0].counters;
    sim.run_for(HOUR);
    let wakeups = sim.hosts[c.0].wakeups - wakeups;
    // Keepalives of one connection: what its two ends sent for it (the client's share is
    // spread over 100 connections, so take the gateway's side plus the client's per-connection
    // average).
    let k = sim.hosts[c.0].counters;
    let client_share = (k.connection_traffic() - ka_before.connection_traffic()) / 100;
    let g_after = sim.hosts[g0.0].counters;
    let gateway_share = g_after.connection_traffic() - g_before.connection_traffic();
    (wakeups, client_share + gateway_share)
}

fn connect_time(policy: &LivenessPolicy, relayed: bool) -> Option<Duration> {
    let (mut sim, c, g) = pair(policy, relayed);
    let start = sim.now;
    sim.send_app(c, g, &app_packet(0, 100));
    let ok = sim.run_until_cond(Duration::from_secs(15), |s| delivered(s, g, 0));
    ok.then(|| {
        sim.hosts[g.0]
            .delivered
            .first()
            .map_or(Duration::ZERO, |d| d.at - start)
    })
}

fn connect_time_after_idle_hour(policy: &LivenessPolicy) -> Option<Duration> {
    let (mut sim, c, g) = pair(policy, true);
    sim.run_for(HOUR);
    let start = sim.now;
    sim.send_app(c, g, &app_packet(0, 100));
    let ok = sim.run_until_cond(Duration::from_secs(15), |s| delivered(s, g, 0));
    ok.then(|| {
        sim.hosts[g.0]
            .delivered
            .first()
            .map_or(Duration::ZERO, |d| d.at - start)
    })
}

fn relayed_idle_relay_cost(policy: &LivenessPolicy) -> u64 {
    let (mut sim, c, g) = pair(policy, true);
    establish(&mut sim, c, g);
    sim.run_for(policy.idle_after + Duration::from_secs(60));
    let control = |sim: &Sim| -> u64 {
        [c, g]
            .iter()
            .map(|h| sim.hosts[h.0].counters)
            .map(|k| k.sent_relay_control + k.received_relay_control)
            .sum()
    };
    let before = control(&sim);
    sim.run_for(HOUR);
    assert_eq!(
        sim.hosts[c.0].engine.state(g.peer()),
        Some(ConnectionState::Idle)
    );
    control(&sim) - before
}
