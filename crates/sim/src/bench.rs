//! Fixtures for the data-path measurements: two connected engines, two bare `Tunn`s.

use std::net::IpAddr;
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ember_engine::{LivenessPolicy, Role};

use crate::{HostId, Sim, app_packet};

/// Two engines on public addresses with an established connection from `a` to `b`.
///
/// # Panics
/// If the connection does not come up (a broken fixture, not a measurement).
#[must_use]
pub fn connected_engines() -> (Sim, HostId, HostId) {
    let mut sim = Sim::new(1);
    sim.add_relay();
    let a = sim.add_host(
        "a",
        Role::Client,
        LivenessPolicy::ember(),
        None,
        Duration::from_millis(1),
    );
    let b = sim.add_host(
        "b",
        Role::Gateway,
        LivenessPolicy::ember(),
        None,
        Duration::from_millis(1),
    );
    sim.send_app(a, b, &app_packet(0, 100));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.hosts[b.0].delivered.len(), 1, "fixture: no connection");
    (sim, a, b)
}

/// Two bare `Tunn`s after a completed handshake.
///
/// # Panics
/// If the handshake does not complete (a broken fixture, not a measurement).
#[must_use]
pub fn tunn_pair() -> (Tunn, Tunn) {
    let ka = StaticSecret::from([1u8; 32]);
    let kb = StaticSecret::from([2u8; 32]);
    let (pa, pb) = (PublicKey::from(&ka), PublicKey::from(&kb));
    let mut a = Tunn::new(ka, pb, Some([3; 32]), None, 1, None);
    let mut b = Tunn::new(kb, pa, Some([3; 32]), None, 2, None);
    let mut buf_a = vec![0u8; 2048];
    let mut buf_b = vec![0u8; 2048];
    let src = IpAddr::from([198, 51, 100, 1]);
    let TunnResult::WriteToNetwork(init) = a.format_handshake_initiation(&mut buf_a, false) else {
        panic!("fixture: no handshake initiation");
    };
    let TunnResult::WriteToNetwork(resp) = b.decapsulate(Some(src), init, &mut buf_b) else {
        panic!("fixture: no handshake response");
    };
    let TunnResult::WriteToNetwork(keepalive) = a.decapsulate(Some(src), resp, &mut buf_a) else {
        panic!("fixture: no keepalive");
    };
    let _ = b.decapsulate(Some(src), keepalive, &mut buf_b);
    (a, b)
}

/// One packet through two bare `Tunn`s: encapsulate at `a`, decapsulate at `b`.
///
/// # Panics
/// If boringtun refuses the packet (a broken fixture).
pub fn tunn_round(
    a: &mut Tunn,
    b: &mut Tunn,
    packet: &[u8],
    buf_a: &mut [u8],
    buf_b: &mut [u8],
) -> usize {
    let src = IpAddr::from([198, 51, 100, 1]);
    let TunnResult::WriteToNetwork(wire) = a.encapsulate(packet, buf_a) else {
        panic!("encapsulate failed");
    };
    match b.decapsulate(Some(src), wire, buf_b) {
        TunnResult::WriteToTunnelV4(p, _) => p.len(),
        other => panic!("decapsulate failed: {other:?}"),
    }
}

/// One packet through two engines: `handle_tun_packet` at `a`, the datagram into `b`, the
/// packet out of `b`; both buffers go back to their engine, as a driver gives them back.
///
/// # Panics
/// If the engines do not move the packet (a broken fixture).
pub fn engine_round(sim: &mut Sim, a: HostId, b: HostId, packet: &[u8]) -> usize {
    let now = sim.now;
    let [ea, eb] = sim
        .hosts
        .get_disjoint_mut([a.0, b.0])
        .expect("two distinct hosts");
    ea.engine.handle_tun_packet(b.peer(), packet, now);
    let t = ea.engine.poll_transmit().expect("a datagram");
    eb.engine
        .handle_network_packet(t.dst, t.src, &t.payload, now);
    ea.engine.recycle(t.payload);
    let (_, p) = eb.engine.poll_packet().expect("a packet");
    let len = p.len();
    eb.engine.recycle(p);
    len
}
