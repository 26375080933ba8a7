//! A small sans-IO TURN server model (RFC 5766, UDP, long-term credentials).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ember_engine::stun_msg::{self as m, Message};

const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
const DEFAULT_LIFETIME: u32 = 600;
const MAX_LIFETIME: u32 = 3600;

#[derive(Debug)]
struct Allocation {
    client: SocketAddr,
    relayed: SocketAddr,
    expires: Instant,
    permissions: BTreeMap<IpAddr, Instant>,
    channels: BTreeMap<u16, (SocketAddr, Instant)>,
}

/// A relay: one server address, relayed ports on the same IP.
#[derive(Debug)]
pub struct TurnServer {
    addr: SocketAddr,
    realm: String,
    nonce: String,
    nonce_generation: u64,
    credentials: BTreeMap<String, String>,
    allocations: Vec<Allocation>,
    next_port: u16,
    /// Datagrams the relay sent.
    pub sent: u64,
}

impl TurnServer {
    #[must_use]
    pub fn new(addr: SocketAddr, realm: &str) -> Self {
        Self {
            addr,
            realm: realm.to_owned(),
            nonce: "nonce-1".to_owned(),
            nonce_generation: 1,
            credentials: BTreeMap::new(),
            allocations: Vec::new(),
            next_port: 49152,
            sent: 0,
        }
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    #[must_use]
    pub fn owns(&self, ip: IpAddr) -> bool {
        ip == self.addr.ip()
    }

    pub fn add_credentials(&mut self, user: &str, password: &str) {
        self.credentials
            .insert(user.to_owned(), password.to_owned());
    }

    /// New credentials replace the old ones, which stop working at once (expired REST
    /// credentials). Existing allocations stay; their next request must use the new ones.
    pub fn replace_credentials(&mut self, user: &str, password: &str) {
        self.credentials.clear();
        self.add_credentials(user, password);
    }

    /// Kills the relay and starts it again, as coturn restarts: every allocation, permission
    /// and channel is gone, the nonce is new, and new allocations get ports the old ones did
    /// not have (coturn picks them at random), so a peer's stale relayed address stays dead.
    pub fn restart(&mut self) {
        self.allocations.clear();
        self.rotate_nonce();
    }

    /// A new nonce: requests with the old one are answered 438 (Stale Nonce).
    pub fn rotate_nonce(&mut self) {
        self.nonce_generation += 1;
        self.nonce = format!("nonce-{}", self.nonce_generation);
    }

    #[must_use]
    pub fn allocations(&self) -> usize {
        self.allocations.len()
    }

    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        self.allocations.iter().map(|a| a.expires).min()
    }

    /// Expires allocations.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        self.allocations.retain(|a| a.expires > now);
        Vec::new()
    }

    /// A datagram to the server port or to a relayed address. Returns datagrams to send as
    /// (source, destination, payload).
    pub fn handle_packet(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        self.allocations.retain(|a| a.expires > now);
        let out = if to == self.addr {
            self.handle_from_client(from, data, now)
        } else {
            self.handle_from_peer(from, to, data, now)
        };
        self.sent += out.len() as u64;
        out
    }

    fn handle_from_peer(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let Some(a) = self.allocations.iter().find(|a| a.relayed == to) else {
            return Vec::new();
        };
        if a.permissions.get(&from.ip()).is_none_or(|t| *t <= now) {
            return Vec::new();
        }
        let payload = match a.channels.iter().find(|(_, (p, t))| *p == from && *t > now) {
            Some((channel, _)) => m::channel_data(*channel, data),
            None => Message::new(m::DATA, m::INDICATION, [9; 12])
                .with_addr(m::ATTR_XOR_PEER_ADDRESS, from)
                .with(m::ATTR_DATA, data.to_vec())
                .encode(None),
        };
        vec![(self.addr, a.client, payload)]
    }

    fn handle_from_client(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        if let Some(&first) = data.first()
            && (0x40..=0x7F).contains(&first)
        {
            let Some((channel, payload)) = m::parse_channel_data(data) else {
                return Vec::new();
            };
            let Some(a) = self.allocations.iter().find(|a| a.client == from) else {
                return Vec::new();
            };
            let Some((peer, _)) = a.channels.get(&channel).filter(|(_, t)| *t > now) else {
                return Vec::new();
            };
            return vec![(a.relayed, *peer, payload.to_vec())];
        }
        let Some(msg) = Message::decode(data) else {
            return Vec::new();
        };
        if msg.method == m::BINDING && msg.class == m::REQUEST {
            let reply = Message::new(m::BINDING, m::SUCCESS, msg.tid)
                .with_addr(m::ATTR_XOR_MAPPED_ADDRESS, from)
                .encode(None);
            return vec![(self.addr, from, reply)];
        }
        if msg.method == m::SEND && msg.class == m::INDICATION {
            let (Some(a), Some(peer), Some(payload)) = (
                self.allocations.iter().find(|a| a.client == from),
                msg.addr_attr(m::ATTR_XOR_PEER_ADDRESS),
                msg.attr(m::ATTR_DATA),
            ) else {
                return Vec::new();
            };
            if a.permissions.get(&peer.ip()).is_none_or(|t| *t <= now) {
                return Vec::new();
            }
            return vec![(a.relayed, peer, payload.to_vec())];
        }
        if msg.class != m::REQUEST {
            return Vec::new();
        }
        // Long-term credentials: challenge, then check MESSAGE-INTEGRITY.
        let key = msg.str_attr(m::ATTR_USERNAME).and_then(|u| {
            self.credentials
                .get(u)
                .map(|p| m::long_term_key(u, &self.realm, p))
        });
        let authentic = key.as_ref().is_some_and(|k| msg.verify(data, k));
        let Some(key) = key.filter(|_| authentic) else {
            let reply = Message::new(msg.method, m::ERROR, msg.tid)
                .with_error(401, "Unauthorized")
                .with_str(m::ATTR_REALM, &self.realm)
                .with_str(m::ATTR_NONCE, &self.nonce)
                .encode(None);
            return vec![(self.addr, from, reply)];
        };
        if msg.str_attr(m::ATTR_NONCE) != Some(self.nonce.as_str()) {
            let reply = Message::new(msg.method, m::ERROR, msg.tid)
                .with_error(438, "Stale Nonce")
                .with_str(m::ATTR_REALM, &self.realm)
                .with_str(m::ATTR_NONCE, &self.nonce)
                .encode(None);
            return vec![(self.addr, from, reply)];
        }
        let ok = |msg: &Message| Message::new(msg.method, m::SUCCESS, msg.tid);
        let reply = match msg.method {
            m::ALLOCATE => {
                // Like coturn: the requested lifetime, at most an hour.
                let lifetime = msg
                    .u32_attr(m::ATTR_LIFETIME)
                    .unwrap_or(DEFAULT_LIFETIME)
                    .min(MAX_LIFETIME);
                let relayed = match self.allocations.iter().find(|a| a.client == from) {
                    // A retransmitted Allocate: answer with the same allocation.
                    Some(a) => a.relayed,
                    None => {
                        let relayed = SocketAddr::new(self.addr.ip(), self.next_port);
                        self.next_port = self.next_port.wrapping_add(1).max(49152);
                        self.allocations.push(Allocation {
                            client: from,
                            relayed,
                            expires: now + Duration::from_secs(u64::from(lifetime)),
                            permissions: BTreeMap::new(),
                            channels: BTreeMap::new(),
                        });
                        relayed
                    }
                };
                ok(&msg)
                    .with_addr(m::ATTR_XOR_RELAYED_ADDRESS, relayed)
                    .with_addr(m::ATTR_XOR_MAPPED_ADDRESS, from)
                    .with_u32(m::ATTR_LIFETIME, lifetime)
            }
            m::REFRESH => {
                let lifetime = msg.u32_attr(m::ATTR_LIFETIME).unwrap_or(DEFAULT_LIFETIME);
                let Some(i) = self.allocations.iter().position(|a| a.client == from) else {
                    return vec![(
                        self.addr,
                        from,
                        Message::new(msg.method, m::ERROR, msg.tid)
                            .with_error(437, "Allocation Mismatch")
                            .encode(Some(&key)),
                    )];
                };
                if lifetime == 0 {
                    self.allocations.remove(i);
                } else {
                    self.allocations[i].expires =
                        now + Duration::from_secs(u64::from(lifetime.min(MAX_LIFETIME)));
                }
                ok(&msg).with_u32(m::ATTR_LIFETIME, lifetime.min(MAX_LIFETIME))
            }
            m::CREATE_PERMISSION | m::CHANNEL_BIND => {
                let Some(a) = self.allocations.iter_mut().find(|a| a.client == from) else {
                    return vec![(
                        self.addr,
                        from,
                        Message::new(msg.method, m::ERROR, msg.tid)
                            .with_error(437, "Allocation Mismatch")
                            .encode(Some(&key)),
                    )];
                };
                let Some(peer) = msg.addr_attr(m::ATTR_XOR_PEER_ADDRESS) else {
                    return vec![(
                        self.addr,
                        from,
                        Message::new(msg.method, m::ERROR, msg.tid)
                            .with_error(400, "Bad Request")
                            .encode(Some(&key)),
                    )];
                };
                a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
                if msg.method == m::CHANNEL_BIND {
                    let channel = msg
                        .attr(m::ATTR_CHANNEL_NUMBER)
                        .and_then(|v| v.get(..2))
                        .map(|v| u16::from_be_bytes([v[0], v[1]]))
                        .unwrap_or(0);
                    if !(0x4000..=0x7FFE).contains(&channel) {
                        return vec![(
                            self.addr,
                            from,
                            Message::new(msg.method, m::ERROR, msg.tid)
                                .with_error(400, "Bad Request")
                                .encode(Some(&key)),
                        )];
                    }
                    a.channels.insert(channel, (peer, now + CHANNEL_LIFETIME));
                }
                ok(&msg)
            }
            _ => Message::new(msg.method, m::ERROR, msg.tid).with_error(400, "Bad Request"),
        };
        vec![(self.addr, from, reply.encode(Some(&key)))]
    }
}
