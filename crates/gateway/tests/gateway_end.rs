//! The gateway end on its own, with real parts in network namespaces (root only):
//!
//! - the real `ember-portal` binary and the real coturn on the "internet";
//! - the real `ember-gateway` binary behind a NAT router, with a site LAN behind it: a resource
//!   host with an HTTP server (10.77.0.10), a neighbour (10.77.0.11) nobody is granted, and a
//!   DNS server for `web.corp.example` (10.77.0.53, given with `--resolver`);
//! - a client behind another NAT, built here from `ember_io::Driver` and
//!   `ember_portal_client` (client role) with its own TUN device, signed in through the
//!   portal's password flow.
//!
//! The client reaches the web server through the tunnel by address and by name (proxy IP,
//! translated at the gateway); a non-granted port, the neighbour and an unpoliced resource are
//! dropped at the gateway; a revoked policy stops the flow; the tunnel keeps working while the
//! portal is down; SIGTERM removes the gateway's nftables table.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_engine::{
    Engine, EngineConfig, Event, Grant, IceCredentials, PeerId, RelayConfig, RelayId, Role,
};
use ember_gateway::grants::{decode_key, encode_key};
use ember_io::driver::{Command as DriverCommand, Driver, DriverHandle, Router};
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_io::udp::UdpSocket;
use ember_portal_client::{ClientSide, PortalSender, connect};
use ember_protocol::SecretToken;
use ember_protocol::portal::relay_host_port;
use ember_protocol::portal::{
    ClientMessage, PORTAL_PROTOCOL_VERSION, PortalToClient, Relay, Resource,
};
use ember_protocol::sign_in::{Callback, RedeemRequest, Verifier};
use ember_testbed::{Coturn, Error, Nat, Node, Testbed};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

const WEB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const SITE_DNS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 53);
const GATEWAY_LAN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PROXY: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 1);
const PORTAL_PORT: u16 = 8080;
const MARKER: &str = "ember-resource-ok";
const PASSWORD: &str = "correct horse battery staple";
const RELAY_SECRET: &str = "relay-secret";
const GATEWAY_PEER: PeerId = PeerId(1);
const TUN_NAME: &str = "ember-gw0";

#[test]
fn the_gateway_forwards_granted_flows_and_drops_the_rest() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut testbed = match Testbed::new() {
        Ok(testbed) => testbed,
        Err(Error::NotRoot) => {
            eprintln!("SKIPPED: network namespaces, TUN devices and nftables need root");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[test {:>6.2?}] {what}", started.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let portal_bin = portal_binary();
    phase("portal binary ready");

    // The internet: the portal and coturn on one public host.
    let public = testbed.add_public_host("portal").unwrap();
    let coturn = Coturn::start(&mut testbed, &public, RELAY_SECRET).unwrap();
    let gateway_host = testbed
        .add_natted_host("gw", Nat::EndpointIndependent)
        .unwrap();
    let client_host = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();
    let site = SiteLan::create(&gateway_host.host.ns);

    // The site: a web server, a trap on a port nobody is granted, a neighbour, a DNS server.
    let web = Server::http(&testbed, &site.ns, SocketAddr::from((WEB, 80)));
    let web_ssh = Server::trap(&testbed, &site.ns, SocketAddr::from((WEB, 22)));
    let neighbour = Server::trap(&testbed, &site.ns, SocketAddr::from((NEIGHBOUR, 80)));
    serve_dns(&testbed, &site.ns);
    phase("namespaces, coturn and site servers up");

    let mut portal = PortalProcess::start(&testbed, &portal_bin, &public, &coturn, dir.path());
    let gateway_token = portal.admin(&[
        "gateway",
        "token",
        "--account",
        "acme",
        "--site",
        "Site",
        "--name",
        "gw-1",
    ]);
    let gateway_token = gateway_token.rsplit(": ").next().unwrap().trim().to_owned();

    let secret_id = portal.admin(&[
        "resource",
        "create",
        "--account",
        "acme",
        "--site",
        "Site",
        "--name",
        "Secret",
        "--address",
        "10.77.0.11",
    ]);
    let secret_id = secret_id.split(['(', ')']).nth(1).unwrap().to_owned();

    let mut gateway =
        GatewayProcess::start(&gateway_host.host, &portal.url, &gateway_token, dir.path());
    gateway.wait_until_ready();
    phase("portal and gateway up");

    // Everything the client does runs on a runtime whose thread lives in the client namespace,
    // so its sockets, TUN device and portal connection are there.
    let portal_url = portal.url.clone();
    let portal_control = portal.control();
    let client_ns = client_host.host.ns.clone();
    let outcome = testbed
        .in_ns(&client_host.host.ns, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(client_scenario(
                &client_ns,
                &portal_url,
                &secret_id,
                portal_control,
            ))
        })
        .unwrap();
    if let Err(e) = outcome {
        eprintln!("--- gateway log ---\n{}", gateway.log());
        eprintln!(
            "--- portal log ---\n{}",
            std::fs::read_to_string(dir.path().join("portal.log")).unwrap_or_default()
        );
        panic!("{e}");
    }

    phase("client scenario done");
    if std::env::var_os("EMBER_TEST_SHOW_LOGS").is_some() {
        eprintln!("--- gateway log ---\n{}", gateway.log());
    }
    // The portal comes back: the gateway reconnects on its own.
    portal.serve(&testbed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gateway.log().contains("Connected to the portal again") {
        assert!(
            Instant::now() < deadline,
            "the gateway did not reconnect to the restarted portal:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    phase("the gateway reconnected to the restarted portal");
    // The restarted portal knows nothing of the client's grant (the client is gone): the
    // gateway drops it once the confirmation window closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway.log().contains("did not confirm after reconnecting") {
        assert!(
            Instant::now() < deadline,
            "the unconfirmed grant was kept:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    phase("the grant the portal did not confirm was dropped");

    // What the site saw: the web server only the gateway's masqueraded address, the traps
    // nothing at all — the gateway dropped those packets, as its log says.
    let peers = web.peers();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| p.ip() == IpAddr::V4(GATEWAY_LAN)),
        "the web server saw {peers:?}"
    );
    assert!(web_ssh.peers().is_empty(), "port 22 was reached");
    assert!(neighbour.peers().is_empty(), "the neighbour was reached");
    let log = gateway.log();
    assert!(
        log.contains("TCP to port 22 is outside the resource's rules"),
        "no drop for the port outside the rules in:\n{log}"
    );
    assert!(
        log.contains("no granted resource at 10.77.0.11"),
        "no drop for the neighbour in:\n{log}"
    );

    // SIGTERM: exit 0, and the gateway's table is gone.
    let table = "ember_gateway_ember_gw0";
    assert!(nft_has_table(&gateway_host.host.ns, table));
    let status = gateway.stop();
    assert!(status.success(), "the gateway exited with {status}");
    assert!(
        !nft_has_table(&gateway_host.host.ns, table),
        "the nftables table outlived the gateway"
    );

    // A token the portal does not know: a clear message and a non-zero exit, no retrying.
    let bad = Command::new("ip")
        .args([
            "netns",
            "exec",
            &gateway_host.host.ns,
            env!("CARGO_BIN_EXE_ember-gateway"),
        ])
        .args(["--portal-url", &portal.url, "--tun-name", "ember-gw1"])
        .arg("--state-dir")
        .arg(dir.path().join("bad-gateway-state"))
        .env("EMBER_GATEWAY_TOKEN", "0".repeat(64))
        .env("EMBER_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "a refused token must fail: {stderr}");
    assert!(
        stderr.contains("the portal refused this gateway"),
        "unclear message: {stderr}"
    );
    assert!(
        !stderr.contains(&"0".repeat(64)),
        "the token was logged: {stderr}"
    );
}

/// The client's whole story, in the client namespace. `Err` carries what went wrong.
async fn client_scenario(
    client_ns: &str,
    portal_url: &str,
    secret_id: &str,
    portal: PortalControl,
) -> Result<(), String> {
    let started = Instant::now();
    let step = |what: &str| eprintln!("[client {:>6.2?}] {what}", started.elapsed());
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&0x5eed_u64.to_le_bytes());
    key[31] = 0x42;
    let engine = Engine::new(EngineConfig::new(Role::Client, key, 7), Instant::now());
    let token = sign_in(portal_url, &encode_key(&engine.public_key())).await?;
    let hello = ClientMessage::Hello {
        protocol_version: PORTAL_PROTOCOL_VERSION,
        device_id: "test-device-1".into(),
        public_key: encode_key(&engine.public_key()),
        name: "test client".into(),
        os: "linux".into(),
        version: "0.0.0".into(),
    };
    let (mut link, init) = connect::<ClientSide>(portal_url, &SecretToken::new(token), hello)
        .await
        .map_err(|e| format!("client cannot connect to the portal: {e}"))?;
    let PortalToClient::Init {
        interface,
        resources,
        relays,
        ..
    } = init
    else {
        return Err(format!("expected init, got {init:?}"));
    };
    let id_of = |name: &str| -> Result<String, String> {
        resources
            .iter()
            .find(|r: &&Resource| r.name == name)
            .map(|r| r.id.clone())
            .ok_or_else(|| format!("no resource {name} in {resources:?}"))
    };
    let web_id = id_of("Web")?;
    let web_by_name_id = id_of("Web by name")?;
    step("signed in and connected to the portal");

    let tun = Tun::create(&TunConfig {
        name: "ember0".into(),
        mtu: DEFAULT_MTU,
        ipv4: Some((interface.ipv4, 32)),
        ipv6: Some((interface.ipv6, 128)),
        wintun_dll: None,
    })
    .map_err(|e| e.to_string())?;
    for route in ["10.77.0.0/24", "100.96.0.0/11"] {
        run(
            "ip",
            &["-n", client_ns, "route", "add", route, "dev", "ember0"],
        );
    }
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0).into()).map_err(|e| e.to_string())?;
    let (driver, handle, mut events) = Driver::new(engine, tun, vec![socket], ClientRouter);
    tokio::spawn(async move {
        if let Err(e) = driver.run().await {
            eprintln!("client driver failed: {e}");
        }
    });
    handle
        .send(DriverCommand::Relays(relay_configs(&relays)))
        .await;

    // The portal link: candidates both ways, everything else to the scenario.
    let sender = link.sender();
    let gateway_id: Arc<Mutex<Option<String>>> = Arc::default();
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    {
        let handle = handle.clone();
        let sender = sender.clone();
        let gateway_id = gateway_id.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = link.recv() => match message {
                        Ok(PortalToClient::IceCandidates { candidates, .. }) => {
                            for candidate in candidates {
                                handle.send(DriverCommand::RemoteCandidate { peer: GATEWAY_PEER, candidate }).await;
                            }
                        }
                        Ok(other) => { let _ = messages_tx.send(other); }
                        Err(e) => { eprintln!("client's portal link ended: {e}"); return; }
                    },
                    Some(event) = events.recv() => {
                        if let Event::LocalCandidate { candidate, .. } = event {
                            let id = gateway_id.lock().unwrap().clone();
                            if let Some(gateway_id) = id {
                                let _ = sender.send(ClientMessage::IceCandidates { gateway_id, candidates: vec![candidate] }).await;
                            }
                        }
                    }
                }
            }
        });
    }
    let mut client = TestClient {
        sender,
        messages: &mut messages,
        driver: handle,
        gateway_id,
        next_request: 1,
    };

    step("data plane up");
    // 1. The web server by address: granted, reached through the tunnel, the path direct.
    client.request(&web_id, None, vec![]).await?;
    let web = SocketAddr::from((WEB, 80));
    let body = http_get(web, Duration::from_secs(15)).await?;
    check(body.contains(MARKER), "the web page came back")?;
    let stats = client.driver.stats().await;
    let path = stats.first().and_then(|(_, s)| s.path);
    step(&format!("web page by address; path {path:?}"));

    // 2. A port outside the filter, and an address behind the gateway nobody granted: dropped.
    check(
        !tcp_connects(SocketAddr::from((WEB, 22)), Duration::from_secs(2)).await,
        "port 22 is not reachable",
    )?;
    check(
        !tcp_connects(SocketAddr::from((NEIGHBOUR, 80)), Duration::from_secs(2)).await,
        "the neighbour is not reachable",
    )?;
    step("port 22 and the neighbour dropped");
    // 3. A resource without a policy for this user: denied by the portal.
    match client.request(secret_id, None, vec![]).await {
        Err(e) if e.contains("forbidden") || e.contains("Forbidden") => {}
        other => return Err(format!("expected a denial for Secret, got {other:?}")),
    }
    // The tunnel still works after all that.
    http_get(web, Duration::from_secs(5)).await?;

    step("Secret denied; tunnel still fine");
    // 4. The policy for Web is withdrawn: the gateway stops the flow.
    portal.admin(&[
        "policy",
        "delete",
        "--account",
        "acme",
        "--group",
        "eng",
        "--resource",
        "Web",
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if !tcp_connects(web, Duration::from_millis(500)).await {
            break;
        }
        if Instant::now() > deadline {
            return Err(
                "the web server is still reachable 5 s after its policy was deleted".into(),
            );
        }
    }

    step("flow stopped after the policy was deleted");
    // 5. The same server by name: the client's proxy IP, translated at the gateway.
    client
        .request(
            &web_by_name_id,
            Some("web.corp.example"),
            vec![IpAddr::V4(PROXY)],
        )
        .await?;
    let by_name = SocketAddr::from((PROXY, 80));
    let body = http_get(by_name, Duration::from_secs(15)).await?;
    check(body.contains(MARKER), "the web page came back by name")?;
    check(
        !tcp_connects(SocketAddr::from((PROXY, 22)), Duration::from_secs(2)).await,
        "port 22 behind the proxy IP is not reachable",
    )?;

    step("web page by name through the proxy IP; port 22 dropped");
    // 6. The portal goes away; the tunnel keeps carrying traffic.
    portal.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = http_get(by_name, Duration::from_secs(5)).await?;
    check(
        body.contains(MARKER),
        "the web page came back with the portal down",
    )?;
    step("web page with the portal down");
    Ok(())
}

fn check(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(format!("failed: {what}"))
    }
}

struct TestClient<'a> {
    sender: PortalSender<ClientSide>,
    messages: &'a mut mpsc::UnboundedReceiver<PortalToClient>,
    driver: DriverHandle,
    gateway_id: Arc<Mutex<Option<String>>>,
    next_request: u64,
}

impl TestClient<'_> {
    /// Asks for access and hands the grant to the engine; `Err` with the denial otherwise.
    async fn request(
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
                    self.driver
                        .send(DriverCommand::Grant(Box::new(grant)))
                        .await;
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

/// The test client's router: everything routed into its TUN device goes to the one gateway.
struct ClientRouter;

impl Router for ClientRouter {
    fn outbound(&mut self, packet: &mut [u8]) -> Option<PeerId> {
        // Only IPv4 to the routed site and proxy ranges; the kernel's own IPv6 chatter stays.
        (packet.first().map(|b| b >> 4) == Some(4)).then_some(GATEWAY_PEER)
    }

    fn inbound(&mut self, _peer: PeerId, _packet: &mut [u8]) -> bool {
        true
    }
}

fn relay_configs(relays: &[Relay]) -> Vec<RelayConfig> {
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
async fn sign_in(portal_url: &str, public_key: &str) -> Result<String, String> {
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

async fn http_raw(addr: &str, request: &str) -> Result<String, String> {
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

fn header(response: &str, name: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn hidden(html: &str, name: &str) -> Result<String, String> {
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

async fn http_get(addr: SocketAddr, within: Duration) -> Result<String, String> {
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

async fn tcp_connects(addr: SocketAddr, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

// ---------------------------------------------------------------------------------------------
// The site LAN behind the gateway

/// A namespace on the gateway's LAN side: 10.77.0.0/24, the gateway at .1.
struct SiteLan {
    ns: String,
}

impl SiteLan {
    fn create(gateway_ns: &str) -> Self {
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
struct Server {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Server {
    fn http(testbed: &Testbed, ns: &str, addr: SocketAddr) -> Self {
        Self::start(testbed, ns, addr, true)
    }

    fn trap(testbed: &Testbed, ns: &str, addr: SocketAddr) -> Self {
        Self::start(testbed, ns, addr, false)
    }

    fn start(testbed: &Testbed, ns: &str, addr: SocketAddr, http: bool) -> Self {
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

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

/// Answers `web.corp.example` A with the web server's address, anything else NXDOMAIN.
fn serve_dns(testbed: &Testbed, ns: &str) {
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

struct PortalProcess {
    child: Arc<Mutex<Option<Child>>>,
    ns: String,
    listen: SocketAddr,
    log: PathBuf,
    url: String,
    config: PathBuf,
    bin: PathBuf,
}

impl PortalProcess {
    fn start(testbed: &Testbed, bin: &Path, node: &Node, coturn: &Coturn, dir: &Path) -> Self {
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
    fn serve(&mut self, testbed: &Testbed) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.bin)
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

    fn control(&self) -> PortalControl {
        PortalControl {
            bin: self.bin.clone(),
            config: self.config.clone(),
            child: self.child.clone(),
        }
    }

    fn admin(&self, args: &[&str]) -> String {
        admin(&self.bin, &self.config, args)
    }
}

impl Drop for PortalProcess {
    fn drop(&mut self) {
        self.control().kill();
    }
}

/// What the client scenario may do to the portal: change the model, stop it.
struct PortalControl {
    bin: PathBuf,
    config: PathBuf,
    child: Arc<Mutex<Option<Child>>>,
}

impl PortalControl {
    fn admin(&self, args: &[&str]) -> String {
        admin(&self.bin, &self.config, args)
    }

    fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn admin(bin: &Path, config: &Path, args: &[&str]) -> String {
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

struct GatewayProcess {
    child: Option<Child>,
    ns: String,
    log_dir: PathBuf,
}

impl GatewayProcess {
    fn start(node: &Node, portal_url: &str, token: &str, dir: &Path) -> Self {
        let token_file = dir.join("gateway-token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let log_dir = dir.join("gateway-logs");
        let stderr = std::fs::File::create(dir.join("gateway.stderr")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.ns,
                env!("CARGO_BIN_EXE_ember-gateway"),
            ])
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
    fn wait_until_ready(&mut self) {
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
    fn stop(&mut self) -> std::process::ExitStatus {
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
    fn log(&self) -> String {
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

fn nft_has_table(ns: &str, table: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "table", "inet", table])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The `ember-portal` binary of this build. A test of one package cannot name another
/// package's binary: it is built here when missing, and always under nextest (which holds no
/// build lock while tests run), so it is never older than the protocol it speaks.
fn portal_binary() -> PathBuf {
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

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
