//! Two drivers — a client behind a NAT router and a gateway on the "internet" — each with a
//! real TUN device and real UDP sockets in its own network namespace. Applications on either
//! side talk to each other through the WireGuard tunnel that ICE set up. Root only.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers outside #[test] functions

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use ember_engine::{
    ConnectionStats, Engine, EngineConfig, Event, Grant, IceCredentials, PeerId, RelayConfig,
    RelayId, Role, Transmit,
};
use ember_io::driver::{Controls, Driver, State};
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_io::udp::UdpSocket;
use ember_testbed::{Coturn, Error, Nat, Node, Testbed};
use tokio::sync::{mpsc, oneshot};

const CLIENT_TUN: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
const GATEWAY_TUN: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const CLIENT_PEER: PeerId = PeerId(1);
const GATEWAY_PEER: PeerId = PeerId(2);

/// The smallest state: an engine whose every packet goes to the one peer there is; the
/// engine's events are its outputs.
#[derive(Debug)]
struct OnePeer {
    engine: Engine,
    peer: PeerId,
}

#[derive(Debug)]
enum Input {
    Grant(Box<Grant>),
    RemoteCandidate(String),
    Relays(Vec<RelayConfig>),
    Stats(oneshot::Sender<Option<ConnectionStats>>),
}

impl State for OnePeer {
    type Input = Input;
    type Output = Event;

    fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Grant(grant) => self.engine.handle_grant(*grant, now).unwrap(),
            Input::RemoteCandidate(candidate) => {
                let _ = self
                    .engine
                    .handle_remote_candidate(self.peer, &candidate, now);
            }
            Input::Relays(relays) => self.engine.handle_relays(relays, now),
            Input::Stats(reply) => {
                let _ = reply.send(self.engine.stats(self.peer, now));
            }
        }
    }

    fn handle_local_addresses(&mut self, addresses: &[SocketAddr], now: Instant) {
        self.engine.handle_local_addresses(addresses, now);
    }

    fn handle_network_change(&mut self, now: Instant) {
        self.engine.reset(now);
    }

    fn handle_tun_packet(&mut self, packet: &mut [u8], now: Instant) {
        self.engine.handle_tun_packet(self.peer, packet, now);
    }

    fn handle_network_packet(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        self.engine
            .handle_network_packet(local, from, datagram, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.engine.poll_transmit()
    }

    fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        self.engine.poll_packet().map(|(_, packet)| packet)
    }

    fn poll_output(&mut self) -> Option<Event> {
        self.engine.poll_event()
    }

    fn poll_timeout(&mut self) -> Option<(Instant, &'static str)> {
        self.engine
            .poll_timeout()
            .map(|(at, timer)| (at, timer.as_str()))
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        self.engine.recycle(buffer);
    }
}

/// A running side's controls; the driver stops when they and its events are dropped.
#[derive(Clone)]
struct Handle(Controls<OnePeer>);

impl Handle {
    async fn send(&self, input: Input) {
        self.0.send(input).await;
    }

    async fn stats(&self) -> ConnectionStats {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Stats(reply)).await;
        answer.await.unwrap().unwrap()
    }
}

struct Side {
    handle: Handle,
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
                wintun_dll: None,
            })
            .unwrap();
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0).into()).unwrap();
            let app = StdUdpSocket::bind((tun_addr, 7777)).unwrap();
            let (driver, handle) = Driver::new(OnePeer { engine, peer }, tun, vec![socket]);
            (driver, Handle(handle.controls), handle.outputs, app)
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
fn relay_candidates(mut from: mpsc::Receiver<Event>, to: Handle) {
    tokio::spawn(async move {
        while let Some(event) = from.recv().await {
            if let Event::LocalCandidate { candidate, .. } = event {
                to.send(Input::RemoteCandidate(candidate)).await;
            }
        }
    });
}

fn testbed() -> Option<Testbed> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    match Testbed::new() {
        Ok(testbed) => Some(testbed),
        Err(Error::NotRoot) => {
            ember_testbed::skip("TUN devices and namespaces need root");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Grants both sides, relays their candidates, sends a request and a reply between the
/// applications, and returns the client's view of the connection.
async fn exchange(
    testbed: &Testbed,
    client_ns: &str,
    gateway_ns: &str,
    relays: Vec<RelayConfig>,
) -> ConnectionStats {
    let (client_handle, gateway_handle) = connect(testbed, client_ns, gateway_ns, relays).await;
    let connection = client_handle.stats().await;
    assert!(connection.rx_bytes > 0 && connection.tx_bytes > 0);
    drop(gateway_handle);
    connection
}

/// Like [`exchange`], and hands back both drivers' handles (the drivers stop when they drop).
async fn connect(
    testbed: &Testbed,
    client_ns: &str,
    gateway_ns: &str,
    relays: Vec<RelayConfig>,
) -> (Handle, Handle) {
    let client_side = start_side(testbed, client_ns, Role::Client, CLIENT_TUN, GATEWAY_PEER);
    let gateway_side = start_side(testbed, gateway_ns, Role::Gateway, GATEWAY_TUN, CLIENT_PEER);
    if !relays.is_empty() {
        for side in [&client_side, &gateway_side] {
            side.handle.send(Input::Relays(relays.clone())).await;
        }
    }

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
            .send(Input::Grant(Box::new(Grant {
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
    relay_candidates(client_events, gateway_handle.clone());
    relay_candidates(gateway_events, client_handle.clone());

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
    (client_handle, gateway_handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_talk_directly_through_the_tunnel_across_a_nat() {
    let Some(mut testbed) = testbed() else { return };
    let gateway: Node = testbed.add_public_host("gw").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();

    let connection = exchange(&testbed, &client.host.ns, &gateway.ns, Vec::new()).await;
    let path = connection.path.expect("a nominated path");
    assert!(
        !path.relayed,
        "client and gateway reach each other directly"
    );
    assert_eq!(path.remote.ip(), std::net::IpAddr::V4(gateway.addr));
}

/// Neither side can reach the other directly: the path goes through a relayed candidate on
/// the real coturn, with REST credentials as the portal issues them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_symmetric_nats_connect_through_the_real_coturn() {
    let Some(mut testbed) = testbed() else { return };
    let relay_host = testbed.add_public_host("relay").unwrap();
    let coturn = Coturn::start(&mut testbed, &relay_host, "relay-secret").unwrap();
    let client = testbed.add_natted_host("client", Nat::Symmetric).unwrap();
    let gateway = testbed.add_natted_host("gw", Nat::Symmetric).unwrap();
    let credentials = coturn.credentials(
        "test-device",
        Duration::from_secs(3600),
        std::time::SystemTime::now(),
    );
    let relays = vec![RelayConfig {
        id: RelayId(1),
        server: coturn.addr,
        username: credentials.username,
        password: credentials.password,
    }];

    let connection = exchange(&testbed, &client.host.ns, &gateway.host.ns, relays).await;
    let path = connection.path.expect("a nominated path");
    assert!(
        path.relayed || path.remote.ip() == coturn.addr.ip(),
        "{path:?}"
    );
    assert!(
        connection.through_relay,
        "the path runs through coturn, so it is reported relayed: {path:?}"
    );
}

/// A bulk TCP stream each way: the kernel hands the TUN device 64 KiB segments, the driver
/// splits, encrypts and sends them as segmented UDP writes, and the far side writes runs of
/// one flow coalesced. Every byte must arrive, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_tcp_crosses_the_tunnel_intact_both_ways() {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};

    const LEN: usize = 24 << 20;
    const PORT: u16 = 8888;
    let Some(mut testbed) = testbed() else { return };
    let gateway: Node = testbed.add_public_host("gw").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();
    let (_client_handle, _gateway_handle) =
        connect(&testbed, &client.host.ns, &gateway.ns, Vec::new()).await;

    let listener = testbed
        .in_ns(&gateway.ns, || {
            TcpListener::bind((GATEWAY_TUN, PORT)).unwrap()
        })
        .unwrap();
    let stream = testbed
        .in_ns(&client.host.ns, || {
            TcpStream::connect((GATEWAY_TUN, PORT)).unwrap()
        })
        .unwrap();
    // Not a repeating pattern of a segment's size, so a reordered or repeated segment shows.
    let data: Vec<u8> = (0..LEN)
        .map(|i| (i % 251) as u8 ^ (i / 65_521) as u8)
        .collect();
    let started = Instant::now();
    let echoed = tokio::task::spawn_blocking(move || {
        let (mut server, _) = listener.accept().unwrap();
        let echo = std::thread::spawn(move || {
            let mut received = vec![0u8; LEN];
            server.read_exact(&mut received).unwrap();
            server.write_all(&received).unwrap();
            received
        });
        let mut client_stream = stream;
        let writer = {
            let mut stream = client_stream.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || stream.write_all(&data).unwrap())
        };
        client_stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut back = vec![0u8; LEN];
        client_stream.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        let received = echo.join().unwrap();
        (data, received, back)
    })
    .await
    .unwrap();
    let (data, received, back) = echoed;
    assert!(
        received == data,
        "client to gateway: the stream arrives intact"
    );
    assert!(back == data, "gateway to client: the stream arrives intact");
    eprintln!("{} MiB each way in {:?}", LEN >> 20, started.elapsed());
}
