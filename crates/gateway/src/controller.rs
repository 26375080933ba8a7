//! The gateway's control loop: the portal link (with reconnects), the host's setup (TUN
//! device, forwarding, nftables) and the IO the gateway's state asks for (DNS lookups of
//! granted names, relay addresses).
//!
//! Everything else — which client is which peer, grants and their expiry, the packet path —
//! is [`GatewayState`], which the driver runs in its own task: this loop forwards the portal's
//! messages to it as inputs and carries out its outputs. Nothing here is on the packet path.
//!
//! The data plane does not depend on the portal: when the link drops, the driver and every
//! tunnel keep running while the loop reconnects with a backoff.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ember_engine::{Engine, EngineConfig, Role};
use ember_gateway::grants::encode_key;
use ember_gateway::state::{GatewayConfig, GatewayState, Input, Output};
use ember_io::driver::{Driver, DriverHandle};
use ember_io::netlink::Netlink;
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_portal_client::{Backoff, GatewaySide, PortalLink};
use ember_protocol::SecretToken;
use ember_protocol::portal::{GatewayMessage, PORTAL_PROTOCOL_VERSION, PortalToGateway, Relay};
use rand::TryRngCore as _;
use tokio::task::JoinHandle;

use crate::resolve::Resolver;
use crate::system::{self, NftTable};

mod plumbing;

use plumbing::{Portal, Shutdown, bind_sockets, permanent, recv, unix_now, wait_for};

/// How often the state is told the wall clock, so grants end on time even when it jumps.
const WALL_CLOCK_INTERVAL: Duration = Duration::from_secs(60);
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
        ..
    } = &init
    else {
        bail!("the portal's first message was not `init`");
    };
    tracing::info!(%gateway_id, site = %site.name, ipv4 = %interface.ipv4, ipv6 = %interface.ipv6, "Connected to the portal");
    let interface = *interface;

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
    let state = GatewayState::new(
        engine,
        GatewayConfig {
            interface,
            own_addresses,
            reconfirm_within: options.reconfirm_within,
        },
        unix_now(),
        Instant::now(),
    );
    let (driver, handle) = Driver::new(state, tun, sockets);
    let driver_task = tokio::spawn(driver.run());

    let mut controller = Controller::new(handle, options.resolver, link);
    controller.to_state(Input::Portal(Box::new(init))).await;
    let result = controller
        .serve(portal, backoff, driver_task, &mut shutdown)
        .await;
    drop(nft);
    drop(forwarding);
    result
}

struct Controller {
    state: DriverHandle<GatewayState>,
    resolver: Resolver,
    link: Option<PortalLink<GatewaySide>>,
}

impl Controller {
    fn new(
        state: DriverHandle<GatewayState>,
        resolver: Resolver,
        link: PortalLink<GatewaySide>,
    ) -> Self {
        Self {
            state,
            resolver,
            link: Some(link),
        }
    }

    async fn serve(
        &mut self,
        portal: Portal,
        mut backoff: Backoff,
        mut driver_task: JoinHandle<std::io::Result<()>>,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        let mut reconnect = None;
        let mut wall_clock = tokio::time::interval(WALL_CLOCK_INTERVAL);
        wall_clock.tick().await;
        loop {
            tokio::select! {
                message = recv(&mut self.link) => match message {
                    Ok(message) => self.to_state(Input::Portal(Box::new(message))).await,
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
                        self.to_state(Input::Portal(Box::new(init))).await;
                        tracing::info!("Connected to the portal again");
                    }
                    Err(e) if e.is_permanent() => return Err(permanent(e)),
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(?wait, "Cannot connect to the portal: {e}");
                        reconnect = Some(portal.reconnect_after(wait));
                    }
                },
                output = self.state.outputs.recv() => match output {
                    Some(output) => self.carry_out(output).await,
                    None => return Err(stopped((&mut driver_task).await)),
                },
                _ = wall_clock.tick() => {
                    self.to_state(Input::WallClock { unix_secs: unix_now() }).await;
                }
                result = &mut driver_task => return Err(stopped(result)),
                () = shutdown.wait() => return Ok(()),
            }
        }
    }

    async fn to_state(&self, input: Input) {
        // A stopped driver shows up in `serve` next, with the reason.
        let _ = self.state.controls.send(input).await;
    }

    async fn carry_out(&self, output: Output) {
        match output {
            Output::Portal(message) => {
                if let Some(link) = &self.link {
                    // A closed link shows up in `recv` next and is reconnected there.
                    let _ = link.send(message).await;
                }
            }
            // The lookups answer the state directly, in the background: a slow name server
            // holds up neither the portal link nor the other lookups.
            Output::Resolve { lookup, domain } => {
                let resolver = self.resolver.clone();
                let state = self.state.controls.clone();
                tokio::spawn(async move {
                    let addresses = resolver
                        .resolve(&domain)
                        .await
                        .map_err(|e| format!("{e:#}"));
                    state.send(Input::Resolved { lookup, addresses }).await;
                });
            }
            Output::ResolveRelays { query, relays } => {
                let state = self.state.controls.clone();
                tokio::spawn(async move {
                    let relays = resolve_relays(relays).await;
                    state.send(Input::RelaysResolved { query, relays }).await;
                });
            }
        }
    }
}

/// Each relay with the addresses of its usable URLs (none when nothing resolves).
async fn resolve_relays(relays: Vec<Relay>) -> Vec<(Relay, Vec<SocketAddr>)> {
    let mut resolved = Vec::with_capacity(relays.len());
    for relay in relays {
        let servers = ember_io::relays::relay_addresses(&relay.urls).await;
        resolved.push((relay, servers));
    }
    resolved
}

/// Why the driver's task ended; it only ends on its own when something is wrong.
fn stopped(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match result {
        Ok(Ok(())) => anyhow::anyhow!("the data plane stopped"),
        Ok(Err(e)) => anyhow::Error::new(e).context("the data plane failed"),
        Err(e) => anyhow::Error::new(e).context("the data plane crashed"),
    }
}
