//! The engine's inputs and outputs without a network.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ember_engine::{
    Engine, EngineConfig, EngineError, Event, Grant, IceCredentials, PeerId, Role, TimerKind,
};
use ember_sim::logging;

fn creds(u: &str) -> IceCredentials {
    IceCredentials {
        ufrag: u.into(),
        pwd: format!("{u}-password-0123456789"),
    }
}

fn grant(peer: u64) -> Grant {
    Grant {
        peer: PeerId(peer),
        peer_public_key: [5; 32],
        preshared_key: [6; 32],
        local_ice: creds("loc"),
        remote_ice: creds("rem"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

#[test]
fn one_host_candidate_is_signalled_per_address_family() {
    let _log = logging::fail_on_error();
    let now = Instant::now();
    let mut e = Engine::new(EngineConfig::new(Role::Client, [1; 32], 1), now);
    e.handle_local_addresses(
        &[addr("192.0.2.10:51820"), addr("[2001:db8::10]:51820")],
        now,
    );
    e.handle_grant(grant(9), now).expect("valid grant");
    let candidates: Vec<String> = std::iter::from_fn(|| e.poll_event())
        .filter_map(|ev| match ev {
            Event::LocalCandidate {
                peer: PeerId(9),
                candidate,
            } => Some(candidate),
            _ => None,
        })
        .collect();
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    assert!(
        candidates
            .iter()
            .any(|c| c.contains("192.0.2.10 51820 typ host"))
    );
    assert!(
        candidates
            .iter()
            .any(|c| c.contains("2001:db8::10 51820 typ host"))
    );
}

#[test]
fn a_packet_for_an_unknown_peer_is_buffered_and_asks_for_a_connection_once() {
    let _log = logging::fail_on_error();
    let now = Instant::now();
    let mut e = Engine::new(EngineConfig::new(Role::Client, [1; 32], 1), now);
    e.handle_tun_packet(PeerId(4), &[0x45; 40], now);
    e.handle_tun_packet(PeerId(4), &[0x45; 40], now);
    let events: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
    assert_eq!(events, [Event::ConnectionNeeded { peer: PeerId(4) }]);
    assert!(
        e.poll_transmit().is_none(),
        "nothing to send without a grant"
    );
}

#[test]
fn caller_errors_are_typed() {
    let _log = logging::fail_on_error();
    let now = Instant::now();
    let mut e = Engine::new(EngineConfig::new(Role::Gateway, [1; 32], 1), now);
    assert_eq!(
        e.handle_remote_candidate(PeerId(1), "candidate:1 1 udp 1 192.0.2.1 1 typ host", now),
        Err(EngineError::UnknownPeer(PeerId(1)))
    );
    let mut bad = grant(1);
    bad.remote_ice.ufrag.clear();
    assert!(matches!(
        e.handle_grant(bad, now),
        Err(EngineError::BadGrant(_))
    ));
    e.handle_grant(grant(1), now).expect("valid grant");
    assert!(matches!(
        e.handle_remote_candidate(PeerId(1), "not a candidate", now),
        Err(EngineError::BadCandidate(_))
    ));
}

#[test]
fn every_timeout_comes_with_a_reason() {
    let _log = logging::fail_on_error();
    let now = Instant::now();
    let mut e = Engine::new(EngineConfig::new(Role::Client, [1; 32], 1), now);
    assert_eq!(
        e.poll_timeout(),
        None,
        "an engine with nothing to do never wakes up"
    );
    e.handle_local_addresses(&[addr("192.0.2.10:51820")], now);
    e.handle_grant(grant(2), now).expect("valid grant");
    let (at, reason) = e.poll_timeout().expect("a connecting engine has timers");
    assert!(at <= now + Duration::from_secs(10));
    assert!(matches!(reason, TimerKind::Connection(_)), "{reason}");
}

#[test]
fn an_oversized_tun_packet_is_dropped_not_a_panic() {
    let _log = logging::fail_on_error();
    let now = Instant::now();
    let mut e = Engine::new(EngineConfig::new(Role::Client, [1; 32], 1), now);
    e.handle_tun_packet(PeerId(4), &vec![0x45; 70_000], now);
    assert_eq!(
        e.poll_event(),
        None,
        "a packet that cannot be sent does not ask for a connection"
    );
}

#[test]
fn removing_a_peer_forgets_its_connection_and_waiting_packets() {
    let _log = logging::fail_on_error();
    let now = Instant::now();
    let mut e = Engine::new(EngineConfig::new(Role::Client, [1; 32], 1), now);
    e.handle_local_addresses(&[addr("192.0.2.10:51820")], now);
    e.handle_tun_packet(PeerId(2), &[0x45; 40], now);
    e.handle_grant(grant(2), now).expect("valid grant");
    assert!(e.state(PeerId(2)).is_some());
    e.remove_peer(PeerId(2));
    assert_eq!(e.state(PeerId(2)), None);
    assert_eq!(e.peers().count(), 0);
    // A new grant starts from scratch: the packet sent before removal is gone.
    e.handle_grant(grant(2), now).expect("valid grant");
    while e.poll_event().is_some() {}
    e.handle_tun_packet(PeerId(5), &[0x45; 40], now);
    assert_eq!(
        e.poll_event(),
        Some(Event::ConnectionNeeded { peer: PeerId(5) })
    );
}
