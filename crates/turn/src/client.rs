//! A sans-IO TURN client (RFC 5766): allocation, refresh, permissions, channel bindings and
//! the server-reflexive address, for one relay.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tracing::{debug, info, trace, warn};

use crate::stun_msg::{self as m, Message};

/// A relay as the portal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelayId(pub u64);

/// A relay and the (time-limited) credentials to use it. `Debug` leaves out the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub id: RelayId,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("id", &self.id)
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &format_args!("<redacted>"))
            .finish()
    }
}

/// A datagram for the relay server, from our local socket of its address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// What a TURN client asks its driver to do.
#[derive(Debug)]
pub enum TurnOutput {
    Transmit(Transmit),
    Allocated {
        relayed: SocketAddr,
        server_reflexive: SocketAddr,
    },
}

const REQUEST_RTO: Duration = Duration::from_millis(500);
/// Channel numbers, in the range RFC 8656 allows (RFC 5766 allowed up to 0x7FFE).
const FIRST_CHANNEL: u16 = 0x4000;
const LAST_CHANNEL: u16 = 0x4FFF;
const REQUEST_ATTEMPTS: u32 = 5;
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// Requested allocation lifetime in seconds (refreshed at half of what the relay grants).
const ALLOCATION_LIFETIME: u32 = 1800;
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// While a connection needs the relay, our NAT binding to it needs traffic more often than
/// common UDP timeouts (≥ 60 s).
const BINDING_KEEPALIVE: Duration = Duration::from_secs(50);
/// An allocation no connection has needed for this long is released (while our NAT binding to
/// the relay still exists, so the release arrives); the next connection allocates again.
const RELEASE_UNUSED_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Kind {
    Allocate,
    Refresh { lifetime: u32 },
    Permission(IpAddr),
    ChannelBind(SocketAddr, u16),
    Binding,
}

impl Kind {
    /// For logs: the request without the peer's address.
    fn name(&self) -> &'static str {
        match self {
            Kind::Allocate => "allocate",
            Kind::Refresh { .. } => "refresh",
            Kind::Permission(_) => "create-permission",
            Kind::ChannelBind(..) => "channel-bind",
            Kind::Binding => "binding",
        }
    }
}

#[derive(Debug)]
struct InFlight {
    kind: Kind,
    bytes: Vec<u8>,
    attempt: u32,
    deadline: Instant,
}

#[derive(Debug)]
struct Allocation {
    relayed: SocketAddr,
    server_reflexive: SocketAddr,
    refresh_at: Instant,
}

/// The timers of a relay's client, for `poll_timeout`'s reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTimer {
    RequestRetransmit,
    AllocationRetry,
    AllocationRefresh,
    PermissionRefresh,
    ChannelRefresh,
    /// Our NAT binding to the relay needs traffic.
    Keepalive,
    /// The allocation has been unused long enough to be released.
    Release,
}

impl RelayTimer {
    /// For logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RelayTimer::RequestRetransmit => "relay request retransmit",
            RelayTimer::AllocationRetry => "relay allocation retry",
            RelayTimer::AllocationRefresh => "relay allocation refresh",
            RelayTimer::PermissionRefresh => "relay permission refresh",
            RelayTimer::ChannelRefresh => "relay channel refresh",
            RelayTimer::Keepalive => "relay keepalive",
            RelayTimer::Release => "relay release",
        }
    }
}

impl std::fmt::Display for RelayTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One relay's client state.
#[derive(Debug)]
pub struct TurnClient {
    config: RelayConfig,
    local: Option<SocketAddr>,
    rng: ChaCha20Rng,
    realm: Option<String>,
    nonce: Option<String>,
    allocation: Option<Allocation>,
    retry_at: Option<Instant>,
    in_flight: BTreeMap<[u8; 12], InFlight>,
    /// Peer IP → when its permission needs refreshing (`None`: request in flight).
    permissions: BTreeMap<IpAddr, Option<Instant>>,
    /// Peer address → channel number and when the binding needs refreshing (`None`: pending).
    channels: BTreeMap<SocketAddr, (u16, Option<Instant>)>,
    /// The channel number each peer got in this allocation. A relay refuses to bind a peer to
    /// a second number (RFC 8656 §12), so a peer keeps its number even when its binding is
    /// dropped and later made again; only a new allocation starts over.
    channel_numbers: BTreeMap<SocketAddr, u16>,
    next_channel: u16,
    /// Last datagram to or from the relay: traffic either way keeps our NAT binding to it.
    last_activity: Instant,
    /// A connection is gathering candidates or relays its path through this allocation.
    in_use: bool,
    /// Since when no connection has needed this relay.
    unused_since: Option<Instant>,
    out: VecDeque<TurnOutput>,
}

impl TurnClient {
    pub fn new(config: RelayConfig, sockets: &[SocketAddr], seed: u64, now: Instant) -> Self {
        let local = sockets
            .iter()
            .copied()
            .find(|s| s.is_ipv4() == config.server.is_ipv4());
        let mut client = Self {
            config,
            local,
            rng: ChaCha20Rng::seed_from_u64(seed),
            realm: None,
            nonce: None,
            allocation: None,
            retry_at: None,
            in_flight: BTreeMap::new(),
            permissions: BTreeMap::new(),
            channels: BTreeMap::new(),
            channel_numbers: BTreeMap::new(),
            next_channel: FIRST_CHANNEL,
            last_activity: now,
            in_use: false,
            unused_since: Some(now),
            out: VecDeque::new(),
        };
        client.request(Kind::Allocate, now);
        client
    }

    pub fn id(&self) -> RelayId {
        self.config.id
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.allocation.as_ref().map(|a| a.relayed)
    }

    /// New credentials: kept for every later request; the allocation stays.
    pub fn update_credentials(&mut self, config: RelayConfig) {
        if config.username != self.config.username || config.password != self.config.password {
            debug!(relay = ?config.id, "Relay credentials replaced");
        }
        self.config = config;
    }

    /// The local sockets changed (network change): allocate again from the new one.
    pub fn rebase(&mut self, sockets: &[SocketAddr], now: Instant) {
        let local = sockets
            .iter()
            .copied()
            .find(|s| s.is_ipv4() == self.config.server.is_ipv4());
        if local == self.local && self.allocation.is_some() {
            return;
        }
        self.local = local;
        self.allocation = None;
        self.in_flight.clear();
        self.permissions.clear();
        self.forget_channels();
        self.request(Kind::Allocate, now);
    }

    /// Releases the allocation (lifetime 0).
    pub fn release(&mut self, now: Instant) {
        if self.allocation.is_some() {
            self.request(Kind::Refresh { lifetime: 0 }, now);
        }
    }

    /// Our local socket towards the relay (the base of its candidates), if we have one of the
    /// relay's address family.
    #[must_use]
    pub fn local_address(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Our address as the relay sees it, once allocated.
    #[must_use]
    pub fn server_reflexive_address(&self) -> Option<SocketAddr> {
        self.allocation.as_ref().map(|a| a.server_reflexive)
    }

    /// Whether a connection currently needs this relay (keeps our NAT binding to it alive).
    pub fn set_in_use(&mut self, in_use: bool, now: Instant) {
        if in_use {
            self.unused_since = None;
        } else if self.in_use || self.unused_since.is_none() {
            self.unused_since = Some(now);
        }
        self.in_use = in_use;
    }

    /// The peer's channel number in this allocation, assigned on first use; `None` when the
    /// range is used up (Send indications still work).
    fn channel_number(&mut self, peer: SocketAddr) -> Option<u16> {
        if let Some(number) = self.channel_numbers.get(&peer) {
            return Some(*number);
        }
        if self.next_channel > LAST_CHANNEL {
            return None;
        }
        let number = self.next_channel;
        self.next_channel += 1;
        self.channel_numbers.insert(peer, number);
        Some(number)
    }

    /// A new allocation: no channel, no number in use.
    fn forget_channels(&mut self) {
        self.channels.clear();
        self.channel_numbers.clear();
        self.next_channel = FIRST_CHANNEL;
    }

    /// Forgets permissions and channels for peers no connection needs any more, so that the
    /// relay's idle cost does not grow with every peer ever contacted.
    pub fn retain_peers(&mut self, needed: &BTreeSet<IpAddr>) {
        self.permissions.retain(|ip, _| needed.contains(ip));
        self.channels.retain(|peer, _| needed.contains(&peer.ip()));
    }

    /// Lets `peer`'s IP send to our relayed address.
    pub fn create_permission(&mut self, peer: SocketAddr, now: Instant) {
        if peer.is_ipv4() != self.config.server.is_ipv4()
            || self.permissions.contains_key(&peer.ip())
        {
            return;
        }
        self.permissions.insert(peer.ip(), None);
        if self.allocation.is_some() {
            self.request(Kind::Permission(peer.ip()), now);
        }
    }

    /// Sends `payload` to `peer` from our relayed address. Once the peer's channel is bound,
    /// the payload's own buffer becomes the datagram (framed in place).
    pub fn send_to_peer(&mut self, peer: SocketAddr, mut payload: Vec<u8>, now: Instant) {
        let Some(local) = self.local else {
            return;
        };
        if self.allocation.is_none() {
            return;
        }
        let wrapped = match self.channels.get(&peer) {
            Some((channel, Some(_))) => {
                m::frame_channel_data(*channel, &mut payload);
                payload
            }
            _ => {
                if !self.channels.contains_key(&peer)
                    && let Some(channel) = self.channel_number(peer)
                {
                    self.channels.insert(peer, (channel, None));
                    self.request(Kind::ChannelBind(peer, channel), now);
                }
                Message::new(m::SEND, m::INDICATION, self.tid())
                    .with_addr(m::ATTR_XOR_PEER_ADDRESS, peer)
                    .with(m::ATTR_DATA, payload)
                    .encode(None)
            }
        };
        // Relayed traffic keeps our NAT binding to the relay as well as a keepalive would.
        self.last_activity = now;
        self.out.push_back(TurnOutput::Transmit(Transmit {
            src: local,
            dst: self.config.server,
            payload: wrapped,
        }));
    }

    /// A datagram from the relay server. Returns a payload relayed from a peer as
    /// (our relayed address, peer address, payload); ChannelData payloads are borrowed from
    /// `data`.
    pub fn handle_packet<'a>(
        &mut self,
        _local: SocketAddr,
        _from: SocketAddr,
        data: &'a [u8],
        now: Instant,
    ) -> Option<(SocketAddr, SocketAddr, Cow<'a, [u8]>)> {
        let relayed = self.relayed_address();
        self.last_activity = now;
        if m::is_channel_data(data) {
            let (channel, payload) = m::parse_channel_data(data)?;
            let peer = self
                .channels
                .iter()
                .find(|(_, (c, _))| *c == channel)
                .map(|(p, _)| *p)?;
            return Some((relayed?, peer, Cow::Borrowed(payload)));
        }
        if !m::is_stun(data) {
            return None;
        }
        let msg = Message::decode(data)?;
        if msg.method == m::DATA && msg.class == m::INDICATION {
            let peer = msg.addr_attr(m::ATTR_XOR_PEER_ADDRESS)?;
            let payload = msg.attr(m::ATTR_DATA)?.to_vec();
            return Some((relayed?, peer, Cow::Owned(payload)));
        }
        self.handle_response(&msg, data, now);
        None
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<[u8; 12]> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for tid in due {
            let Some(mut f) = self.in_flight.remove(&tid) else {
                continue;
            };
            f.attempt += 1;
            if f.attempt >= REQUEST_ATTEMPTS {
                warn!(relay = ?self.config.id, request = f.kind.name(), "Relay does not answer");
                self.request_failed(&f.kind, now);
                continue;
            }
            f.deadline = now + REQUEST_RTO * (1 << f.attempt);
            self.transmit(f.bytes.clone(), now);
            self.in_flight.insert(tid, f);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.request(Kind::Allocate, now);
        }
        if self
            .allocation
            .as_ref()
            .is_some_and(|a| a.refresh_at <= now)
            && !self.pending(|k| matches!(k, Kind::Refresh { .. }))
        {
            if let Some(a) = self.allocation.as_mut() {
                a.refresh_at = now + Duration::from_secs(3600);
            }
            self.request(
                Kind::Refresh {
                    lifetime: ALLOCATION_LIFETIME,
                },
                now,
            );
        }
        let perms: Vec<IpAddr> = self
            .permissions
            .iter()
            .filter(|(_, t)| t.is_some_and(|t| t <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in perms {
            self.permissions.insert(ip, None);
            self.request(Kind::Permission(ip), now);
        }
        let chans: Vec<(SocketAddr, u16)> = self
            .channels
            .iter()
            .filter(|(_, (_, t))| t.is_some_and(|t| t <= now))
            .map(|(p, (c, _))| (*p, *c))
            .collect();
        for (peer, channel) in chans {
            self.channels.insert(peer, (channel, None));
            self.request(Kind::ChannelBind(peer, channel), now);
        }
        if self.allocation.is_some()
            && !self.in_use
            && self
                .unused_since
                .is_some_and(|t| now >= t + RELEASE_UNUSED_AFTER)
        {
            debug!(relay = ?self.config.id, "Relay unused; releasing the allocation");
            self.request(Kind::Refresh { lifetime: 0 }, now);
            self.allocation = None;
            self.forget_channels();
            self.permissions.clear();
        }
        if self.allocation.is_some()
            && self.in_use
            && now >= self.last_activity + BINDING_KEEPALIVE
            && !self.pending(|k| matches!(k, Kind::Binding))
        {
            self.request(Kind::Binding, now);
        }
    }

    /// When to call `handle_timeout` next, and why.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, RelayTimer)> {
        let mut best: Option<(Instant, RelayTimer)> = None;
        let mut consider = |t: Option<Instant>, timer: RelayTimer| {
            if let Some(t) = t
                && best.is_none_or(|(b, _)| t < b)
            {
                best = Some((t, timer));
            }
        };
        consider(
            self.in_flight.values().map(|f| f.deadline).min(),
            RelayTimer::RequestRetransmit,
        );
        consider(self.retry_at, RelayTimer::AllocationRetry);
        consider(
            self.allocation.as_ref().map(|a| a.refresh_at),
            RelayTimer::AllocationRefresh,
        );
        consider(
            self.permissions.values().flatten().min().copied(),
            RelayTimer::PermissionRefresh,
        );
        consider(
            self.channels.values().filter_map(|(_, t)| *t).min(),
            RelayTimer::ChannelRefresh,
        );
        if self.allocation.is_some() && self.in_use {
            consider(
                Some(self.last_activity + BINDING_KEEPALIVE),
                RelayTimer::Keepalive,
            );
        }
        if self.allocation.is_some() && !self.in_use {
            consider(
                self.unused_since.map(|t| t + RELEASE_UNUSED_AFTER),
                RelayTimer::Release,
            );
        }
        best
    }

    pub fn poll_output(&mut self) -> Option<TurnOutput> {
        self.out.pop_front()
    }

    /// The next datagram to send, leaving other outputs queued for `poll_output`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let i = self
            .out
            .iter()
            .position(|o| matches!(o, TurnOutput::Transmit(_)))?;
        match self.out.remove(i)? {
            TurnOutput::Transmit(t) => Some(t),
            other => {
                self.out.insert(i, other);
                None
            }
        }
    }

    fn pending(&self, f: impl Fn(&Kind) -> bool) -> bool {
        self.in_flight.values().any(|r| f(&r.kind))
    }

    fn tid(&mut self) -> [u8; 12] {
        let mut tid = [0u8; 12];
        self.rng.fill_bytes(&mut tid);
        tid
    }

    fn key(&self) -> Option<Vec<u8>> {
        let realm = self.realm.as_deref()?;
        Some(m::long_term_key(
            &self.config.username,
            realm,
            &self.config.password,
        ))
    }

    fn request(&mut self, kind: Kind, now: Instant) {
        if self.local.is_none() {
            trace!(relay = ?self.config.id, "No local socket of the relay's address family");
            return;
        }
        let tid = self.tid();
        let mut msg = match &kind {
            Kind::Allocate => Message::new(m::ALLOCATE, m::REQUEST, tid)
                // REQUESTED-TRANSPORT: UDP (17).
                .with(m::ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
                .with_u32(m::ATTR_LIFETIME, ALLOCATION_LIFETIME),
            Kind::Refresh { lifetime } => {
                Message::new(m::REFRESH, m::REQUEST, tid).with_u32(m::ATTR_LIFETIME, *lifetime)
            }
            Kind::Permission(ip) => Message::new(m::CREATE_PERMISSION, m::REQUEST, tid)
                .with_addr(m::ATTR_XOR_PEER_ADDRESS, SocketAddr::new(*ip, 0)),
            Kind::ChannelBind(peer, channel) => Message::new(m::CHANNEL_BIND, m::REQUEST, tid)
                .with(
                    m::ATTR_CHANNEL_NUMBER,
                    [channel.to_be_bytes(), [0, 0]].concat(),
                )
                .with_addr(m::ATTR_XOR_PEER_ADDRESS, *peer),
            Kind::Binding => Message::new(m::BINDING, m::REQUEST, tid),
        };
        let key = if matches!(kind, Kind::Binding) {
            None
        } else {
            self.key()
        };
        if key.is_some() {
            let realm = self.realm.clone().unwrap_or_default();
            let nonce = self.nonce.clone().unwrap_or_default();
            msg = msg
                .with_str(m::ATTR_USERNAME, &self.config.username.clone())
                .with_str(m::ATTR_REALM, &realm)
                .with_str(m::ATTR_NONCE, &nonce);
        }
        let bytes = msg.encode(key.as_deref());
        trace!(relay = ?self.config.id, request = kind.name(), "Relay request");
        self.transmit(bytes.clone(), now);
        self.in_flight.insert(
            tid,
            InFlight {
                kind,
                bytes,
                attempt: 0,
                deadline: now + REQUEST_RTO,
            },
        );
    }

    fn transmit(&mut self, payload: Vec<u8>, now: Instant) {
        let Some(local) = self.local else {
            return;
        };
        self.last_activity = now;
        self.out.push_back(TurnOutput::Transmit(Transmit {
            src: local,
            dst: self.config.server,
            payload,
        }));
    }

    fn handle_response(&mut self, msg: &Message, data: &[u8], now: Instant) {
        let Some(f) = self.in_flight.remove(&msg.tid) else {
            trace!("Relay response for no request of ours; dropped");
            return;
        };
        if msg.class == m::ERROR {
            let code = msg.error_code().unwrap_or(0);
            if matches!(f.kind, Kind::Refresh { lifetime: 0 }) {
                // A refused release: the allocation expires on its own.
                return;
            }
            if matches!(code, 401 | 438) && msg.str_attr(m::ATTR_NONCE).is_some() {
                let fresh_realm = msg.str_attr(m::ATTR_REALM).map(str::to_owned);
                let fresh_nonce = msg.str_attr(m::ATTR_NONCE).map(str::to_owned);
                // Retry once with new credentials/nonce; a second 401 in a row is a failure.
                let repeated = fresh_nonce == self.nonce && code == 401 && self.realm.is_some();
                if fresh_realm.is_some() {
                    self.realm = fresh_realm;
                }
                self.nonce = fresh_nonce;
                if !repeated {
                    self.request(f.kind, now);
                    return;
                }
            }
            if !matches!(f.kind, Kind::Allocate) && matches!(code, 437 | 441) {
                // 437: our address towards the relay changed under us. 441: the allocation
                // belongs to credentials that are no longer valid. Both: start over.
                debug!(relay = ?self.config.id, "Relay no longer knows our allocation; allocating again");
                self.reallocate(now);
                return;
            }
            let reason = msg.error_reason().unwrap_or_default();
            debug!(relay = ?self.config.id, kind = ?f.kind, code, reason, "Relay refused a request");
            warn!(relay = ?self.config.id, code, request = f.kind.name(), "Relay refused a request");
            self.request_failed(&f.kind, now);
            return;
        }
        // Successful responses to authenticated requests must carry a valid integrity.
        if !matches!(f.kind, Kind::Binding)
            && let Some(key) = self.key()
            && !msg.verify(data, &key)
        {
            trace!("Relay response failed integrity; ignored");
            self.in_flight.insert(msg.tid, f);
            return;
        }
        match f.kind {
            Kind::Allocate => {
                let (Some(relayed), Some(srflx)) = (
                    msg.addr_attr(m::ATTR_XOR_RELAYED_ADDRESS),
                    msg.addr_attr(m::ATTR_XOR_MAPPED_ADDRESS),
                ) else {
                    warn!(relay = ?self.config.id, "Allocation response without addresses");
                    self.request_failed(&Kind::Allocate, now);
                    return;
                };
                let lifetime =
                    Duration::from_secs(u64::from(msg.u32_attr(m::ATTR_LIFETIME).unwrap_or(600)));
                info!(relay = ?self.config.id, "Relay allocation ready");
                self.allocation = Some(Allocation {
                    relayed,
                    server_reflexive: srflx,
                    refresh_at: now + lifetime / 2,
                });
                self.out.push_back(TurnOutput::Allocated {
                    relayed,
                    server_reflexive: srflx,
                });
                let ips: Vec<IpAddr> = self.permissions.keys().copied().collect();
                for ip in ips {
                    self.request(Kind::Permission(ip), now);
                }
            }
            Kind::Refresh { lifetime } => {
                // A release (lifetime 0) already forgot the allocation when it was sent.
                if lifetime != 0
                    && let Some(a) = self.allocation.as_mut()
                {
                    let granted = Duration::from_secs(u64::from(
                        msg.u32_attr(m::ATTR_LIFETIME).unwrap_or(lifetime),
                    ));
                    a.refresh_at = now + granted / 2;
                }
            }
            Kind::Permission(ip) => {
                self.permissions.insert(ip, Some(now + PERMISSION_REFRESH));
            }
            Kind::ChannelBind(peer, channel) => {
                debug!(relay = ?self.config.id, %peer, channel, "Channel bound");
                self.channels
                    .insert(peer, (channel, Some(now + CHANNEL_REFRESH)));
            }
            Kind::Binding => {
                if let (Some(a), Some(srflx)) = (
                    self.allocation.as_mut(),
                    msg.addr_attr(m::ATTR_XOR_MAPPED_ADDRESS),
                ) && a.server_reflexive != srflx
                {
                    debug!(relay = ?self.config.id, "Our address towards the relay changed; allocating again");
                    self.reallocate(now);
                }
            }
        }
    }

    /// Checks our server-reflexive address and our allocation now (before a connection gathers
    /// candidates, or when a path died): a changed address or a forgotten allocation means a
    /// new allocation. Allocates if we have no allocation (it is released while unused).
    pub fn check_binding(&mut self, now: Instant) {
        if self.pending(|k| matches!(k, Kind::Binding | Kind::Allocate)) || self.retry_at.is_some()
        {
            return;
        }
        if self.allocation.is_none() {
            self.request(Kind::Allocate, now);
            return;
        }
        self.request(Kind::Binding, now);
        // A relay that restarted answers bindings like before; only a refresh finds out
        // whether it still holds our allocation (437 when it does not, and we allocate again).
        if !self.pending(|k| matches!(k, Kind::Refresh { .. })) {
            self.request(
                Kind::Refresh {
                    lifetime: ALLOCATION_LIFETIME,
                },
                now,
            );
        }
    }

    fn reallocate(&mut self, now: Instant) {
        self.allocation = None;
        self.forget_channels();
        for t in self.permissions.values_mut() {
            *t = None;
        }
        self.in_flight
            .retain(|_, f| matches!(f.kind, Kind::Allocate));
        if self.in_flight.is_empty() {
            self.request(Kind::Allocate, now);
        }
    }

    fn request_failed(&mut self, kind: &Kind, now: Instant) {
        match kind {
            Kind::Refresh { lifetime: 0 } => {}
            Kind::Allocate | Kind::Refresh { .. } | Kind::Binding => {
                self.allocation = None;
                self.forget_channels();
                for t in self.permissions.values_mut() {
                    *t = None;
                }
                self.retry_at = Some(now + RETRY_AFTER_FAILURE);
            }
            Kind::Permission(ip) => {
                self.permissions.remove(ip);
            }
            Kind::ChannelBind(peer, _) => {
                self.channels.remove(peer);
            }
        }
    }
}
