//! The gateway's event loop until it becomes a [`super::State`] of its own: an [`Engine`]
//! with real IO, a [`Router`] (which peer a packet from the TUN side goes to) shared with the
//! controller, and the engine's [`Event`]s answered by the controller through
//! [`DriverHandle`] and the event channel.
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
use std::time::Instant;

use ember_engine::{ConnectionStats, Engine, EngineError, Event, Grant, PeerId, RelayConfig};
use tokio::sync::{mpsc, oneshot};

use super::plane::{DataPlane, recv_any};
use crate::clock::SuspendDetector;
use crate::tun::Tun;
use crate::udp::{RecvBatch, UdpSocket};

/// Events waiting for the controller; beyond this the loop waits for it to catch up.
const EVENT_QUEUE: usize = 1024;

/// Where packets go between the TUN device and the peers: the part of the loop that differs
/// between the tunnel service and the gateway.
pub trait Router: Send + 'static {
    /// A packet read from the TUN device: the peer that gets it, or `None` when the router
    /// kept it or dropped it. May rewrite the packet in place (addresses and checksums).
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
    plane: DataPlane,
    router: R,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    suspend: SuspendDetector,
    /// Read in [`Self::new`], in the network namespace the caller chose.
    host_candidates: Vec<std::net::SocketAddr>,
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
        let plane = DataPlane::new(tun, sockets);
        let driver = Self {
            engine,
            host_candidates: plane.host_candidates(),
            plane,
            router,
            commands: commands_rx,
            events: events_tx,
            suspend: SuspendDetector::new(),
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

        let mut batches: Vec<RecvBatch> = self
            .plane
            .sockets
            .iter()
            .map(|_| RecvBatch::default())
            .collect();
        let mut tun_in = self.plane.tun.recv_batch();
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
            let (first, rest) = batches.split_at_mut(1.min(self.plane.sockets.len()));
            tokio::select! {
                received = recv_any(&self.plane.sockets, first, rest) => {
                    let (index, result) = received;
                    match result {
                        Ok(()) => {
                            let now = Instant::now();
                            for (local, from, datagram) in self.plane.received(index, &batches[index]) {
                                self.engine.handle_network_packet(local, from, datagram, now);
                            }
                        }
                        // ICMP errors surface here as e.g. ECONNREFUSED; the timers handle loss.
                        Err(e) => tracing::debug!("Receiving on a UDP socket failed: {e}"),
                    }
                }
                read = self.plane.tun.recv(&mut tun_in) => {
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
                    if let Err(e) = self.handle_command(command) {
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
        self.plane.mark_sockets_again();
        self.host_candidates = self.plane.host_candidates();
        tracing::debug!(candidates = ?self.host_candidates, "Host candidates");
        self.engine
            .handle_local_addresses(&self.host_candidates, now);
        self.engine.reset(now);
    }

    /// Drains the engine's outputs. `false` when nobody listens for events any more.
    async fn flush(&mut self) -> bool {
        while let Some(transmit) = self.engine.poll_transmit() {
            self.plane.send(&transmit).await;
            self.engine.recycle(transmit.payload);
        }
        self.plane.send_queued().await;
        while let Some((peer, mut packet)) = self.engine.poll_packet() {
            if !self.router.inbound(peer, &mut packet) {
                tracing::trace!(peer = peer.0, "Packet from a peer dropped by the router");
                continue;
            }
            self.plane.write_tun(&packet).await;
            self.engine.recycle(packet);
        }
        self.plane.write_tun_queued().await;
        while let Some(event) = self.engine.poll_event() {
            if self.events.send(event).await.is_err() {
                return false;
            }
        }
        true
    }
}
