//! ISSUE 5's ten end-to-end scenarios: the real `ember-tunnel` on a client host behind a NAT
//! router, the real `ember-gateway` behind another, the real portal and coturn on the
//! internet, a resource on the site LAN — and `curl` as the application. Root only; skipped
//! with a message otherwise. They need the binaries built first:
//! `cargo build -p ember-portal -p ember-gateway -p ember-tunnel-service`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use ember_e2e::{Error, Options, World, addr, portal};
use ember_protocol::ipc::{
    ConnectionPath, Request, ResourceState, ResourceView, SessionState, ViewState,
};
use ember_testbed::Nat;
use nix::sys::signal::Signal;

/// How long one `curl` may take for a resource through a working tunnel (generous: the
/// first request also sets the connection up, on a 2-core machine shared with builds).
const FIRST: Duration = Duration::from_secs(15);
/// For a request that must fail: long enough for a SYN and two retransmissions.
const REFUSED: Duration = Duration::from_secs(4);
/// The engine's goal for resuming after the NAT forgot an idle mapping is 1.5 s; twice that
/// leaves room for a loaded machine without hiding a timeout-based recovery (≥ 10 s).
const RESUME_BOUND: Duration = Duration::from_secs(3);
/// After both routers rebooted: the gateway's heartbeat interval (2 s), the dead path noticed
/// (under 1 s) and a new connection, with room for a loaded machine.
const REBOOT_BOUND: Duration = Duration::from_secs(5);
/// Issue 15's goal for traffic after a relay restart.
const RELAY_RESTART_BOUND: Duration = Duration::from_secs(5);

fn world(options: Options) -> Option<World> {
    match World::start(options) {
        Ok(world) => Some(world),
        Err(Error::NotRoot) => {
            ember_testbed::skip("the end-to-end scenarios need root");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn url(host: impl std::fmt::Display, path: &str) -> String {
    format!("http://{host}{path}")
}

fn resource<'a>(state: &'a ViewState, name: &str) -> &'a ResourceView {
    state
        .resources
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no resource {name} in {state:?}"))
}

/// The routes Ember adds on the client: the CIDR resource and the proxy range.
fn has_ember_routes(routes: &str) -> bool {
    routes.contains(addr::CIDR_RESOURCE) || routes.contains("100.96.0.0/11")
}

fn get_ok(world: &World, target: &str, max: Duration) -> ember_e2e::Fetched {
    let fetched = world
        .client_curl(target, max)
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    assert_eq!(fetched.status, 200, "{target}");
    fetched
}

// 1 -------------------------------------------------------------------------------------------

/// Between two endpoint-independent NATs the path ends direct: when the pair through the
/// gateway's relay answers first, the connection starts there and moves to the direct pair.
#[test]
fn a_cidr_resource_is_reached_through_a_direct_tunnel() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    let page = get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    assert_eq!(
        page.text(),
        format!("ember e2e resource {}:80\n", addr::RESOURCE)
    );
    eprintln!("first byte after {:.3} s (cold)", page.time_starttransfer);

    world
        .wait_for_state("a direct path", Duration::from_secs(10), |s| {
            resource(s, portal::LAN_SERVERS).path == Some(ConnectionPath::Direct)
        })
        .unwrap();
}

// 2 -------------------------------------------------------------------------------------------

#[test]
fn dns_resources_resolve_to_stable_proxy_ips_and_reach_their_hosts() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    let client = world.client.host.ns.clone();
    let (proxy_net, proxy_len) = addr::PROXY_RANGE_V4;
    let in_proxy_range =
        |ip: &std::net::Ipv4Addr| (u32::from(*ip) ^ u32::from(proxy_net)) >> (32 - proxy_len) == 0;

    let web = world.resolve(&client, addr::WEB_NAME).unwrap();
    assert!(!web.is_empty() && web.iter().all(in_proxy_range), "{web:?}");
    assert_eq!(
        world.resolve(&client, addr::WEB_NAME).unwrap(),
        web,
        "stable"
    );
    let page = get_ok(&world, &url(addr::WEB_NAME, "/"), FIRST);
    assert_eq!(
        page.text(),
        format!("ember e2e resource {}:80\n", addr::WEB)
    );

    // The wildcard: any name below apps.corp.example.
    for name in [addr::APPS_EXAMPLE_NAME, "deep.er.apps.corp.example"] {
        let ips = world.resolve(&client, name).unwrap();
        assert!(
            !ips.is_empty() && ips.iter().all(in_proxy_range),
            "{name}: {ips:?}"
        );
        let page = get_ok(&world, &url(name, "/"), FIRST);
        assert_eq!(
            page.text(),
            format!("ember e2e resource {}:80\n", addr::APPS)
        );
    }
}

#[test]
fn a_name_that_is_no_resource_still_resolves_upstream() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    let client = world.client.host.ns.clone();
    assert_ne!(
        world.client_resolv_conf().unwrap(),
        world.original_client_resolv_conf(),
        "the service points the system at its stub"
    );
    assert_eq!(
        world.resolve(&client, addr::PUBLIC_NAME).unwrap(),
        [world.portal_host.addr]
    );
    // A name of the corp zone that is no resource of Ada's is not answered by the stub (and
    // the upstream resolver does not know it).
    assert!(
        world
            .resolve(&client, addr::FINANCE_NAME)
            .unwrap()
            .is_empty()
    );
}

// 3 -------------------------------------------------------------------------------------------

#[test]
fn between_two_symmetric_nats_the_resource_is_reached_through_the_relay() {
    let options = Options::default().nats(Nat::Symmetric, Nat::Symmetric);
    let Some(world) = world(options) else { return };
    // Datagrams to or from coturn's relayed ports: the data path, not the TURN control traffic.
    world
        .testbed
        .nft(
            &world.relay_host.ns,
            "table ip e2e_relay {
                counter relayed {}
                chain input {
                    type filter hook input priority -300;
                    udp dport 49152-49999 counter name \"relayed\"
                }
                chain output {
                    type filter hook output priority -300;
                    udp sport 49152-49999 counter name \"relayed\"
                }
            }",
        )
        .unwrap();
    let page = get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    assert_eq!(
        page.text(),
        format!("ember e2e resource {}:80\n", addr::RESOURCE)
    );
    let relayed = world
        .nft_packets(&world.relay_host.ns, "e2e_relay", "relayed")
        .unwrap();
    assert!(
        relayed >= 10,
        "only {relayed} datagrams went through coturn"
    );
    // What the user sees: a pair with a relay candidate on either side is relayed.
    world
        .wait_for_state("a relayed path", Duration::from_secs(10), |s| {
            resource(s, portal::LAN_SERVERS).path == Some(ConnectionPath::Relayed)
        })
        .unwrap();
}

// 4 -------------------------------------------------------------------------------------------

#[test]
fn resources_without_a_policy_ports_outside_the_filter_and_crafted_packets_do_not_get_through() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    let client = world.client.host.ns.clone();
    // What arrives behind the gateway, counted where it would arrive.
    world
        .testbed
        .nft(
            &world.resource.ns,
            &format!(
                "table ip e2e_seen {{
                    counter finance {{}}
                    counter web_alt {{}}
                    counter lan_syn {{}}
                    chain input {{
                        type filter hook input priority -300;
                        ip daddr {finance} counter name \"finance\"
                        ip daddr {web} tcp dport {alt} counter name \"web_alt\"
                        ip daddr {res} tcp dport 80 tcp flags & (syn | ack) == syn counter name \"lan_syn\"
                    }}
                }}",
                finance = addr::FINANCE,
                web = addr::WEB,
                alt = addr::HTTP_ALT_PORT,
                res = addr::RESOURCE,
            ),
        )
        .unwrap();
    world
        .testbed
        .nft(
            &world.other.ns,
            "table ip e2e_seen {
                counter seen {}
                chain input {
                    type filter hook input priority -300;
                    counter name \"seen\"
                }
            }",
        )
        .unwrap();
    let seen = |ns: &str, name: &str| world.nft_packets(ns, "e2e_seen", name).unwrap();

    // The tunnel works for what Ada may use.
    get_ok(&world, &url(addr::WEB_NAME, "/"), FIRST);
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);

    // No policy: Finance is not even offered; port 8080 is outside Web's tcp/80 filter.
    let state = world.status().unwrap();
    assert!(
        state.resources.iter().all(|r| r.name != portal::FINANCE),
        "{state:?}"
    );
    assert!(
        world
            .client_curl(&url(addr::FINANCE, "/"), REFUSED)
            .is_err()
    );
    let alt = url(format!("{}:{}", addr::WEB_NAME, addr::HTTP_ALT_PORT), "/");
    assert!(world.client_curl(&alt, REFUSED).is_err());

    // Crafted: packets for other addresses behind the gateway pushed into the tunnel device,
    // and packets with a forged source for the granted resource.
    for target in [addr::OTHER, addr::FINANCE] {
        world
            .testbed
            .ip(&client, &format!("route replace {target}/32 dev ember0"))
            .unwrap();
        assert!(world.client_curl(&url(target, "/"), REFUSED).is_err());
    }
    let syns_before = seen(&world.resource.ns, "lan_syn");
    world
        .testbed
        .ip(&client, "addr add 192.0.2.77/32 dev lo")
        .unwrap();
    let forged = world.curl(
        &client,
        &url(addr::RESOURCE, "/"),
        REFUSED,
        &["--interface", "192.0.2.77"],
    );
    assert!(forged.is_err(), "{forged:?}");

    assert_eq!(seen(&world.resource.ns, "finance"), 0, "to Finance");
    assert_eq!(seen(&world.resource.ns, "web_alt"), 0, "to Web:8080");
    assert_eq!(seen(&world.other.ns, "seen"), 0, "to the other host");
    assert_eq!(
        seen(&world.resource.ns, "lan_syn"),
        syns_before,
        "forged source"
    );
}

// 5 -------------------------------------------------------------------------------------------

#[test]
fn a_download_completes_intact_over_ten_percent_loss_on_the_clients_wan() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    world.set_client_loss(10).unwrap();
    let client = world.client.host.ns.clone();
    let started = Instant::now();
    let sum = world
        .download(
            &client,
            &url(addr::RESOURCE, &format!("/{}", world.download.name)),
            Duration::from_secs(240),
            &[],
        )
        .unwrap();
    assert_eq!(sum, world.download.sha256);
    eprintln!(
        "20 MB over 10 % loss in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// 6 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "known gap, open issue 15 item 4: a TCP flow through a restarted gateway gets a reset. The client rejoins the site 0.25-0.5 s after the restart and data flows again for a moment, then the download is reset; where the reset comes from (the gateway host's conntrack and masquerade state across the restart is the suspect) is not found yet"]
fn a_download_survives_a_gateway_restart() {
    let Some(mut world) = world(Options::default()) else {
        return;
    };
    let client = world.client.host.ns.clone();
    let download = world
        .start_download(
            &client,
            &url(addr::RESOURCE, &format!("/{}", world.download.name)),
            &["--limit-rate", "2M", "--max-time", "180"],
        )
        .unwrap();
    ember_e2e::wait_until("3 MB to arrive", FIRST, || {
        Ok((download.received() > 3 << 20).then_some(()))
    })
    .unwrap();
    world.stop_gateway(Signal::SIGTERM);
    world.start_gateway().unwrap();
    assert_eq!(
        download.finish(Duration::from_secs(200)).unwrap(),
        world.download.sha256
    );
}

#[test]
fn the_tunnel_keeps_carrying_traffic_while_the_portal_is_down_and_the_client_reconnects() {
    let Some(mut world) = world(Options::default()) else {
        return;
    };
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);

    world.stop_portal(Signal::SIGKILL);
    world
        .wait_for_state("the portal to be missed", Duration::from_secs(40), |s| {
            matches!(s.session, SessionState::PortalReconnecting { .. })
        })
        .unwrap();
    let during = get_ok(&world, &url(addr::RESOURCE, "/"), Duration::from_secs(5));
    assert_eq!(
        during.text(),
        format!("ember e2e resource {}:80\n", addr::RESOURCE)
    );

    world.start_portal().unwrap();
    world
        .wait_for_state("the client to reconnect", Duration::from_secs(90), |s| {
            matches!(s.session, SessionState::SignedIn { .. })
        })
        .unwrap();
    world
        .wait_gateway_connected(Duration::from_secs(90))
        .unwrap();
    // A resource that needs a new grant from the portal.
    get_ok(&world, &url(addr::WEB_NAME, "/"), FIRST);
}

/// Both sides reach each other only through the relay. After coturn restarts (every
/// allocation gone, while it still answers bindings) the first request is answered within the
/// goal of 5 s: the dead path is noticed, the relays' allocations are found missing and made
/// again, and the connection is rebuilt on them.
#[test]
fn traffic_resumes_after_the_relay_restarts() {
    let options = Options::default().nats(Nat::Symmetric, Nat::Symmetric);
    let Some(mut world) = world(options) else {
        return;
    };
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    world.restart_relay().unwrap();
    let after = get_ok(&world, &url(addr::RESOURCE, "/"), Duration::from_secs(30));
    eprintln!(
        "first byte {:.3} s after the relay restarted",
        after.time_starttransfer
    );
    assert!(
        after.time_starttransfer <= RELAY_RESTART_BOUND.as_secs_f64(),
        "back after {:.3} s",
        after.time_starttransfer
    );
}

// 7 -------------------------------------------------------------------------------------------

#[test]
fn traffic_resumes_after_the_client_roams_to_a_new_address() {
    let Some(mut world) = world(Options::default()) else {
        return;
    };
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    world.roam_client().unwrap();
    let after = get_ok(&world, &url(addr::RESOURCE, "/"), Duration::from_secs(20));
    eprintln!("first byte {:.3} s after roaming", after.time_starttransfer);
}

// 8 -------------------------------------------------------------------------------------------

/// Both routers forget the idle UDP mappings (not the portal links' TCP, which heartbeats
/// keep alive): the first request after it is answered within the bound. When this test
/// flushed every mapping, TCP included, the gateway's portal link could not receive the new
/// grant until its next heartbeat re-opened its router's mapping: 7–8 s, the "4–8 s on real
/// routers" once listed as a gap; that is a router reboot, not a forgotten idle mapping.
#[test]
fn traffic_resumes_quickly_after_the_routers_forgot_an_idle_mapping() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    world.set_udp_timeouts(10).unwrap();
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    world
        .wait_for_state("the connection to go idle", Duration::from_secs(90), |s| {
            resource(s, portal::LAN_SERVERS).state == ResourceState::Idle
        })
        .unwrap();
    // Idle for longer than the routers remember, and to be sure: forget everything now.
    std::thread::sleep(Duration::from_secs(15));
    world.forget_udp_mappings().unwrap();

    let after = get_ok(&world, &url(addr::RESOURCE, "/"), Duration::from_secs(10));
    eprintln!(
        "first byte {:.3} s after the mapping was forgotten",
        after.time_starttransfer
    );
    assert!(
        after.time_starttransfer <= RESUME_BOUND.as_secs_f64(),
        "resumed after {:.3} s",
        after.time_starttransfer
    );
}

/// Both routers reboot (every mapping lost, the portal links' TCP too). The portal cannot
/// push the new grant down the gateway's portal link until the gateway's next heartbeat (every
/// 2 s to gateways) re-opens its router's mapping, so this takes longer than a forgotten idle
/// mapping, within the bound.
#[test]
fn traffic_resumes_after_both_routers_reboot() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    // Idle, so that only the client has a reason to send when it comes back.
    world
        .wait_for_state("the connection to go idle", Duration::from_secs(90), |s| {
            resource(s, portal::LAN_SERVERS).state == ResourceState::Idle
        })
        .unwrap();
    world.reboot_routers().unwrap();
    let after = get_ok(&world, &url(addr::RESOURCE, "/"), Duration::from_secs(20));
    eprintln!(
        "first byte {:.3} s after both routers rebooted",
        after.time_starttransfer
    );
    assert!(
        after.time_starttransfer <= REBOOT_BOUND.as_secs_f64(),
        "back after {:.3} s",
        after.time_starttransfer
    );
}

// 9 -------------------------------------------------------------------------------------------

#[test]
fn after_a_crash_the_next_start_restores_dns_and_routes_and_the_app_signs_in_again() {
    let Some(mut world) = world(Options::default()) else {
        return;
    };
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    assert_ne!(
        world.client_resolv_conf().unwrap(),
        world.original_client_resolv_conf()
    );
    assert!(has_ember_routes(&world.client_routes().unwrap()));

    world.stop_tunnel(Signal::SIGKILL);
    world.start_tunnel().unwrap();
    ember_e2e::wait_until("DNS to be restored", Duration::from_secs(10), || {
        Ok((world.client_resolv_conf()? == world.original_client_resolv_conf()).then_some(()))
    })
    .unwrap();
    let routes = world.client_routes().unwrap();
    assert!(!has_ember_routes(&routes), "{routes}");
    assert!(matches!(
        world.status().unwrap().session,
        SessionState::SignedOut { .. }
    ));

    world.sign_in_again().unwrap();
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    get_ok(&world, &url(addr::WEB_NAME, "/"), FIRST);
}

// 10 ------------------------------------------------------------------------------------------

#[test]
fn signing_out_removes_routes_and_dns_and_the_resource_becomes_unreachable() {
    let Some(mut world) = world(Options::default()) else {
        return;
    };
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);

    world.sign_out().unwrap();
    world
        .wait_for_state("signed out", Duration::from_secs(10), |s| {
            matches!(s.session, SessionState::SignedOut { .. })
        })
        .unwrap();
    assert_eq!(
        world.client_resolv_conf().unwrap(),
        world.original_client_resolv_conf()
    );
    let routes = world.client_routes().unwrap();
    assert!(!has_ember_routes(&routes), "{routes}");
    assert!(
        world
            .client_curl(&url(addr::RESOURCE, "/"), REFUSED)
            .is_err()
    );
    let client = world.client.host.ns.clone();
    assert!(world.resolve(&client, addr::WEB_NAME).unwrap().is_empty());
}

// The internet resource -----------------------------------------------------------------------

#[test]
fn the_internet_resource_carries_what_no_other_resource_covers_while_switched_on() {
    let Some(world) = world(Options::default()) else {
        return;
    };
    let website = url(
        format!("{}:{}", world.portal_host.addr, addr::PUBLIC_HTTP_PORT),
        "/",
    );
    world.block_client_tcp_port(addr::PUBLIC_HTTP_PORT).unwrap();
    let switch = |enabled: bool| {
        let id = resource(&world.status().unwrap(), portal::INTERNET)
            .id
            .clone();
        world
            .ipc(Request::SetResourceEnabled {
                resource_id: id,
                enabled,
            })
            .unwrap()
            .unwrap();
        world
            .wait_for_state("the switch", Duration::from_secs(10), |s| {
                resource(s, portal::INTERNET).enabled == Some(enabled)
            })
            .unwrap();
    };

    // Off by default: the client's own network decides, and it refuses the website.
    assert_eq!(
        resource(&world.status().unwrap(), portal::INTERNET).enabled,
        Some(false)
    );
    assert!(world.client_curl(&website, REFUSED).is_err());

    switch(true);
    let fetched = get_ok(&world, &website, FIRST);
    assert!(
        fetched.body.starts_with(b"ember e2e resource"),
        "{}",
        String::from_utf8_lossy(&fetched.body)
    );
    world
        .wait_for_state(
            "the internet resource in use",
            Duration::from_secs(10),
            |s| resource(s, portal::INTERNET).tx_bytes > 0,
        )
        .unwrap();
    // The other resources keep their own gateway path, and the portal link (a socket of the
    // service's own) is not pulled into the tunnel.
    get_ok(&world, &url(addr::RESOURCE, "/"), FIRST);
    assert!(matches!(
        world.status().unwrap().session,
        SessionState::SignedIn { .. }
    ));

    switch(false);
    assert!(world.client_curl(&website, REFUSED).is_err());
}
