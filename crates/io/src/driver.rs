//! The event loop that runs a sans-IO [`State`] (the client's, the gateway's) with real
//! IO: a TUN device, UDP sockets and the clock.
//!
//! The state owns every decision — the engine, which peer a packet goes to, what is held for
//! a grant, what the DNS stub answers — and lives in this one task: the packet path takes no
//! lock and crosses no channel. The controller (the portal link, the OS configuration) talks
//! to it through [`DriverHandle`]: [`Control`]s in on one channel, the state's outputs out on
//! another.
//!
//! One turn of the loop: drain the state's datagrams and packets, hand its other outputs to
//! the controller, then wait for whichever comes first — a batch of datagrams, a batch of
//! packets from the TUN device, control inputs (up to [`CONTROL_BUDGET`] at once), or the
//! state's deadline — and feed exactly that in. `select!` picks fairly among ready sources, so
//! a busy socket cannot starve the TUN device, the controller or the timers.
//!
//! Batches are what make the data path fast: the datagrams of one turn go out as segmented
//! writes (equal-sized datagrams to one destination in one system call), and the packets of
//! one turn go to the TUN device together, coalesced per flow where the OS can.

mod plane;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use ember_engine::Transmit;
use tokio::sync::mpsc;

pub use plane::host_candidates;
pub(crate) use plane::is_link_local;
use plane::{DataPlane, recv_any};

use crate::clock::SuspendDetector;
use crate::tun::Tun;
use crate::udp::{RecvBatch, UdpSocket};

/// Control inputs handled per turn at most, so a burst from the controller cannot hold up the
/// packet path.
pub const CONTROL_BUDGET: usize = 64;
/// Outputs waiting for the controller; beyond this the loop waits for it to catch up.
const OUTPUT_QUEUE: usize = 1024;

/// A sans-IO state the driver runs. Inputs are `handle_*`, with the time last; after every
/// input the driver drains `poll_transmit`, `poll_tun_packet` and `poll_output`, then asks
/// `poll_timeout` when to call `handle_timeout`.
pub trait State: Send + 'static {
    /// What the controller sends in (portal messages, switches, answers to queries).
    type Input: Send + std::fmt::Debug + 'static;
    /// What goes out to the controller (portal messages, queries, views, OS changes).
    type Output: Send + std::fmt::Debug + 'static;

    fn handle_input(&mut self, input: Self::Input, now: Instant);
    /// The addresses of this host's interfaces, with the port of the socket of their family.
    fn handle_local_addresses(&mut self, addresses: &[SocketAddr], now: Instant);
    /// The network changed or the machine slept: every connection starts over.
    fn handle_network_change(&mut self, now: Instant);
    /// A packet read from the TUN device; the state may rewrite it in place.
    fn handle_tun_packet(&mut self, packet: &mut [u8], now: Instant);
    fn handle_network_packet(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    );
    fn handle_timeout(&mut self, now: Instant);

    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// A packet for the TUN device.
    fn poll_tun_packet(&mut self) -> Option<Vec<u8>>;
    /// A transmit's payload or a TUN packet the driver is done with, for reuse.
    fn recycle(&mut self, buffer: Vec<u8>) {
        drop(buffer);
    }
    fn poll_output(&mut self) -> Option<Self::Output>;
    /// When to call `handle_timeout` next, and why (for the logs).
    fn poll_timeout(&mut self) -> Option<(Instant, &'static str)>;
}

/// What the controller tells a running driver.
#[derive(Debug)]
pub enum Control<I> {
    Input(I),
    /// The network under the tunnel changed: new host candidates, connections start over.
    NetworkChanged,
}

/// The controller's side of a running driver.
#[derive(Debug)]
pub struct DriverHandle<S: State> {
    pub controls: Controls<S>,
    /// The state's outputs, in order.
    pub outputs: mpsc::Receiver<S::Output>,
}

/// Sends control inputs to a running driver; clones go to helper tasks (lookups, forwarded
/// DNS queries) that answer the state directly.
#[derive(Debug)]
pub struct Controls<S: State>(mpsc::Sender<Control<S::Input>>);

impl<S: State> Clone for Controls<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: State> Controls<S> {
    /// `false` when the driver has stopped.
    pub async fn send(&self, input: S::Input) -> bool {
        self.0.send(Control::Input(input)).await.is_ok()
    }

    /// `false` when the driver has stopped.
    pub async fn network_changed(&self) -> bool {
        self.0.send(Control::NetworkChanged).await.is_ok()
    }
}

#[derive(Debug)]
pub struct Driver<S: State> {
    state: S,
    plane: DataPlane,
    controls: mpsc::Receiver<Control<S::Input>>,
    outputs: mpsc::Sender<S::Output>,
    suspend: SuspendDetector,
    /// Read in [`Self::new`], in the network namespace the caller chose.
    host_candidates: Vec<std::net::SocketAddr>,
}

impl<S: State> Driver<S> {
    /// `sockets` are bound to the unspecified address, at most one per family. The host
    /// candidates are read from the interfaces of the network namespace this is called in.
    pub fn new(state: S, tun: Tun, sockets: Vec<UdpSocket>) -> (Self, DriverHandle<S>) {
        let (controls_tx, controls_rx) = mpsc::channel(CONTROL_BUDGET);
        let (outputs_tx, outputs_rx) = mpsc::channel(OUTPUT_QUEUE);
        let plane = DataPlane::new(tun, sockets);
        let driver = Self {
            state,
            host_candidates: plane.host_candidates(),
            plane,
            controls: controls_rx,
            outputs: outputs_tx,
            suspend: SuspendDetector::new(),
        };
        let handle = DriverHandle {
            controls: Controls(controls_tx),
            outputs: outputs_rx,
        };
        (driver, handle)
    }

    /// Runs until every [`Controls`] or the output receiver is dropped. Only the TUN device
    /// failing is an error.
    pub async fn run(mut self) -> io::Result<()> {
        tracing::debug!(candidates = ?self.host_candidates, "Host candidates");
        self.state
            .handle_local_addresses(&self.host_candidates, Instant::now());

        let mut batches: Vec<RecvBatch> = self
            .plane
            .sockets
            .iter()
            .map(|_| RecvBatch::default())
            .collect();
        let mut tun_in = self.plane.tun.recv_batch();
        let mut controls = Vec::with_capacity(CONTROL_BUDGET);
        loop {
            if !self.flush().await {
                return Ok(());
            }
            if let Some(slept) = self.suspend.check() {
                tracing::info!(?slept, "The machine was asleep; starting connections over");
                self.start_over();
                continue;
            }
            let deadline = self.state.poll_timeout();
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
                                self.state.handle_network_packet(local, from, datagram, now);
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
                        self.state.handle_tun_packet(packet, now);
                    }
                }
                received = self.controls.recv_many(&mut controls, CONTROL_BUDGET) => {
                    if received == 0 {
                        return Ok(());
                    }
                    for control in controls.drain(..) {
                        match control {
                            Control::Input(input) => self.state.handle_input(input, Instant::now()),
                            Control::NetworkChanged => self.start_over(),
                        }
                    }
                }
                () = sleep => {
                    if let Some((_, why)) = deadline {
                        tracing::trace!(why, "Timeout");
                    }
                    self.state.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// The network may look different now (roaming, sleep): offer the addresses there are
    /// today and set up every connection afresh.
    fn start_over(&mut self) {
        let now = Instant::now();
        self.plane.mark_sockets_again();
        self.host_candidates = self.plane.host_candidates();
        tracing::debug!(candidates = ?self.host_candidates, "Host candidates");
        self.state
            .handle_local_addresses(&self.host_candidates, now);
        self.state.handle_network_change(now);
    }

    /// Drains the state's outputs. `false` when nobody listens for them any more.
    async fn flush(&mut self) -> bool {
        while let Some(transmit) = self.state.poll_transmit() {
            self.plane.send(&transmit).await;
            self.state.recycle(transmit.payload);
        }
        self.plane.send_queued().await;
        while let Some(packet) = self.state.poll_tun_packet() {
            self.plane.write_tun(&packet).await;
            self.state.recycle(packet);
        }
        self.plane.write_tun_queued().await;
        while let Some(output) = self.state.poll_output() {
            if self.outputs.send(output).await.is_err() {
                return false;
            }
        }
        true
    }
}
