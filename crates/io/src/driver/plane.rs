//! The IO half every driver shares: the TUN device and the UDP sockets, with batched receive,
//! segmented send (equal-sized datagrams to one destination in one system call) and packets
//! for the TUN device written together.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ember_engine::Transmit as Datagram;

use crate::tun::{SendBatch, Tun};
use crate::udp::{MAX_SEGMENTED_LEN, RecvBatch, Transmit, UdpSocket};

#[derive(Debug)]
pub(crate) struct DataPlane {
    pub(crate) tun: Tun,
    pub(crate) sockets: Vec<UdpSocket>,
    /// Indexes into `sockets`: the IPv4 socket and the IPv6 socket.
    ipv4_socket: Option<usize>,
    ipv6_socket: Option<usize>,
    run: Run,
    tun_out: SendBatch,
}

impl DataPlane {
    /// `sockets` are bound to the unspecified address, at most one per family.
    pub(crate) fn new(tun: Tun, sockets: Vec<UdpSocket>) -> Self {
        let family = |v4: bool| {
            sockets
                .iter()
                .position(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == v4))
        };
        let (ipv4_socket, ipv6_socket) = (family(true), family(false));
        Self {
            tun,
            sockets,
            ipv4_socket,
            ipv6_socket,
            run: Run::default(),
            tun_out: SendBatch::default(),
        }
    }

    /// The addresses to offer as host candidates, read afresh from the interfaces.
    pub(crate) fn host_candidates(&self) -> Vec<SocketAddr> {
        let bound: Vec<SocketAddr> = self
            .sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        host_candidates(&bound, self.tun.name())
    }

    /// The network may look different now: the sockets get their routing mark again.
    pub(crate) fn mark_sockets_again(&self) {
        for socket in &self.sockets {
            socket.mark_again();
        }
    }

    /// Queues a datagram; datagrams to one destination go out together in [`Self::send_queued`].
    pub(crate) async fn send(&mut self, transmit: &Datagram) {
        let Some(index) = self.socket_for(transmit.dst) else {
            tracing::trace!(dst = %transmit.dst, "No socket for the address family");
            return;
        };
        let max_segments = self.sockets[index].max_segments();
        if !self
            .run
            .accepts(transmit.dst, transmit.payload.len(), max_segments)
        {
            self.send_queued().await;
        }
        self.run.push(transmit.dst, &transmit.payload);
    }

    /// Sends the datagrams gathered so far, as one segmented write where there are several.
    /// Errors of a send are logged, not fatal: the engine's timers handle loss.
    pub(crate) async fn send_queued(&mut self) {
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

    /// Queues a packet for the TUN device, writing the batch when it is full.
    pub(crate) async fn write_tun(&mut self, packet: &[u8]) {
        self.tun_out.push(packet);
        if self.tun_out.len() >= SendBatch::FULL {
            self.write_tun_queued().await;
        }
    }

    pub(crate) async fn write_tun_queued(&mut self) {
        if self.tun_out.is_empty() {
            return;
        }
        if let Err(e) = self.tun.send(&mut self.tun_out).await {
            tracing::debug!("Writing to the TUN device failed: {e}");
        }
    }

    /// The datagrams of one received batch with the local address each arrived on.
    pub(crate) fn received<'a>(
        &self,
        index: usize,
        batch: &'a RecvBatch,
    ) -> impl Iterator<Item = (SocketAddr, SocketAddr, &'a [u8])> + 'a {
        let bound = self.sockets.get(index).and_then(|s| s.local_addr().ok());
        bound.into_iter().flat_map(move |bound| {
            batch
                .datagrams_with_destination()
                .map(move |(from, local_ip, datagram)| {
                    let local = SocketAddr::new(local_ip.unwrap_or(bound.ip()), bound.port());
                    (local, from, datagram)
                })
        })
    }

    fn socket_for(&self, dst: SocketAddr) -> Option<usize> {
        if dst.is_ipv4() {
            self.ipv4_socket
        } else {
            self.ipv6_socket
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
pub(crate) async fn recv_any(
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

    /// Feeds datagrams of the given lengths to `A` or `B` through runs as `send` does and
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
