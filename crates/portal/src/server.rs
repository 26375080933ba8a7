//! The running portal: shared state, the HTTP router, and the task that follows store changes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use ember_protocol::RelayPassword;
use ember_protocol::portal::{CLIENT_API_PATH, GATEWAY_API_PATH, Relay};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin_page::AdminPage;
use crate::audit::{AuditEvent, AuditKind, AuditLog};
use crate::config::Config;
use crate::crypto;
use crate::hub::Hub;
use crate::model::Snapshot;
use crate::store::{Purged, Store, StoreError, now_unix};
use crate::throttle::FailureLimiter;
use crate::tls::{self, Certificates, TlsListener};
use crate::{admin_api, admin_page, api, oidc, redeem, signin};

/// How often old rows are purged (also once at start).
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub config: Config,
    pub signing_key: Vec<u8>,
    snapshot: RwLock<Arc<Snapshot>>,
    hub: Mutex<Hub>,
    pub limiter: Mutex<FailureLimiter>,
    pub audit: Arc<AuditLog>,
    public_url: String,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current snapshot if it already `knows` what a just-authenticated token names, else a
    /// fresh one from the store. The watcher follows the store every 200 ms, so a user or a
    /// gateway created a moment ago (by the admin CLI, in another process) may be missing yet;
    /// telling that user "disabled" would end a sign-in that just succeeded.
    pub async fn snapshot_knowing(&self, knows: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
        let snapshot = self.snapshot();
        if knows(&snapshot) {
            return snapshot;
        }
        if let Err(e) = self.reload().await {
            warn!(error = %e, "cannot reload the model for a token it does not know yet");
        }
        self.snapshot()
    }

    /// Removes audit events past their retention, expired tokens, used sign-in attempts and
    /// expired sign-in codes.
    async fn purge(&self) {
        let retention = self.config.audit.retention_secs();
        let attempts = i64::try_from(self.config.sign_in.attempt_lifetime_secs).unwrap_or(i64::MAX);
        match self.store.purge(retention, attempts).await {
            Ok(purged) if purged != Purged::default() => info!(?purged, "purged old rows"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot purge old rows"),
        }
    }

    /// Runs `f` with the hub locked. Keep `f` short: it never awaits.
    pub fn with_hub<T>(&self, f: impl FnOnce(&mut Hub) -> T) -> T {
        f(&mut self.hub.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Where browsers reach this portal, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.config.server.heartbeat_interval_ms)
    }

    pub fn gateway_heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.config.server.gateway_heartbeat_interval_ms)
    }

    /// Relay credentials for `owner` (a device or gateway id), valid for each relay's lifetime.
    pub fn relays_for(&self, owner: &str) -> Vec<Relay> {
        let now = u64::try_from(now_unix()).unwrap_or(0);
        self.config
            .relays
            .iter()
            .map(|relay| {
                let expires_at = now + relay.credential_lifetime_secs;
                let (username, password) =
                    crypto::relay_credentials(&relay.secret, owner, expires_at);
                Relay {
                    id: relay.id.clone(),
                    urls: relay.urls.clone(),
                    username,
                    password: RelayPassword::new(password),
                    expires_at,
                }
            })
            .collect()
    }

    /// When to send fresh relay credentials: at half the shortest lifetime.
    pub fn relay_refresh_interval(&self) -> Option<Duration> {
        self.config
            .relays
            .iter()
            .map(|r| Duration::from_secs(r.credential_lifetime_secs / 2))
            .min()
    }

    /// Reloads the model now rather than at the next poll (after a change made here).
    pub async fn apply_changes(&self) {
        if let Err(e) = self.reload().await {
            warn!(error = %e, "cannot reload the model after a change");
        }
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let snapshot = Arc::new(self.store.load_snapshot().await?);
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = snapshot.clone();
        let revoked = self.with_hub(|hub| hub.apply_snapshot(&snapshot));
        for (device_id, why) in revoked.signed_out {
            self.audit.record(
                AuditEvent::now(AuditKind::Revocation, why, "portal", &device_id)
                    .detail(serde_json::json!({ "device_id": device_id, "signed_out": true })),
            );
        }
        for (gateway_id, device_id, resource_ids) in revoked.withdrawn {
            self.audit.record(
                AuditEvent::now(
                    AuditKind::Revocation,
                    "policy_changed",
                    "portal",
                    &device_id,
                )
                .detail(serde_json::json!({
                    "device_id": device_id,
                    "gateway_id": gateway_id,
                    "resource_ids": resource_ids,
                })),
            );
        }
        Ok(())
    }
}

/// A portal serving on a socket; dropping it does not stop it, [`Portal::shutdown`] does.
#[derive(Debug)]
pub struct Portal {
    pub addr: SocketAddr,
    pub state: Shared,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    redirect: Option<JoinHandle<std::io::Result<()>>>,
    /// Where plain HTTP is redirected from, when configured.
    pub redirect_addr: Option<SocketAddr>,
    watcher: JoinHandle<()>,
    audit_writer: JoinHandle<()>,
    certificates: Option<Arc<Certificates>>,
}

impl Portal {
    /// Connects the store, applies the declared model, and serves on `config.server.listen`.
    pub async fn start(config: Config) -> Result<Self, crate::Error> {
        let store = Store::connect(&config.server.database).await?;
        config.apply(&store).await?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| crate::Error::Bind {
                addr: config.server.listen,
                source,
            })?;
        Self::serve(store, config, listener).await
    }

    pub async fn serve(
        store: Store,
        config: Config,
        listener: TcpListener,
    ) -> Result<Self, crate::Error> {
        let addr = listener.local_addr().map_err(|source| crate::Error::Bind {
            addr: config.server.listen,
            source,
        })?;
        let admin_page = Arc::new(AdminPage::load(config.server.admin_page_dir.as_deref())?);
        let signing_key = store.signing_key().await?;
        let snapshot = Arc::new(store.load_snapshot().await?);
        let limiter = FailureLimiter::new(config.sign_in.backoff());
        let (stop, mut stopped) = watch::channel(false);
        let (audit, audit_writer) = AuditLog::start(store.clone(), stopped.clone());
        let state = Arc::new(AppState {
            store,
            signing_key,
            snapshot: RwLock::new(snapshot),
            hub: Mutex::new(Hub::default()),
            limiter: Mutex::new(limiter),
            audit,
            public_url: config
                .server
                .public_url
                .clone()
                .unwrap_or_else(|| {
                    let scheme = if config.server.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    };
                    format!("{scheme}://{addr}")
                })
                .trim_end_matches('/')
                .to_owned(),
            config,
        });
        let router = router(state.clone(), admin_page);
        let shutdown = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let (server, certificates) = match &state.config.server.tls {
            None => {
                let serving = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown(stopped.clone()));
                (tokio::spawn(serving.into_future()), None)
            }
            Some(tls) => {
                let certificates = Certificates::load(tls)?;
                let listener = TlsListener::new(listener, &certificates)?.tap_io(|_| {});
                let router = match tls::hsts(tls.hsts_max_age_secs) {
                    Some(value) => router.layer(axum::middleware::map_response(
                        move |mut response: axum::response::Response| {
                            let value = value.clone();
                            async move {
                                response
                                    .headers_mut()
                                    .insert(axum::http::header::STRICT_TRANSPORT_SECURITY, value);
                                response
                            }
                        },
                    )),
                    None => router,
                };
                let serving = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown(stopped.clone()));
                (tokio::spawn(serving.into_future()), Some(certificates))
            }
        };
        let (redirect, redirect_addr) = match state
            .config
            .server
            .tls
            .as_ref()
            .and_then(|t| t.redirect_http)
        {
            Some(from) => {
                let bind_error = |source| crate::Error::Bind { addr: from, source };
                let plain = TcpListener::bind(from).await.map_err(bind_error)?;
                let bound = plain.local_addr().map_err(bind_error)?;
                info!(from = %bound, to = %state.public_url(), "redirecting plain HTTP to HTTPS");
                let serving =
                    axum::serve(plain, tls::redirect_router(state.public_url().to_owned()))
                        .with_graceful_shutdown(shutdown(stopped.clone()));
                (Some(tokio::spawn(serving.into_future())), Some(bound))
            }
            None => (None, None),
        };
        let watcher_state = state.clone();
        let watcher = tokio::spawn(async move {
            let period = Duration::from_millis(watcher_state.config.server.change_poll_interval_ms);
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next_purge = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let known = watcher_state.snapshot().generation;
                match watcher_state.store.generation().await {
                    Ok(current) if current != known => {
                        if let Err(e) = watcher_state.reload().await {
                            warn!(error = %e, "cannot reload the model");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cannot read the model generation"),
                }
                watcher_state.with_hub(|hub| hub.expire(now_unix()));
                if tokio::time::Instant::now() >= next_purge {
                    next_purge += PURGE_INTERVAL;
                    watcher_state.purge().await;
                }
            }
        });
        info!(%addr, tls = certificates.is_some(), "portal listening");
        if certificates.is_none() && !addr.ip().is_loopback() {
            warn!(
                %addr,
                "Serving plain HTTP beyond loopback: clients refuse it unless told to allow this \
                 network; configure [server.tls] or a reverse proxy that terminates TLS"
            );
        }
        Ok(Self {
            addr,
            state,
            stop,
            server,
            redirect,
            redirect_addr,
            watcher,
            audit_writer,
            certificates,
        })
    }

    /// Stops accepting, waits for open connections to finish, closes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Live WebSockets do not end by themselves; tell every peer's task to close.
        self.state.with_hub(|hub| hub.close_all());
        let _ = self.watcher.await;
        let _ = self.server.await;
        if let Some(redirect) = self.redirect {
            let _ = redirect.await;
        }
        let _ = self.audit_writer.await;
        self.state.store.close().await;
    }

    /// Reads the TLS certificate and key files again (SIGHUP); the old pair stays on error.
    /// Without TLS there is nothing to reload.
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsError> {
        match &self.certificates {
            Some(certificates) => certificates.reload(),
            None => Ok(()),
        }
    }

    /// The TLS certificate presented now, if the portal serves HTTPS.
    pub fn tls_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        self.certificates.as_ref().map(|c| c.presented())
    }

    /// Waits until the server task ends (e.g. after a failure).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.server).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

fn router(state: Shared, admin_page: Arc<AdminPage>) -> Router {
    Router::new()
        .route("/", get(signin::index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/sign-in", get(signin::page).post(signin::submit))
        .route("/sign-in/oidc", post(oidc::start))
        .route(ember_protocol::sign_in::REDEEM_PATH, post(redeem::redeem))
        .route(oidc::CALLBACK_PATH, get(oidc::callback))
        .route(CLIENT_API_PATH, get(api::client))
        .route(GATEWAY_API_PATH, get(api::gateway))
        .nest(admin_api::PREFIX, admin_api::router(state.clone()))
        .merge(admin_page::router(admin_page))
        .with_state(state)
}
