//! Scenario tests: two or more engines in the simulated network.

use std::time::Duration;

use ember_engine::{ConnectionState, Event, FailureReason, LivenessPolicy, Role};
use ember_sim::{HostId, NatConfig, Sim, app_packet, app_seq, logging};

const NAT_TIMEOUT: Duration = Duration::from_secs(120);
const ONE_WAY: Duration = Duration::from_millis(10);

fn world(client_nat: NatConfig, gateway_nat: NatConfig, seed: u64) -> (Sim, HostId, HostId) {
    world_with(Some(client_nat), Some(gateway_nat), seed)
}

fn world_with(
    client_nat: Option<NatConfig>,
    gateway_nat: Option<NatConfig>,
    seed: u64,
) -> (Sim, HostId, HostId) {
    let mut sim = Sim::new(seed);
    sim.add_relay();
    let c = sim.add_host(
        "client",
        Role::Client,
        LivenessPolicy::ember(),
        client_nat,
        ONE_WAY,
    );
    let g = sim.add_host(
        "gateway",
        Role::Gateway,
        LivenessPolicy::ember(),
        gateway_nat,
        ONE_WAY,
    );
    sim.run_for(Duration::from_secs(1));
    (sim, c, g)
}

fn delivered_seqs(sim: &Sim, at: HostId, from: HostId) -> Vec<u64> {
    sim.hosts[at.0]
        .delivered
        .iter()
        .filter(|d| d.from == from.peer())
        .filter_map(|d| app_seq(&d.packet))
        .collect()
}

fn path_relayed(sim: &Sim, at: HostId, peer: HostId) -> Option<bool> {
    sim.hosts[at.0]
        .engine
        .stats(peer.peer(), sim.now)?
        .path
        .map(|p| p.relayed)
}

#[test]
fn connects_directly_between_two_friendly_nats() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        1,
    );
    sim.send_app(c, g, &app_packet(1, 100));
    let ok = sim.run_until_cond(Duration::from_secs(5), |s| delivered_seqs(s, g, c) == [1]);
    assert!(ok, "first packet was not delivered");
    assert_eq!(path_relayed(&sim, c, g), Some(false));
    assert_eq!(
        sim.hosts[c.0].engine.state(g.peer()),
        Some(ConnectionState::Active)
    );
}

fn connect(sim: &mut Sim, c: HostId, g: HostId, seq: u64) {
    sim.send_app(c, g, &app_packet(seq, 100));
    let ok = sim.run_until_cond(Duration::from_secs(10), |s| {
        delivered_seqs(s, g, c).contains(&seq)
    });
    assert!(ok, "packet {seq} was not delivered");
}

fn failures(sim: &Sim, at: HostId, peer: HostId) -> Vec<FailureReason> {
    sim.hosts[at.0]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ConnectionFailed { peer: p, reason } if *p == peer.peer() => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn connects_via_the_relay_when_both_nats_are_symmetric() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::symmetric(NAT_TIMEOUT),
        NatConfig::symmetric(NAT_TIMEOUT),
        2,
    );
    connect(&mut sim, c, g, 1);
    assert_eq!(
        path_relayed(&sim, c, g)
            .zip(path_relayed(&sim, g, c))
            .map(|(a, b)| a || b),
        Some(true)
    );
    // Whichever side's relay carries it, both report the path as relayed.
    for (at, peer) in [(c, g), (g, c)] {
        let stats = sim.hosts[at.0].engine.stats(peer.peer(), sim.now).unwrap();
        assert!(stats.through_relay, "{stats:?}");
    }
    // And back the other way.
    sim.send_app(g, c, &app_packet(2, 100));
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| delivered_seqs(s, c, g) == [2]));
}

#[test]
fn path_cut_while_active_is_reported_broken_and_a_new_connection_works() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        3,
    );
    connect(&mut sim, c, g, 1);
    sim.set_cut(g, true);
    for seq in 2..200 {
        sim.send_app(c, g, &app_packet(seq, 100));
        sim.run_for(Duration::from_millis(20));
        if sim.hosts[c.0].engine.state(g.peer()).is_none() {
            break;
        }
    }
    assert_eq!(failures(&sim, c, g), [FailureReason::PathDead]);
    assert!(
        sim.hosts[c.0]
            .states(g.peer())
            .ends_with(&[ConnectionState::Broken, ConnectionState::Active].map(|s| s)[..1])
    );
    sim.set_cut(g, false);
    connect(&mut sim, c, g, 1000);
    assert_eq!(
        sim.hosts[c.0].engine.state(g.peer()),
        Some(ConnectionState::Active)
    );
}

#[test]
fn idle_connection_resumes_after_nat_forgets_mapping() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        4,
    );
    connect(&mut sim, c, g, 1);
    sim.run_for(Duration::from_secs(3600));
    assert_eq!(
        sim.hosts[c.0].engine.state(g.peer()),
        Some(ConnectionState::Idle)
    );
    sim.flush_nat(c);
    sim.flush_nat(g);
    sim.send_app(c, g, &app_packet(2, 100));
    let ok = sim.run_until_cond(Duration::from_secs(5), |s| {
        delivered_seqs(s, g, c).contains(&2)
    });
    assert!(ok, "traffic after idle did not reach the peer");
    assert_eq!(
        delivered_seqs(&sim, g, c)
            .iter()
            .filter(|s| **s == 2)
            .count(),
        1
    );
}

#[test]
fn idle_connection_survives_an_hour_without_nat_loss() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        5,
    );
    connect(&mut sim, c, g, 1);
    sim.run_for(Duration::from_secs(3600));
    assert!(failures(&sim, c, g).is_empty() && failures(&sim, g, c).is_empty());
    sim.send_app(g, c, &app_packet(2, 100));
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| delivered_seqs(s, c, g) == [2]));
}

#[test]
fn peer_restart_with_new_keys_is_noticed_and_reconnected() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        6,
    );
    connect(&mut sim, c, g, 1);
    sim.run_for(Duration::from_secs(1));
    sim.restart(g);
    sim.send_app(c, g, &app_packet(2, 100));
    let ok = sim.run_until_cond(Duration::from_secs(10), |s| {
        delivered_seqs(s, g, c).contains(&2)
    });
    assert!(ok, "packet did not reach the restarted peer");
    assert_eq!(failures(&sim, c, g), [FailureReason::PathDead]);
}

#[test]
fn client_roaming_to_a_new_address_keeps_the_connection() {
    let _log = logging::fail_on_error();
    // A gateway on a public address, the client behind a NAT that gets a new address.
    let (mut sim, c, g) = world_with(Some(NatConfig::friendly(NAT_TIMEOUT)), None, 7);
    connect(&mut sim, c, g, 1);
    let before = sim.hosts[g.0]
        .engine
        .stats(c.peer(), sim.now)
        .and_then(|s| s.path);
    sim.rebind_nat(c);
    for seq in 2..20 {
        sim.send_app(c, g, &app_packet(seq, 100));
        sim.run_for(Duration::from_millis(50));
        sim.send_app(g, c, &app_packet(seq, 100));
        sim.run_for(Duration::from_millis(50));
    }
    assert!(
        failures(&sim, c, g).is_empty(),
        "roaming must not break the connection"
    );
    let after = sim.hosts[g.0]
        .engine
        .stats(c.peer(), sim.now)
        .and_then(|s| s.path);
    assert_ne!(
        before.map(|p| p.remote),
        after.map(|p| p.remote),
        "the path follows the client"
    );
    assert_eq!(delivered_seqs(&sim, g, c), (1..20).collect::<Vec<_>>());
    assert_eq!(delivered_seqs(&sim, c, g), (2..20).collect::<Vec<_>>());
}

#[test]
fn connects_with_ten_percent_loss() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        8,
    );
    sim.set_loss(c, 0.05);
    sim.set_loss(g, 0.05);
    sim.send_app(c, g, &app_packet(1, 100));
    let ok = sim.run_until_cond(Duration::from_secs(10), |s| {
        s.hosts[c.0].engine.state(g.peer()) == Some(ConnectionState::Active)
    });
    assert!(ok, "no connection with 10 % loss");
}

#[test]
fn packets_sent_while_connecting_are_delivered_once_and_in_order() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        9,
    );
    for seq in 0..200 {
        sim.send_app(c, g, &app_packet(seq, 100));
    }
    sim.run_for(Duration::from_secs(3));
    // The buffer holds 128: the oldest 72 are dropped, the rest arrive once, in order.
    assert_eq!(delivered_seqs(&sim, g, c), (72..200).collect::<Vec<_>>());
}

#[test]
fn relay_credentials_are_replaced_without_dropping_the_connection() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::symmetric(NAT_TIMEOUT),
        NatConfig::symmetric(NAT_TIMEOUT),
        10,
    );
    connect(&mut sim, c, g, 1);
    for round in 0..3u64 {
        sim.rotate_relay_credentials();
        // Longer than the allocation's refresh interval and the permissions' lifetime.
        for i in 0..40u64 {
            let seq = 100 + round * 100 + i;
            sim.send_app(c, g, &app_packet(seq, 100));
            sim.run_for(Duration::from_secs(10));
        }
    }
    assert!(failures(&sim, c, g).is_empty() && failures(&sim, g, c).is_empty());
    let got = delivered_seqs(&sim, g, c);
    assert_eq!(got.len(), 1 + 120, "every packet through the relay arrived");
}

#[test]
fn reset_starts_over_and_reconnects() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        11,
    );
    connect(&mut sim, c, g, 1);
    let now = sim.now;
    sim.hosts[c.0].engine.reset(now);
    assert_eq!(sim.hosts[c.0].engine.state(g.peer()), None);
    connect(&mut sim, c, g, 2);
}

/// A 50 packets/s flow each way for `duration`.
fn two_way_flow(sim: &mut Sim, c: HostId, g: HostId, duration: Duration, first_seq: u64) -> u64 {
    let end = sim.now + duration;
    let mut seq = first_seq;
    while sim.now < end {
        sim.send_app(c, g, &app_packet(seq, 200));
        sim.send_app(g, c, &app_packet(seq, 200));
        seq += 1;
        sim.run_for(Duration::from_millis(20));
    }
    seq
}

#[test]
fn connection_to_an_unreachable_peer_fails_after_the_connect_timeout() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        12,
    );
    sim.set_cut(g, true);
    sim.send_app(c, g, &app_packet(1, 100));
    sim.run_for(LivenessPolicy::ember().connect_timeout + Duration::from_secs(1));
    assert_eq!(
        failures(&sim, c, g).first(),
        Some(&FailureReason::ConnectTimeout)
    );
    // The packet is still kept for the next attempt, which works once the peer is reachable.
    sim.set_cut(g, false);
    let ok = sim.run_until_cond(Duration::from_secs(15), |s| delivered_seqs(s, g, c) == [1]);
    assert!(ok, "the buffered packet did not survive the failed attempt");
}

#[test]
fn traffic_flowing_both_ways_needs_no_probes() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        13,
    );
    connect(&mut sim, c, g, 1);
    let next = two_way_flow(&mut sim, c, g, Duration::from_secs(5), 10);
    let stun_before =
        sim.hosts[c.0].counters.sent_peer_stun + sim.hosts[g.0].counters.sent_peer_stun;
    two_way_flow(&mut sim, c, g, Duration::from_secs(60), next);
    let stun_after =
        sim.hosts[c.0].counters.sent_peer_stun + sim.hosts[g.0].counters.sent_peer_stun;
    assert_eq!(
        stun_after - stun_before,
        0,
        "probes sent while both directions carried traffic"
    );
}

#[test]
fn idle_hour_costs_at_most_120_datagrams_sent_by_the_client_only() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        14,
    );
    connect(&mut sim, c, g, 1);
    sim.send_app(g, c, &app_packet(2, 100));
    sim.run_for(Duration::from_secs(70));
    let (c0, g0) = (sim.hosts[c.0].counters, sim.hosts[g.0].counters);
    sim.run_for(Duration::from_secs(3600));
    let (c1, g1) = (sim.hosts[c.0].counters, sim.hosts[g.0].counters);
    let client = c1.connection_traffic() - c0.connection_traffic();
    let gateway = g1.connection_traffic() - g0.connection_traffic();
    assert!(
        client + gateway <= 120,
        "idle hour cost {client} + {gateway} datagrams"
    );
    assert!(client > 0, "the client keeps the NAT mappings alive");
    assert_eq!(gateway, 0, "only one side sends keepalives");
    assert_eq!(
        sim.hosts[c.0].engine.state(g.peer()),
        Some(ConnectionState::Idle)
    );
}

#[test]
fn idle_connections_share_wakeups() {
    let _log = logging::fail_on_error();
    let mut sim = Sim::new(15);
    sim.add_relay();
    let c = sim.add_host(
        "client",
        Role::Client,
        LivenessPolicy::ember(),
        Some(NatConfig::friendly(NAT_TIMEOUT)),
        ONE_WAY,
    );
    let gateways: Vec<HostId> = (0..20)
        .map(|i| {
            sim.add_host(
                &format!("gw{i}"),
                Role::Gateway,
                LivenessPolicy::ember(),
                None,
                ONE_WAY,
            )
        })
        .collect();
    for (i, g) in gateways.iter().enumerate() {
        sim.send_app(c, *g, &app_packet(i as u64, 100));
        sim.run_for(Duration::from_millis(1_313));
    }
    sim.run_for(Duration::from_secs(70));
    let wakeups = sim.hosts[c.0].wakeups;
    let sent = sim.hosts[c.0].counters.connection_traffic();
    sim.run_for(Duration::from_secs(3600));
    let wakeups = sim.hosts[c.0].wakeups - wakeups;
    let keepalives_per_connection = (sim.hosts[c.0].counters.connection_traffic() - sent) / 20;
    assert!(keepalives_per_connection > 0);
    assert!(
        wakeups <= 2 * keepalives_per_connection,
        "{wakeups} wake-ups for {keepalives_per_connection} keepalives per connection"
    );
}

#[test]
fn gateway_reports_an_idle_client_that_vanished() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        16,
    );
    connect(&mut sim, c, g, 1);
    sim.run_for(Duration::from_secs(30));
    sim.set_cut(c, true);
    sim.run_for(Duration::from_secs(600));
    assert_eq!(failures(&sim, g, c), [FailureReason::PeerSilent]);
    assert_eq!(sim.hosts[g.0].engine.state(c.peer()), None);
}

#[test]
fn relayed_path_cut_while_active_is_reported_broken() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::symmetric(NAT_TIMEOUT),
        NatConfig::symmetric(NAT_TIMEOUT),
        17,
    );
    connect(&mut sim, c, g, 1);
    assert_eq!(
        path_relayed(&sim, c, g)
            .zip(path_relayed(&sim, g, c))
            .map(|(a, b)| a || b),
        Some(true)
    );
    sim.set_cut(g, true);
    two_way_flow(&mut sim, c, g, Duration::from_secs(5), 10);
    assert_eq!(failures(&sim, c, g).first(), Some(&FailureReason::PathDead));
}

#[test]
fn stats_count_packets_and_bytes_each_way() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        18,
    );
    connect(&mut sim, c, g, 1);
    for seq in 2..5 {
        sim.send_app(c, g, &app_packet(seq, 100));
        sim.send_app(g, c, &app_packet(seq, 300));
    }
    sim.run_for(Duration::from_millis(200));
    let stats = sim.hosts[c.0]
        .engine
        .stats(g.peer(), sim.now)
        .expect("a connection");
    assert_eq!((stats.tx_packets, stats.tx_bytes), (4, 400));
    assert_eq!((stats.rx_packets, stats.rx_bytes), (3, 900));
    assert!(
        stats
            .rtt
            .is_some_and(|rtt| rtt >= Duration::from_millis(40))
    );
    assert!(stats.last_handshake.is_some());
    assert_eq!(stats.state, ConnectionState::Active);
}

#[test]
fn relayed_connection_moves_to_a_new_relay_when_the_old_one_is_replaced() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::symmetric(NAT_TIMEOUT),
        NatConfig::symmetric(NAT_TIMEOUT),
        19,
    );
    connect(&mut sim, c, g, 1);
    sim.replace_relays();
    sim.run_for(Duration::from_secs(1));
    for seq in 2..100 {
        sim.send_app(c, g, &app_packet(seq, 100));
        sim.run_for(Duration::from_millis(100));
    }
    let got = delivered_seqs(&sim, g, c);
    assert!(
        got.ends_with(&(90..100).collect::<Vec<_>>()),
        "traffic does not flow through the new relay: {got:?}"
    );
    assert_eq!(
        sim.relays[0].allocations(),
        0,
        "the old relay's allocations are released"
    );
}

#[test]
fn idle_connection_behind_nats_with_a_30_s_timeout_still_delivers_on_resume() {
    let _log = logging::fail_on_error();
    let short = Duration::from_secs(30);
    let (mut sim, c, g) = world(NatConfig::friendly(short), NatConfig::friendly(short), 20);
    connect(&mut sim, c, g, 1);
    sim.run_for(Duration::from_secs(600));
    sim.send_app(c, g, &app_packet(2, 100));
    let ok = sim.run_until_cond(Duration::from_secs(5), |s| {
        delivered_seqs(s, g, c).contains(&2)
    });
    assert!(
        ok,
        "traffic after idle behind short-timeout NATs did not arrive"
    );
    sim.send_app(g, c, &app_packet(3, 100));
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| {
        delivered_seqs(s, c, g).contains(&3)
    }));
}

#[test]
fn a_replayed_wireguard_packet_from_another_address_neither_moves_the_path_nor_delivers_twice() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world_with(Some(NatConfig::friendly(NAT_TIMEOUT)), None, 21);
    connect(&mut sim, c, g, 1);
    sim.record_wire = true;
    sim.send_app(c, g, &app_packet(2, 100));
    sim.run_for(Duration::from_millis(100));
    let (_, dst, data) = sim
        .wire_log
        .iter()
        .rev()
        .find(|(_, _, p)| p.first() == Some(&4) && p.len() > 32)
        .cloned()
        .expect("the client's data packet on the wire");
    let path = sim.hosts[g.0]
        .engine
        .stats(c.peer(), sim.now)
        .and_then(|s| s.path);
    let attacker: std::net::SocketAddr = "192.0.2.66:6666".parse().expect("literal");
    let received = sim.hosts[g.0].counters.received;
    sim.inject(attacker, dst, data);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(
        sim.hosts[g.0].counters.received,
        received + 1,
        "the replay reached the gateway"
    );
    assert_eq!(
        sim.hosts[g.0]
            .engine
            .stats(c.peer(), sim.now)
            .and_then(|s| s.path),
        path
    );
    assert_eq!(delivered_seqs(&sim, g, c), [1, 2]);
}

#[test]
fn client_moving_to_another_network_keeps_the_connection() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world_with(Some(NatConfig::friendly(NAT_TIMEOUT)), None, 22);
    connect(&mut sim, c, g, 1);
    sim.move_host(c);
    for seq in 2..20 {
        sim.send_app(c, g, &app_packet(seq, 100));
        sim.run_for(Duration::from_millis(50));
        sim.send_app(g, c, &app_packet(seq, 100));
        sim.run_for(Duration::from_millis(50));
    }
    assert!(failures(&sim, c, g).is_empty() && failures(&sim, g, c).is_empty());
    assert_eq!(delivered_seqs(&sim, g, c), (1..20).collect::<Vec<_>>());
    assert_eq!(delivered_seqs(&sim, c, g), (2..20).collect::<Vec<_>>());
    let path = sim.hosts[c.0]
        .engine
        .stats(g.peer(), sim.now)
        .and_then(|s| s.path);
    assert_eq!(path.map(|p| p.local), Some(sim.hosts[c.0].socket()));
}

#[test]
fn a_repeated_grant_does_not_disturb_an_established_connection() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        23,
    );
    connect(&mut sim, c, g, 1);
    sim.repeat_grants(c, g);
    sim.run_for(Duration::from_secs(1));
    assert!(failures(&sim, c, g).is_empty() && failures(&sim, g, c).is_empty());
    assert_eq!(sim.hosts[c.0].states(g.peer()), [ConnectionState::Active]);
    sim.send_app(c, g, &app_packet(2, 100));
    assert!(
        sim.run_until_cond(Duration::from_millis(100), |s| delivered_seqs(s, g, c)
            == [1, 2])
    );
}

/// The client's network changed (its connections start over) but the portal hands out the
/// pair's credentials again: the gateway keeps its connection, and must tell the client's new
/// agent where to find it.
#[test]
fn a_client_that_started_over_reconnects_through_a_repeated_grant() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        25,
    );
    connect(&mut sim, c, g, 1);
    sim.reset(c);
    sim.repeat_grants(c, g);
    sim.run_for(Duration::from_millis(500));
    sim.send_app(c, g, &app_packet(2, 100));
    assert!(
        sim.run_until_cond(Duration::from_secs(3), |s| delivered_seqs(s, g, c)
            .contains(&2)),
        "the packet after the reset was not delivered within 3 s"
    );
}

#[test]
fn a_one_way_flow_backs_off_its_probes() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::friendly(NAT_TIMEOUT),
        NatConfig::friendly(NAT_TIMEOUT),
        24,
    );
    connect(&mut sim, c, g, 1);
    let mut seq = 10;
    let mut one_way = |sim: &mut Sim, secs: u64| {
        let end = sim.now + Duration::from_secs(secs);
        while sim.now < end {
            sim.send_app(c, g, &app_packet(seq, 200));
            seq += 1;
            sim.run_for(Duration::from_millis(20));
        }
    };
    one_way(&mut sim, 10);
    let before = sim.hosts[c.0].counters;
    one_way(&mut sim, 60);
    let after = sim.hosts[c.0].counters;
    let probes = after.sent_peer_stun - before.sent_peer_stun;
    let handshakes = after.sent_wg_handshake - before.sent_wg_handshake;
    // At most one probe per 4 s once backed off, and no handshakes beyond the 2-minute rekey.
    assert!(
        probes <= 20,
        "{probes} probes in a minute of one-way traffic"
    );
    assert!(
        handshakes <= 1,
        "{handshakes} handshakes in a minute of one-way traffic"
    );
    assert!(failures(&sim, c, g).is_empty());
    assert_eq!(delivered_seqs(&sim, g, c).len(), 1 + 3500);
}

#[test]
fn an_unused_relay_allocation_is_released_and_recreated_for_the_next_connection() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::symmetric(NAT_TIMEOUT),
        NatConfig::symmetric(NAT_TIMEOUT),
        25,
    );
    assert_eq!(
        sim.relays[0].allocations(),
        2,
        "both hosts allocate at start"
    );
    sim.run_for(Duration::from_secs(120));
    assert_eq!(
        sim.relays[0].allocations(),
        0,
        "unused allocations are released"
    );
    let idle = sim.hosts[c.0].counters;
    sim.run_for(Duration::from_secs(3600));
    assert_eq!(
        sim.hosts[c.0].counters, idle,
        "no relay traffic without connections"
    );
    connect(&mut sim, c, g, 1);
    assert_eq!(
        path_relayed(&sim, c, g)
            .zip(path_relayed(&sim, g, c))
            .map(|(a, b)| a || b),
        Some(true)
    );
}

#[test]
fn a_stale_relay_nonce_is_renewed_without_dropping_the_connection() {
    let _log = logging::fail_on_error();
    let (mut sim, c, g) = world(
        NatConfig::symmetric(NAT_TIMEOUT),
        NatConfig::symmetric(NAT_TIMEOUT),
        26,
    );
    connect(&mut sim, c, g, 1);
    for i in 0..30u64 {
        if i % 10 == 0 {
            sim.relays[0].rotate_nonce();
        }
        sim.send_app(c, g, &app_packet(100 + i, 100));
        sim.run_for(Duration::from_secs(60));
    }
    assert!(failures(&sim, c, g).is_empty() && failures(&sim, g, c).is_empty());
    assert_eq!(delivered_seqs(&sim, g, c).len(), 31);
}
