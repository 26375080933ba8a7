//! The control loop's plumbing: the portal connection, signals and small async helpers for
//! `select!`.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use ember_io::udp::UdpSocket;
use ember_portal_client::{ConnectError, GatewaySide, PortalLink, connect};
use ember_protocol::SecretToken;
use ember_protocol::portal::{GatewayMessage, PortalToGateway};
use tokio::signal::unix::{SignalKind, signal};

pub(super) fn permanent(e: ConnectError) -> anyhow::Error {
    anyhow::anyhow!(
        "the portal refused this gateway and retrying cannot help ({e}); check the token and the gateway's version"
    )
}

pub(super) fn bind_sockets() -> Result<Vec<UdpSocket>> {
    let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0).into())
        .context("cannot open the IPv4 UDP socket")?;
    let mut sockets = vec![v4];
    match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0).into()) {
        Ok(v6) => sockets.push(v6),
        Err(e) => tracing::info!("No IPv6 UDP socket ({e}); IPv4 paths only"),
    }
    Ok(sockets)
}

pub(super) struct Portal {
    pub(super) url: String,
    pub(super) token: SecretToken,
    pub(super) hello: GatewayMessage,
}

pub(super) type Connected = (PortalLink<GatewaySide>, PortalToGateway);

impl Portal {
    pub(super) async fn connect(&self) -> Result<Connected, ConnectError> {
        connect::<GatewaySide>(&self.url, &self.token, self.hello.clone()).await
    }

    pub(super) fn reconnect_after(
        &self,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Connected, ConnectError>> + Send + '_>> {
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            self.connect().await
        })
    }
}

/// SIGTERM or SIGINT.
pub(super) struct Shutdown {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub(super) fn new() -> Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    pub(super) async fn wait(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        tracing::info!("Stopping");
    }
}

pub(super) async fn recv(
    link: &mut Option<PortalLink<GatewaySide>>,
) -> Result<PortalToGateway, ember_portal_client::LinkError> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn wait_for<T>(
    future: &mut Option<Pin<Box<dyn Future<Output = T> + Send + '_>>>,
) -> T {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
