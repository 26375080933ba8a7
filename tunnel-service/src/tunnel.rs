//! The tunnel of a signed-in session: the TUN device with its routes, the system's DNS
//! pointed at the stub, and the driver running the [`ClientState`] on them. The state makes
//! every decision; what is here carries out what it asks of the OS (routes, DNS routing
//! domains), forwards DNS queries for other names to the upstream resolvers and looks up the
//! relays. Built on the first `init`, kept across portal reconnects, torn down in the reverse
//! order.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_client::{
    ClientConfig, ClientInput, ClientOutput, ClientState, DnsQuery, ResolvedRelay, SystemChange,
};
use ember_engine::Transmit;
use ember_io::driver::{Controls, Driver, DriverHandle, State};
use ember_io::routes::Routes;
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_io::udp::UdpSocket;
use ember_protocol::ipc::TunnelInterface;
use ember_protocol::portal::{Interface, PortalToClient, Relay};
use rand::RngCore as _;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::platform::dns::{DnsMode, SystemDns};

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
    pub driver: DriverHandle<DrivenClient>,
    pub driver_task: JoinHandle<std::io::Result<()>>,
    pub netwatch: mpsc::Receiver<()>,
    pub view: TunnelInterface,
    pub interface: Interface,
    routes: Routes,
    dns: Option<SystemDns>,
    forwarder: Forwarder,
    relays: RelayLookup,
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
    /// Builds the tunnel for the portal's first `init`.
    pub async fn start(
        setup: TunnelSetup<'_>,
        interface: Interface,
        init: PortalToClient,
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

        let now = Instant::now();
        let mut state = ClientState::new(
            ClientConfig {
                private_key: setup.private_key,
                seed: rand::rng().next_u64(),
                ipv6,
                internet_enabled: setup.internet_enabled,
            },
            now,
        );
        state.handle_portal_message(init, now);
        let mut wanted_routes = BTreeSet::new();
        let mut patterns = Vec::new();
        let mut relays = Vec::new();
        while let Some(change) = state.poll_system_change() {
            match change {
                SystemChange::Routes(routes) => wanted_routes = routes,
                SystemChange::DnsPatterns(found) => patterns = found,
                SystemChange::ResolveRelays(found) => relays = found,
            }
        }
        let sentinels = state.sentinels().to_vec();

        let mut routes = Routes::new(index).map_err(TunnelError::Routes)?;
        // "Signed in" must mean the tunnel works: without its routes it would not.
        if let Err(e) = routes.apply(&wanted_routes).await {
            let _ = routes.clear().await;
            return Err(TunnelError::RoutesApply(e));
        }

        let mut sockets =
            vec![UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0).into()).map_err(TunnelError::Socket)?];
        match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0).into()) {
            Ok(socket) => sockets.push(socket),
            Err(e) => tracing::debug!("No IPv6 socket: {e}"),
        }
        let (driver, driver_handle) = Driver::new(DrivenClient(state), tun, sockets);
        let driver_task = tokio::spawn(driver.run());
        let netwatch = match ember_io::netwatch::watch(index) {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!("Cannot watch the network for changes: {e}");
                mpsc::channel(1).1
            }
        };

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
        let relay_lookup = RelayLookup::default();
        relay_lookup.update(relays, driver_handle.controls.clone());

        Ok(Self {
            forwarder: Forwarder {
                upstream: upstream
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, DNS_PORT))
                    .collect(),
                answers: driver_handle.controls.clone(),
                slots: Arc::new(Semaphore::new(MAX_FORWARDS)),
            },
            driver: driver_handle,
            driver_task,
            netwatch,
            view: TunnelInterface {
                name,
                ipv4: Some(interface.ipv4),
                ipv6: ipv6.then_some(interface.ipv6),
            },
            interface,
            routes,
            dns,
            relays: relay_lookup,
        })
    }

    /// Hands `input` to the client state; `false` when the driver has stopped.
    pub async fn send(&self, input: ClientInput) -> bool {
        self.driver.controls.send(input).await
    }

    /// Carries out what the state asks of the OS and of the network around it. Portal
    /// messages and views are the session's: they are handed back.
    pub async fn carry_out(&mut self, output: ClientOutput) -> Option<ClientOutput> {
        match output {
            ClientOutput::System(SystemChange::Routes(wanted)) => {
                if let Err(e) = self.routes.apply(&wanted).await {
                    tracing::warn!("Some routes could not be changed: {e}");
                }
            }
            ClientOutput::System(SystemChange::DnsPatterns(patterns)) => {
                if let Some(dns) = &self.dns
                    && let Err(e) = dns.set_patterns(&patterns)
                {
                    tracing::warn!("Cannot update the DNS routing domains: {e}");
                }
            }
            ClientOutput::System(SystemChange::ResolveRelays(relays)) => {
                self.relays.update(relays, self.driver.controls.clone())
            }
            ClientOutput::DnsQuery(query) => self.forwarder.forward(query),
            other @ (ClientOutput::Portal(_) | ClientOutput::Views(_)) => return Some(other),
        }
        None
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

/// The [`ClientState`] as the driver runs it.
#[derive(Debug)]
pub struct DrivenClient(ClientState);

impl State for DrivenClient {
    type Input = ClientInput;
    type Output = ClientOutput;

    fn handle_input(&mut self, input: ClientInput, now: Instant) {
        self.0.handle_input(input, now);
    }

    fn handle_local_addresses(&mut self, addresses: &[SocketAddr], now: Instant) {
        self.0.handle_local_addresses(addresses, now);
    }

    fn handle_network_change(&mut self, now: Instant) {
        self.0.handle_network_change(now);
    }

    fn handle_tun_packet(&mut self, packet: &mut [u8], now: Instant) {
        self.0.handle_tun_packet(packet, now);
    }

    fn handle_network_packet(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        self.0.handle_network_packet(local, from, datagram, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.0.poll_transmit()
    }

    fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        self.0.poll_tun_packet()
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        self.0.recycle(buffer);
    }

    fn poll_output(&mut self) -> Option<ClientOutput> {
        self.0.poll_output()
    }

    fn poll_timeout(&mut self) -> Option<(Instant, &'static str)> {
        self.0.poll_timeout()
    }
}

/// Asks the upstream resolvers (the ones the system had before Ember) on tasks of their own;
/// each answer goes straight back to the state.
#[derive(Debug)]
struct Forwarder {
    upstream: Arc<[SocketAddr]>,
    answers: Controls<DrivenClient>,
    slots: Arc<Semaphore>,
}

impl Forwarder {
    fn forward(&self, query: DnsQuery) {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::debug!("Too many DNS queries in flight; one dropped");
            return;
        };
        let upstream = Arc::clone(&self.upstream);
        let answers = self.answers.clone();
        tokio::spawn(async move {
            let DnsQuery {
                query,
                client,
                sentinel,
            } = query;
            let answer = match ask_upstream(&upstream, &query).await {
                Some(answer) => answer,
                None => match server_failure(&query) {
                    Some(failure) => failure,
                    None => return,
                },
            };
            answers
                .send(ClientInput::DnsAnswer {
                    client,
                    sentinel,
                    answer,
                })
                .await;
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

/// Looks the portal's relays up in the background (a host name may go through the stub this
/// very tunnel serves) and hands the addresses to the state; a newer list wins over an older
/// lookup still under way.
#[derive(Debug, Default)]
struct RelayLookup {
    generation: Arc<AtomicU64>,
}

impl RelayLookup {
    fn update(&self, relays: Vec<Relay>, state: Controls<DrivenClient>) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let current = Arc::clone(&self.generation);
        tokio::spawn(async move {
            let mut resolved = Vec::new();
            for relay in relays {
                for server in ember_io::relays::relay_addresses(&relay.urls).await {
                    resolved.push(ResolvedRelay {
                        relay_id: relay.id.clone(),
                        server,
                        username: relay.username.clone(),
                        password: relay.password.expose().to_owned(),
                    });
                }
            }
            if current.load(Ordering::SeqCst) == generation {
                state.send(ClientInput::Relays(resolved)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
