//! Engine cost per 1400-byte packet (encapsulate at one engine + decapsulate at the other)
//! against boringtun's `Tunn` alone doing the same, measured in the same run.
//!
//! `cargo bench -p ember-engine --bench datapath`

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ember_engine::{LivenessPolicy, Role};
use ember_sim::{HostId, Sim, app_packet};

const SIZE: usize = 1400;

fn connected_engines() -> (Sim, HostId, HostId) {
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
    assert_eq!(
        sim.hosts[b.0].delivered.len(),
        1,
        "bench setup: no connection"
    );
    (sim, a, b)
}

fn tunn_pair() -> (Tunn, Tunn) {
    let ka = StaticSecret::from([1u8; 32]);
    let kb = StaticSecret::from([2u8; 32]);
    let (pa, pb) = (PublicKey::from(&ka), PublicKey::from(&kb));
    let mut a = Tunn::new(ka, pb, Some([3; 32]), None, 1, None);
    let mut b = Tunn::new(kb, pa, Some([3; 32]), None, 2, None);
    let mut buf_a = vec![0u8; 2048];
    let mut buf_b = vec![0u8; 2048];
    let src: IpAddr = "198.51.100.1".parse().expect("literal");
    let TunnResult::WriteToNetwork(init) = a.format_handshake_initiation(&mut buf_a, false) else {
        panic!("no handshake initiation");
    };
    let TunnResult::WriteToNetwork(resp) = b.decapsulate(Some(src), init, &mut buf_b) else {
        panic!("no handshake response");
    };
    let TunnResult::WriteToNetwork(keepalive) = a.decapsulate(Some(src), resp, &mut buf_a) else {
        panic!("no keepalive");
    };
    let _ = b.decapsulate(Some(src), keepalive, &mut buf_b);
    (a, b)
}

fn datapath(c: &mut Criterion) {
    let packet = app_packet(7, SIZE);
    let mut group = c.benchmark_group("encapsulate+decapsulate 1400 B");
    group.throughput(Throughput::Bytes(SIZE as u64));

    let (mut a, mut b) = tunn_pair();
    let mut buf_a = vec![0u8; 2048];
    let mut buf_b = vec![0u8; 2048];
    let src: IpAddr = "198.51.100.1".parse().expect("literal");
    group.bench_function("boringtun Tunn alone", |bench| {
        bench.iter(|| {
            let TunnResult::WriteToNetwork(wire) = a.encapsulate(black_box(&packet), &mut buf_a)
            else {
                panic!("encapsulate failed");
            };
            match b.decapsulate(Some(src), wire, &mut buf_b) {
                TunnResult::WriteToTunnelV4(p, _) => black_box(p.len()),
                other => panic!("decapsulate failed: {other:?}"),
            }
        });
    });

    let (mut sim, ha, hb) = connected_engines();
    let now = sim.now;
    let peer_b = hb.peer();
    group.bench_function("ember Engine", |bench| {
        bench.iter(|| {
            let [ea, eb] = sim.hosts.get_disjoint_mut([ha.0, hb.0]).expect("two hosts");
            ea.engine.handle_tun_packet(peer_b, black_box(&packet), now);
            let t = ea.engine.poll_transmit().expect("a datagram");
            eb.engine
                .handle_network_packet(t.dst, t.src, &t.payload, now);
            let (_, p) = eb.engine.poll_packet().expect("a packet");
            black_box(p.len())
        });
    });
    group.finish();
}

criterion_group!(benches, datapath);
criterion_main!(benches);
