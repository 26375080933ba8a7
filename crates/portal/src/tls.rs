//! HTTPS served by the portal itself (rustls): the certificate and key files from the
//! configuration, reloaded on SIGHUP without dropping a connection; handshakes done off the
//! accept loop, so a client that stalls its handshake delays nobody else; and a plain-HTTP
//! listener that only redirects to the HTTPS address.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use crate::config::TlsConfig;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate file {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate file {} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key file {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error(
        "the key in {} does not fit the certificate in {} (or its kind is not supported): {source}",
        key.display(),
        certificate.display()
    )]
    Mismatch {
        certificate: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
    #[error("cannot read the listener's address: {0}")]
    Listener(io::Error),
}

/// The certificate the portal presents, replaceable while it serves.
#[derive(Debug)]
pub struct Certificates {
    certificate: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads the certificate chain and key named in the configuration.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let current = load_pair(&config.certificate, &config.key)?;
        Ok(Arc::new(Self {
            certificate: config.certificate.clone(),
            key: config.key.clone(),
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads both files again. On any error the certificate in use stays, so a half-copied
    /// renewal never takes the portal down.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_pair(&self.certificate, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        info!(certificate = %self.certificate.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The end-entity certificate now presented (DER).
    pub fn presented(&self) -> CertificateDer<'static> {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        current.cert[0].clone()
    }

    fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_pair(certificate: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: certificate.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: certificate.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|source| TlsError::Mismatch {
        certificate: certificate.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// A listener whose connections are TLS streams that finished their handshake.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `tcp` and shakes hands in a task per connection.
    pub fn new(tcp: TcpListener, certificates: &Arc<Certificates>) -> Result<Self, TlsError> {
        let local = tcp.local_addr().map_err(TlsError::Listener)?;
        let acceptor = certificates.acceptor()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task ends only when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// `Strict-Transport-Security` for every answer served over TLS.
pub fn hsts(max_age_secs: u64) -> Option<HeaderValue> {
    (max_age_secs > 0)
        .then(|| HeaderValue::from_str(&format!("max-age={max_age_secs}")).ok())
        .flatten()
}

/// The plain-HTTP side: every request is sent to the same path on `https_base`.
pub fn redirect_router(https_base: String) -> Router {
    Router::new().fallback(move |uri: Uri| {
        let base = https_base.clone();
        async move { redirect(&base, &uri) }
    })
}

fn redirect(base: &str, uri: &Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match HeaderValue::from_str(&format!("{base}{path}")) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_keeps_the_path_and_query() {
        let uri: Uri = "/sign-in?as=client&state=x".parse().unwrap();
        let response = redirect("https://portal.example", &uri);
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://portal.example/sign-in?as=client&state=x"
        );
    }

    #[test]
    fn hsts_is_off_with_a_zero_max_age() {
        assert_eq!(hsts(0), None);
        assert_eq!(hsts(600).unwrap(), "max-age=600");
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig {
            certificate: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            ..TlsConfig::default()
        };
        let error = Certificates::load(&config).unwrap_err().to_string();
        assert!(error.contains("cert.pem"), "{error}");
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig {
            certificate: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            ..TlsConfig::default()
        };
        std::fs::write(&config.certificate, "not a certificate\n").unwrap();
        let error = Certificates::load(&config).unwrap_err().to_string();
        assert!(error.contains("holds no certificate"), "{error}");
    }
}
