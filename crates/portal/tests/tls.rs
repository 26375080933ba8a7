//! The portal's own HTTPS: served with the configured files, HSTS on every answer, plain HTTP
//! redirected, a renewed certificate taken on SIGHUP (a broken one refused while the old one
//! stays), and a client that stalls its handshake delays nobody. Certificates are made by the
//! `openssl` command for each test.

#![allow(clippy::unwrap_used)] // scenarios and helpers outside #[test] functions

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::{Options, TestPortal};

const BIN: &str = env!("CARGO_BIN_EXE_ember-portal");

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files in `dir`.
struct CertificateFiles {
    certificate: PathBuf,
    key: PathBuf,
}

impl CertificateFiles {
    fn make(dir: &Path, name: &str) -> Self {
        let files = Self {
            certificate: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", &format!("/CN={name}")])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            // A server certificate, not a CA: webpki refuses a CA as the end entity.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "keyUsage=digitalSignature"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&files.key)
            .arg("-out")
            .arg(&files.certificate)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed (scripts/deps.sh)");
        assert!(status.success(), "openssl could not make a certificate");
        files
    }

    /// Copies this pair over `to`'s files, as a certificate renewal does.
    fn install_as(&self, to: &CertificateFiles) {
        std::fs::copy(&self.certificate, &to.certificate).unwrap();
        std::fs::copy(&self.key, &to.key).unwrap();
    }

    fn toml(&self, extra: &str) -> String {
        format!(
            "tls = {{ certificate = \"{}\", key = \"{}\"{extra} }}",
            self.certificate.display(),
            self.key.display()
        )
    }

    fn der(&self) -> Vec<u8> {
        let text = std::fs::read_to_string(&self.certificate).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64_decode(&body)
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A client that trusts only `trusted`, reports the peer's certificate and follows no
/// redirect.
fn client_trusting(trusted: &CertificateFiles) -> reqwest::Client {
    let pem = std::fs::read(&trusted.certificate).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn presented_certificate(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = client.get(url).send().await.unwrap();
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn the_portal_serves_https_with_hsts_and_redirects_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let files = CertificateFiles::make(dir.path(), "portal");
    let portal = TestPortal::sqlite_with(Options {
        server_extra: files.toml(", redirect_http = \"127.0.0.1:0\""),
        ..Options::default()
    })
    .await;
    let base = format!("https://127.0.0.1:{}", portal.addr.port());
    let client = client_trusting(&files);

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(health.text().await.unwrap(), "ok");

    // Plain HTTP on the HTTPS port is not answered as HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", portal.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");

    let redirect_from = portal.portal.as_ref().unwrap().redirect_addr.unwrap();
    let redirected = client
        .get(format!("http://{redirect_from}/sign-in?account=acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()["location"],
        format!("{base}/sign-in?account=acme").as_str()
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn a_client_stalling_its_handshake_delays_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let files = CertificateFiles::make(dir.path(), "portal");
    let portal = TestPortal::sqlite_with(Options {
        server_extra: files.toml(""),
        ..Options::default()
    })
    .await;
    // Connections that never say a word (a slowloris).
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(tokio::net::TcpStream::connect(portal.addr).await.unwrap());
    }
    let started = Instant::now();
    let health = client_trusting(&files)
        .get(format!("https://127.0.0.1:{}/healthz", portal.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served in {:?}",
        started.elapsed()
    );
    drop(stalled);
    portal.shutdown().await;
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sighup_takes_a_renewed_certificate_and_keeps_the_old_one_when_the_new_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let old = CertificateFiles::make(dir.path(), "old");
    let new = CertificateFiles::make(dir.path(), "new");
    let live = CertificateFiles {
        certificate: dir.path().join("live.crt"),
        key: dir.path().join("live.key"),
    };
    old.install_as(&live);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("portal.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"sqlite://{}\"\n{}\n",
            dir.path().join("portal.db").display(),
            live.toml("")
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("EMBER_LOG", "warn")
        .spawn()
        .unwrap();
    let running = Running(child);
    let url = format!("https://127.0.0.1:{port}/healthz");
    let trusting_old = client_trusting(&old);
    let started = Instant::now();
    while trusting_old.get(&url).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "no HTTPS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(presented_certificate(&trusting_old, &url).await, old.der());

    let hangup = || {
        nix_kill(running.0.id(), "HUP");
    };
    new.install_as(&live);
    hangup();
    let trusting_new = client_trusting(&new);
    let started = Instant::now();
    while trusting_new.get(&url).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the renewed certificate was not taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(presented_certificate(&trusting_new, &url).await, new.der());

    // A renewal caught half-written: the portal keeps serving the certificate it has.
    std::fs::write(&live.key, "-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(presented_certificate(&trusting_new, &url).await, new.der());
}

fn nix_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
