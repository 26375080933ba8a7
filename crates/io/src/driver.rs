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

/// Where packets go between the TUN device and the peers: the part of the loop that differs
/// between the tunnel service and the gateway.
pub trait Router: Send + 'static {
    /// A packet read from the TUN device: the peer that gets it, or `None` when the router
    /// kept it (held until a grant, a DNS query it answers) or dropped it. May rewrite the
    /// packet in place (addresses and checksums).
    fn outbound(&mut self, packet: &mut [u8]) -> Option<PeerId>;

    /// A packet decrypted from `peer`, before it is written to the TUN device. May rewrite it
    /// in place; `false` drops it (the gateway checks every packet against the grants here).
    fn inbound(&mut self, peer: PeerId, packet: &mut [u8]) -> bool;
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
    /// An IP packet for the local side, e.g. a DNS answer.
    WriteTun(Vec<u8>),
    /// Packets the router held back until the grant for `peer` arrived; they go through the
    /// engine like packets from the TUN device, in order.
    SendPackets {
        peer: PeerId,
        packets: Vec<Vec<u8>>,
    },
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
                    let packet = &mut tun_buffer[..len];
                    match self.router.outbound(packet) {
                        Some(peer) => self.engine.handle_tun_packet(peer, packet, Instant::now()),
                        None => tracing::trace!(len, "Packet from the TUN device kept or dropped by the router"),
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return Ok(());
                    };
                    if let Command::WriteTun(packet) = command {
                        if let Err(e) = self.tun.send(&packet).await {
                            tracing::debug!("Writing to the TUN device failed: {e}");
                        }
                    } else if let Err(e) = self.handle_command(command) {
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
            Command::SendPackets { peer, packets } => {
                for packet in packets {
                    self.engine.handle_tun_packet(peer, &packet, now);
                }
            }
            // Handled in the loop, where writing can be awaited.
            Command::WriteTun(_) => {}
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
        while let Some((peer, mut packet)) = self.engine.poll_packet() {
            if !self.router.inbound(peer, &mut packet) {
                tracing::trace!(peer = peer.0, "Packet from a peer dropped by the router");
                continue;
            }
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

/// The addresses of the real interfaces (not loopback, not link-local, not the TUN device
/// `exclude`), each with the port of the socket of its family. A host with several networks
/// (a gateway with a WAN and a LAN side) offers them all; ICE finds the one that works.
pub fn host_candidates(bound: &[SocketAddr], exclude: &str) -> Vec<SocketAddr> {
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let mut candidates = Vec::new();
    for bound in bound {
        for interface in &interfaces {
            let ip = interface.ip();
            if interface.name == exclude
                || interface.is_loopback()
                || ip.is_ipv4() != bound.is_ipv4()
                || is_link_local(&ip)
            {
                continue;
            }
            let candidate = SocketAddr::new(ip, bound.port());
            if !candidates.contains(&candidate) {
                candidates.push(candidate);
            }
        }
    }
    candidates
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
