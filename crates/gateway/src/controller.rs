//! The gateway's control loop: the portal link (with reconnects), the data plane's driver,
//! grants and their expiry, DNS resolution for DNS resources, ICE candidates both ways.
//!
//! The data plane does not depend on the portal: when the link drops, the driver and every
//! tunnel keep running while the loop reconnects with a backoff.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ember_engine::{
    Engine, EngineConfig, Event, Grant, IceCredentials, PeerId, RelayConfig, RelayId, Role,
};
use ember_gateway::grants::{decode_key, encode_key, resource_grant};
use ember_gateway::names::{Lookups, addresses_to_grant};
use ember_gateway::router::GrantKey;
use ember_io::driver::{Command, Driver, DriverHandle};
use ember_io::netlink::Netlink;
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_portal_client::{Backoff, GatewaySide, PortalLink};
use ember_protocol::SecretToken;
use ember_protocol::portal::{
    self, ClientPeer, GatewayMessage, Interface, PORTAL_PROTOCOL_VERSION, PortalToGateway, Relay,
    Resource, ResourceAddress,
};
use rand::TryRngCore as _;
use tokio::sync::mpsc;

use crate::resolve::Resolver;
use crate::system::{self, NftTable};

mod plumbing;

use plumbing::{
    Portal, SharedRouter, Shutdown, bind_sockets, permanent, recv, relay_address, sleep_until,
    unix_now, wait_for,
};

/// How often the gateway tells the portal how many clients it serves.
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// How often the router's table of translated flows ages by one step.
const FLOW_TICK: Duration = Duration::from_secs(60);
/// Prefix lengths of the tunnel ranges (the TUN addresses route them into the device).
const TUNNEL_PREFIX_V4: u8 = 11;
const TUNNEL_PREFIX_V6: u8 = 107;

pub struct Options {
    pub portal_url: String,
    pub token: SecretToken,
    pub name: String,
    pub private_key: [u8; 32],
    pub tun_name: String,
    pub resolver: Resolver,
    /// After the portal link comes back, grants the portal does not send again within this
    /// time are dropped: the portal forgot them with the old link, so it could no longer
    /// revoke them.
    pub reconfirm_within: Duration,
    /// Where forwarding switches are saved until they are put back.
    pub state_dir: std::path::PathBuf,
}

/// Leaves out the private key (the token redacts itself).
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("portal_url", &self.portal_url)
            .field("token", &self.token)
            .field("name", &self.name)
            .field("tun_name", &self.tun_name)
            .field("resolver", &self.resolver)
            .field("reconfirm_within", &self.reconfirm_within)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Connects, sets up the data plane and serves until SIGTERM/SIGINT or a permanent error.
pub async fn run(options: Options) -> Result<()> {
    let mut seed = [0u8; 8];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .context("the operating system's random generator failed")?;
    let engine = Engine::new(
        EngineConfig::new(Role::Gateway, options.private_key, u64::from_le_bytes(seed)),
        Instant::now(),
    );
    let portal = Portal {
        url: options.portal_url,
        token: options.token,
        hello: GatewayMessage::Hello {
            protocol_version: PORTAL_PROTOCOL_VERSION,
            public_key: encode_key(&engine.public_key()),
            name: options.name,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    };
    let mut shutdown = Shutdown::new()?;

    // The interface addresses come with the first `init`: nothing runs before it.
    let mut backoff = Backoff::default();
    let (link, init) = loop {
        tokio::select! {
            result = portal.connect() => match result {
                Ok(connected) => break connected,
                Err(e) if e.is_permanent() => return Err(permanent(e)),
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(?wait, "Cannot connect to the portal: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.wait() => return Ok(()),
                    }
                }
            },
            () = shutdown.wait() => return Ok(()),
        }
    };
    backoff.reset();
    let PortalToGateway::Init {
        gateway_id,
        site,
        interface,
        relays,
        ..
    } = init
    else {
        bail!("the portal's first message was not `init`");
    };
    tracing::info!(%gateway_id, site = %site.name, ipv4 = %interface.ipv4, ipv6 = %interface.ipv6, "Connected to the portal");

    let tun = Tun::create(&TunConfig {
        name: options.tun_name,
        mtu: DEFAULT_MTU,
        ipv4: Some((interface.ipv4, TUNNEL_PREFIX_V4)),
        ipv6: Some((interface.ipv6, TUNNEL_PREFIX_V6)),
        wintun_dll: None,
    })
    .context("cannot create the TUN device")?;
    let netlink = Netlink::connect().context("cannot open a netlink socket")?;
    let mut interfaces = system::routed_interfaces(&netlink).await?;
    if !interfaces.iter().any(|name| name == tun.name()) {
        interfaces.push(tun.name().to_owned());
    }
    let forwarding = system::Forwarding::enable(&options.state_dir, &interfaces)?;
    let own_addresses = system::own_addresses(&netlink).await?;
    let nft = NftTable::install(tun.name())?;
    let sockets = bind_sockets()?;
    let router = SharedRouter::default();
    let (driver, handle, events) = Driver::new(engine, tun, sockets, router.clone());
    let driver_task = tokio::spawn(driver.run());

    let mut gateway = Gateway::new(handle, router, options.resolver, interface);
    gateway.reconfirm_within = options.reconfirm_within;
    gateway.own_addresses = own_addresses;
    gateway.set_relays(relays).await;
    let result = gateway
        .serve(portal, link, backoff, events, driver_task, &mut shutdown)
        .await;
    drop(nft);
    drop(forwarding);
    result
}

/// A client this gateway has grants for.
#[derive(Debug)]
struct Client {
    peer: PeerId,
    addresses: Vec<IpAddr>,
    /// Unix seconds at which each grant ends.
    expiries: HashMap<GrantKey, u64>,
}

/// A DNS resource's name being resolved; the client's later messages wait behind it, so they
/// apply in the order the portal sent them.
#[derive(Debug, Default)]
struct Pending {
    resolving: usize,
    queued: VecDeque<PortalToGateway>,
}

/// A name to look up for a client's grant.
#[derive(Debug)]
struct Lookup {
    client_id: String,
    domain: String,
    grant: Box<PortalToGateway>,
}

#[derive(Debug)]
struct Resolved {
    client_id: String,
    grant: Box<PortalToGateway>,
    addresses: Result<Vec<IpAddr>, String>,
}

struct Gateway {
    driver: DriverHandle,
    router: SharedRouter,
    resolver: Resolver,
    interface: Interface,
    clients: HashMap<String, Client>,
    client_of: HashMap<PeerId, String>,
    next_peer: u64,
    pending: HashMap<String, Pending>,
    lookups: Lookups<Lookup>,
    /// This host's addresses: the internet resource does not reach them.
    own_addresses: Vec<IpAddr>,
    resolved_tx: mpsc::Sender<Resolved>,
    resolved_rx: mpsc::Receiver<Resolved>,
    /// (unix seconds, peer, grant): the next grants to expire.
    expiries: BTreeSet<(u64, PeerId, GrantKey)>,
    relay_ids: HashMap<String, RelayId>,
    link: Option<PortalLink<GatewaySide>>,
    /// Grants from before the last reconnect that the portal has not sent again yet, and when
    /// they are dropped.
    unconfirmed: BTreeSet<(PeerId, GrantKey)>,
    reconfirm_by: Option<tokio::time::Instant>,
    reconfirm_within: Duration,
}

impl Gateway {
    fn new(
        driver: DriverHandle,
        router: SharedRouter,
        resolver: Resolver,
        interface: Interface,
    ) -> Self {
        let (resolved_tx, resolved_rx) = mpsc::channel(64);
        Self {
            driver,
            router,
            resolver,
            interface,
            clients: HashMap::new(),
            client_of: HashMap::new(),
            next_peer: 1,
            pending: HashMap::new(),
            lookups: Lookups::default(),
            own_addresses: Vec::new(),
            resolved_tx,
            resolved_rx,
            expiries: BTreeSet::new(),
            relay_ids: HashMap::new(),
            link: None,
            unconfirmed: BTreeSet::new(),
            reconfirm_by: None,
            reconfirm_within: Duration::from_secs(120),
        }
    }

    async fn serve(
        &mut self,
        portal: Portal,
        link: PortalLink<GatewaySide>,
        mut backoff: Backoff,
        mut events: mpsc::Receiver<Event>,
        mut driver_task: tokio::task::JoinHandle<std::io::Result<()>>,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        self.link = Some(link);
        let mut reconnect = None;
        let mut health = tokio::time::interval(HEALTH_INTERVAL);
        let mut flow_tick = tokio::time::interval(FLOW_TICK);
        flow_tick.tick().await;
        loop {
            let next_expiry = self.next_expiry_in();
            tokio::select! {
                message = recv(&mut self.link) => match message {
                    Ok(message) => self.handle_portal(message).await,
                    Err(e) => {
                        self.link = None;
                        let wait = backoff.next_delay();
                        tracing::warn!(?wait, "Lost the portal ({e}); tunnels keep working, reconnecting");
                        reconnect = Some(portal.reconnect_after(wait));
                    }
                },
                result = wait_for(&mut reconnect) => match result {
                    Ok((link, init)) => {
                        reconnect = None;
                        backoff.reset();
                        self.link = Some(link);
                        self.handle_portal(init).await;
                        self.start_reconfirming();
                        tracing::info!("Connected to the portal again");
                    }
                    Err(e) if e.is_permanent() => return Err(permanent(e)),
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(?wait, "Cannot connect to the portal: {e}");
                        reconnect = Some(portal.reconnect_after(wait));
                    }
                },
                event = events.recv() => match event {
                    Some(event) => self.handle_event(event).await,
                    None => bail!("the data plane stopped"),
                },
                Some(resolved) = self.resolved_rx.recv() => self.handle_resolved(resolved).await,
                _ = health.tick() => {
                    let connections = u32::try_from(self.clients.len()).unwrap_or(u32::MAX);
                    self.send(GatewayMessage::Health { connections, cpu_percent: None }).await;
                }
                () = tokio::time::sleep(next_expiry) => self.expire().await,
                () = sleep_until(self.reconfirm_by) => self.drop_unconfirmed().await,
                _ = flow_tick.tick() => self.router.lock().tick(),
                result = &mut driver_task => {
                    return match result {
                        Ok(Ok(())) => Err(anyhow::anyhow!("the data plane stopped")),
                        Ok(Err(e)) => Err(anyhow::Error::new(e).context("the data plane failed")),
                        Err(e) => Err(anyhow::Error::new(e).context("the data plane crashed")),
                    };
                }
                () = shutdown.wait() => return Ok(()),
            }
        }
    }

    async fn send(&self, message: GatewayMessage) {
        if let Some(link) = &self.link {
            // A closed link shows up in `recv` next and is reconnected there.
            let _ = link.send(message).await;
        }
    }

    async fn handle_portal(&mut self, message: PortalToGateway) {
        if let Some(client_id) = client_of_message(&message)
            && let Some(pending) = self.pending.get_mut(client_id)
        {
            pending.queued.push_back(message);
            return;
        }
        self.apply(message).await;
    }

    async fn apply(&mut self, message: PortalToGateway) {
        match message {
            PortalToGateway::Init {
                interface, relays, ..
            } => {
                if interface != self.interface {
                    tracing::warn!(ipv4 = %interface.ipv4, ipv6 = %interface.ipv6, "The portal assigned new tunnel addresses; restart the gateway to use them");
                }
                self.set_relays(relays).await;
            }
            PortalToGateway::RelaysUpdated { relays } => self.set_relays(relays).await,
            grant @ PortalToGateway::Grant { .. } => self.handle_grant(grant).await,
            PortalToGateway::Revoke {
                client_id,
                resource_ids,
            } => self.revoke(&client_id, &resource_ids).await,
            PortalToGateway::IceCandidates {
                client_id,
                candidates,
            } => {
                let Some(client) = self.clients.get(&client_id) else {
                    tracing::debug!(%client_id, "ICE candidates for a client without grants");
                    return;
                };
                let peer = client.peer;
                for candidate in candidates {
                    self.driver
                        .send(Command::RemoteCandidate { peer, candidate })
                        .await;
                }
            }
            PortalToGateway::Heartbeat => {}
            PortalToGateway::Error { code, message } => {
                tracing::warn!(?code, "The portal reported an error: {message}");
            }
        }
    }

    async fn handle_grant(&mut self, grant: PortalToGateway) {
        let PortalToGateway::Grant {
            client,
            resource,
            domain,
            expires_at,
            ..
        } = &grant
        else {
            return;
        };
        if *expires_at <= unix_now() {
            tracing::debug!(client_id = %client.id, "Ignored a grant that has expired already");
            return;
        }
        if let ResourceAddress::Dns { pattern } = &resource.address {
            let Some(domain) = domain.clone() else {
                tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant for a DNS resource without a name");
                return;
            };
            if !portal::dns_pattern_matches(pattern, &domain) {
                tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant whose name does not match its resource");
                return;
            }
            let key = GrantKey {
                resource_id: resource.id.clone(),
                domain: Some(domain.clone()),
            };
            if let Some(entry) = self.clients.get(&client.id)
                && !self.router.lock().may_add(entry.peer, &key)
            {
                tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant for one more name: the client holds the most names a client may");
                return;
            }
            let client_id = client.id.clone();
            self.pending.entry(client_id.clone()).or_default().resolving += 1;
            let lookup = Lookup {
                client_id,
                domain,
                grant: Box::new(grant),
            };
            if let Some(lookup) = self.lookups.start(lookup) {
                self.spawn_lookup(lookup);
            }
            return;
        }
        self.install_grant(grant, &[]).await;
    }

    fn spawn_lookup(&self, lookup: Lookup) {
        let resolver = self.resolver.clone();
        let done = self.resolved_tx.clone();
        tokio::spawn(async move {
            let Lookup {
                client_id,
                domain,
                grant,
            } = lookup;
            let addresses = resolver
                .resolve(&domain)
                .await
                .map_err(|e| format!("{e:#}"));
            let _ = done
                .send(Resolved {
                    client_id,
                    grant,
                    addresses,
                })
                .await;
        });
    }

    async fn handle_resolved(&mut self, resolved: Resolved) {
        let Resolved {
            client_id,
            grant,
            addresses,
        } = resolved;
        if let Some(next) = self.lookups.finished() {
            self.spawn_lookup(next);
        }
        if let Err(e) = &addresses {
            tracing::info!(%client_id, "Cannot resolve a DNS resource for a client: {e}");
        }
        match addresses_to_grant(addresses) {
            Some(addresses) => self.install_grant(*grant, &addresses).await,
            None => tracing::info!(%client_id, "No grant for a name without an address"),
        }
        let Some(pending) = self.pending.get_mut(&client_id) else {
            return;
        };
        pending.resolving = pending.resolving.saturating_sub(1);
        if pending.resolving > 0 {
            return;
        }
        let mut queued = self
            .pending
            .remove(&client_id)
            .map(|p| p.queued)
            .unwrap_or_default();
        while let Some(message) = queued.pop_front() {
            if let Some(pending) = self.pending.get_mut(&client_id) {
                // A queued DNS grant is resolving now: the rest waits behind it again.
                pending.queued.push_back(message);
                pending.queued.extend(queued.drain(..));
                return;
            }
            self.apply(message).await;
        }
    }

    /// Router first, then the engine: no packet is decrypted before the filter knows the grant.
    async fn install_grant(&mut self, grant: PortalToGateway, resolved: &[IpAddr]) {
        let PortalToGateway::Grant {
            client,
            resource,
            domain,
            proxy_ips,
            preshared_key,
            local_ice,
            remote_ice,
            expires_at,
        } = grant
        else {
            return;
        };
        let (Ok(peer_public_key), Ok(preshared_key)) = (
            decode_key(&client.public_key),
            decode_key(preshared_key.expose()),
        ) else {
            tracing::warn!(client_id = %client.id, "Ignored a grant with a malformed key");
            return;
        };
        let data_plane = match resource_grant(&resource, resolved, &proxy_ips, &self.own_addresses)
        {
            Ok(grant) => grant,
            Err(e) => {
                tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant: {e}");
                return;
            }
        };
        let key = GrantKey {
            resource_id: resource.id.clone(),
            domain,
        };
        let peer = self.peer_for(&client);
        let installed =
            self.router
                .lock()
                .set_grant(peer, &client_addresses(&client), key.clone(), data_plane);
        if !installed {
            // Only a client holding names already is refused, so it keeps its peer.
            tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant for one more name: the client holds the most names a client may");
            return;
        }
        log_grant(&client, &resource, key.domain.as_deref(), resolved);
        if let Some(entry) = self.clients.get_mut(&client.id)
            && let Some(old) = entry.expiries.insert(key.clone(), expires_at)
        {
            self.expiries.remove(&(old, peer, key.clone()));
        }
        self.unconfirmed.remove(&(peer, key.clone()));
        self.expiries.insert((expires_at, peer, key));
        self.driver
            .send(Command::Grant(Box::new(Grant {
                peer,
                peer_public_key,
                preshared_key,
                local_ice: IceCredentials {
                    ufrag: local_ice.ufrag,
                    pwd: local_ice.pwd.expose().to_owned(),
                },
                remote_ice: IceCredentials {
                    ufrag: remote_ice.ufrag,
                    pwd: remote_ice.pwd.expose().to_owned(),
                },
            })))
            .await;
    }

    fn peer_for(&mut self, client: &ClientPeer) -> PeerId {
        let addresses = client_addresses(client);
        if let Some(entry) = self.clients.get_mut(&client.id) {
            entry.addresses = addresses;
            return entry.peer;
        }
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        self.clients.insert(
            client.id.clone(),
            Client {
                peer,
                addresses,
                expiries: HashMap::new(),
            },
        );
        self.client_of.insert(peer, client.id.clone());
        peer
    }

    async fn revoke(&mut self, client_id: &str, resource_ids: &[String]) {
        let Some(client) = self.clients.get_mut(client_id) else {
            return;
        };
        let peer = client.peer;
        let remaining = self.router.lock().revoke(peer, resource_ids);
        client.expiries.retain(|key, expiry| {
            let keep = !resource_ids.is_empty() && !resource_ids.contains(&key.resource_id);
            if !keep {
                self.expiries.remove(&(*expiry, peer, key.clone()));
            }
            keep
        });
        tracing::info!(%client_id, resources = resource_ids.len(), "Grants withdrawn");
        if !remaining {
            self.forget_client(client_id).await;
        }
    }

    /// Removes grants whose time is up.
    async fn expire(&mut self) {
        let now = unix_now();
        while let Some(first) = self.expiries.first().cloned() {
            if first.0 > now {
                break;
            }
            self.expiries.remove(&first);
            let (_, peer, key) = first;
            let Some(client_id) = self.client_of.get(&peer).cloned() else {
                continue;
            };
            if let Some(client) = self.clients.get_mut(&client_id) {
                client.expiries.remove(&key);
            }
            tracing::info!(%client_id, resource_id = %key.resource_id, "A grant expired");
            if !self.router.lock().revoke_grant(peer, &key) {
                self.forget_client(&client_id).await;
            }
        }
    }

    /// Every grant held now must come again from the portal within `reconfirm_within`.
    fn start_reconfirming(&mut self) {
        let router = self.router.lock();
        self.unconfirmed = self
            .expiries
            .iter()
            .filter(|(_, peer, key)| router.has_grant(*peer, key))
            .map(|(_, peer, key)| (*peer, key.clone()))
            .collect();
        drop(router);
        if !self.unconfirmed.is_empty() {
            tracing::info!(
                grants = self.unconfirmed.len(),
                within = ?self.reconfirm_within,
                "Grants from before the reconnect must be confirmed by the portal"
            );
            self.reconfirm_by = Some(tokio::time::Instant::now() + self.reconfirm_within);
        }
    }

    async fn drop_unconfirmed(&mut self) {
        self.reconfirm_by = None;
        for (peer, key) in std::mem::take(&mut self.unconfirmed) {
            let Some(client_id) = self.client_of.get(&peer).cloned() else {
                continue;
            };
            if let Some(client) = self.clients.get_mut(&client_id)
                && let Some(expiry) = client.expiries.remove(&key)
            {
                self.expiries.remove(&(expiry, peer, key.clone()));
            }
            tracing::info!(%client_id, resource_id = %key.resource_id, "A grant the portal did not confirm after reconnecting was dropped");
            if !self.router.lock().revoke_grant(peer, &key) {
                self.forget_client(&client_id).await;
            }
        }
    }

    fn next_expiry_in(&self) -> Duration {
        // Checked at least every minute, so a wall-clock jump is noticed.
        let limit = Duration::from_secs(60);
        match self.expiries.first() {
            Some((at, _, _)) => Duration::from_secs(at.saturating_sub(unix_now())).min(limit),
            None => limit,
        }
    }

    async fn forget_client(&mut self, client_id: &str) {
        let Some(client) = self.clients.remove(client_id) else {
            return;
        };
        self.client_of.remove(&client.peer);
        for (key, expiry) in client.expiries {
            self.expiries.remove(&(expiry, client.peer, key));
        }
        self.router.lock().revoke(client.peer, &[]);
        self.driver.send(Command::RemovePeer(client.peer)).await;
        tracing::info!(%client_id, "Client has no grants left; connection removed");
    }

    async fn handle_event(&mut self, event: Event) {
        match event {
            Event::LocalCandidate { peer, candidate } => {
                let Some(client_id) = self.client_of.get(&peer).cloned() else {
                    return;
                };
                self.send(GatewayMessage::IceCandidates {
                    client_id,
                    candidates: vec![candidate],
                })
                .await;
            }
            Event::StateChanged { peer, from, to } => {
                let client_id = self.client_of.get(&peer).map(String::as_str).unwrap_or("?");
                tracing::info!(client_id, ?from, ?to, "Connection state changed");
            }
            Event::ConnectionFailed { peer, reason } => {
                let client_id = self.client_of.get(&peer).map(String::as_str).unwrap_or("?");
                tracing::info!(client_id, ?reason, "Connection failed");
            }
            Event::ConnectionNeeded { peer } => {
                // The gateway never starts connections; a reply for a gone client waits in vain.
                tracing::debug!(?peer, "A packet for a client without a connection");
            }
            Event::RelayReady {
                relay,
                relayed,
                server_reflexive,
            } => {
                tracing::debug!(?relay, %relayed, %server_reflexive, "Relay allocation ready");
            }
        }
    }

    async fn set_relays(&mut self, relays: Vec<Relay>) {
        let mut configs = Vec::new();
        for relay in relays {
            let next = RelayId(u64::try_from(self.relay_ids.len()).unwrap_or(u64::MAX) + 1);
            let id = *self.relay_ids.entry(relay.id.clone()).or_insert(next);
            let Some(server) = relay_address(&relay.urls).await else {
                tracing::warn!(relay = %relay.id, "No usable address for a relay");
                continue;
            };
            configs.push(RelayConfig {
                id,
                server,
                username: relay.username,
                password: relay.password.expose().to_owned(),
            });
        }
        tracing::debug!(relays = configs.len(), "Relays updated");
        self.driver.send(Command::Relays(configs)).await;
    }
}

fn log_grant(client: &ClientPeer, resource: &Resource, domain: Option<&str>, resolved: &[IpAddr]) {
    tracing::info!(client_id = %client.id, resource_id = %resource.id, "Access granted");
    tracing::debug!(
        actor = %client.actor.email,
        resource = %resource.name,
        domain,
        ?resolved,
        "Grant details"
    );
}

fn client_addresses(client: &ClientPeer) -> Vec<IpAddr> {
    vec![IpAddr::V4(client.ipv4), IpAddr::V6(client.ipv6)]
}

/// The client a message is about, for messages that must stay in order per client.
fn client_of_message(message: &PortalToGateway) -> Option<&str> {
    match message {
        PortalToGateway::Grant { client, .. } => Some(&client.id),
        PortalToGateway::Revoke { client_id, .. }
        | PortalToGateway::IceCandidates { client_id, .. } => Some(client_id),
        _ => None,
    }
}
