//! A signed-in session: the portal link, and the tunnel it drives.
//!
//! ```text
//! ConnectingToPortal ─init─▶ RaisingTunnel ─▶ SignedIn ─link lost─▶ PortalReconnecting
//!                                                ▲                          │ init
//!                                                └──────────────────────────┘
//! any state ── token refused, revoked or expired; sign-out; stop ──▶ SignedOut (all undone)
//! ```
//!
//! The tunnel is built on the first `init` and lives until the session ends: while the portal
//! is away, existing connections keep carrying traffic and the stub keeps answering. Each
//! reconnect waits a [`Backoff`] delay, reset after every good `init`. A network change resets
//! the engine's connections and reconnects the portal at once.
//!
//! The token is only ever handed to the portal connection; it is never logged or stored.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use ember_client::{ClientInput, ClientOutput};
use ember_portal_client::{Backoff, ClientSide, ConnectError, LinkError, PortalLink, connect};
use ember_protocol::SecretToken;
use ember_protocol::ipc::{ResourceView, SessionState, ViewState};
use ember_protocol::portal::{
    ClientMessage, PORTAL_PROTOCOL_VERSION, PortalToClient, SignOutReason,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;
use crate::platform::accounts;
use crate::platform::dns::DnsMode;
use crate::tunnel::{Tunnel, TunnelSetup};

/// What a session needs from the service.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub portal_url: String,
    pub token: SecretToken,
    pub identity: Identity,
    pub state_dir: PathBuf,
    pub dns_mode: DnsMode,
    /// The user's switch for the internet resource, owned by the service.
    pub internet_enabled: watch::Receiver<bool>,
}

/// A running session; [`SessionHandle::stop`] ends it and waits until everything is undone.
#[derive(Debug)]
pub struct SessionHandle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl SessionHandle {
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!("The session task panicked");
        }
    }
}

/// Starts a session that publishes its progress into `state`. It ends by itself (signed out
/// with a reason) when the portal refuses the token or signs the device out.
pub fn start(config: SessionConfig, state: watch::Sender<ViewState>) -> SessionHandle {
    let cancel = CancellationToken::new();
    let session = Session::new(config, state, cancel.clone());
    let task = tokio::spawn(session.run());
    SessionHandle { cancel, task }
}

type Connected = Result<(PortalLink<ClientSide>, PortalToClient), ConnectError>;

/// A connection attempt on its own task, aborted when dropped (a newer attempt replaced it or
/// the session ended).
struct Connecting(JoinHandle<Connected>);

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Link {
    Connecting(Connecting),
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Up(PortalLink<ClientSide>),
}

enum Happening {
    Cancelled,
    Connected(Connected),
    RetryNow,
    Portal(Result<PortalToClient, LinkError>),
    /// What the client state asks for.
    Output(ClientOutput),
    NetworkChanged,
    InternetSwitched,
    DriverStopped(String),
}

struct Session {
    config: SessionConfig,
    state: watch::Sender<ViewState>,
    cancel: CancellationToken,
    public_key: String,
    link: Link,
    backoff: Backoff,
    /// Whether an `init` was ever received (then a lost link is "reconnecting").
    signed_in: bool,
    tunnel: Option<Tunnel>,
}

impl Session {
    fn new(
        config: SessionConfig,
        state: watch::Sender<ViewState>,
        cancel: CancellationToken,
    ) -> Self {
        let public_key = config.identity.public_key_base64();
        let mut session = Self {
            config,
            state,
            cancel,
            public_key,
            link: Link::Waiting(Box::pin(tokio::time::sleep(Duration::ZERO))),
            backoff: Backoff::default(),
            signed_in: false,
            tunnel: None,
        };
        session.link = Link::Connecting(session.connect());
        session
    }

    async fn run(mut self) {
        tracing::info!(portal = %self.config.portal_url, "Signing in");
        self.set_session(SessionState::ConnectingToPortal);
        let reason = loop {
            let happening = self.next().await;
            match self.handle(happening).await {
                Ok(()) => {}
                Err(reason) => break reason,
            }
        };
        // Close the portal connection before the teardown.
        self.link = Link::Waiting(Box::pin(tokio::time::sleep(Duration::ZERO)));
        if let Some(tunnel) = self.tunnel.take() {
            tunnel.stop().await;
        }
        match &reason {
            Some(reason) => tracing::warn!(%reason, "Signed out"),
            None => tracing::info!("Signed out"),
        }
        self.state.send_modify(|state| {
            state.session = SessionState::SignedOut { reason };
            state.interface = None;
            state.resources.clear();
        });
    }

    fn connect(&self) -> Connecting {
        let url = self.config.portal_url.clone();
        let token = self.config.token.clone();
        let hello = ClientMessage::Hello {
            protocol_version: PORTAL_PROTOCOL_VERSION,
            device_id: self.config.identity.portal_device_id(),
            public_key: self.public_key.clone(),
            name: accounts::hostname(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        Connecting(tokio::spawn(async move {
            connect::<ClientSide>(&url, &token, hello).await
        }))
    }

    /// Waits for whatever happens next.
    async fn next(&mut self) -> Happening {
        let Self {
            link,
            tunnel,
            cancel,
            config,
            ..
        } = self;
        let link = async {
            match link {
                Link::Connecting(Connecting(task)) => Happening::Connected(match task.await {
                    Ok(connected) => connected,
                    Err(e) => Err(ConnectError::Unreachable(format!("the attempt ended: {e}"))),
                }),
                Link::Waiting(sleep) => {
                    sleep.await;
                    Happening::RetryNow
                }
                Link::Up(link) => Happening::Portal(link.recv().await),
            }
        };
        let tunnel = async {
            let Some(tunnel) = tunnel.as_mut() else {
                return std::future::pending().await;
            };
            tokio::select! {
                output = tunnel.driver.outputs.recv() => match output {
                    Some(output) => Happening::Output(output),
                    None => Happening::DriverStopped("the driver stopped".into()),
                },
                Some(()) = tunnel.netwatch.recv() => Happening::NetworkChanged,
                Ok(()) = config.internet_enabled.changed() => Happening::InternetSwitched,
                result = &mut tunnel.driver_task => Happening::DriverStopped(match result {
                    Ok(Ok(())) => "the driver stopped".into(),
                    Ok(Err(e)) => format!("the tunnel failed: {e}"),
                    Err(e) => format!("the tunnel task ended: {e}"),
                }),
            }
        };
        tokio::select! {
            () = cancel.cancelled() => Happening::Cancelled,
            happening = link => happening,
            happening = tunnel => happening,
        }
    }

    /// `Err(reason)` ends the session (`None`: the user asked for it).
    async fn handle(&mut self, happening: Happening) -> Result<(), Option<String>> {
        match happening {
            Happening::Cancelled => return Err(None),
            Happening::Connected(Ok((link, init))) => {
                self.link = Link::Up(link);
                self.backoff.reset();
                self.handle_init(init).await?;
            }
            Happening::Connected(Err(e)) if e.is_permanent() => {
                return Err(Some(match e {
                    ConnectError::Rejected { message, .. } => {
                        format!("the portal refused the sign-in: {message}")
                    }
                    other => other.to_string(),
                }));
            }
            Happening::Connected(Err(e)) => self.retry_later(e.to_string()),
            Happening::RetryNow => self.link = Link::Connecting(self.connect()),
            Happening::Portal(Ok(message)) => self.handle_portal(message).await?,
            Happening::Portal(Err(e)) => self.retry_later(e.to_string()),
            Happening::Output(output) => self.handle_output(output).await,
            Happening::NetworkChanged => {
                if let Some(tunnel) = &self.tunnel {
                    tunnel.driver.controls.network_changed().await;
                }
                tracing::info!(
                    "The network changed: connections start over, the portal reconnects"
                );
                self.backoff.reset();
                if self.signed_in {
                    self.set_session(SessionState::PortalReconnecting {
                        reason: "the network changed".into(),
                    });
                }
                self.link = Link::Connecting(self.connect());
            }
            Happening::InternetSwitched => {
                let enabled = *self.config.internet_enabled.borrow_and_update();
                if let Some(tunnel) = &self.tunnel {
                    tunnel.send(ClientInput::InternetEnabled(enabled)).await;
                }
            }
            Happening::DriverStopped(reason) => return Err(Some(reason)),
        }
        Ok(())
    }

    fn retry_later(&mut self, reason: String) {
        let delay = self.backoff.next_delay();
        tracing::info!(%reason, ?delay, "No portal connection; retrying");
        if self.signed_in {
            self.set_session(SessionState::PortalReconnecting { reason });
        }
        self.link = Link::Waiting(Box::pin(tokio::time::sleep(delay)));
    }

    async fn handle_init(&mut self, init: PortalToClient) -> Result<(), Option<String>> {
        let PortalToClient::Init {
            account,
            actor,
            interface,
            resources,
            ..
        } = &init
        else {
            // `connect` only returns an `init`.
            return Ok(());
        };
        let (account, actor, interface) = (account.name.clone(), actor.name.clone(), *interface);
        tracing::info!(resources = resources.len(), "Signed in");
        if let Some(tunnel) = self.tunnel.take_if(|t| t.interface != interface) {
            tracing::info!("The portal assigned new tunnel addresses; rebuilding the tunnel");
            tunnel.stop().await;
        }
        match &mut self.tunnel {
            Some(tunnel) => {
                tunnel.send(ClientInput::Portal(Box::new(init))).await;
            }
            None => {
                self.set_session(SessionState::RaisingTunnel);
                let setup = TunnelSetup {
                    private_key: self.config.identity.private_key(),
                    state_dir: &self.config.state_dir,
                    dns_mode: self.config.dns_mode,
                    internet_enabled: *self.config.internet_enabled.borrow_and_update(),
                };
                let tunnel = Tunnel::start(setup, interface, init)
                    .await
                    .map_err(|e| Some(format!("cannot set up the tunnel: {e}")))?;
                self.tunnel = Some(tunnel);
            }
        }
        self.signed_in = true;
        let interface = self.tunnel.as_ref().map(|t| t.view.clone());
        self.state.send_modify(|state| {
            state.session = SessionState::SignedIn { account, actor };
            state.interface = interface;
        });
        Ok(())
    }

    async fn handle_portal(&mut self, message: PortalToClient) -> Result<(), Option<String>> {
        match message {
            PortalToClient::Init { .. } => tracing::debug!("A second init; ignored"),
            PortalToClient::Heartbeat => {}
            PortalToClient::SignedOut { reason, message } => {
                return Err(Some(match reason {
                    SignOutReason::Revoked => format!("the sign-in was revoked: {message}"),
                    SignOutReason::Expired => format!("the sign-in expired: {message}"),
                    SignOutReason::Replaced => {
                        format!("this device signed in elsewhere: {message}")
                    }
                }));
            }
            PortalToClient::Error { code, message } => {
                tracing::warn!(?code, %message, "The portal reported an error");
            }
            message => {
                if let Some(tunnel) = &self.tunnel {
                    tunnel.send(ClientInput::Portal(Box::new(message))).await;
                }
            }
        }
        Ok(())
    }

    /// What the client state asked for: portal messages go on the link (without a link they
    /// are lost; the state asks again after the next `init`), views to the app, the rest to
    /// the tunnel.
    async fn handle_output(&mut self, output: ClientOutput) {
        let Some(tunnel) = self.tunnel.as_mut() else {
            return;
        };
        match tunnel.carry_out(output).await {
            Some(ClientOutput::Portal(message)) => {
                if let Link::Up(link) = &self.link {
                    let _ = link.send(message).await;
                }
            }
            Some(ClientOutput::Views(views)) => self.publish_views(views),
            _ => {}
        }
    }

    /// Publishes the resources' views when they changed.
    fn publish_views(&self, views: Vec<ResourceView>) {
        self.state.send_if_modified(|state| {
            if state.resources == views {
                return false;
            }
            state.resources = views;
            true
        });
    }

    fn set_session(&self, session: SessionState) {
        self.state.send_if_modified(|state| {
            if state.session == session {
                return false;
            }
            tracing::debug!(?session, "Session state");
            state.session = session;
            true
        });
    }
}
