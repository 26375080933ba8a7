use ember_engine::PathInfo;
use ember_packet::udp_packet;
use ember_protocol::portal::SiteInfo;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ember_engine::{ConnectionState, ConnectionStats};
use ember_protocol::ipc::{ConnectionPath, ResourceState};
use ember_protocol::portal::ResourceAddress;

use crate::resources::fixed_routes;
use crate::views::resource_views;

/// The routes the resources need on top of the fixed ones.
fn resource_routes(router: &Routing) -> Vec<Prefix> {
    let fixed = fixed_routes();
    router
        .table
        .routes(true)
        .into_iter()
        .filter(|p| !fixed.contains(p))
        .collect()
}

const ME: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);
const KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

fn site(name: &str) -> SiteInfo {
    SiteInfo {
        id: format!("site_{name}"),
        name: name.into(),
    }
}

fn resource(id: &str, address: ResourceAddress, site_name: &str) -> Resource {
    Resource {
        id: id.into(),
        name: format!("Resource {id}"),
        address,
        address_description: None,
        site: site(site_name),
        filters: Vec::new(),
    }
}

fn cidr(id: &str, cidr: &str, site_name: &str) -> Resource {
    resource(id, ResourceAddress::Cidr { cidr: cidr.into() }, site_name)
}

fn dns(id: &str, pattern: &str, site_name: &str) -> Resource {
    resource(
        id,
        ResourceAddress::Dns {
            pattern: pattern.into(),
        },
        site_name,
    )
}

fn router() -> Routing {
    let mut router = Routing::new(true);
    router.handle_resources(&[
        cidr("lan", "10.20.0.0/16", "Berlin"),
        cidr("db-net", "10.20.5.0/24", "Paris"),
        resource(
            "host",
            ResourceAddress::Ip {
                ip: "10.30.0.1".parse().unwrap(),
            },
            "Berlin",
        ),
        dns("corp", "*.corp.example", "Berlin"),
    ]);
    router
}

fn udp(from: (IpAddr, u16), to: (IpAddr, u16), payload: &[u8]) -> Vec<u8> {
    udp_packet(SocketAddr::from(from), SocketAddr::from(to), payload).unwrap()
}

fn to(dst: &str, marker: u8) -> Vec<u8> {
    udp((ME.into(), 40000), (dst.parse().unwrap(), 9), &[marker])
}

fn from(src: &str) -> Vec<u8> {
    udp((src.parse().unwrap(), 9), (ME.into(), 40000), b"reply")
}

fn outputs(router: &mut Routing) -> Vec<Effect> {
    std::iter::from_fn(|| router.poll_effect()).collect()
}

/// Request id, resource, domain, proxy IPs, new connection.
type Asked = (u64, String, Option<String>, Vec<IpAddr>, bool);

fn requests(outputs: &[Effect]) -> Vec<Asked> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Effect::RequestAccess {
                request_id,
                resource_id,
                domain,
                proxy_ips,
                new_connection,
            } => Some((
                *request_id,
                resource_id.clone(),
                domain.clone(),
                proxy_ips.clone(),
                *new_connection,
            )),
            _ => None,
        })
        .collect()
}

fn grant(request_id: u64, resource_id: &str, domain: Option<&str>, gateway: &str) -> AccessGranted {
    AccessGranted {
        request_id,
        resource_id: resource_id.into(),
        domain: domain.map(Into::into),
        gateway: portal::PeerInfo {
            id: gateway.into(),
            public_key: KEY.into(),
            ipv4: Ipv4Addr::new(100, 64, 0, 1),
            ipv6: Ipv6Addr::LOCALHOST,
        },
        preshared_key: KEY.into(),
        local_ice: portal::IceCredentials {
            ufrag: "cl".into(),
            pwd: "client-password".into(),
        },
        remote_ice: portal::IceCredentials {
            ufrag: "gw".into(),
            pwd: "gateway-password".into(),
        },
    }
}

/// Grants `resource_id` after one packet to `dst`; returns the peer.
fn granted(
    router: &mut Routing,
    dst: &str,
    resource_id: &str,
    gateway: &str,
    now: Instant,
) -> PeerId {
    assert_eq!(router.outbound(&mut to(dst, 0), now), None);
    let asked = requests(&outputs(router));
    let [(id, resource, domain, _, _)] = asked.as_slice() else {
        panic!("expected one request, got {asked:?}");
    };
    assert_eq!(resource, resource_id);
    router.handle_access_granted(grant(*id, resource_id, domain.as_deref(), gateway), now);
    let out = outputs(router);
    let Some(Effect::Grant(grant)) = out.first() else {
        panic!("expected a grant first, got {out:?}");
    };
    grant.peer
}

fn query(name: &str, kind: RecordType) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 4242;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    udp(
        (ME.into(), 5353),
        (SENTINEL_V4.into(), 53),
        &message.to_vec().unwrap(),
    )
}

/// Resolves `name` through the stub and returns the A records.
fn resolve(router: &mut Routing, name: &str, now: Instant) -> Vec<Ipv4Addr> {
    assert_eq!(router.outbound(&mut query(name, RecordType::A), now), None);
    let out = outputs(router);
    let [Effect::WriteTun(reply)] = out.as_slice() else {
        panic!("expected an answer, got {out:?}");
    };
    let (src, dst) = addresses(reply).unwrap();
    assert_eq!((src, dst), (IpAddr::V4(SENTINEL_V4), IpAddr::V4(ME)));
    let message = Message::from_vec(&reply[28..]).unwrap();
    assert_eq!(message.metadata.id, 4242);
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn the_longest_prefix_picks_the_resource_and_only_one_request_goes_out() {
    let mut router = router();
    let now = Instant::now();
    for marker in 0..5 {
        assert_eq!(router.outbound(&mut to("10.20.5.9", marker), now), None);
    }
    assert_eq!(router.outbound(&mut to("10.20.9.9", 9), now), None);
    let asked = requests(&outputs(&mut router));
    let resources: Vec<(&str, bool)> = asked.iter().map(|r| (r.1.as_str(), r.4)).collect();
    // No connection to either site yet: fresh credentials, whatever a gateway still holds.
    assert_eq!(resources, vec![("db-net", true), ("lan", true)]);
    assert!(asked.iter().all(|r| r.2.is_none() && r.3.is_empty()));
    assert_eq!(
        router.outbound(&mut to("192.0.2.1", 0), now),
        None,
        "not a resource"
    );
    assert!(
        outputs(&mut router).is_empty(),
        "no request for a non-resource"
    );
}

#[test]
fn the_internet_resource_takes_only_what_no_other_resource_covers_and_only_while_on() {
    let mut router = router();
    let mut resources: Vec<Resource> = router.table.iter().cloned().collect();
    resources.push(resource("internet", ResourceAddress::Internet, "Exit"));
    router.handle_resources(&resources);
    let now = Instant::now();
    let view_of = |router: &Routing, id: &str| {
        resource_views(router, &HashMap::new())
            .into_iter()
            .find(|v| v.id == id)
            .unwrap()
    };
    let internet_view = |router: &Routing| view_of(router, "internet");

    // Only the internet resource can be switched: only its view carries a switch.
    assert!(internet_view(&router).enabled.is_some() && view_of(&router, "lan").enabled.is_none());
    assert_eq!(internet_view(&router).enabled, Some(false));
    assert!(!resource_routes(&router).iter().any(|p| p.is_empty()));
    assert_eq!(router.outbound(&mut to("203.0.113.9", 0), now), None);
    assert!(
        outputs(&mut router).is_empty(),
        "off: not the tunnel's business"
    );

    assert!(router.set_internet_enabled(true));
    assert!(
        !router.set_internet_enabled(true),
        "no change the second time"
    );
    assert_eq!(internet_view(&router).enabled, Some(true));
    let defaults: Vec<String> = resource_routes(&router)
        .iter()
        .filter(|p| p.is_empty())
        .map(ToString::to_string)
        .collect();
    assert_eq!(defaults.len(), 2, "{defaults:?}");
    router.outbound(&mut to("203.0.113.9", 0), now);
    router.outbound(&mut to("10.20.5.9", 1), now);
    let asked: Vec<String> = requests(&outputs(&mut router))
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(asked, ["internet", "db-net"], "more specific resources win");

    assert!(router.set_internet_enabled(false));
    assert!(!resource_routes(&router).iter().any(|p| p.is_empty()));
}

#[test]
fn a_site_with_a_connection_shares_its_credentials_and_one_without_asks_for_new_ones() {
    let mut router = router();
    let now = Instant::now();
    granted(&mut router, "10.20.9.9", "lan", "gw-berlin", now);
    // `host` is in Berlin too: the connection that exists serves it.
    router.outbound(&mut to("10.30.0.1", 0), now);
    let asked = requests(&outputs(&mut router));
    assert_eq!(asked.len(), 1);
    assert!(!asked[0].4, "{asked:?}");
    // After a portal reconnect, the grant that works is asked for as it is.
    router.handle_portal_connected(now);
    let asked = requests(&outputs(&mut router));
    assert!(asked.iter().all(|r| !r.4), "{asked:?}");
}

#[test]
fn held_packets_are_released_in_order_after_the_grant() {
    let mut router = router();
    let now = Instant::now();
    for marker in 0..3 {
        assert_eq!(router.outbound(&mut to("10.30.0.1", marker), now), None);
    }
    let asked = requests(&outputs(&mut router));
    assert_eq!(asked.len(), 1);
    router.handle_access_granted(grant(asked[0].0, "host", None, "gw-berlin-1"), now);
    let out = outputs(&mut router);
    let [Effect::Grant(grant), Effect::SendPackets { peer, packets }] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(*peer, grant.peer);
    assert_eq!(grant.preshared_key.len(), 32);
    let markers: Vec<u8> = packets.iter().map(|p| p[28]).collect();
    assert_eq!(markers, vec![0, 1, 2]);
    assert_eq!(router.outbound(&mut to("10.30.0.1", 3), now), Some(*peer));
    assert!(outputs(&mut router).is_empty());
}

#[test]
fn held_packets_are_bounded_and_the_oldest_go_first() {
    let mut router = router();
    let now = Instant::now();
    for i in 0..(HELD_PER_RESOURCE + 10) {
        let mut packet = udp(
            (ME.into(), 40000),
            ("10.30.0.1".parse().unwrap(), 9),
            &(i as u32).to_be_bytes(),
        );
        router.outbound(&mut packet, now);
    }
    let asked = requests(&outputs(&mut router));
    assert_eq!(asked.len(), 1);
    router.handle_access_granted(grant(asked[0].0, "host", None, "gw"), now);
    let Some(Effect::SendPackets { packets, .. }) = outputs(&mut router).into_iter().nth(1) else {
        panic!("no packets released");
    };
    assert_eq!(packets.len(), HELD_PER_RESOURCE);
    assert_eq!(
        u32::from_be_bytes(packets[0][28..32].try_into().unwrap()),
        10
    );
}

#[test]
fn resources_of_one_site_share_a_peer_and_sites_get_their_own() {
    let mut router = router();
    let now = Instant::now();
    let lan = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    let host = granted(&mut router, "10.30.0.1", "host", "gw-berlin", now);
    let paris = granted(&mut router, "10.20.5.1", "db-net", "gw-paris", now);
    assert_eq!(lan, host);
    assert_ne!(lan, paris);
    assert_eq!(router.peer_of_gateway("gw-paris"), Some(paris));
    assert_eq!(router.gateway_of(lan), Some("gw-berlin"));
}

#[test]
fn a_new_gateway_for_a_site_replaces_the_old_peer_and_its_grants() {
    let mut router = router();
    let now = Instant::now();
    let old = granted(&mut router, "10.20.1.1", "lan", "gw-berlin-1", now);
    router.outbound(&mut to("10.30.0.1", 0), now);
    let asked = requests(&outputs(&mut router));
    router.handle_access_granted(grant(asked[0].0, "host", None, "gw-berlin-2"), now);
    let out = outputs(&mut router);
    assert!(
        matches!(out.first(), Some(Effect::RemovePeer(p)) if *p == old),
        "{out:?}"
    );
    let Some(Effect::Grant(new)) = out.get(1) else {
        panic!("{out:?}");
    };
    assert_ne!(new.peer, old);
    // The LAN went through the old gateway: it asks again.
    assert_eq!(router.outbound(&mut to("10.20.1.1", 0), now), None);
    assert_eq!(requests(&outputs(&mut router)).len(), 1);
}

#[test]
fn dns_resource_names_get_proxy_ips_and_their_packets_ask_with_the_name() {
    let mut router = router();
    let now = Instant::now();
    let ips = resolve(&mut router, "app.corp.example.", now);
    assert_eq!(ips.len(), ember_dns::PROXY_IPS_PER_NAME);
    assert!(ips.iter().all(|ip| ip.octets()[..2] == [100, 96]));

    router.outbound(&mut to(&ips[1].to_string(), 0), now);
    let asked = requests(&outputs(&mut router));
    let [(id, resource, domain, proxy_ips, true)] = asked.as_slice() else {
        panic!("{asked:?}");
    };
    assert_eq!(
        (resource.as_str(), domain.as_deref()),
        ("corp", Some("app.corp.example"))
    );
    assert_eq!(proxy_ips.len(), 2 * ember_dns::PROXY_IPS_PER_NAME);
    assert!(ips.iter().all(|ip| proxy_ips.contains(&IpAddr::V4(*ip))));

    router.handle_access_granted(grant(*id, "corp", domain.as_deref(), "gw"), now);
    let out = outputs(&mut router);
    let Some(Effect::Grant(g)) = out.first() else {
        panic!("{out:?}");
    };
    assert_eq!(
        router.outbound(&mut to(&ips[3].to_string(), 1), now),
        Some(g.peer)
    );

    // Another name under the same wildcard needs its own grant.
    let other = resolve(&mut router, "wiki.corp.example.", now);
    assert_eq!(
        router.outbound(&mut to(&other[0].to_string(), 0), now),
        None
    );
    let asked = requests(&outputs(&mut router));
    assert_eq!(asked[0].2.as_deref(), Some("wiki.corp.example"));
}

#[test]
fn other_names_are_forwarded_and_other_sentinel_traffic_is_dropped() {
    let mut router = router();
    let now = Instant::now();
    router.outbound(&mut query("example.org.", RecordType::A), now);
    let out = outputs(&mut router);
    let [
        Effect::ForwardDns {
            client,
            sentinel,
            query,
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}");
    };
    assert_eq!(*client, SocketAddr::from((ME, 5353)));
    assert_eq!(*sentinel, SocketAddr::from((SENTINEL_V4, 53)));
    assert_eq!(Message::from_vec(query).unwrap().metadata.id, 4242);

    assert_eq!(router.outbound(&mut to("100.100.111.1", 0), now), None);
    assert_eq!(router.outbound(&mut to("100.100.111.9", 0), now), None);
    assert!(outputs(&mut router).is_empty());
}

#[test]
fn a_denial_makes_the_resource_unreachable_drops_held_packets_and_waits_before_asking_again() {
    let mut router = router();
    let now = Instant::now();
    router.outbound(&mut to("10.20.5.1", 0), now);
    let asked = requests(&outputs(&mut router));
    router.handle_access_denied(
        asked[0].0,
        "db-net",
        true,
        "all gateways of Paris are offline".into(),
        now,
    );
    let view = resource_views(&router, &HashMap::new())
        .into_iter()
        .find(|v| v.id == "db-net")
        .unwrap();
    assert_eq!(view.state, ResourceState::Unreachable);
    assert_eq!(
        view.reason.as_deref(),
        Some("all gateways of Paris are offline")
    );
    // The held packet is dropped; its sender learns at once.
    let out = outputs(&mut router);
    let [Effect::WriteTun(icmp)] = out.as_slice() else {
        panic!("expected one ICMP error, got {out:?}");
    };
    assert_prohibited(icmp, "10.20.5.1");

    router.outbound(&mut to("10.20.5.1", 1), now + Duration::from_secs(1));
    let out = outputs(&mut router);
    assert!(
        matches!(out.as_slice(), [Effect::WriteTun(icmp)] if addresses(icmp).is_some()),
        "no request storm, only an ICMP error: {out:?}"
    );
    router.outbound(&mut to("10.20.5.1", 2), now + RETRY_AFTER_DENIAL);
    assert_eq!(requests(&outputs(&mut router)).len(), 1);
}

fn assert_prohibited(icmp: &[u8], from: &str) {
    let sliced = etherparse::SlicedPacket::from_ip(icmp).unwrap();
    let (src, dst) = addresses(icmp).unwrap();
    assert_eq!((src, dst), (from.parse().unwrap(), IpAddr::V4(ME)));
    let Some(etherparse::TransportSlice::Icmpv4(header)) = sliced.transport else {
        panic!("not ICMPv4");
    };
    assert_eq!((header.type_u8(), header.code_u8()), (3, 13));
    // A checksum the kernel accepts.
    assert_eq!(
        header.checksum(),
        header.header().icmp_type.calc_checksum(header.payload())
    );
}

#[test]
fn icmp_errors_are_never_answered_with_icmp_errors() {
    let unreachable = prohibited(&to("10.20.5.1", 0)).unwrap();
    assert_eq!(prohibited(&unreachable), None);
    let echo =
        etherparse::PacketBuilder::ipv4(ME.octets(), [10, 20, 5, 1], 64).icmpv4_echo_request(1, 1);
    let mut ping = Vec::new();
    echo.write(&mut ping, b"ping").unwrap();
    assert!(
        prohibited(&ping).is_some(),
        "a ping learns it is prohibited"
    );
    let v6 = udp(
        ("fd00::1".parse().unwrap(), 1),
        ("fd00:2021:1111:8000::5".parse().unwrap(), 2),
        &[0; 2000],
    );
    let error = prohibited(&v6).unwrap();
    assert_eq!(error.len(), 1280, "an ICMPv6 error fits the minimum MTU");
}

#[test]
fn an_unanswered_request_is_sent_again_after_its_timeout() {
    let mut router = router();
    let now = Instant::now();
    router.outbound(&mut to("10.30.0.1", 0), now);
    let first = requests(&outputs(&mut router));
    router.outbound(&mut to("10.30.0.1", 1), now + REQUEST_TIMEOUT);
    let second = requests(&outputs(&mut router));
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].0, second[0].0);
    // The late answer to the first request still counts as a grant, and both packets go.
    router.handle_access_granted(grant(second[0].0, "host", None, "gw"), now);
    let Some(Effect::SendPackets { packets, .. }) = outputs(&mut router).into_iter().nth(1) else {
        panic!("nothing released");
    };
    assert_eq!(packets.len(), 2);
}

#[test]
fn only_sources_granted_through_a_peer_may_enter() {
    let mut router = router();
    let now = Instant::now();
    let berlin = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    let paris = granted(&mut router, "10.20.5.1", "db-net", "gw-paris", now);
    assert!(router.inbound(berlin, &mut from("10.20.1.1")));
    assert!(router.inbound(paris, &mut from("10.20.5.200")));
    // Paris serves 10.20.5.0/24; Berlin may not answer for it, nor for a host it was not
    // granted, nor for anything else.
    assert!(!router.inbound(berlin, &mut from("10.20.5.200")));
    assert!(!router.inbound(paris, &mut from("10.20.1.1")));
    assert!(!router.inbound(berlin, &mut from("10.30.0.1")));
    assert!(!router.inbound(berlin, &mut from("192.0.2.1")));
    assert!(!router.inbound(berlin, &mut [0x45, 0, 0]));

    let ips = resolve(&mut router, "app.corp.example.", now);
    let other = resolve(&mut router, "wiki.corp.example.", now);
    router.outbound(&mut to(&ips[0].to_string(), 0), now);
    let asked = requests(&outputs(&mut router));
    router.handle_access_granted(
        grant(asked[0].0, "corp", asked[0].2.as_deref(), "gw-berlin"),
        now,
    );
    outputs(&mut router);
    assert!(router.inbound(berlin, &mut from(&ips[2].to_string())));
    assert!(!router.inbound(paris, &mut from(&ips[2].to_string())));
    assert!(
        !router.inbound(berlin, &mut from(&other[0].to_string())),
        "a name that was not granted"
    );
}

#[test]
fn a_failed_connection_asks_once_for_a_new_one() {
    let mut router = router();
    let now = Instant::now();
    let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    router.handle_connection_failed(peer, FailureReason::PathDead);
    router.handle_connection_needed(peer);
    let asked = requests(&outputs(&mut router));
    let [(id, resource, None, _, true)] = asked.as_slice() else {
        panic!("{asked:?}");
    };
    assert_eq!(resource, "lan");
    let views = resource_views(&router, &HashMap::new());
    let lan = views.iter().find(|v| v.id == "lan").unwrap();
    assert_eq!(lan.state, ResourceState::Broken);
    assert!(lan.reason.is_some());

    router.handle_access_granted(grant(*id, "lan", None, "gw-berlin"), now);
    let out = outputs(&mut router);
    assert!(
        matches!(out.as_slice(), [Effect::Grant(g)] if g.peer == peer),
        "{out:?}"
    );
    router.handle_connection_failed(peer, FailureReason::Replaced);
    assert!(
        outputs(&mut router).is_empty(),
        "a replaced connection needs nothing"
    );
}

#[test]
fn an_offline_gateway_is_removed_and_its_grants_are_asked_for_again_at_once() {
    let mut router = router();
    let now = Instant::now();
    let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    router.handle_gateway_offline("gw-berlin", now);
    let out = outputs(&mut router);
    assert!(
        matches!(out.first(), Some(Effect::RemovePeer(p)) if *p == peer),
        "{out:?}"
    );
    assert_eq!(requests(&out).len(), 1, "{out:?}");
    // A packet meanwhile is held for that request's answer, not asked for twice.
    assert_eq!(router.outbound(&mut to("10.20.1.1", 0), now), None);
    assert!(requests(&outputs(&mut router)).is_empty());
    assert!(!router.inbound(peer, &mut from("10.20.1.1")));
}

/// A restarting gateway: the site is offline for a moment. Nobody may send a packet (the far
/// side of a download retransmits into the void), so the client keeps asking, backing off,
/// until a gateway answers.
#[test]
fn a_site_whose_gateway_went_offline_is_asked_for_again_with_a_backoff_until_granted() {
    let mut router = router();
    let now = Instant::now();
    granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    router.handle_gateway_offline("gw-berlin", now);
    let mut asked = requests(&outputs(&mut router));
    let mut at = now;
    let mut waits = Vec::new();
    for _ in 0..4 {
        router.handle_access_denied(asked[0].0, "lan", true, "offline".into(), at);
        let next = router.next_rejoin().expect("asked again later");
        waits.push(next - at);
        assert!(requests(&outputs(&mut router)).is_empty(), "not before");
        at = next;
        router.handle_rejoin_timeout(at);
        asked = requests(&outputs(&mut router));
        assert_eq!(asked.len(), 1);
    }
    assert_eq!(waits, [250, 500, 1000, 2000].map(Duration::from_millis));
    router.handle_access_granted(grant(asked[0].0, "lan", None, "gw-berlin-2"), at);
    assert_eq!(router.next_rejoin(), None, "granted: no more asking");
}

#[test]
fn a_denial_other_than_offline_ends_the_rejoining() {
    let mut router = router();
    let now = Instant::now();
    granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    router.handle_gateway_offline("gw-berlin", now);
    let asked = requests(&outputs(&mut router));
    router.handle_access_denied(asked[0].0, "lan", false, "no policy".into(), now);
    assert_eq!(router.next_rejoin(), None);
}

#[test]
fn a_removed_resource_loses_its_grant_and_an_unused_peer_goes() {
    let mut router = router();
    let now = Instant::now();
    let peer = granted(&mut router, "10.30.0.1", "host", "gw-berlin", now);
    router.outbound(&mut to("10.20.1.1", 0), now);
    outputs(&mut router);
    router.handle_resources(&[cidr("lan", "10.20.0.0/16", "Berlin")]);
    let out = outputs(&mut router);
    assert!(
        matches!(out.as_slice(), [Effect::RemovePeer(p)] if *p == peer),
        "{out:?}"
    );
    assert_eq!(router.outbound(&mut to("10.30.0.1", 0), now), None);
    assert!(outputs(&mut router).is_empty(), "no longer a resource");
    let routes = resource_routes(&router);
    assert_eq!(
        routes,
        vec![Prefix::new("10.20.0.0".parse().unwrap(), 16).unwrap()]
    );
}

#[test]
fn after_the_portal_reconnects_grants_and_open_requests_are_asked_again() {
    let mut router = router();
    let now = Instant::now();
    let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    router.outbound(&mut to("10.30.0.1", 0), now);
    outputs(&mut router);
    router.handle_portal_connected(now);
    let asked = requests(&outputs(&mut router));
    let mut resources: Vec<&str> = asked.iter().map(|r| r.1.as_str()).collect();
    resources.sort();
    assert_eq!(resources, vec!["host", "lan"]);
    // Traffic keeps flowing meanwhile.
    assert_eq!(router.outbound(&mut to("10.20.1.1", 0), now), Some(peer));
    let lan = asked.iter().find(|r| r.1 == "lan").unwrap();
    router.handle_access_granted(grant(lan.0, "lan", None, "gw-berlin"), now);
    assert!(matches!(outputs(&mut router).as_slice(), [Effect::Grant(g)] if g.peer == peer));
}

#[test]
fn views_show_the_engines_state_path_rtt_and_bytes() {
    let mut router = router();
    let now = Instant::now();
    let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
    let stats = ConnectionStats {
        state: ConnectionState::Active,
        path: Some(PathInfo {
            local: "198.51.100.2:5000".parse().unwrap(),
            remote: "198.51.100.3:5000".parse().unwrap(),
            relayed: true,
        }),
        through_relay: true,
        rtt: Some(Duration::from_millis(23)),
        tx_packets: 3,
        tx_bytes: 300,
        rx_packets: 2,
        rx_bytes: 200,
        last_handshake: None,
    };
    let views = resource_views(&router, &HashMap::from([(peer, stats)]));
    let lan = views.iter().find(|v| v.id == "lan").unwrap();
    assert_eq!(lan.state, ResourceState::Active);
    assert_eq!(lan.path, Some(ConnectionPath::Relayed));
    assert_eq!(
        (lan.rtt_ms, lan.rx_bytes, lan.tx_bytes),
        (Some(23), 200, 300)
    );
    assert_eq!(lan.site, "Berlin");
    assert_eq!(lan.address, "10.20.0.0/16");
    let corp = views.iter().find(|v| v.id == "corp").unwrap();
    assert_eq!(
        (corp.state, corp.address.as_str()),
        (ResourceState::Unknown, "*.corp.example")
    );
}

#[test]
fn garbage_from_either_side_is_dropped_without_a_panic() {
    let mut router = router();
    let now = Instant::now();
    for len in 0..64u8 {
        let mut packet: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ len).collect();
        if let Some(first) = packet.first_mut() {
            *first = if len % 2 == 0 { 0x45 } else { 0x60 };
        }
        let _ = router.outbound(&mut packet.clone(), now);
        assert!(!router.inbound(PeerId(1), &mut packet));
    }
}
