//! What the gateway end test builds its world from: the site LAN and its servers, the real
//! portal and gateway processes, and a client made of the engine, the IO driver and the
//! portal client.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

mod client;

pub use client::{ClientInput, ClientOutput, ClientState};

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_engine::{ConnectionStats, Grant, IceCredentials, PeerId, RelayConfig, RelayId};
use ember_gateway::grants::decode_key;
use ember_io::driver::Controls;
use ember_portal_client::{ClientSide, PortalSender};
use ember_protocol::portal::relay_host_port;
use ember_protocol::portal::{ClientMessage, PortalToClient, Relay};
use ember_protocol::sign_in::{Callback, RedeemRequest, Verifier};
use ember_testbed::{Coturn, Node, Testbed};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

pub const WEB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
pub const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
pub const SITE_DNS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 53);
pub const GATEWAY_LAN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PROXY: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 1);
pub const PORTAL_PORT: u16 = 8080;
pub const MARKER: &str = "ember-resource-ok";
pub const PASSWORD: &str = "correct horse battery staple";
pub const RELAY_SECRET: &str = "relay-secret";
pub const GATEWAY_PEER: PeerId = PeerId(1);
pub const TUN_NAME: &str = "ember-gw0";

pub fn check(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(format!("failed: {what}"))
    }
}

pub struct TestClient<'a> {
    pub sender: PortalSender<ClientSide>,
    pub messages: &'a mut mpsc::UnboundedReceiver<PortalToClient>,
    pub controls: Controls<ClientState>,
    pub gateway_id: Arc<Mutex<Option<String>>>,
    pub next_request: u64,
}

impl TestClient<'_> {
    /// The connection to the gateway, if there is one.
    pub async fn stats(&self) -> Option<ConnectionStats> {
        let (reply, answer) = oneshot::channel();
        if !self.controls.send(ClientInput::Stats(reply)).await {
            return None;
        }
        answer.await.ok().flatten()
    }

    /// Asks for access and hands the grant to the engine; `Err` with the denial otherwise.
    pub async fn request(
        &mut self,
        resource_id: &str,
        domain: Option<&str>,
        proxy_ips: Vec<IpAddr>,
    ) -> Result<(), String> {
        let request_id = self.next_request;
        self.next_request += 1;
        self.sender
            .send(ClientMessage::RequestAccess {
                request_id,
                resource_id: resource_id.into(),
                domain: domain.map(Into::into),
                proxy_ips,
                new_connection: false,
            })
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .map_err(|_| format!("no answer to the access request for {resource_id}"))?
                .ok_or("the portal link ended")?;
            match message {
                PortalToClient::AccessGranted {
                    request_id: id,
                    gateway,
                    preshared_key,
                    local_ice,
                    remote_ice,
                    ..
                } if id == request_id => {
                    *self.gateway_id.lock().unwrap() = Some(gateway.id.clone());
                    let grant = Grant {
                        peer: GATEWAY_PEER,
                        peer_public_key: decode_key(&gateway.public_key)
                            .map_err(|e| e.to_string())?,
                        preshared_key: decode_key(preshared_key.expose())
                            .map_err(|e| e.to_string())?,
                        local_ice: IceCredentials {
                            ufrag: local_ice.ufrag,
                            pwd: local_ice.pwd.expose().to_owned(),
                        },
                        remote_ice: IceCredentials {
                            ufrag: remote_ice.ufrag,
                            pwd: remote_ice.pwd.expose().to_owned(),
                        },
                    };
                    if !self
                        .controls
                        .send(ClientInput::Grant(Box::new(grant)))
                        .await
                    {
                        return Err("the client's driver stopped".into());
                    }
                    return Ok(());
                }
                PortalToClient::AccessDenied {
                    request_id: id,
                    reason,
                    message,
                    ..
                } if id == request_id => return Err(format!("denied: {reason:?}: {message}")),
                _ => {}
            }
        }
    }
}

pub fn relay_configs(relays: &[Relay]) -> Vec<RelayConfig> {
    relays
        .iter()
        .enumerate()
        .filter_map(|(i, relay)| {
            let (host, port) = relay.urls.iter().find_map(|u| relay_host_port(u))?;
            Some(RelayConfig {
                id: RelayId(i as u64 + 1),
                server: SocketAddr::new(host.parse().ok()?, port),
                username: relay.username.clone(),
                password: relay.password.expose().to_owned(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sign-in over the portal's password form (crates/portal/README.md, "Sign-in and the token")

/// The browser's part over the password form, then the service's part: the one-time code and
/// the verifier redeemed for a token bound to `public_key`.
pub async fn sign_in(portal_url: &str, public_key: &str) -> Result<String, String> {
    let state = hex::encode([0x11u8; 32]);
    let verifier = Verifier::from_random_bytes(&rand::random::<[u8; 32]>());
    let challenge = verifier.challenge();
    let addr = portal_url.trim_start_matches("http://");
    let page = http_raw(
        addr,
        &format!(
            "GET /sign-in?as=client&state={state}&challenge={challenge}&account=acme HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await?;
    let cookie = header(&page, "set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .ok_or("no CSRF cookie on the sign-in page")?;
    let attempt = hidden(&page, "attempt")?;
    let csrf = hidden(&page, "csrf")?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("attempt", &attempt)
        .append_pair("csrf", &csrf)
        .append_pair("account", "acme")
        .append_pair("email", "ada@acme.example")
        .append_pair("password", PASSWORD)
        .finish();
    let answer = http_raw(
        addr,
        &format!(
            "POST /sign-in HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await?;
    let location = header(&answer, "location")
        .ok_or_else(|| format!("no redirect after sign-in: {answer}"))?;
    let url = url::Url::parse(&location).map_err(|e| e.to_string())?;
    let callback = Callback::parse(&url).map_err(|e| e.to_string())?;
    let redeemed = ember_portal_client::redeem_sign_in(
        portal_url,
        &RedeemRequest {
            code: callback.code,
            verifier: verifier.secret().clone(),
            public_key: public_key.to_owned(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(redeemed.token.expose().to_owned())
}

pub async fn http_raw(addr: &str, request: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{addr} did not answer"))?
        .map_err(|e| format!("HTTP to {addr}: {e}"))
}

pub fn header(response: &str, name: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

pub fn hidden(html: &str, name: &str) -> Result<String, String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .ok_or_else(|| format!("no field {name} in the sign-in page"))?
        + marker.len();
    let end = html[start..].find('"').ok_or("unterminated field")? + start;
    Ok(html[start..end].replace("&amp;", "&"))
}

// ---------------------------------------------------------------------------------------------
// Traffic through the tunnel

pub async fn http_get(addr: SocketAddr, within: Duration) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: web.corp.example\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(within, exchange)
        .await
        .map_err(|_| format!("no HTTP answer from {addr} within {within:?}"))?
        .map_err(|e| format!("HTTP to {addr}: {e}"))
}

pub async fn tcp_connects(addr: SocketAddr, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

// ---------------------------------------------------------------------------------------------
// The site LAN behind the gateway

/// A namespace on the gateway's LAN side: 10.77.0.0/24, the gateway at .1.
pub struct SiteLan {
    pub ns: String,
}

impl SiteLan {
    pub fn create(gateway_ns: &str) -> Self {
        let ns = format!("{gateway_ns}-site");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        run("ip", &["netns", "add", &ns]);
        let lan = Self { ns };
        let ns = lan.ns.as_str();
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "-n", gateway_ns, "link", "add", "site0", "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ],
        );
        run(
            "ip",
            &[
                "-n",
                gateway_ns,
                "addr",
                "add",
                "10.77.0.1/24",
                "dev",
                "site0",
            ],
        );
        run("ip", &["-n", gateway_ns, "link", "set", "site0", "up"]);
        for addr in [WEB, NEIGHBOUR, SITE_DNS] {
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            );
        }
        run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        // No route back to the tunnel ranges: replies only find their way because the gateway
        // masquerades.
        lan
    }
}

impl Drop for SiteLan {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A TCP listener in the site namespace that records who connected; `http` ones answer a page.
pub struct Server {
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Server {
    pub fn http(testbed: &Testbed, ns: &str, addr: SocketAddr) -> Self {
        Self::start(testbed, ns, addr, true)
    }

    pub fn trap(testbed: &Testbed, ns: &str, addr: SocketAddr) -> Self {
        Self::start(testbed, ns, addr, false)
    }

    pub fn start(testbed: &Testbed, ns: &str, addr: SocketAddr, http: bool) -> Self {
        let listener = testbed
            .in_ns(ns, move || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        let peers: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let seen = peers.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Ok(peer) = stream.peer_addr() {
                    seen.lock().unwrap().push(peer);
                }
                if http {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{MARKER}",
                            MARKER.len()
                        )
                        .as_bytes(),
                    );
                }
            }
        });
        Self { peers }
    }

    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

/// Answers `web.corp.example` A with the web server's address, anything else NXDOMAIN.
pub fn serve_dns(testbed: &Testbed, ns: &str) {
    let socket = testbed
        .in_ns(ns, || std::net::UdpSocket::bind((SITE_DNS, 53)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let Some(question) = query.queries.first().cloned() else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_available = true;
            answer.add_query(question.clone());
            if question.name().to_ascii().trim_end_matches('.') != "web.corp.example" {
                answer.metadata.response_code = ResponseCode::NXDomain;
            } else if question.query_type() == RecordType::A {
                answer.add_answer(Record::from_rdata(
                    question.name().clone(),
                    30,
                    RData::A(A(WEB)),
                ));
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The portal and the gateway as processes

pub struct PortalProcess {
    pub child: Arc<Mutex<Option<Child>>>,
    pub ns: String,
    pub listen: SocketAddr,
    pub log: PathBuf,
    pub url: String,
    pub config: PathBuf,
    pub bin: PathBuf,
}

impl PortalProcess {
    pub fn start(testbed: &Testbed, bin: &Path, node: &Node, coturn: &Coturn, dir: &Path) -> Self {
        let hash = {
            let mut child = Command::new(bin)
                .arg("hash-password")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(PASSWORD.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let listen = SocketAddr::from((node.addr, PORTAL_PORT));
        let config = dir.join("portal.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "{listen}"
database = "sqlite://{db}"
heartbeat_interval_ms = 1000
change_poll_interval_ms = 100

[[relays]]
id = "relay-1"
urls = ["turn:{relay}"]
secret = "{RELAY_SECRET}"

[[accounts]]
slug = "acme"
name = "Acme"
sites = ["Site"]
users = [{{ email = "ada@acme.example", name = "Ada", password_hash = "{hash}" }}]
groups = [{{ name = "eng", members = ["ada@acme.example"] }}]
resources = [
  {{ name = "Web", site = "Site", address = "{WEB}", filters = ["tcp/80"] }},
  {{ name = "Web by name", site = "Site", address = "web.corp.example", filters = ["tcp/80"] }},
  {{ name = "Secret", site = "Site", address = "{NEIGHBOUR}" }},
]
policies = [
  {{ group = "eng", resource = "Web" }},
  {{ group = "eng", resource = "Web by name" }},
]
gateways = [{{ site = "Site", name = "gw-1" }}]
"#,
                db = dir.join("portal.db").display(),
                relay = coturn.addr,
            ),
        )
        .unwrap();
        let mut portal = Self {
            child: Arc::default(),
            ns: node.ns.clone(),
            listen,
            log: dir.join("portal.log"),
            url: format!("http://{listen}"),
            config,
            bin: bin.to_owned(),
        };
        portal.serve(testbed);
        portal
    }

    /// Starts `ember-portal serve` (again) and waits until it listens.
    pub fn serve(&mut self, testbed: &Testbed) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = ember_testbed::netns_command(&self.ns, &self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("EMBER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
        let listen = self.listen;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !testbed
            .in_ns(&self.ns, move || {
                TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok()
            })
            .unwrap()
        {
            assert!(
                Instant::now() < deadline,
                "the portal did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn control(&self) -> PortalControl {
        PortalControl {
            bin: self.bin.clone(),
            config: self.config.clone(),
            child: self.child.clone(),
        }
    }

    pub fn admin(&self, args: &[&str]) -> String {
        admin(&self.bin, &self.config, args)
    }
}

impl Drop for PortalProcess {
    fn drop(&mut self) {
        self.control().kill();
    }
}

/// What the client scenario may do to the portal: change the model, stop it.
pub struct PortalControl {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub child: Arc<Mutex<Option<Child>>>,
}

impl PortalControl {
    pub fn admin(&self, args: &[&str]) -> String {
        admin(&self.bin, &self.config, args)
    }

    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn admin(bin: &Path, config: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub struct GatewayProcess {
    pub child: Option<Child>,
    pub ns: String,
    pub log_dir: PathBuf,
}

impl GatewayProcess {
    pub fn start(node: &Node, portal_url: &str, token: &str, dir: &Path) -> Self {
        let token_file = dir.join("gateway-token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let log_dir = dir.join("gateway-logs");
        let stderr = std::fs::File::create(dir.join("gateway.stderr")).unwrap();
        let child = ember_testbed::netns_command(&node.ns, env!("CARGO_BIN_EXE_ember-gateway"))
            .args(["--portal-url", portal_url, "--tun-name", TUN_NAME])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--state-dir")
            .arg(dir.join("gateway-state"))
            .arg("--log-dir")
            .arg(&log_dir)
            .args(["--resolver", &format!("{SITE_DNS}:53")])
            .args(["--reconfirm-secs", "2"])
            .env("EMBER_LOG", "info,ember_gateway=debug")
            .env_remove("EMBER_GATEWAY_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            ns: node.ns.clone(),
            log_dir,
        }
    }

    /// Until the TUN device and the nftables table exist.
    pub fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let tun = Command::new("ip")
                .args(["-n", &self.ns, "link", "show", TUN_NAME])
                .output()
                .unwrap();
            if tun.status.success() && nft_has_table(&self.ns, "ember_gateway_ember_gw0") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the gateway exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the gateway did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its log files (daily files in the log folder) and whatever reached stderr.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.log_dir) {
            for entry in entries.flatten() {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        if let Some(parent) = self.log_dir.parent() {
            text.push_str(
                &std::fs::read_to_string(parent.join("gateway.stderr")).unwrap_or_default(),
            );
        }
        text
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn nft_has_table(ns: &str, table: &str) -> bool {
    ember_testbed::netns_command(ns, "nft")
        .args(["list", "table", "inet", table])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The `ember-portal` binary of this build. A test of one package cannot name another
/// package's binary: it is built here when missing, and always under nextest (which holds no
/// build lock while tests run), so it is never older than the protocol it speaks.
pub fn portal_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_ember-gateway"))
        .parent()
        .unwrap();
    let bin = dir.join("ember-portal");
    if !bin.exists() || std::env::var_os("NEXTEST").is_some() {
        // Only the variables a build needs: the test runner's CARGO_* variables would change
        // build-script fingerprints and make the next outer build start over.
        let mut cargo = Command::new(env!("CARGO"));
        cargo.env_clear();
        for key in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_DIR",
        ] {
            if let Some(value) = std::env::var_os(key) {
                cargo.env(key, value);
            }
        }
        let status = cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-q", "-p", "ember-portal", "--bin", "ember-portal"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build ember-portal");
    }
    assert!(bin.exists(), "no ember-portal next to {}", dir.display());
    bin
}

pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
