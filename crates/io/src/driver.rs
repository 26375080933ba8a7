//! The event loop that drives an [`Engine`] with real IO: a TUN device, UDP sockets and the
//! clock. It is the same for the tunnel service and the gateway; what differs is the
//! [`Router`] (which peer a packet from the TUN side goes to) and who answers the engine's
//! [`Event`]s (the portal connection, through [`DriverHandle`] and the event channel).
//!
//! One turn of the loop: drain the engine's outputs, then wait for whichever comes first — a
//! batch of datagrams, a batch of packets from the TUN device, a command, or the engine's
//! deadline — and feed exactly that in. `select!` picks fairly among ready sources, so a busy
//! socket cannot starve the TUN device or the timers.
//!
//! Batches are what make the data path fast: the datagrams of one turn go out as segmented
//! writes (equal-sized datagrams to one destination in one system call), and the decrypted
//! packets of one turn go to the TUN device together, coalesced per flow where the OS can.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ember_engine::{ConnectionStats, Engine, EngineError, Event, Grant, PeerId, RelayConfig};
use tokio::sync::{mpsc, oneshot};

use crate::clock::SuspendDetector;
use crate::tun::{SendBatch, Tun};
use crate::udp::{MAX_SEGMENTED_LEN, RecvBatch, Transmit, UdpSocket};

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
    /// Indexes into `sockets`: the IPv4 socket and the IPv6 socket.
    ipv4_socket: Option<usize>,
    ipv6_socket: Option<usize>,
    run: Run,
    tun_out: SendBatch,
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
        let family = |v4: bool| {
            sockets
                .iter()
                .position(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == v4))
        };
        let (ipv4_socket, ipv6_socket) = (family(true), family(false));
        let driver = Self {
            engine,
            tun,
            sockets,
            router,
            commands: commands_rx,
            events: events_tx,
            suspend: SuspendDetector::new(),
            host_candidates,
            ipv4_socket,
            ipv6_socket,
            run: Run::default(),
            tun_out: SendBatch::default(),
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
        let mut tun_in = self.tun.recv_batch();
        loop {
            if !self.flush().await {
                return Ok(());
            }
            if let Some(slept) = self.suspend.check() {
                tracing::info!(?slept, "The machine was asleep; starting connections over");
                self.start_over();
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
                read = self.tun.recv(&mut tun_in) => {
                    read?;
                    let now = Instant::now();
                    for packet in tun_in.packets_mut() {
                        match self.router.outbound(packet) {
                            Some(peer) => self.engine.handle_tun_packet(peer, packet, now),
                            None => tracing::trace!(len = packet.len(), "Packet from the TUN device kept or dropped by the router"),
                        }
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return Ok(());
                    };
                    if let Command::WriteTun(packet) = command {
                        self.tun_out.push(&packet);
                        self.write_tun().await;
                    } else if let Err(e) = self.handle_command(command) {
                        tracing::warn!("A command for the engine failed: {e}");
                    }
                }
                () = sleep => {
                    if let Some((_, why)) = deadline {
                        tracing::trace!(why = why.as_str(), "Engine timeout");
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
        let Some(Ok(bound)) = self.sockets.get(index).map(UdpSocket::local_addr) else {
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
            Command::Reset => self.start_over(),
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

    /// The network may look different now (roaming, sleep): offer the addresses there are
    /// today and set up every connection afresh.
    fn start_over(&mut self) {
        let now = Instant::now();
        for socket in &self.sockets {
            socket.mark_again();
        }
        let bound: Vec<SocketAddr> = self
            .sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        self.host_candidates = host_candidates(&bound, self.tun.name());
        tracing::debug!(candidates = ?self.host_candidates, "Host candidates");
        self.engine
            .handle_local_addresses(&self.host_candidates, now);
        self.engine.reset(now);
    }

    /// Drains the engine's outputs. `false` when nobody listens for events any more.
    async fn flush(&mut self) -> bool {
        // Errors of one datagram are collected, not fatal: the engine's timers handle loss.
        while let Some(transmit) = self.engine.poll_transmit() {
            let Some(index) = self.socket_for(transmit.dst) else {
                tracing::trace!(dst = %transmit.dst, "No socket for the address family");
                continue;
            };
            let max_segments = self.sockets[index].max_segments();
            if !self
                .run
                .accepts(transmit.dst, transmit.payload.len(), max_segments)
            {
                self.send_run().await;
            }
            self.run.push(transmit.dst, &transmit.payload);
        }
        self.send_run().await;
        while let Some((peer, mut packet)) = self.engine.poll_packet() {
            if !self.router.inbound(peer, &mut packet) {
                tracing::trace!(peer = peer.0, "Packet from a peer dropped by the router");
                continue;
            }
            self.tun_out.push(&packet);
            if self.tun_out.len() >= SendBatch::FULL {
                self.write_tun().await;
            }
        }
        self.write_tun().await;
        while let Some(event) = self.engine.poll_event() {
            if self.events.send(event).await.is_err() {
                return false;
            }
        }
        true
    }

    fn socket_for(&self, dst: SocketAddr) -> Option<usize> {
        if dst.is_ipv4() {
            self.ipv4_socket
        } else {
            self.ipv6_socket
        }
    }

    /// Sends the datagrams gathered in `run`, as one segmented write where there are several.
    async fn send_run(&mut self) {
        let Some(destination) = self.run.destination else {
            return;
        };
        if let Some(socket) = self
            .socket_for(destination)
            .and_then(|i| self.sockets.get(i))
        {
            let result = socket
                .send(Transmit {
                    destination,
                    contents: &self.run.contents,
                    segment_size: (self.run.count > 1).then_some(self.run.segment),
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(dst = %destination, count = self.run.count, "Sending datagrams failed: {e}");
            }
        }
        self.run.clear();
    }

    async fn write_tun(&mut self) {
        if self.tun_out.is_empty() {
            return;
        }
        if let Err(e) = self.tun.send(&mut self.tun_out).await {
            tracing::debug!("Writing to the TUN device failed: {e}");
        }
    }
}

/// Datagrams to one destination, all of one size but the last, which may be shorter: what
/// one segmented send can carry.
#[derive(Debug, Default)]
struct Run {
    destination: Option<SocketAddr>,
    contents: Vec<u8>,
    segment: usize,
    count: usize,
    /// The last datagram was shorter than `segment`: nothing may follow it.
    closed: bool,
}

impl Run {
    fn accepts(&self, destination: SocketAddr, len: usize, max_segments: usize) -> bool {
        let Some(current) = self.destination else {
            return true;
        };
        current == destination
            && !self.closed
            && self.segment > 0
            && len <= self.segment
            && self.count < max_segments
            && self.contents.len() + len <= MAX_SEGMENTED_LEN
    }

    fn push(&mut self, destination: SocketAddr, payload: &[u8]) {
        if self.destination.is_none() {
            self.destination = Some(destination);
            self.segment = payload.len();
        } else if payload.len() < self.segment {
            self.closed = true;
        }
        self.contents.extend_from_slice(payload);
        self.count += 1;
    }

    fn clear(&mut self) {
        self.destination = None;
        self.contents.clear();
        self.segment = 0;
        self.count = 0;
        self.closed = false;
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

pub(crate) fn is_link_local(ip: &IpAddr) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);
    const B: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2);

    /// Feeds datagrams of the given lengths to `A` or `B` through runs as `flush` does and
    /// returns each run: destination, segment size, count.
    fn runs(
        datagrams: &[(SocketAddr, usize)],
        max_segments: usize,
    ) -> Vec<(SocketAddr, usize, usize)> {
        let mut run = Run::default();
        let mut sent = Vec::new();
        let mut take = |run: &mut Run| {
            if let Some(destination) = run.destination {
                let len = run.contents.len();
                assert!(len <= run.segment * run.count && len > run.segment * (run.count - 1));
                sent.push((destination, run.segment, run.count));
            }
            run.clear();
        };
        for (destination, len) in datagrams {
            if !run.accepts(*destination, *len, max_segments) {
                take(&mut run);
            }
            run.push(*destination, &vec![0; *len]);
        }
        take(&mut run);
        sent
    }

    #[test]
    fn equal_datagrams_to_one_destination_share_a_run_and_a_shorter_one_ends_it() {
        let sent = runs(
            &[(A, 100), (A, 100), (A, 60), (A, 100), (B, 100), (B, 120)],
            64,
        );
        assert_eq!(
            sent,
            vec![(A, 100, 3), (A, 100, 1), (B, 100, 1), (B, 120, 1)]
        );
    }

    #[test]
    fn runs_respect_the_socket_segment_limit_and_the_largest_write() {
        let sent = runs(&[(A, 10); 5], 2);
        assert_eq!(sent, vec![(A, 10, 2), (A, 10, 2), (A, 10, 1)]);
        let sent = runs(&[(A, 1400); 60], 64);
        let per_write = MAX_SEGMENTED_LEN / 1400;
        assert_eq!(sent[0], (A, 1400, per_write));
        assert_eq!(sent.iter().map(|r| r.2).sum::<usize>(), 60);
    }
}
