//! The network under the nodes: access links, NATs, the wire and the relays on it.

use std::cmp::Reverse;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ember_engine::Transmit;
use ember_io::driver::State as _;
use rand::RngCore;

use super::{Attachment, InFlight, Node, World};
use crate::host::Link;
use crate::nat::{Nat, NatConfig};

impl World {
    pub(super) fn attachment(&mut self, node: Node) -> &mut Attachment {
        match node {
            Node::Client => &mut self.client.net,
            Node::Gateway(index) => &mut self.gateways[index].net,
        }
    }

    pub(super) fn send(&mut self, node: Node, transmit: Transmit) {
        let now = self.now;
        let lost = {
            let loss = self.attachment(node).link.loss;
            loss > 0.0 && f64::from(self.rng.next_u32()) / f64::from(u32::MAX) < loss
        };
        let net = self.attachment(node);
        if transmit.src != net.socket || net.link.cut || lost {
            return;
        }
        let src = match net.nat.as_mut() {
            Some(nat) => nat.outbound(transmit.src, transmit.dst, now),
            None => transmit.src,
        };
        let latency = net.link.latency;
        self.enqueue(src, transmit.dst, transmit.payload, latency);
    }

    pub(super) fn enqueue(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
        latency: Duration,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.network.push(Reverse(InFlight {
            at: self.now + latency,
            seq,
            src,
            dst,
            payload,
        }));
    }

    pub(super) fn arrive(&mut self, p: InFlight) {
        let now = self.now;
        if let Some(relay) = self.relays.iter().position(|r| r.owns(p.dst.ip())) {
            for (src, dst, payload) in
                self.relays[relay].handle_packet(p.src, p.dst, &p.payload, now)
            {
                self.enqueue(src, dst, payload, Duration::ZERO);
            }
            return;
        }
        let from_relay = self.relays.iter().any(|r| r.owns(p.src.ip()));
        if !from_relay && self.direct_blocked_until.is_some_and(|until| now < until) {
            return;
        }
        let node = if self.client.net.public_ip() == p.dst.ip() {
            Node::Client
        } else if let Some(index) = self
            .gateways
            .iter()
            .position(|g| g.net.public_ip() == p.dst.ip())
        {
            Node::Gateway(index)
        } else {
            return;
        };
        // The receiver's link: its latency once more, then its NAT.
        let net = self.attachment(node);
        if net.link.cut {
            return;
        }
        let dst = match net.nat.as_mut() {
            Some(nat) => match nat.inbound(p.src, p.dst.port(), now) {
                Some(internal) => internal,
                None => return,
            },
            None => p.dst,
        };
        if dst != net.socket {
            return;
        }
        match node {
            Node::Client => self
                .client
                .state
                .handle_network_packet(dst, p.src, &p.payload, now),
            Node::Gateway(index) => self.gateways[index]
                .state
                .handle_network_packet(dst, p.src, &p.payload, now),
        }
        self.drain(node);
    }
}

pub(super) fn attach(
    public: IpAddr,
    lan: Ipv4Addr,
    nat: Option<NatConfig>,
    latency: Duration,
) -> Attachment {
    let (socket, nat) = match nat {
        Some(config) => (
            SocketAddr::new(IpAddr::V4(lan), 51820),
            Some(Nat::new(public, config)),
        ),
        None => (SocketAddr::new(public, 51820), None),
    };
    Attachment {
        socket,
        nat,
        link: Link::with_latency(latency),
    }
}
