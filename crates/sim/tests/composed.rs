//! Simulated twins of the end-to-end scenarios: the client's whole state, gateways, relays and
//! the portal model in simulated time (`ember_sim::composed`). Each runs in milliseconds.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use ember_protocol::ipc::{ConnectionPath, ResourceState};
use ember_protocol::portal::{
    Filter, FilterProtocol, PortRange, Resource, ResourceAddress, SiteInfo,
};
use ember_sim::NatConfig;
use ember_sim::composed::{CLIENT_TUN, World, udp_packet};

const LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const DB_HOST: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 5);

fn cidr(id: &str, cidr: &str) -> Resource {
    Resource {
        id: id.into(),
        name: id.into(),
        address: ResourceAddress::Cidr { cidr: cidr.into() },
        address_description: None,
        site: SiteInfo {
            id: "site_berlin".into(),
            name: "Berlin".into(),
        },
        filters: Vec::new(),
    }
}

fn resources() -> Vec<Resource> {
    vec![cidr("lan", "10.0.0.0/24"), cidr("db", "10.9.0.0/24")]
}

/// A client and one gateway of site Berlin, both on public addresses, with one relay.
fn world(seed: u64) -> World {
    behind(seed, None)
}

/// The same with the client and the gateway each behind a NAT like `nat` (`None`: public).
fn behind(seed: u64, nat: Option<NatConfig>) -> World {
    let mut world = World::new(seed, resources(), nat);
    world.add_gateway("site_berlin", nat);
    world.add_relay();
    world
}

/// Both NATs forget every mapping, the client sends one packet: how long until the gateway
/// has it.
fn resume_after_both_nats_forget(world: &mut World) -> Duration {
    world.flush_client_nat();
    world.flush_gateway_nat(0);
    let sent = world.now;
    world.client_sends(LAN_HOST, 1);
    assert!(world.run_until_cond(Duration::from_secs(30), |w| w.received_at(0).contains(&1)));
    world.gateways[0].received.last().unwrap().0 - sent
}

/// Sends one packet to the LAN host and waits for it at the gateway.
fn connect(world: &mut World) {
    world.client_sends(LAN_HOST, 0);
    assert!(
        world.run_until_cond(Duration::from_secs(10), |w| w.received_at(0) == [0]),
        "the first packet arrives"
    );
}

fn view_state(world: &World, id: &str) -> Option<ResourceState> {
    world
        .client
        .views
        .iter()
        .find(|v| v.id == id)
        .map(|v| v.state)
}

#[test]
fn the_first_packets_to_a_resource_arrive_in_order_after_one_grant() {
    let mut world = world(1);
    let sent_at = world.now;
    for seq in 1..=3 {
        world.client_sends(LAN_HOST, seq);
    }
    assert!(world.run_until_cond(Duration::from_secs(5), |w| w.received_at(0).len() == 3));
    assert_eq!(world.received_at(0), [1, 2, 3], "none lost, none twice");
    assert_eq!(world.portal.grants, 1, "one request for all three");
    let first_byte = world.gateways[0].received[0].0 - sent_at;
    eprintln!("first packet at the gateway after {first_byte:?} (simulated)");
    assert!(first_byte < Duration::from_millis(500), "{first_byte:?}");

    world.gateway_reply(0, LAN_HOST, 42);
    assert!(world.run_until_cond(Duration::from_secs(1), |w| !w.client.tun.is_empty()));
    world.run_for(Duration::from_secs(2));
    assert_eq!(view_state(&world, "lan"), Some(ResourceState::Active));
}

#[test]
fn a_resource_no_policy_grants_gets_an_icmp_error_and_nothing_reaches_the_gateway() {
    let mut world = world(2);
    world.portal.forbidden.insert("db".into());
    world.client_sends(DB_HOST, 1);
    world.run_for(Duration::from_secs(1));
    assert!(world.received_at(0).is_empty());
    let (_, icmp) = world.client.tun.first().expect("an ICMP error");
    assert_eq!(icmp[9], 1, "ICMP");
    assert_eq!((icmp[20], icmp[21]), (3, 13), "administratively prohibited");
    assert_eq!(&icmp[16..20], &CLIENT_TUN.octets(), "back to the client");
    assert_eq!(view_state(&world, "db"), Some(ResourceState::Unreachable));
}

#[test]
fn traffic_flows_while_the_portal_is_down_and_new_resources_are_asked_for_when_it_returns() {
    let mut world = world(3);
    connect(&mut world);
    world.set_portal_up(false);
    world.client_sends(LAN_HOST, 1);
    world.client_sends(DB_HOST, 2);
    world.run_for(Duration::from_secs(3));
    assert_eq!(
        world.received_at(0),
        [0, 1],
        "the granted resource keeps working"
    );

    world.set_portal_up(true);
    assert!(
        world.run_until_cond(Duration::from_secs(5), |w| w.received_at(0).contains(&2)),
        "the held packet goes out once the portal is back"
    );
}

#[test]
fn a_restarted_gateway_is_reached_again_through_a_fresh_grant() {
    let mut world = world(4);
    connect(&mut world);
    world.restart_gateway(0);
    let restarted = world.now;
    // The application keeps talking, one packet every 100 ms.
    let mut seq = 1;
    while world.received_at(0).len() < 2 && world.now - restarted < Duration::from_secs(60) {
        world.client_sends(LAN_HOST, seq);
        seq += 1;
        world.run_for(Duration::from_millis(100));
    }
    let took = world.now - restarted;
    eprintln!("traffic resumed {took:?} after the gateway restarted (simulated)");
    assert!(world.received_at(0).len() >= 2, "traffic resumes");
    assert_eq!(world.portal.grants, 2, "through one fresh grant");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

/// A gateway that restarts is offline for a moment, and the portal says so at once; a request
/// in that moment is denied `offline`. In a download only the far side has something to send,
/// and nothing of it reaches the client: the client must ask again by itself, not wait for a
/// packet of its own.
#[test]
fn after_a_gateway_restart_the_client_rejoins_the_site_without_sending_anything() {
    let _log = ember_sim::logging::fail_on_error();
    let mut world = world(13);
    connect(&mut world);
    world.stop_gateway(0);
    world.run_for(Duration::from_millis(70));
    world.start_gateway(0);
    let restarted = world.now;
    assert!(
        world.run_until_cond(Duration::from_secs(10), |w| {
            w.portal.grants == 2 && view_state(w, "lan") == Some(ResourceState::Active)
        }),
        "no new grant without a packet from the client ({} grants)",
        world.portal.grants
    );
    let took = world.now - restarted;
    eprintln!("rejoined {took:?} after the gateway came back (simulated)");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn between_two_endpoint_independent_nats_the_path_is_direct() {
    let nat = NatConfig::friendly(Duration::from_secs(30));
    let mut world = behind(6, Some(nat));
    connect(&mut world);
    world.run_for(Duration::from_secs(5));
    let lan = world.client.views.iter().find(|v| v.id == "lan").unwrap();
    assert_eq!(lan.path, Some(ConnectionPath::Direct), "{lan:?}");
}

/// Links like the end-to-end world's network namespaces (microseconds; the portal a
/// millisecond away): the path ends direct in every run, as it does with 10 ms links.
#[test]
fn between_two_endpoint_independent_nats_on_fast_links_the_path_ends_direct_every_run() {
    let mut relayed = Vec::new();
    for seed in 0..16 {
        let nat = NatConfig::friendly(Duration::from_secs(30));
        let mut world = behind(100 + seed, Some(nat));
        world.signal_latency = Duration::from_millis(1);
        world.client_link().latency = Duration::from_micros(50);
        world.gateway_link(0).latency = Duration::from_micros(50);
        connect(&mut world);
        world.run_for(Duration::from_secs(5));
        let lan = world.client.views.iter().find(|v| v.id == "lan").unwrap();
        if lan.path != Some(ConnectionPath::Direct) {
            relayed.push((seed, lan.path));
        }
    }
    assert!(relayed.is_empty(), "not direct after 5 s: {relayed:?}");
}

/// The relayed pair answered first (here: a firewall lets only the relay through for the
/// first 300 ms): the connection starts relayed, keeps checking the direct pairs, and moves to
/// the direct path without losing a packet or asking the portal again.
#[test]
fn a_connection_that_came_up_relayed_upgrades_to_direct_without_a_gap() {
    let _log = ember_sim::logging::fail_on_error();
    let nat = NatConfig::friendly(Duration::from_secs(30));
    let mut world = behind(8, Some(nat));
    world.direct_blocked_until = Some(world.now + Duration::from_millis(300));
    connect(&mut world);
    let lan = world.client.views.iter().find(|v| v.id == "lan").unwrap();
    assert_eq!(lan.path, Some(ConnectionPath::Relayed), "{lan:?}");

    for seq in 1..=100 {
        world.client_sends(LAN_HOST, seq);
        world.run_for(Duration::from_millis(50));
    }
    world.run_for(Duration::from_secs(1));
    let lan = world.client.views.iter().find(|v| v.id == "lan").unwrap();
    assert_eq!(lan.path, Some(ConnectionPath::Direct), "{lan:?}");
    assert_eq!(world.received_at(0), (0..=100).collect::<Vec<_>>());
    assert_eq!(world.portal.grants, 1);
}

/// The end-to-end scenario's timing: routers that forget idle UDP after 10 s, the connection
/// idle (10 s without traffic) and 15 s more, then both routers flushed.
#[test]
fn after_a_short_idle_and_both_nats_flushed_traffic_resumes_within_the_goal() {
    let _log = ember_sim::logging::fail_on_error();
    let nat = NatConfig::friendly(Duration::from_secs(10));
    let mut world = behind(9, Some(nat));
    connect(&mut world);
    assert!(world.run_until_cond(Duration::from_secs(30), |w| {
        view_state(w, "lan") == Some(ResourceState::Idle)
    }));
    world.run_for(Duration::from_secs(15));
    let resumed = resume_after_both_nats_forget(&mut world);
    eprintln!("resumed {resumed:?} after a short idle and both NATs flushed (simulated)");
    assert!(
        resumed < Duration::from_millis(1500),
        "the goal: {resumed:?}"
    );
}

#[test]
fn after_both_nats_forgot_an_idle_mapping_traffic_resumes_within_seconds() {
    let _log = ember_sim::logging::fail_on_error();
    let nat = NatConfig::friendly(Duration::from_secs(30));
    let mut world = behind(7, Some(nat));
    connect(&mut world);
    world.run_for(Duration::from_secs(600));
    let resumed = resume_after_both_nats_forget(&mut world);
    eprintln!("resumed {resumed:?} after the NATs forgot the idle mapping (simulated)");
    assert!(
        resumed < Duration::from_millis(1500),
        "the goal: {resumed:?}"
    );
}

#[test]
fn a_port_outside_the_filter_and_a_forged_source_do_not_reach_the_site() {
    let mut lan = cidr("lan", "10.0.0.0/24");
    lan.filters = vec![Filter {
        protocol: FilterProtocol::Udp,
        ports: Some(PortRange {
            start: 443,
            end: 443,
        }),
    }];
    let mut world = World::new(8, vec![lan], None);
    world.add_gateway("site_berlin", None);
    world.client_sends_to_port(LAN_HOST, 443, 1);
    assert!(world.run_until_cond(Duration::from_secs(5), |w| w.received_at(0) == [1]));
    world.client_sends_to_port(LAN_HOST, 9, 2);
    let forged = Ipv4Addr::new(100, 64, 0, 99);
    world.client_sends_packet(udp_packet((forged, 40000), (LAN_HOST, 443), 3));
    world.client_sends_to_port(LAN_HOST, 443, 4);
    world.run_for(Duration::from_secs(2));
    assert_eq!(
        world.received_at(0),
        [1, 4],
        "port 9 and the forged source stop at the gateway"
    );
}

/// A DNS query for `name` (type A) from the client's resolver to the stub.
fn dns_query(name: &str) -> Vec<u8> {
    let mut query = vec![0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let stub = (ember_client::SENTINEL_V4, 53);
    ember_packet::udp_packet((CLIENT_TUN, 5353).into(), stub.into(), &query).unwrap()
}

#[test]
fn a_dns_resource_resolves_to_a_proxy_ip_that_the_gateway_translates_to_the_real_host() {
    let corp = Resource {
        address: ResourceAddress::Dns {
            pattern: "*.corp.example".into(),
        },
        ..cidr("corp", "0.0.0.0/32")
    };
    let mut world = World::new(9, vec![corp], None);
    world.add_gateway("site_berlin", None);
    world
        .portal
        .site_names
        .insert("db.corp.example".into(), vec![LAN_HOST.into()]);
    world.client_sends_packet(dns_query("db.corp.example"));
    let (_, answer) = world.client.tun.pop().expect("the stub answers at once");
    let proxy = Ipv4Addr::new(
        answer[answer.len() - 4],
        answer[answer.len() - 3],
        answer[answer.len() - 2],
        answer[answer.len() - 1],
    );
    assert_ne!(proxy, LAN_HOST, "a proxy IP, not the real address");

    world.client_sends(proxy, 1);
    assert!(world.run_until_cond(Duration::from_secs(5), |w| w.received_at(0) == [1]));
    let (_, at_site) = &world.gateways[0].received[0];
    assert_eq!(
        &at_site[16..20],
        &LAN_HOST.octets(),
        "translated to the real host"
    );

    world.gateway_reply(0, LAN_HOST, 2);
    assert!(world.run_until_cond(Duration::from_secs(1), |w| w.client.tun.len() == 1));
    let (_, reply) = &world.client.tun[0];
    assert_eq!(
        &reply[12..16],
        &proxy.octets(),
        "the reply comes from the proxy IP"
    );
}

#[test]
fn traffic_resumes_after_the_client_roams_to_a_new_network() {
    let nat = NatConfig::friendly(Duration::from_secs(30));
    let mut world = World::new(10, resources(), Some(nat));
    world.add_gateway("site_berlin", None);
    world.add_relay();
    connect(&mut world);
    world.move_client();
    let moved = world.now;
    let mut seq = 1;
    while !world.received_at(0).contains(&1) && world.now - moved < Duration::from_secs(30) {
        world.client_sends(LAN_HOST, seq);
        seq += 1;
        world.run_for(Duration::from_millis(100));
    }
    let took = world.now - moved;
    eprintln!("traffic resumed {took:?} after the client roamed (simulated)");
    assert!(world.received_at(0).len() >= 2, "traffic resumes");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn between_two_symmetric_nats_traffic_survives_a_relay_restart() {
    let _log = ember_sim::logging::fail_on_error();
    let nat = NatConfig::symmetric(Duration::from_secs(30));
    let mut world = behind(11, Some(nat));
    connect(&mut world);
    world.run_for(Duration::from_secs(2));
    let lan = world.client.views.iter().find(|v| v.id == "lan").unwrap();
    assert_eq!(lan.path, Some(ConnectionPath::Relayed), "{lan:?}");

    world.restart_relay(0);
    let restarted = world.now;
    let mut seq = 1;
    let before = world.received_at(0).len();
    while world.received_at(0).len() <= before && world.now - restarted < Duration::from_secs(60) {
        world.client_sends(LAN_HOST, seq);
        seq += 1;
        world.run_for(Duration::from_millis(100));
    }
    let took = world.now - restarted;
    eprintln!("traffic back {took:?} after the relay restarted (simulated)");
    assert!(world.received_at(0).len() > before, "traffic comes back");
    assert!(took < Duration::from_secs(5), "goal 5 s: {took:?}");
}

#[test]
fn ten_percent_loss_on_the_clients_link_loses_packets_but_never_the_connection() {
    let mut world = world(12);
    connect(&mut world);
    world.client_link().loss = 0.1;
    for seq in 1..=500 {
        world.client_sends(LAN_HOST, seq);
        world.run_for(Duration::from_millis(20));
    }
    world.run_for(Duration::from_secs(1));
    let arrived = world.received_at(0).len() - 1;
    eprintln!("{arrived} of 500 packets arrived over 10% loss (simulated)");
    assert!((400..500).contains(&arrived), "{arrived}");
    assert_eq!(world.portal.grants, 1, "the connection was never given up");
    assert_ne!(view_state(&world, "lan"), Some(ResourceState::Broken));
}
