//! The tunnel of a signed-in session: the TUN device with its routes, the engine's driver with
//! the client router, the system's DNS pointed at the stub, and the forwarding of other DNS
//! queries to the upstream resolvers. Built on the first `init`, kept across portal
//! reconnects, torn down in the reverse order.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ember_dns::tun_packets::wrap_reply;
use ember_engine::{Engine, EngineConfig, PeerId, RelayConfig, RelayId, Role};
use ember_io::driver::{Command, Driver, DriverHandle, Router};
use ember_io::routes::{Prefix, Routes};
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_io::udp::UdpSocket;
use ember_protocol::ipc::TunnelInterface;
use ember_protocol::portal::{Interface, Relay, Resource};
use rand::RngCore as _;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::platform::dns::{DnsMode, SystemDns};
use crate::router::{ClientRouter, fixed_routes};

pub const INTERFACE_NAME: &str = "ember0";
/// How long one upstream resolver gets to answer a forwarded query.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream resolvers tried per query, in order.
const UPSTREAM_ATTEMPTS: usize = 2;
/// Forwarded queries in flight; beyond this new ones are dropped (the asker retries).
const MAX_FORWARDS: usize = 128;
const DNS_PORT: u16 = 53;

/// The parts the session drives.
#[derive(Debug)]
pub struct Tunnel {
    pub driver: DriverHandle,
    pub events: mpsc::Receiver<ember_engine::Event>,
    pub driver_task: JoinHandle<std::io::Result<()>>,
    pub router: Arc<Mutex<ClientRouter>>,
    /// Rung by the driver's router when it has outputs for the session.
    pub router_wake: Arc<Notify>,
    pub netwatch: mpsc::Receiver<()>,
    pub dns_answers: mpsc::Receiver<Vec<u8>>,
    pub view: TunnelInterface,
    pub interface: Interface,
    routes: Routes,
    ipv6: bool,
    dns: Option<SystemDns>,
    forwarder: Forwarder,
    relays: RelayResolver,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    Tun(#[from] ember_io::tun::TunError),
    #[error("cannot manage routes: {0}")]
    Routes(std::io::Error),
    #[error("cannot open a UDP socket for the tunnel: {0}")]
    Socket(std::io::Error),
    #[error("cannot add the routes into the tunnel: {0}")]
    RoutesApply(ember_io::routes::RoutesError),
    #[error("cannot point the system's DNS at Ember: {0}")]
    Dns(String),
    #[error(transparent)]
    Wintun(#[from] crate::platform::wintun::WintunError),
}

/// What building a tunnel needs besides what the portal sent.
#[derive(Debug, Clone)]
pub struct TunnelSetup<'a> {
    pub private_key: [u8; 32],
    pub state_dir: &'a Path,
    pub dns_mode: DnsMode,
    /// Whether the internet resource (if granted) takes the default routes.
    pub internet_enabled: bool,
}

impl Tunnel {
    pub async fn start(
        setup: TunnelSetup<'_>,
        interface: Interface,
        resources: &[Resource],
        relays: &[Relay],
    ) -> Result<Self, TunnelError> {
        // Windows: only the wintun.dll next to the executable, with the pinned hash, and locked
        // until the adapter exists.
        #[cfg(windows)]
        let wintun = crate::platform::wintun::verify_next_to_exe()?;
        let mut config = TunConfig {
            name: INTERFACE_NAME.into(),
            mtu: DEFAULT_MTU,
            ipv4: Some((interface.ipv4, 32)),
            ipv6: Some((interface.ipv6, 128)),
            #[cfg(windows)]
            wintun_dll: Some(wintun.path().to_owned()),
            #[cfg(not(windows))]
            wintun_dll: None,
        };
        let tun = match Tun::create(&config) {
            Ok(tun) => tun,
            Err(e) => {
                // A system without IPv6 refuses the address; carry on with IPv4.
                tracing::warn!("Creating the TUN device with IPv6 failed ({e}); trying IPv4 only");
                config.ipv6 = None;
                Tun::create(&config)?
            }
        };
        #[cfg(windows)]
        drop(wintun);
        let ipv6 = config.ipv6.is_some();
        let name = tun.name().to_owned();
        let index = tun.index();
        tracing::info!(interface = %name, "TUN device up");

        let mut router = ClientRouter::new(ipv6);
        router.set_internet_enabled(setup.internet_enabled);
        router.handle_resources(resources);
        let mut routes = Routes::new(index).map_err(TunnelError::Routes)?;
        let wanted = wanted_routes(&router, ipv6);
        // "Signed in" must mean the tunnel works: without its routes it would not.
        if let Err(e) = routes.apply(&wanted).await {
            let _ = routes.clear().await;
            return Err(TunnelError::RoutesApply(e));
        }

        let mut sockets =
            vec![UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0).into()).map_err(TunnelError::Socket)?];
        match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0).into()) {
            Ok(socket) => sockets.push(socket),
            Err(e) => tracing::debug!("No IPv6 socket: {e}"),
        }
        let seed = rand::rng().next_u64();
        let engine = Engine::new(
            EngineConfig::new(Role::Client, setup.private_key, seed),
            Instant::now(),
        );
        let router = Arc::new(Mutex::new(router));
        let router_wake = Arc::new(Notify::new());
        let (driver, driver_handle, events) = Driver::new(
            engine,
            tun,
            sockets,
            SharedRouter {
                inner: Arc::clone(&router),
                wake: Arc::clone(&router_wake),
            },
        );
        let driver_task = tokio::spawn(driver.run());
        let netwatch = match ember_io::netwatch::watch(index) {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!("Cannot watch the network for changes: {e}");
                mpsc::channel(1).1
            }
        };

        let sentinels = lock(&router).sentinels().to_vec();
        let patterns = lock(&router).dns_patterns();
        let (dns, upstream) = match SystemDns::activate(
            setup.dns_mode,
            setup.state_dir,
            &name,
            &sentinels,
            &patterns,
        ) {
            Ok((dns, upstream)) => (Some(dns), upstream),
            Err(e) => {
                driver_task.abort();
                let _ = routes.clear().await;
                return Err(TunnelError::Dns(e.to_string()));
            }
        };
        tracing::info!(upstream = upstream.len(), "DNS stub ready");
        let (answers_tx, dns_answers) = mpsc::channel(MAX_FORWARDS);
        let relays_resolver = RelayResolver::default();
        relays_resolver.update(relays, driver_handle.clone());

        Ok(Self {
            driver: driver_handle,
            events,
            driver_task,
            router,
            router_wake,
            netwatch,
            dns_answers,
            view: TunnelInterface {
                name,
                ipv4: Some(interface.ipv4),
                ipv6: ipv6.then_some(interface.ipv6),
            },
            interface,
            routes,
            ipv6,
            dns,
            forwarder: Forwarder {
                upstream: upstream
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, DNS_PORT))
                    .collect(),
                answers: answers_tx,
                slots: Arc::new(Semaphore::new(MAX_FORWARDS)),
            },
            relays: relays_resolver,
        })
    }

    /// New resources: the router, the routes and the DNS routing domains follow.
    pub async fn set_resources(&mut self, resources: &[Resource]) {
        let patterns = {
            let mut router = lock(&self.router);
            router.handle_resources(resources);
            router.dns_patterns()
        };
        self.router_wake.notify_one();
        self.follow_router_routes().await;
        if let Some(dns) = &self.dns
            && let Err(e) = dns.set_patterns(&patterns)
        {
            tracing::warn!("Cannot update the DNS routing domains: {e}");
        }
    }

    /// The user switched the internet resource: the default routes follow.
    pub async fn set_internet_enabled(&mut self, enabled: bool) {
        if !lock(&self.router).set_internet_enabled(enabled) {
            return;
        }
        tracing::info!(enabled, "Internet resource switched");
        self.follow_router_routes().await;
    }

    /// Brings the system's routes in line with what the router wants now.
    async fn follow_router_routes(&mut self) {
        let wanted = wanted_routes(&lock(&self.router), self.ipv6);
        if let Err(e) = self.routes.apply(&wanted).await {
            tracing::warn!("Some routes could not be changed: {e}");
        }
    }

    pub fn set_relays(&self, relays: &[Relay]) {
        self.relays.update(relays, self.driver.clone());
    }

    /// Sends `query` to the upstream resolvers in the background; the answer (or a SERVFAIL)
    /// comes back through `dns_answers` as an IP packet for the TUN device.
    pub fn forward_dns(&self, query: Vec<u8>, client: SocketAddr, sentinel: SocketAddr) {
        self.forwarder.forward(query, client, sentinel);
    }

    /// DNS first (so nothing asks a stub that is going away), then routes, then the device.
    pub async fn stop(mut self) {
        if let Some(dns) = self.dns.take()
            && let Err(e) = dns.deactivate()
        {
            tracing::error!("Cannot restore the system's DNS: {e}");
        }
        if let Err(e) = self.routes.clear().await {
            tracing::warn!("Some routes could not be removed: {e}");
        }
        // Dropping the driver closes the device, which takes its routes and per-link DNS.
        if !self.driver_task.is_finished() {
            self.driver_task.abort();
            let _ = (&mut self.driver_task).await;
        }
        tracing::info!(interface = %self.view.name, "Tunnel down");
    }
}

/// The driver's view of the router: the shared state, and a bell for the session.
struct SharedRouter {
    inner: Arc<Mutex<ClientRouter>>,
    wake: Arc<Notify>,
}

impl Router for SharedRouter {
    fn outbound(&mut self, packet: &mut [u8]) -> Option<PeerId> {
        let mut router = lock(&self.inner);
        let peer = router.outbound(packet, Instant::now());
        if router.has_output() {
            self.wake.notify_one();
        }
        peer
    }

    fn inbound(&mut self, peer: PeerId, packet: &mut [u8]) -> bool {
        lock(&self.inner).inbound(peer, packet)
    }
}

/// A poisoned lock still holds consistent router state (no method leaves it half-changed on
/// a panic it cannot cause), so it is used rather than taking the service down.
pub fn lock(router: &Mutex<ClientRouter>) -> MutexGuard<'_, ClientRouter> {
    router
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wanted_routes(router: &ClientRouter, ipv6: bool) -> BTreeSet<Prefix> {
    fixed_routes()
        .into_iter()
        .chain(router.resource_routes())
        .filter(|prefix| ipv6 || prefix.addr().is_ipv4())
        .collect()
}

#[derive(Debug)]
struct Forwarder {
    upstream: Arc<[SocketAddr]>,
    answers: mpsc::Sender<Vec<u8>>,
    slots: Arc<Semaphore>,
}

impl Forwarder {
    fn forward(&self, query: Vec<u8>, client: SocketAddr, sentinel: SocketAddr) {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::debug!("Too many DNS queries in flight; one dropped");
            return;
        };
        let upstream = Arc::clone(&self.upstream);
        let answers = self.answers.clone();
        tokio::spawn(async move {
            let answer = match ask_upstream(&upstream, &query).await {
                Some(answer) => answer,
                None => match server_failure(&query) {
                    Some(failure) => failure,
                    None => return,
                },
            };
            if let Some(packet) = wrap_reply(sentinel, client, &answer) {
                let _ = answers.send(packet).await;
            }
            drop(slot);
        });
    }
}

/// The first answer with the query's id from the upstream resolvers, tried in order.
async fn ask_upstream(upstream: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for server in upstream.iter().take(UPSTREAM_ATTEMPTS) {
        let server = *server;
        let bind: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        // The upstream resolvers are the ones the system had before Ember: reach them the way
        // the system did, even when a resource covers their address. A resolver on this host
        // needs no mark, and on macOS the mark (binding to the physical interface) would
        // make it unreachable.
        if !server.ip().is_loopback()
            && let Err(e) = ember_io::policy::mark_socket(&socket)
        {
            tracing::debug!("Cannot mark the DNS forwarding socket: {e}");
        }
        if let Err(e) = socket.send_to(query, server).await {
            tracing::debug!(%server, "Cannot forward a DNS query: {e}");
            continue;
        }
        let mut buffer = vec![0u8; 65_535];
        let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                let (len, from) = socket.recv_from(&mut buffer).await.ok()?;
                if from == server && buffer.get(..2) == Some(id) && len >= 12 {
                    return Some(buffer[..len].to_vec());
                }
            }
        })
        .await;
        match answer {
            Ok(Some(answer)) => return Some(answer),
            _ => tracing::debug!(%server, "No answer from an upstream resolver"),
        }
    }
    None
}

/// The query turned into a SERVFAIL answer (QR set, RCODE 2), so the asker fails fast
/// instead of waiting out its timeout.
fn server_failure(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut answer = query.to_vec();
    answer[2] |= 0x80;
    answer[3] = (answer[3] & 0xf0) | 0x80 | 2;
    Some(answer)
}

/// Turns the portal's relays (`turn:host:port` URLs) into the engine's, in the background: a
/// host name needs a lookup, which may go through the stub this session serves.
#[derive(Debug, Default)]
struct RelayResolver {
    ids: Arc<Mutex<HashMap<String, RelayId>>>,
    generation: Arc<AtomicU64>,
}

impl RelayResolver {
    fn update(&self, relays: &[Relay], driver: DriverHandle) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let current = Arc::clone(&self.generation);
        let ids = Arc::clone(&self.ids);
        let relays = relays.to_vec();
        tokio::spawn(async move {
            let configs = relay_configs(&relays, &ids).await;
            // A newer list arrived meanwhile: it wins.
            if current.load(Ordering::SeqCst) == generation {
                tracing::debug!(relays = configs.len(), "Relays");
                driver.send(Command::Relays(configs)).await;
            }
        });
    }
}

async fn relay_configs(
    relays: &[Relay],
    ids: &Mutex<HashMap<String, RelayId>>,
) -> Vec<RelayConfig> {
    let mut configs = Vec::new();
    for relay in relays {
        for url in &relay.urls {
            let Some((host, port)) = ember_protocol::portal::relay_host_port(url) else {
                tracing::debug!(%url, "Relay URL not usable (only turn: over UDP)");
                continue;
            };
            let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => {
                    let lookup = tokio::net::lookup_host((host.as_str(), port));
                    match tokio::time::timeout(Duration::from_secs(5), lookup).await {
                        Ok(Ok(found)) => {
                            // One address per family is enough.
                            let found: Vec<SocketAddr> = found.collect();
                            let v4 = found.iter().find(|a| a.is_ipv4());
                            let v6 = found.iter().find(|a| a.is_ipv6());
                            v4.into_iter().chain(v6).copied().collect()
                        }
                        _ => {
                            tracing::warn!(relay = %relay.id, "Cannot resolve the relay's host");
                            Vec::new()
                        }
                    }
                }
            };
            for server in addresses {
                let key = format!("{}|{server}", relay.id);
                let id = {
                    let mut ids = ids
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let next = RelayId(ids.len() as u64 + 1);
                    *ids.entry(key).or_insert(next)
                };
                configs.push(RelayConfig {
                    id,
                    server,
                    username: relay.username.clone(),
                    password: relay.password.expose().to_owned(),
                });
            }
        }
    }
    configs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_keep_their_ids_across_credential_updates() {
        let ids = Mutex::new(HashMap::new());
        let relay = |password: &str| Relay {
            id: "relay-1".into(),
            urls: vec![
                "turn:198.51.100.7:3478".into(),
                "turn:[2001:db8::7]:3478".into(),
            ],
            username: "1700000000:client".into(),
            password: password.into(),
            expires_at: 1_700_000_000,
        };
        let first = relay_configs(&[relay("a")], &ids).await;
        let second = relay_configs(&[relay("b")], &ids).await;
        assert_eq!(first.len(), 2);
        assert_ne!(first[0].id, first[1].id);
        assert_eq!(
            first.iter().map(|c| c.id).collect::<Vec<_>>(),
            second.iter().map(|c| c.id).collect::<Vec<_>>()
        );
        assert_eq!(second[0].password, "b");
    }

    #[test]
    fn a_server_failure_keeps_the_id_and_question() {
        let query = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
        ];
        let answer = server_failure(&query).unwrap();
        assert_eq!(&answer[..2], &[0x12, 0x34]);
        assert_eq!(answer[2] & 0x80, 0x80, "a response");
        assert_eq!(answer[3] & 0x0f, 2, "SERVFAIL");
        assert_eq!(&answer[4..], &query[4..]);
        assert_eq!(server_failure(&[1, 2, 3]), None);
    }

    /// A resolver on loopback that echoes each query back as its answer after `delay`.
    async fn resolver(delay: Duration) -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                tokio::time::sleep(delay).await;
                let mut answer = buf[..len].to_vec();
                // A stray answer with another id first: it must be ignored.
                answer[0] ^= 0xff;
                socket.send_to(&answer, from).await.unwrap();
                answer[0] ^= 0xff;
                answer[2] |= 0x80;
                socket.send_to(&answer, from).await.unwrap();
            }
        });
        addr
    }

    const QUERY: [u8; 12] = [0xab, 0xcd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[tokio::test]
    async fn forwarded_queries_get_the_upstream_answer_with_the_same_id() {
        let upstream = resolver(Duration::ZERO).await;
        let answer = ask_upstream(&[upstream], &QUERY).await.unwrap();
        assert_eq!(&answer[..2], &QUERY[..2]);
        assert_eq!(answer[2] & 0x80, 0x80);
    }

    #[tokio::test]
    async fn a_silent_resolver_is_skipped_for_the_next_one() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let working = resolver(Duration::ZERO).await;
        let answer = ask_upstream(&[silent.local_addr().unwrap(), working], &QUERY).await;
        assert!(answer.is_some());
        let nobody = ask_upstream(&[silent.local_addr().unwrap()], &QUERY).await;
        assert_eq!(nobody, None);
    }
}
