//! The event loop that drives an [`Engine`] with real IO: a TUN device, UDP sockets and the
//! clock. It is the same for the tunnel service and the gateway; what differs is the
//! [`Router`] (which peer a packet from the TUN side goes to) and who answers the engine's
//! [`Event`]s (the portal connection, through [`DriverHandle`] and the event channel).
//!
//! One turn of the loop: drain the engine's outputs, then wait for whichever comes first — a
//! batch of datagrams, a packet from the TUN device, a command, or the engine's deadline — and
//! feed exactly that in. `select!` picks fairly among ready sources, so a busy socket cannot
//! starve the TUN device or the timers.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ember_engine::{ConnectionStats, Engine, EngineError, Event, Grant, PeerId, RelayConfig};
use tokio::sync::{mpsc, oneshot};

use crate::clock::SuspendDetector;
use crate::tun::Tun;
use crate::udp::{RecvBatch, Transmit, UdpSocket};

/// Largest IP packet read from the TUN device.
const TUN_BUFFER_LEN: usize = 65_536;
/// Events waiting for the controller; beyond this the loop waits for it to catch up.
const EVENT_QUEUE: usize = 1024;

/// Decides which peer a packet from the TUN device belongs to.
pub trait Router: Send + 'static {
    /// `None` drops the packet (no resource, not granted).
    fn peer_for(&mut self, packet: &[u8]) -> Option<PeerId>;
}

/// What the controller asks of a running driver.
#[derive(Debug)]
pub enum Command {
    Grant(Box<Grant>),
    RemoteCandidate {
        peer: PeerId,
        candidate: String,
    },
    Relays(Vec<RelayConfig>),
    RemovePeer(PeerId),
    /// The network changed: drop every connection and start over.
    Reset,
    Stats(oneshot::Sender<Vec<(PeerId, ConnectionStats)>>),
}

#[derive(Debug, Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
}

impl DriverHandle {
    /// `false` when the driver has stopped.
    pub async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }

    pub async fn stats(&self) -> Vec<(PeerId, ConnectionStats)> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::Stats(reply)).await {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Driver<R> {
    engine: Engine,
    tun: Tun,
    sockets: Vec<UdpSocket>,
    router: R,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    suspend: SuspendDetector,
    host_candidates: Vec<SocketAddr>,
}

impl<R: Router> Driver<R> {
    /// `sockets` are bound to the unspecified address, at most one per family. The host
    /// candidates are read from the interfaces of the network namespace this is called in.
    pub fn new(
        engine: Engine,
        tun: Tun,
        sockets: Vec<UdpSocket>,
        router: R,
    ) -> (Self, DriverHandle, mpsc::Receiver<Event>) {
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let bound: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let host_candidates = host_candidates(&bound, tun.name());
        let driver = Self {
            engine,
            tun,
            sockets,
            router,
            commands: commands_rx,
            events: events_tx,
            suspend: SuspendDetector::new(),
            host_candidates,
        };
        (
            driver,
            DriverHandle {
                commands: commands_tx,
            },
            events_rx,
        )
    }

    /// Runs until every [`DriverHandle`] is dropped or the event receiver is gone.
    pub async fn run(mut self) -> io::Result<()> {
        tracing::debug!(candidates = ?self.host_candidates, "Host candidates");
        self.engine
            .handle_local_addresses(&self.host_candidates, Instant::now());

        let mut batches: Vec<RecvBatch> =
            self.sockets.iter().map(|_| RecvBatch::default()).collect();
        let mut tun_buffer = vec![0u8; TUN_BUFFER_LEN];
        loop {
            if !self.flush().await {
                return Ok(());
            }
            if let Some(slept) = self.suspend.check() {
                tracing::info!(?slept, "The machine was asleep; starting connections over");
                self.engine.reset(Instant::now());
                continue;
            }
            let deadline = self.engine.poll_timeout();
            let sleep = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let (first, rest) = batches.split_at_mut(1.min(self.sockets.len()));
            tokio::select! {
                received = recv_any(&self.sockets, first, rest) => {
                    let (index, result) = received;
                    self.handle_datagrams(index, result, &batches);
                }
                read = self.tun.recv(&mut tun_buffer) => {
                    let len = read?;
                    let packet = &tun_buffer[..len];
                    match self.router.peer_for(packet) {
                        Some(peer) => self.engine.handle_tun_packet(peer, packet, Instant::now()),
                        None => tracing::trace!(len, "No peer for a packet from the TUN device"),
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return Ok(());
                    };
                    if let Err(e) = self.handle_command(command) {
                        tracing::warn!("A command for the engine failed: {e}");
                    }
                }
                () = sleep => {
                    if let Some((_, why)) = deadline {
                        tracing::trace!(why, "Engine timeout");
                    }
                    self.engine.handle_timeout(Instant::now());
                }
            }
        }
    }

    fn handle_datagrams(&mut self, index: usize, result: io::Result<()>, batches: &[RecvBatch]) {
        if let Err(e) = result {
            // ICMP errors surface here as e.g. ECONNREFUSED; the engine's timers handle loss.
            tracing::debug!("Receiving on a UDP socket failed: {e}");
            return;
        }
        let Some(socket) = self.sockets.get(index) else {
            return;
        };
        let Ok(bound) = socket.local_addr() else {
            return;
        };
        let now = Instant::now();
        for (from, local_ip, datagram) in batches[index].datagrams_with_destination() {
            let local = SocketAddr::new(local_ip.unwrap_or(bound.ip()), bound.port());
            self.engine
                .handle_network_packet(local, from, datagram, now);
        }
    }

    fn handle_command(&mut self, command: Command) -> Result<(), EngineError> {
        let now = Instant::now();
        match command {
            Command::Grant(grant) => self.engine.handle_grant(*grant, now)?,
            Command::RemoteCandidate { peer, candidate } => {
                self.engine.handle_remote_candidate(peer, &candidate, now)?
            }
            Command::Relays(relays) => self.engine.handle_relays(relays, now),
            Command::RemovePeer(peer) => self.engine.remove_peer(peer),
            Command::Reset => self.engine.reset(now),
            Command::Stats(reply) => {
                let peers: Vec<PeerId> = self.engine.peers().collect();
                let stats = peers
                    .into_iter()
                    .filter_map(|peer| Some((peer, self.engine.stats(peer, now)?)))
                    .collect();
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }

    /// Drains the engine's outputs. `false` when nobody listens for events any more.
    async fn flush(&mut self) -> bool {
        // Errors of one datagram are collected, not fatal: the engine's timers handle loss.
        while let Some(transmit) = self.engine.poll_transmit() {
            let Some(socket) = self.sockets.iter().find(|s| {
                s.local_addr()
                    .is_ok_and(|a| a.is_ipv4() == transmit.dst.is_ipv4())
            }) else {
                tracing::trace!(dst = %transmit.dst, "No socket for the address family");
                continue;
            };
            let result = socket
                .send(Transmit {
                    destination: transmit.dst,
                    contents: &transmit.payload,
                    segment_size: None,
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(dst = %transmit.dst, "Sending a datagram failed: {e}");
            }
        }
        while let Some((_, packet)) = self.engine.poll_packet() {
            if let Err(e) = self.tun.send(&packet).await {
                tracing::debug!("Writing to the TUN device failed: {e}");
            }
        }
        while let Some(event) = self.engine.poll_event() {
            if self.events.send(event).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// One host address per socket family: an address of a real interface (not loopback, not
/// link-local, not the TUN device `exclude`) with the socket's port.
pub fn host_candidates(bound: &[SocketAddr], exclude: &str) -> Vec<SocketAddr> {
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    bound
        .iter()
        .filter_map(|bound| {
            let ip = interfaces
                .iter()
                .filter(|i| i.name != exclude && !i.is_loopback())
                .map(|i| i.ip())
                .find(|ip| ip.is_ipv4() == bound.is_ipv4() && !is_link_local(ip))?;
            Some(SocketAddr::new(ip, bound.port()))
        })
        .collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Waits until one of the sockets (at most two) received a batch.
async fn recv_any(
    sockets: &[UdpSocket],
    first: &mut [RecvBatch],
    rest: &mut [RecvBatch],
) -> (usize, io::Result<()>) {
    match (sockets, first, rest) {
        ([a], [batch_a], _) => (0, a.recv(batch_a).await),
        ([a, b, ..], [batch_a], [batch_b, ..]) => tokio::select! {
            result = a.recv(batch_a) => (0, result),
            result = b.recv(batch_b) => (1, result),
        },
        _ => std::future::pending().await,
    }
}
