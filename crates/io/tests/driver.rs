//! Two drivers — a client behind a NAT router and a gateway on the "internet" — each with a
//! real TUN device and real UDP sockets in its own network namespace. Applications on either
//! side talk to each other through the WireGuard tunnel that ICE set up. Root only.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers outside #[test] functions

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use ember_engine::{Engine, EngineConfig, Event, Grant, IceCredentials, PeerId, Role};
use ember_io::driver::{Command, Driver, DriverHandle, Router};
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_io::udp::UdpSocket;
use ember_testbed::{Error, Nat, Testbed};
use tokio::sync::mpsc;

const CLIENT_TUN: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
const GATEWAY_TUN: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const CLIENT_PEER: PeerId = PeerId(1);
const GATEWAY_PEER: PeerId = PeerId(2);

/// Every packet goes to the one peer there is.
struct OnePeer(PeerId);

impl Router for OnePeer {
    fn peer_for(&mut self, _packet: &[u8]) -> Option<PeerId> {
        Some(self.0)
    }
}

struct Side {
    handle: DriverHandle,
    events: mpsc::Receiver<Event>,
    app: StdUdpSocket,
    public_key: [u8; 32],
}

fn start_side(testbed: &Testbed, ns: &str, role: Role, tun_addr: Ipv4Addr, peer: PeerId) -> Side {
    let runtime = tokio::runtime::Handle::current();
    let mut key = [0u8; 32];
    key[0] = peer.0 as u8 + 10;
    let engine = Engine::new(EngineConfig::new(role, key, peer.0), Instant::now());
    let public_key = engine.public_key();
    // Devices, sockets and the host candidates all belong to the side's namespace.
    let (driver, handle, events, app) = testbed
        .in_ns(ns, move || {
            let _entered = runtime.enter();
            let tun = Tun::create(&TunConfig {
                name: "ember0".into(),
                mtu: DEFAULT_MTU,
                ipv4: Some((tun_addr, 11)),
                ipv6: None,
            })
            .unwrap();
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0).into()).unwrap();
            let app = StdUdpSocket::bind((tun_addr, 7777)).unwrap();
            let (driver, handle, events) = Driver::new(engine, tun, vec![socket], OnePeer(peer));
            (driver, handle, events, app)
        })
        .unwrap();
    tokio::spawn(async move {
        if let Err(e) = driver.run().await {
            panic!("driver failed: {e}");
        }
    });
    Side {
        handle,
        events,
        app,
        public_key,
    }
}

fn credentials(name: &str) -> IceCredentials {
    IceCredentials {
        ufrag: format!("{name}uf"),
        pwd: format!("{name}-password-0123456789"),
    }
}

/// The portal's part: hand each side's candidates to the other.
fn relay_candidates(
    mut from: mpsc::Receiver<Event>,
    to: DriverHandle,
    sender_as_seen_by_receiver: PeerId,
) {
    tokio::spawn(async move {
        while let Some(event) = from.recv().await {
            if let Event::LocalCandidate { candidate, .. } = event {
                to.send(Command::RemoteCandidate {
                    peer: sender_as_seen_by_receiver,
                    candidate,
                })
                .await;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_talk_through_the_tunnel_across_a_nat() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut testbed = match Testbed::new() {
        Ok(testbed) => testbed,
        Err(Error::NotRoot) => return eprintln!("SKIPPED: TUN devices and namespaces need root"),
        Err(e) => panic!("{e}"),
    };
    let gateway_host = testbed.add_public_host("gw").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();

    let client_side = start_side(
        &testbed,
        &client.host.ns,
        Role::Client,
        CLIENT_TUN,
        GATEWAY_PEER,
    );
    let gateway_side = start_side(
        &testbed,
        &gateway_host.ns,
        Role::Gateway,
        GATEWAY_TUN,
        CLIENT_PEER,
    );

    let preshared_key = [7u8; 32];
    for (side, peer, peer_key, local, remote) in [
        (
            &client_side,
            GATEWAY_PEER,
            gateway_side.public_key,
            "client",
            "gateway",
        ),
        (
            &gateway_side,
            CLIENT_PEER,
            client_side.public_key,
            "gateway",
            "client",
        ),
    ] {
        side.handle
            .send(Command::Grant(Box::new(Grant {
                peer,
                peer_public_key: peer_key,
                preshared_key,
                local_ice: credentials(local),
                remote_ice: credentials(remote),
            })))
            .await;
    }
    let Side {
        handle: client_handle,
        events: client_events,
        app: client_app,
        ..
    } = client_side;
    let Side {
        handle: gateway_handle,
        events: gateway_events,
        app: gateway_app,
        ..
    } = gateway_side;
    relay_candidates(client_events, gateway_handle.clone(), CLIENT_PEER);
    relay_candidates(gateway_events, client_handle.clone(), GATEWAY_PEER);

    let started = Instant::now();
    let (request, reply) = tokio::task::spawn_blocking(move || {
        client_app
            .send_to(b"hello gateway", (GATEWAY_TUN, 7777))
            .unwrap();
        gateway_app
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut buf = [0u8; 64];
        let (len, from) = gateway_app
            .recv_from(&mut buf)
            .expect("the request crosses the tunnel");
        let request = buf[..len].to_vec();
        assert_eq!(from, SocketAddr::from((CLIENT_TUN, 7777)));
        gateway_app.send_to(b"hello client", from).unwrap();
        client_app
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (len, _) = client_app
            .recv_from(&mut buf)
            .expect("the reply crosses back");
        (request, buf[..len].to_vec())
    })
    .await
    .unwrap();
    assert_eq!(request, b"hello gateway");
    assert_eq!(reply, b"hello client");
    eprintln!(
        "first packet through the tunnel after {:?} (connection set up meanwhile)",
        started.elapsed()
    );

    let stats = client_handle.stats().await;
    let (_, connection) = stats
        .iter()
        .find(|(peer, _)| *peer == GATEWAY_PEER)
        .unwrap();
    let path = connection.path.expect("a nominated path");
    assert!(
        !path.relayed,
        "client and gateway reach each other directly"
    );
    assert_eq!(path.remote.ip(), std::net::IpAddr::V4(gateway_host.addr));
    assert!(connection.rx_bytes > 0 && connection.tx_bytes > 0);
}
