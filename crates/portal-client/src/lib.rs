//! The WebSocket link from a tunnel service (client side) or a gateway to the portal.
//!
//! [`connect`] opens `GET {portal}/api/client` (or `/api/gateway`) with the token as a bearer
//! credential, sends the hello and waits for the portal's `init`. What comes back is a
//! [`PortalLink`]: a background task owns the socket, sends a heartbeat every interval the
//! portal asked for, and reports the link dead after three intervals without a word from the
//! portal. Callers only `send` and `recv` typed messages, and reconnect with a [`Backoff`] when
//! [`PortalLink::recv`] fails:
//!
//! ```text
//! let mut backoff = Backoff::default();
//! loop {
//!     match connect::<ClientSide>(url, token, hello()).await {
//!         Ok((link, init)) => { backoff.reset(); serve(link, init).await }
//!         Err(e) if e.is_permanent() => return sign_out(e),
//!         Err(_) => tokio::time::sleep(backoff.next_delay()).await,
//!     }
//! }
//! ```

mod redeem;

pub use redeem::{RedeemError, redeem_sign_in};

use std::marker::PhantomData;
use std::time::Duration;

use ember_protocol::SecretToken;
use ember_protocol::portal::{
    self, ClientMessage, ErrorBody, ErrorCode, GatewayMessage, PortalToClient, PortalToGateway,
};
use futures::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, trace};

/// How long the TCP/TLS/WebSocket handshake and the portal's answer to the hello may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval until the portal names one in its `init`.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// The range a portal-chosen interval is clamped to: below it a portal makes the link spin;
/// above it `now + interval` and `interval × 3` overflow (a panic in the link task) or a dead
/// portal goes unnoticed for days.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT: Duration = Duration::from_secs(5 * 60);
/// Intervals without a word from the portal before the link counts as dead.
const MISSED_HEARTBEATS: u32 = 3;
/// Messages waiting in either direction.
const QUEUE: usize = 256;

/// One end of the portal protocol: which path, which messages.
pub trait Side: Send + Sync + std::fmt::Debug + 'static {
    type Out: Serialize + Send + Sync + std::fmt::Debug + 'static;
    type In: DeserializeOwned + Send + Sync + std::fmt::Debug + 'static;
    const PATH: &'static str;
    const IN_TYPES: &'static [&'static str];

    fn heartbeat() -> Self::Out;
    fn is_heartbeat(message: &Self::In) -> bool;
    /// The heartbeat interval if `message` is the portal's `init`.
    fn init_heartbeat(message: &Self::In) -> Option<Duration>;
    /// Why the portal refused the hello, if `message` says so.
    fn refusal(message: &Self::In) -> Option<ConnectError>;
}

/// The tunnel service's end: [`ClientMessage`] out, [`PortalToClient`] in.
#[derive(Debug)]
pub struct ClientSide;

/// The gateway's end: [`GatewayMessage`] out, [`PortalToGateway`] in.
#[derive(Debug)]
pub struct GatewaySide;

impl Side for ClientSide {
    type Out = ClientMessage;
    type In = PortalToClient;
    const PATH: &'static str = portal::CLIENT_API_PATH;
    const IN_TYPES: &'static [&'static str] = PortalToClient::TYPES;

    fn heartbeat() -> ClientMessage {
        ClientMessage::Heartbeat
    }

    fn is_heartbeat(message: &PortalToClient) -> bool {
        matches!(message, PortalToClient::Heartbeat)
    }

    fn init_heartbeat(message: &PortalToClient) -> Option<Duration> {
        match message {
            PortalToClient::Init {
                heartbeat_interval_ms,
                ..
            } => Some(Duration::from_millis(*heartbeat_interval_ms)),
            _ => None,
        }
    }

    fn refusal(message: &PortalToClient) -> Option<ConnectError> {
        match message {
            PortalToClient::Error { code, message } => {
                Some(ConnectError::from_code(*code, message))
            }
            PortalToClient::SignedOut { message, .. } => Some(ConnectError::Rejected {
                code: ErrorCode::TokenExpired,
                message: message.clone(),
            }),
            _ => None,
        }
    }
}

impl Side for GatewaySide {
    type Out = GatewayMessage;
    type In = PortalToGateway;
    const PATH: &'static str = portal::GATEWAY_API_PATH;
    const IN_TYPES: &'static [&'static str] = PortalToGateway::TYPES;

    fn heartbeat() -> GatewayMessage {
        GatewayMessage::Heartbeat
    }

    fn is_heartbeat(message: &PortalToGateway) -> bool {
        matches!(message, PortalToGateway::Heartbeat)
    }

    fn init_heartbeat(message: &PortalToGateway) -> Option<Duration> {
        match message {
            PortalToGateway::Init {
                heartbeat_interval_ms,
                ..
            } => Some(Duration::from_millis(*heartbeat_interval_ms)),
            _ => None,
        }
    }

    fn refusal(message: &PortalToGateway) -> Option<ConnectError> {
        match message {
            PortalToGateway::Error { code, message } => {
                Some(ConnectError::from_code(*code, message))
            }
            _ => None,
        }
    }
}

/// Why [`connect`] did not get an `init`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid portal URL: {0}")]
    InvalidUrl(String),
    #[error("cannot reach the portal: {0}")]
    Unreachable(String),
    /// The token is unknown, revoked, expired or of the wrong kind: retrying cannot help.
    #[error("the portal refused the token: {message}")]
    Rejected { code: ErrorCode, message: String },
    #[error("the portal speaks another protocol version: {0}")]
    Incompatible(String),
    #[error("unexpected answer from the portal: {0}")]
    Protocol(String),
}

impl ConnectError {
    /// Retrying cannot help: sign out (client) or stop (gateway) and say why.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::InvalidUrl(_) | Self::Rejected { .. } | Self::Incompatible(_)
        )
    }

    fn from_code(code: ErrorCode, message: &str) -> Self {
        match code {
            ErrorCode::Unauthorized | ErrorCode::TokenExpired | ErrorCode::WrongTokenKind => {
                Self::Rejected {
                    code,
                    message: message.to_owned(),
                }
            }
            ErrorCode::IncompatibleVersion => Self::Incompatible(message.to_owned()),
            _ => Self::Protocol(format!("{code:?}: {message}")),
        }
    }
}

/// Why a [`PortalLink`] ended. The caller reconnects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the portal closed the connection: {0}")]
    Closed(String),
    #[error("no word from the portal for {0:?}")]
    Timeout(Duration),
    #[error("the connection to the portal failed: {0}")]
    Failed(String),
}

/// The link is gone; the message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the portal link is closed")]
pub struct LinkClosed;

/// A live connection to the portal. Dropping it closes the connection.
#[derive(Debug)]
pub struct PortalLink<S: Side> {
    sender: PortalSender<S>,
    inbound: mpsc::Receiver<Result<S::In, LinkError>>,
    task: JoinHandle<()>,
}

/// Sends on a [`PortalLink`]; cheap to clone, for tasks that only talk to the portal.
#[derive(Debug)]
pub struct PortalSender<S: Side> {
    outbound: mpsc::Sender<S::Out>,
    _side: PhantomData<S>,
}

impl<S: Side> Clone for PortalSender<S> {
    fn clone(&self) -> Self {
        Self {
            outbound: self.outbound.clone(),
            _side: PhantomData,
        }
    }
}

impl<S: Side> PortalSender<S> {
    pub async fn send(&self, message: S::Out) -> Result<(), LinkClosed> {
        self.outbound.send(message).await.map_err(|_| LinkClosed)
    }
}

impl<S: Side> PortalLink<S> {
    pub async fn send(&self, message: S::Out) -> Result<(), LinkClosed> {
        self.sender.send(message).await
    }

    #[must_use]
    pub fn sender(&self) -> PortalSender<S> {
        self.sender.clone()
    }

    /// The next message from the portal (heartbeats are handled here). Cancel-safe. After an
    /// error the link is dead.
    pub async fn recv(&mut self) -> Result<S::In, LinkError> {
        self.inbound
            .recv()
            .await
            .unwrap_or_else(|| Err(LinkError::Closed("the link task ended".into())))
    }
}

impl<S: Side> Drop for PortalLink<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to the portal at `portal_url` (`http(s)://host:port`, or `ws(s)://`), says
/// `hello` and waits for the `init`.
pub async fn connect<S: Side>(
    portal_url: &str,
    token: &SecretToken,
    hello: S::Out,
) -> Result<(PortalLink<S>, S::In), ConnectError> {
    let url = api_url(portal_url, S::PATH)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
    // The formatted value is wiped when dropped; the header's own copy is marked sensitive so
    // the HTTP library never prints it (`Debug` shows `Sensitive`).
    let credential = zeroize::Zeroizing::new(format!("Bearer {}", token.expose()));
    let mut bearer = HeaderValue::from_str(&credential).map_err(|_| ConnectError::Rejected {
        code: ErrorCode::Unauthorized,
        message: "the token contains characters a header cannot carry".into(),
    })?;
    bearer.set_sensitive(true);
    request.headers_mut().insert(header::AUTHORIZATION, bearer);

    let connector = if url.scheme() == "wss" {
        Some(tls_connector()?)
    } else {
        None
    };
    let handshake = async {
        let stream = open_tcp(&url).await?;
        let (mut socket, _) =
            tokio_tungstenite::client_async_tls_with_config(request, stream, None, connector)
                .await
                .map_err(handshake_error)?;
        send_json(&mut socket, &hello)
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        loop {
            let Some(frame) = socket.next().await else {
                return Err(ConnectError::Unreachable(
                    "the portal closed the connection after the hello".into(),
                ));
            };
            let frame = frame.map_err(|e| ConnectError::Unreachable(e.to_string()))?;
            let Some(message) = decode_frame::<S>(frame).map_err(ConnectError::Protocol)? else {
                continue;
            };
            if let Some(refusal) = S::refusal(&message) {
                return Err(refusal);
            }
            let Some(interval) = S::init_heartbeat(&message) else {
                return Err(ConnectError::Protocol(format!(
                    "expected `init`, got {message:?}"
                )));
            };
            return Ok((socket, message, interval));
        }
    };
    let (socket, init, interval) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| ConnectError::Unreachable("the portal did not answer in time".into()))??;
    let interval = heartbeat_interval(interval);

    let (outbound_tx, outbound_rx) = mpsc::channel(QUEUE);
    let (inbound_tx, inbound_rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run_link::<S>(socket, outbound_rx, inbound_tx, interval));
    let link = PortalLink {
        sender: PortalSender {
            outbound: outbound_tx,
            _side: PhantomData,
        },
        inbound: inbound_rx,
        task,
    };
    Ok((link, init))
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A TCP connection to the portal that stays out of Ember's own tunnel (the portal may sit in
/// a network a resource covers).
async fn open_tcp(url: &url::Url) -> Result<TcpStream, ConnectError> {
    let host = url
        .host_str()
        .ok_or_else(|| ConnectError::InvalidUrl("the portal URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ConnectError::Unreachable(format!("cannot resolve {host}: {e}")))?;
    let mut last_error = None;
    for address in addresses {
        let socket = match address {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        // A portal on this host needs no mark, and on macOS the mark (binding to the
        // physical interface) would make it unreachable.
        if !address.ip().is_loopback()
            && let Err(e) = ember_io::policy::mark_socket(&socket)
        {
            debug!("Cannot mark the portal connection: {e}");
        }
        match socket.connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(format!("{address}: {e}")),
        }
    }
    Err(ConnectError::Unreachable(
        last_error.unwrap_or_else(|| format!("{host} has no address")),
    ))
}

/// The interval the link uses for what the portal asked: the default for 0 (none named),
/// otherwise clamped to [`MIN_HEARTBEAT`]–[`MAX_HEARTBEAT`].
fn heartbeat_interval(asked: Duration) -> Duration {
    if asked.is_zero() {
        return DEFAULT_HEARTBEAT;
    }
    asked.clamp(MIN_HEARTBEAT, MAX_HEARTBEAT)
}

/// Owns the socket: forwards messages both ways, sends heartbeats, notices a silent portal.
async fn run_link<S: Side>(
    mut socket: Socket,
    mut outbound: mpsc::Receiver<S::Out>,
    inbound: mpsc::Sender<Result<S::In, LinkError>>,
    interval: Duration,
) {
    let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence_limit = interval * MISSED_HEARTBEATS;
    let mut last_heard = Instant::now();
    let failure = loop {
        tokio::select! {
            message = outbound.recv() => {
                let Some(message) = message else {
                    break None;
                };
                if let Err(e) = send_json(&mut socket, &message).await {
                    break Some(LinkError::Failed(e.to_string()));
                }
            }
            frame = socket.next() => {
                let frame = match frame {
                    None => break Some(LinkError::Closed("end of stream".into())),
                    Some(Err(e)) => break Some(LinkError::Failed(e.to_string())),
                    Some(Ok(Message::Close(close))) => {
                        let reason = close.map_or_else(|| "no reason given".into(), |c| c.reason.to_string());
                        break Some(LinkError::Closed(reason));
                    }
                    Some(Ok(frame)) => frame,
                };
                last_heard = Instant::now();
                match decode_frame::<S>(frame) {
                    Ok(None) => {}
                    Ok(Some(message)) if S::is_heartbeat(&message) => trace!("Portal heartbeat"),
                    Ok(Some(message)) => {
                        if inbound.send(Ok(message)).await.is_err() {
                            break None;
                        }
                    }
                    // A newer portal may send types this build does not know: skip them, as
                    // the portal does for us.
                    Err(e) => debug!("Skipping a message from the portal: {e}"),
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= silence_limit {
                    break Some(LinkError::Timeout(silence_limit));
                }
                if let Err(e) = send_json(&mut socket, &S::heartbeat()).await {
                    break Some(LinkError::Failed(e.to_string()));
                }
            }
            () = inbound.closed() => break None,
        }
    };
    match failure {
        Some(error) => {
            debug!("Portal link ended: {error}");
            let _ = inbound.send(Err(error)).await;
        }
        None => {
            let _ = socket.close(None).await;
        }
    }
}

async fn send_json<T: Serialize>(
    socket: &mut Socket,
    message: &T,
) -> Result<(), tungstenite::Error> {
    let text = serde_json::to_string(message)
        .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?;
    socket.send(Message::text(text)).await
}

/// `Ok(None)` for frames that carry no message (pings, pongs).
fn decode_frame<S: Side>(frame: Message) -> Result<Option<S::In>, String> {
    match frame {
        Message::Text(text) => portal::decode::<S::In>(&text, S::IN_TYPES)
            .map(Some)
            .map_err(|e| e.to_string()),
        Message::Binary(_) => Err("binary frames are not part of the protocol".into()),
        _ => Ok(None),
    }
}

fn handshake_error(error: tungstenite::Error) -> ConnectError {
    let tungstenite::Error::Http(response) = error else {
        return ConnectError::Unreachable(error.to_string());
    };
    let status = response.status();
    let body: Option<ErrorBody> = response
        .body()
        .as_ref()
        .and_then(|b| serde_json::from_slice(b).ok());
    match body {
        Some(body) => ConnectError::from_code(body.code, &body.message),
        None if status.as_u16() == 401 || status.as_u16() == 403 => ConnectError::Rejected {
            code: ErrorCode::Unauthorized,
            message: format!("HTTP {status}"),
        },
        None => ConnectError::Unreachable(format!("HTTP {status}")),
    }
}

/// TLS with the Mozilla roots, built here rather than through a process-wide default provider
/// so that nothing else in the process can change what the portal connection trusts.
fn tls_connector() -> Result<tokio_tungstenite::Connector, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConnectError::Unreachable(format!("TLS setup failed: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
        config,
    )))
}

/// `http://portal:8080` → `ws://portal:8080/api/client`.
fn api_url(portal_url: &str, path: &str) -> Result<url::Url, ConnectError> {
    let mut url =
        url::Url::parse(portal_url).map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(ConnectError::InvalidUrl(format!(
                "unsupported scheme `{other}` (expected http or https)"
            )));
        }
    };
    url.set_scheme(scheme)
        .map_err(|()| ConnectError::InvalidUrl("cannot change the scheme".into()))?;
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Delays between reconnect attempts: 0.5 s, then × 1.5 up to 60 s, each ±20 % at random so
/// a portal restart is not met by every device at the same instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    current: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(500), 1.5, Duration::from_secs(60))
    }
}

impl Backoff {
    #[must_use]
    pub fn new(initial: Duration, factor: f64, max: Duration) -> Self {
        Self {
            initial,
            factor,
            max,
            current: None,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = match self.current {
            None => self.initial,
            Some(previous) => previous.mul_f64(self.factor).min(self.max),
        };
        self.current = Some(base);
        base.mul_f64(rand::rng().random_range(0.8..=1.2))
    }

    /// After a connection that worked: start from the shortest delay again.
    pub fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A portal (or whoever answers in its place) that names an interval of 584 million
    /// years: the link uses 5 minutes, so `now + interval` and `interval × 3` cannot overflow
    /// on any platform and a silent portal is noticed after 15 minutes, not never.
    #[test]
    fn a_huge_heartbeat_interval_is_clamped() {
        let interval = heartbeat_interval(Duration::from_millis(u64::MAX));
        assert_eq!(interval, Duration::from_secs(5 * 60));
        assert!(
            Instant::now()
                .checked_add(interval * MISSED_HEARTBEATS)
                .is_some()
        );
        assert_eq!(heartbeat_interval(Duration::ZERO), DEFAULT_HEARTBEAT);
        assert_eq!(
            heartbeat_interval(Duration::from_millis(1)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn backoff_grows_by_half_up_to_a_minute_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!((400..=600).contains(&first.as_millis()), "{first:?}");
        let second = backoff.next_delay();
        assert!((600..=900).contains(&second.as_millis()), "{second:?}");
        for _ in 0..30 {
            let delay = backoff.next_delay();
            assert!(delay <= Duration::from_secs(72), "{delay:?}");
        }
        let late = backoff.next_delay();
        assert!(
            late >= Duration::from_secs(48),
            "capped at 60 s ± 20 %: {late:?}"
        );
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(600));
    }

    #[test]
    fn portal_urls_become_websocket_urls_of_the_api() {
        let cases = [
            ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/api/client"),
            ("http://portal.example/", "ws://portal.example/api/client"),
            (
                "https://example.com/ember",
                "wss://example.com/ember/api/client",
            ),
            ("wss://example.com?x=1", "wss://example.com/api/client"),
        ];
        for (given, expected) in cases {
            assert_eq!(
                api_url(given, portal::CLIENT_API_PATH).unwrap().as_str(),
                expected
            );
        }
        assert!(matches!(
            api_url("ftp://example.com", portal::CLIENT_API_PATH),
            Err(ConnectError::InvalidUrl(_))
        ));
        assert!(matches!(
            api_url("not a url", portal::CLIENT_API_PATH),
            Err(ConnectError::InvalidUrl(_))
        ));
    }
}
