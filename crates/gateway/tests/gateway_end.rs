//! The gateway end on its own, with real parts in network namespaces (root only):
//!
//! - the real `ember-portal` binary and the real coturn on the "internet";
//! - the real `ember-gateway` binary behind a NAT router, with a site LAN behind it: a resource
//!   host with an HTTP server (10.77.0.10), a neighbour (10.77.0.11) nobody is granted, and a
//!   DNS server for `web.corp.example` (10.77.0.53, given with `--resolver`);
//! - a client behind another NAT, built here from `ember_io`'s driver running a small engine
//!   state (`support/client.rs`) and `ember_portal_client` (client role) with its own TUN
//!   device, signed in through the portal's password flow.
//!
//! The client reaches the web server through the tunnel by address and by name (proxy IP,
//! translated at the gateway); a non-granted port, the neighbour and an unpoliced resource are
//! dropped at the gateway; a revoked policy stops the flow; the tunnel keeps working while the
//! portal is down; SIGTERM removes the gateway's nftables table.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_engine::{Engine, EngineConfig, Role};
use ember_gateway::grants::encode_key;
use ember_io::driver::{Driver, DriverHandle};
use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_io::udp::UdpSocket;
use ember_portal_client::{ClientSide, PortalLink, connect};
use ember_protocol::SecretToken;
use ember_protocol::portal::{ClientMessage, PORTAL_PROTOCOL_VERSION, PortalToClient, Resource};
use ember_testbed::{Coturn, Error, Nat, Testbed};
use tokio::sync::mpsc;

use support::*;

#[test]
fn the_gateway_forwards_granted_flows_and_drops_the_rest() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut testbed = match Testbed::new() {
        Ok(testbed) => testbed,
        Err(Error::NotRoot) => {
            ember_testbed::skip("network namespaces, TUN devices and nftables need root");
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
    let bad =
        ember_testbed::netns_command(&gateway_host.host.ns, env!("CARGO_BIN_EXE_ember-gateway"))
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
    let (link, init) = connect::<ClientSide>(portal_url, &SecretToken::new(token), hello)
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
    let (driver, handle) = Driver::new(ClientState { engine }, tun, vec![socket]);
    let DriverHandle {
        controls,
        mut outputs,
    } = handle;
    tokio::spawn(async move {
        if let Err(e) = driver.run().await {
            eprintln!("client driver failed: {e}");
        }
    });
    controls
        .send(ClientInput::Relays(relay_configs(&relays)))
        .await;

    // The portal link: candidates both ways, everything else to the scenario.
    let sender = link.sender();
    let gateway_id: Arc<Mutex<Option<String>>> = Arc::default();
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    {
        let controls = controls.clone();
        let sender = sender.clone();
        let gateway_id = gateway_id.clone();
        // The task outlives the portal link: the driver stops when its outputs are dropped.
        tokio::spawn(async move {
            let mut link = Some(link);
            loop {
                tokio::select! {
                    message = recv_from(&mut link) => match message {
                        Ok(PortalToClient::IceCandidates { candidates, .. }) => {
                            for candidate in candidates {
                                controls.send(ClientInput::RemoteCandidate(candidate)).await;
                            }
                        }
                        Ok(other) => { let _ = messages_tx.send(other); }
                        Err(e) => {
                            eprintln!("client's portal link ended: {e}");
                            link = None;
                        }
                    },
                    output = outputs.recv() => {
                        let Some(output) = output else { return };
                        let ClientOutput::LocalCandidate(candidate) = output;
                        let id = gateway_id.lock().unwrap().clone();
                        if let Some(gateway_id) = id {
                            let _ = sender.send(ClientMessage::IceCandidates { gateway_id, candidates: vec![candidate] }).await;
                        }
                    }
                }
            }
        });
    }
    let mut client = TestClient {
        sender,
        messages: &mut messages,
        controls,
        gateway_id,
        next_request: 1,
    };

    step("data plane up");
    // 1. The web server by address: granted, reached through the tunnel, the path direct.
    client.request(&web_id, None, vec![]).await?;
    let web = SocketAddr::from((WEB, 80));
    let body = http_get(web, Duration::from_secs(15)).await?;
    check(body.contains(MARKER), "the web page came back")?;
    let path = client.stats().await.and_then(|s| s.path);
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

/// The next message on the portal link; never, without one.
async fn recv_from(
    link: &mut Option<PortalLink<ClientSide>>,
) -> Result<PortalToClient, ember_portal_client::LinkError> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}
