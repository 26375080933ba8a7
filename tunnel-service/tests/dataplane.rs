//! The real `ember-tunnel` signed in to the real portal, in a network namespace of its own:
//! the TUN device, the split-tunnel routes, the DNS stub (resource names answered with proxy
//! IPs, other names forwarded to an upstream resolver the test runs) and `/etc/resolv.conf`,
//! and that all of it is undone on sign-out, on revocation, and after SIGKILL at the next
//! start. Root only; every change happens inside namespaces the test creates, and
//! `/etc/resolv.conf` is the namespace's private copy (`/etc/netns/NS/resolv.conf`).
//!
//! `EMBER_TEST_SHOW_LOGS=1` prints the service's log at the end of each test (it is printed
//! on failure anyway).
#![allow(clippy::unwrap_used, clippy::print_stderr)]
#![cfg(unix)] // Network namespaces, Linux TUN, /etc/resolv.conf.

mod support;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_ipc::client::Connection;
use ember_protocol::SecretToken;
use ember_protocol::ipc::{
    Reply, Request, ResourceState, ServiceSettings, SessionState, ViewState,
};
use ember_testbed::{Error, Node, Testbed};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use support::TestPortal;
use support::app::{request, wait_for};
use support::service::NsService;

/// What the test's upstream resolver answers for every name.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

fn testbed() -> Option<Testbed> {
    match Testbed::new() {
        Ok(testbed) => Some(testbed),
        Err(Error::NotRoot) => {
            ember_testbed::skip("the data-plane test needs root (namespaces, TUN devices)");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// `/etc/netns/NS/resolv.conf`: what `ip netns exec NS` shows its processes as
/// `/etc/resolv.conf`. Removed with the folder when dropped.
struct NetnsResolvConf {
    dir: PathBuf,
    original: String,
}

impl NetnsResolvConf {
    fn create(ns: &str, original: String) -> Self {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), &original).unwrap();
        Self { dir, original }
    }

    fn current(&self) -> String {
        std::fs::read_to_string(self.dir.join("resolv.conf")).unwrap()
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn sign_in(app: &mut Connection, portal: &TestPortal, token: &str) -> ViewState {
    let settings = ServiceSettings {
        portal_url: portal.url(),
        log_filter: "debug".into(),
    };
    assert_eq!(
        request(app, 1, Request::ApplySettings { settings }).await,
        Reply::Done
    );
    assert_eq!(
        request(
            app,
            2,
            Request::ResumeSession {
                portal_url: portal.url(),
                token: SecretToken::new(token)
            }
        )
        .await,
        Reply::Done
    );
    wait_for(app, "signed in", |s| {
        matches!(s.session, SessionState::SignedIn { .. }) && s.interface.is_some()
    })
    .await
}

fn ip(ns: &str, args: &str) -> String {
    let output = Command::new("ip")
        .args(["-n", ns])
        .args(args.split_whitespace())
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The routes into `ember0`: in Ember's own table (see `ember_io::policy`).
fn tunnel_routes(ns: &str) -> Vec<String> {
    [
        ip(ns, "-4 route show table 177 dev ember0"),
        ip(ns, "-6 route show table 177 dev ember0"),
    ]
    .concat()
    .lines()
    .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
    .collect()
}

fn has_device(ns: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "ember0"])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `getent ahostsv4 NAME` in the namespace: the system resolver, through `/etc/resolv.conf`.
fn resolve(ns: &str, name: &str) -> Vec<Ipv4Addr> {
    let output = ember_testbed::netns_command(ns, "getent")
        .args(["ahostsv4", name])
        .output()
        .unwrap();
    let mut ips: Vec<Ipv4Addr> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect();
    ips.dedup();
    ips
}

/// A tiny upstream resolver: answers every A query with [`UPSTREAM_ANSWER`] and records the
/// names it was asked.
fn run_upstream(socket: UdpSocket) -> Arc<Mutex<Vec<String>>> {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&asked);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.message_type = MessageType::Response;
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            for question in &query.queries {
                record.lock().unwrap().push(question.name().to_ascii());
                answer.add_query(question.clone());
                if question.query_type() == RecordType::A {
                    answer.add_answer(Record::from_rdata(
                        question.name().clone(),
                        60,
                        RData::A(A(UPSTREAM_ANSWER)),
                    ));
                }
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    asked
}

/// A client, and a server host with the portal and the upstream resolver, on the test internet.
struct World {
    testbed: Testbed,
    client: Node,
    server: Node,
    portal: TestPortal,
    resolv_conf: NetnsResolvConf,
    upstream_asked: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

async fn world() -> Option<World> {
    let mut testbed = testbed()?;
    let client = testbed.add_public_host("client").unwrap();
    let server = testbed.add_public_host("server").unwrap();
    let resolv_conf = NetnsResolvConf::create(
        &client.ns,
        format!(
            "# the namespace's own resolv.conf\nnameserver {}\nsearch example.org\noptions edns0\n",
            server.addr
        ),
    );
    let (dns_socket, portal_listener) = testbed
        .in_ns(&server.ns, || {
            (
                UdpSocket::bind((server.addr, 53)).unwrap(),
                std::net::TcpListener::bind((server.addr, 0)).unwrap(),
            )
        })
        .unwrap();
    let upstream_asked = run_upstream(dns_socket);
    let portal = TestPortal::start(portal_listener).await;
    Some(World {
        testbed,
        client,
        server,
        portal,
        resolv_conf,
        upstream_asked,
        dir: tempfile::tempdir().unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_the_service_routes_resources_answers_dns_and_undoes_it_all() {
    let Some(world) = world().await else {
        return;
    };
    let ns = world.client.ns.clone();
    let service = NsService::start(&ns, world.dir.path(), "resolv-conf", "debug");
    let mut app = service.app("dataplane test").await;
    let (token, token_id) = world.portal.client_token().await;

    let state = sign_in(&mut app, &world.portal, &token).await;
    let interface = state.interface.clone().unwrap();
    assert_eq!(interface.name, "ember0");
    let ipv4 = interface.ipv4.unwrap();
    assert!(
        ipv4.octets()[0] == 100 && (64..96).contains(&ipv4.octets()[1]),
        "{ipv4}"
    );
    assert!(
        ip(&ns, "-4 addr show dev ember0").contains(&format!("inet {ipv4}/32")),
        "{}",
        ip(&ns, "addr")
    );
    assert!(ip(&ns, "link show dev ember0").contains("mtu 1280"));
    let mut names: Vec<&str> = state.resources.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["Corp", "Office LAN", "Printer", "Wiki"]);

    // Split tunnel: resources, proxy ranges and the sentinel networks, nothing else.
    let routes = tunnel_routes(&ns);
    for expected in [
        "10.77.0.0/16",
        "10.88.0.5",
        "100.96.0.0/11",
        "100.100.111.0/24",
        "fd00:2021:1111:8000::/107",
        "fd00:2021:1111:8000:100:100:111:0/120",
    ] {
        assert!(
            routes.iter().any(|r| r == expected),
            "{expected} missing from {routes:?}"
        );
    }
    assert!(
        !routes.iter().any(|r| r == "default" || r.ends_with("/0")),
        "{routes:?}"
    );

    // The system resolver now asks the stub; search and options survive.
    let ours = world.resolv_conf.current();
    assert!(ours.contains("nameserver 100.100.111.1"), "{ours}");
    assert!(!ours.contains(&world.server.addr.to_string()), "{ours}");
    assert!(
        ours.contains("search example.org") && ours.contains("options edns0"),
        "{ours}"
    );

    // A DNS resource name: proxy IPs from the stub, stable across queries.
    let app_ips = resolve(&ns, "app.corp.example");
    assert_eq!(app_ips.len(), 4, "{app_ips:?}");
    assert!(
        app_ips
            .iter()
            .all(|ip| ip.octets()[0] == 100 && (96..128).contains(&ip.octets()[1])),
        "{app_ips:?}"
    );
    assert_eq!(resolve(&ns, "app.corp.example"), app_ips);
    let wiki_ips = resolve(&ns, "wiki.internal.example");
    assert_eq!(wiki_ips.len(), 4);
    assert!(wiki_ips.iter().all(|ip| !app_ips.contains(ip)));
    // Any other name goes to the upstream resolver, unchanged.
    assert_eq!(resolve(&ns, "www.example.org"), vec![UPSTREAM_ANSWER]);
    let asked = world.upstream_asked.lock().unwrap().clone();
    assert!(asked.iter().any(|n| n == "www.example.org."), "{asked:?}");
    assert!(
        !asked
            .iter()
            .any(|n| n.contains("corp.example") || n.contains("internal.example")),
        "resource names never leave the machine: {asked:?}"
    );

    // Traffic to a resource asks the portal for access; its only gateway is offline, which
    // the app is told — and the application too, at once, by an ICMP error.
    let socket = world
        .testbed
        .in_ns(&ns, || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            socket.connect(("10.77.1.1", 9)).unwrap();
            socket.set_nonblocking(true).unwrap();
            socket
        })
        .unwrap();
    let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
    socket.send(b"hello").await.unwrap();
    let state = wait_for(&mut app, "Office LAN unreachable", |s| {
        s.resources
            .iter()
            .any(|r| r.name == "Office LAN" && r.state == ResourceState::Unreachable)
    })
    .await;
    let lan = state
        .resources
        .iter()
        .find(|r| r.name == "Office LAN")
        .unwrap();
    assert!(
        lan.reason
            .as_deref()
            .unwrap_or_default()
            .contains("offline"),
        "{lan:?}"
    );
    let mut buf = [0u8; 64];
    let error = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("no ICMP error reached the application")
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::HostUnreachable, "{error}");

    // A new resource reaches the service live, and its route follows.
    world.portal.add_resource("Lab", "10.99.0.0/16").await;
    wait_for(&mut app, "the new resource", |s| {
        s.resources.iter().any(|r| r.name == "Lab")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tunnel_routes(&ns).iter().any(|r| r == "10.99.0.0/16") {
        assert!(
            Instant::now() < deadline,
            "no route for the new resource: {:?}",
            tunnel_routes(&ns)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revoking the token signs the device out with a reason; everything is undone.
    world.portal.revoke(&token_id).await;
    let state = wait_for(&mut app, "signed out after revocation", |s| {
        matches!(s.session, SessionState::SignedOut { .. })
    })
    .await;
    let SessionState::SignedOut {
        reason: Some(reason),
    } = &state.session
    else {
        panic!("no reason given: {state:?}");
    };
    assert!(reason.contains("revoked"), "{reason}");
    assert_eq!(state.interface, None);
    assert!(state.resources.is_empty());
    assert!(!has_device(&ns), "ember0 left behind");
    assert_eq!(world.resolv_conf.current(), world.resolv_conf.original);

    // Signed in again with a new token, then out on request: the same clean slate.
    let (token, _) = world.portal.client_token().await;
    let again = sign_in(&mut app, &world.portal, &token).await;
    assert_eq!(
        again.interface.unwrap().ipv4,
        Some(ipv4),
        "stable tunnel address"
    );
    assert!(
        world
            .resolv_conf
            .current()
            .contains("nameserver 100.100.111.1")
    );
    assert_eq!(request(&mut app, 3, Request::SignOut).await, Reply::Done);
    let state = wait_for(&mut app, "signed out", |s| {
        s.session == (SessionState::SignedOut { reason: None })
    })
    .await;
    assert_eq!(state.interface, None);
    assert!(!has_device(&ns));
    assert!(tunnel_routes(&ns).is_empty());
    assert_eq!(world.resolv_conf.current(), world.resolv_conf.original);
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_next_start_restores_dns() {
    let Some(world) = world().await else {
        return;
    };
    let ns = world.client.ns.clone();
    let mut service = NsService::start(&ns, world.dir.path(), "resolv-conf", "debug");
    let mut app = service.app("dataplane test").await;
    let (token, _) = world.portal.client_token().await;
    sign_in(&mut app, &world.portal, &token).await;
    assert_eq!(resolve(&ns, "www.example.org"), vec![UPSTREAM_ANSWER]);
    assert!(
        world
            .resolv_conf
            .current()
            .contains("nameserver 100.100.111.1")
    );

    service.kill();
    drop(app);
    // The kernel removes the device (and its routes) with the process; the file stays ours,
    // which is what breaks DNS after a crash.
    assert!(!has_device(&ns));
    assert!(
        world
            .resolv_conf
            .current()
            .contains("nameserver 100.100.111.1")
    );

    let service = NsService::start(&ns, world.dir.path(), "resolv-conf", "debug");
    assert_eq!(world.resolv_conf.current(), world.resolv_conf.original);
    assert_eq!(resolve(&ns, "www.example.org"), vec![UPSTREAM_ANSWER]);
    // The app finds the service signed out and can sign in again with the token it keeps.
    let mut app = service.app("dataplane test").await;
    let state = sign_in(&mut app, &world.portal, &token).await;
    assert!(state.interface.is_some());
    assert!(
        world
            .resolv_conf
            .current()
            .contains("nameserver 100.100.111.1")
    );
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_outlives_a_portal_restart_and_a_network_change_reconnects_the_portal() {
    let Some(mut world) = world().await else {
        return;
    };
    let ns = world.client.ns.clone();
    let service = NsService::start(&ns, world.dir.path(), "resolv-conf", "debug");
    let mut app = service.app("dataplane test").await;
    let (token, _) = world.portal.client_token().await;
    let signed_in = sign_in(&mut app, &world.portal, &token).await;
    let proxy_ips = resolve(&ns, "app.corp.example");

    world.portal.shutdown().await;
    let state = wait_for(&mut app, "reconnecting", |s| {
        matches!(s.session, SessionState::PortalReconnecting { .. })
    })
    .await;
    assert_eq!(state.interface, signed_in.interface, "the tunnel stays up");
    // Meanwhile the stub keeps answering, from memory and from upstream.
    assert_eq!(resolve(&ns, "app.corp.example"), proxy_ips);
    assert_eq!(resolve(&ns, "www.example.org"), vec![UPSTREAM_ANSWER]);
    assert!(tunnel_routes(&ns).iter().any(|r| r == "10.77.0.0/16"));

    let addr = world.portal.addr();
    let listener = world
        .testbed
        .in_ns(&world.server.ns, || {
            std::net::TcpListener::bind(addr).unwrap()
        })
        .unwrap();
    world.portal.restart(listener).await;
    let state = wait_for(&mut app, "signed in again", |s| {
        matches!(s.session, SessionState::SignedIn { .. })
    })
    .await;
    assert_eq!(state.interface, signed_in.interface);
    assert_eq!(
        resolve(&ns, "app.corp.example"),
        proxy_ips,
        "stable for the session"
    );

    // A route appearing under the tunnel is a network change: connections start over and the
    // portal link is made anew.
    let log = || {
        std::fs::read_dir(world.dir.path().join("log"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<String>()
    };
    let handshakes = |log: &str| log.matches("Signed in resources").count();
    let before = handshakes(&log());
    ip(&ns, "route add 192.0.2.0/24 via 198.51.100.1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = log();
        if log.contains("The network changed") && handshakes(&log) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconnect after the network change:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The published state may not even change when the reconnect is quick; ask for it.
    let Reply::State { state } = request(&mut app, 9, Request::GetState).await else {
        panic!("no state");
    };
    assert!(
        matches!(state.session, SessionState::SignedIn { .. }),
        "{state:?}"
    );
    assert!(has_device(&ns));
    drop(service);
}
