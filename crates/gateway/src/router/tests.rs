use etherparse::{Icmpv4Type, PacketBuilder, icmpv4};

use super::*;
use crate::filter::Protocol;

const PEER: PeerId = PeerId(1);
const OTHER: PeerId = PeerId(2);
const CLIENT: [u8; 4] = [100, 64, 0, 7];
const CLIENT6: [u8; 16] = [
    0xfd, 0, 0x20, 0x21, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
];
const OTHER_CLIENT: [u8; 4] = [100, 64, 0, 8];
const WEB: [u8; 4] = [10, 77, 0, 10];
const NEIGHBOUR: [u8; 4] = [10, 77, 0, 11];
const PROXY_A: [u8; 4] = [100, 96, 0, 1];
const PROXY_B: [u8; 4] = [100, 96, 0, 2];
const PROXY_C: [u8; 4] = [100, 96, 0, 5];
const PROXY6: [u8; 16] = [
    0xfd, 0, 0x20, 0x21, 0x11, 0x11, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1,
];

fn addresses() -> Vec<IpAddr> {
    vec![IpAddr::from(CLIENT), IpAddr::from(CLIENT6)]
}

fn host(a: [u8; 4]) -> Prefix {
    Prefix::new(IpAddr::from(a), 32).unwrap()
}

fn key(resource: &str, domain: Option<&str>) -> GrantKey {
    GrantKey {
        resource_id: resource.into(),
        domain: domain.map(Into::into),
    }
}

fn http_only() -> Vec<Rule> {
    vec![Rule {
        protocol: Protocol::Tcp,
        ports: Some(80..=80),
    }]
}

/// The web server by IP, TCP/80 only.
fn cidr_grant() -> ResourceGrant {
    ResourceGrant {
        destinations: vec![host(WEB)],
        excluded: vec![],
        rules: http_only(),
        proxies: vec![],
    }
}

/// `web.corp.example` resolved to WEB; the client's proxies A and B (v4) and one v6 proxy
/// that has no IPv6 address to stand for.
fn dns_grant() -> ResourceGrant {
    ResourceGrant {
        destinations: vec![host(WEB)],
        excluded: vec![],
        rules: http_only(),
        proxies: vec![
            (IpAddr::from(PROXY_A), IpAddr::from(WEB)),
            (IpAddr::from(PROXY_B), IpAddr::from(WEB)),
        ],
    }
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1024)
        .write(&mut packet, b"GET /")
        .unwrap();
    packet
}

fn source(packet: &[u8]) -> [u8; 4] {
    packet[12..16].try_into().unwrap()
}

fn destination(packet: &[u8]) -> [u8; 4] {
    packet[16..20].try_into().unwrap()
}

/// A gateway where PEER (tunnel address CLIENT) may reach WEB by its address, HTTP only.
fn web_by_address() -> GatewayRouter {
    let mut router = GatewayRouter::new();
    router.set_grant(PEER, &addresses(), key("web", None), cidr_grant());
    router
}

/// [`web_by_address`], and OTHER (OTHER_CLIENT) has the same grant.
fn web_by_address_for_two_clients() -> GatewayRouter {
    let mut router = web_by_address();
    router.set_grant(
        OTHER,
        &[IpAddr::from(OTHER_CLIENT)],
        key("web", None),
        cidr_grant(),
    );
    router
}

/// A gateway where PEER reaches WEB by the name web.corp.example, through its proxy IPs.
fn web_by_name() -> GatewayRouter {
    let mut router = GatewayRouter::new();
    router.set_grant(
        PEER,
        &addresses(),
        key("web-dns", Some("web.corp.example")),
        dns_grant(),
    );
    router
}

#[test]
fn granted_traffic_passes_both_ways_unchanged() {
    let mut router = web_by_address();
    let mut request = tcp(CLIENT, WEB, 40000, 80);
    let sent = request.clone();
    assert!(router.inbound(PEER, &mut request));
    assert_eq!(request, sent);
    let mut reply = tcp(WEB, CLIENT, 80, 40000);
    assert_eq!(router.outbound(&mut reply), Some(PEER));
    assert_eq!(reply, tcp(WEB, CLIENT, 80, 40000));
    let stats = router.stats();
    assert_eq!((stats.inbound_forwarded, stats.outbound_forwarded), (1, 1));
}

#[test]
fn a_port_or_address_outside_the_grant_is_dropped_and_counted() {
    let mut router = web_by_address();
    assert!(!router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 22)));
    assert!(!router.inbound(PEER, &mut tcp(CLIENT, NEIGHBOUR, 40000, 80)));
    assert!(!router.inbound(PEER, &mut [0x45, 0, 0]));
    let stats = router.stats();
    assert_eq!(stats.dropped_not_allowed, 1);
    assert_eq!(stats.dropped_no_resource, 1);
    assert_eq!(stats.dropped_malformed, 1);
    assert_eq!(stats.inbound_forwarded, 0);
}

#[test]
fn a_client_cannot_send_as_another_client() {
    let mut router = web_by_address_for_two_clients();
    // PEER forges OTHER's address (which has the same grant): still dropped.
    assert!(!router.inbound(PEER, &mut tcp(OTHER_CLIENT, WEB, 40000, 80)));
    assert!(!router.inbound(PeerId(99), &mut tcp(CLIENT, WEB, 40000, 80)));
    assert_eq!(router.stats().dropped_spoofed, 2);
    assert!(router.inbound(OTHER, &mut tcp(OTHER_CLIENT, WEB, 40000, 80)));
}

#[test]
fn replies_go_to_the_client_with_that_tunnel_address_only() {
    let mut router = web_by_address_for_two_clients();
    assert_eq!(router.outbound(&mut tcp(WEB, CLIENT, 80, 1)), Some(PEER));
    assert_eq!(
        router.outbound(&mut tcp(WEB, OTHER_CLIENT, 80, 1)),
        Some(OTHER)
    );
    assert_eq!(router.outbound(&mut tcp(WEB, [100, 64, 0, 9], 80, 1)), None);
    assert_eq!(router.stats().dropped_no_client, 1);
}

#[test]
fn proxy_ips_are_translated_to_the_real_address_and_back() {
    let mut router = web_by_name();
    let mut request = tcp(CLIENT, PROXY_A, 40000, 80);
    assert!(router.inbound(PEER, &mut request));
    assert_eq!(request, tcp(CLIENT, WEB, 40000, 80));

    let mut reply = tcp(WEB, CLIENT, 80, 40000);
    assert_eq!(router.outbound(&mut reply), Some(PEER));
    assert_eq!(reply, tcp(PROXY_A, CLIENT, 80, 40000));

    // The filter checks the real destination: port 22 behind the proxy is still denied.
    let mut ssh = tcp(CLIENT, PROXY_A, 40001, 22);
    assert!(!router.inbound(PEER, &mut ssh));
    assert_eq!(router.stats().dropped_not_allowed, 1);
    assert_eq!(router.stats().inbound_translated, 1);
}

#[test]
fn each_flow_gets_replies_from_the_proxy_ip_it_used() {
    let mut router = web_by_name();
    // A second name resolving to the same address, with its own proxy IP.
    router.set_grant(
        PEER,
        &addresses(),
        key("web-dns", Some("www.corp.example")),
        ResourceGrant {
            proxies: vec![(IpAddr::from(PROXY_C), IpAddr::from(WEB))],
            ..dns_grant()
        },
    );
    for (proxy, port) in [(PROXY_B, 41000), (PROXY_C, 42000), (PROXY_A, 43000)] {
        assert!(router.inbound(PEER, &mut tcp(CLIENT, proxy, port, 80)));
    }
    for (proxy, port) in [(PROXY_A, 43000), (PROXY_B, 41000), (PROXY_C, 42000)] {
        let mut reply = tcp(WEB, CLIENT, 80, port);
        assert_eq!(router.outbound(&mut reply), Some(PEER));
        assert_eq!(source(&reply), proxy, "reply to port {port}");
    }
    assert_eq!(router.flows(), 3);
}

#[test]
fn idle_flows_are_forgotten_and_their_late_replies_are_not_rewritten() {
    let mut router = web_by_name();
    assert!(router.inbound(PEER, &mut tcp(CLIENT, PROXY_B, 41000, 80)));
    for _ in 0..FLOW_IDLE_TICKS - 1 {
        router.tick();
    }
    assert_eq!(router.flows(), 1);
    // Used again: stays.
    let mut reply = tcp(WEB, CLIENT, 80, 41000);
    router.outbound(&mut reply);
    assert_eq!(source(&reply), PROXY_B);
    router.tick();
    assert_eq!(router.flows(), 1);
    for _ in 0..FLOW_IDLE_TICKS {
        router.tick();
    }
    assert_eq!(router.flows(), 0);
    let mut reply = tcp(WEB, CLIENT, 80, 41000);
    assert_eq!(router.outbound(&mut reply), Some(PEER));
    assert_eq!(source(&reply), WEB);
}

#[test]
fn icmp_errors_about_translated_flows_are_translated_too() {
    let mut router = web_by_name();
    let mut request = tcp(CLIENT, PROXY_B, 41000, 80);
    assert!(router.inbound(PEER, &mut request));
    // A router on the LAN reports "fragmentation needed" about the translated packet.
    let mut error = Vec::new();
    PacketBuilder::ipv4([10, 77, 0, 1], CLIENT, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1200 },
        ))
        .write(&mut error, &request[..28])
        .unwrap();
    assert_eq!(router.outbound(&mut error), Some(PEER));
    // The outer source is the LAN router's, untouched; the quote names the proxy again.
    assert_eq!(source(&error), [10, 77, 0, 1]);
    assert_eq!(destination(&error[28..]), PROXY_B);
    let (header, rest) = etherparse::Ipv4Header::from_slice(&error).unwrap();
    assert_eq!(header.header_checksum, header.calc_header_checksum());
    let icmp = etherparse::Icmpv4Slice::from_slice(rest).unwrap();
    let recomputed = icmp.header().icmp_type.calc_checksum(icmp.payload());
    assert_eq!(icmp.checksum(), recomputed);
}

#[test]
fn a_proxy_ip_without_a_real_address_of_its_family_reaches_nothing() {
    let mut router = web_by_name();
    let mut packet = Vec::new();
    PacketBuilder::ipv6(CLIENT6, PROXY6, 64)
        .tcp(40000, 80, 1, 1024)
        .write(&mut packet, b"")
        .unwrap();
    assert!(!router.inbound(PEER, &mut packet));
    assert_eq!(router.stats().dropped_no_resource, 1);
}

#[test]
fn revoking_stops_the_flow_at_once_and_forgets_a_client_without_grants() {
    let mut router = web_by_address();
    router.set_grant(
        PEER,
        &addresses(),
        key("web-dns", Some("web.corp.example")),
        dns_grant(),
    );
    assert!(router.inbound(PEER, &mut tcp(CLIENT, PROXY_A, 40000, 80)));

    assert!(router.revoke(PEER, &["web-dns".into()]));
    assert!(!router.inbound(PEER, &mut tcp(CLIENT, PROXY_A, 40000, 80)));
    assert_eq!(router.flows(), 0);
    assert!(router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 80)));

    assert!(!router.revoke_grant(PEER, &key("web", None)));
    assert!(!router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 80)));
    assert_eq!(router.clients().count(), 0);
    assert_eq!(router.outbound(&mut tcp(WEB, CLIENT, 80, 40000)), None);
}

#[test]
fn revoking_everything_with_an_empty_list() {
    let mut router = web_by_address();
    router.set_grant(
        PEER,
        &addresses(),
        key("web-dns", Some("web.corp.example")),
        dns_grant(),
    );
    assert!(!router.revoke(PEER, &[]));
    assert!(!router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 80)));
    assert!(!router.revoke(PeerId(42), &[]));
}

#[test]
fn garbage_either_way_is_dropped_never_a_panic() {
    let mut router = web_by_name();
    let sample = tcp(CLIENT, PROXY_A, 40000, 80);
    for len in 0..sample.len() {
        let mut cut = sample[..len].to_vec();
        assert!(!router.inbound(PEER, &mut cut));
        let mut cut = tcp(WEB, CLIENT, 80, 40000)[..len].to_vec();
        assert_eq!(router.outbound(&mut cut), None);
    }
    for seed in 0..1000u32 {
        let mut bytes: Vec<u8> = (0..(seed % 80) as usize)
            .map(|i| ((i as u32).wrapping_mul(2654435761) ^ seed) as u8)
            .collect();
        let _ = router.inbound(PEER, &mut bytes.clone());
        let _ = router.outbound(&mut bytes);
    }
}

#[test]
fn a_reply_without_a_recorded_flow_is_not_rewritten() {
    // The client reaches the web server both by a CIDR resource (by IP) and by name.
    let mut router = web_by_address();
    router.set_grant(
        PEER,
        &addresses(),
        key("web-dns", Some("web.corp.example")),
        dns_grant(),
    );
    let mut by_ip = tcp(CLIENT, WEB, 40000, 80);
    assert!(router.inbound(PEER, &mut by_ip));
    assert_eq!(
        router.flows(),
        0,
        "a flow by the real address is not translated"
    );
    let mut reply = tcp(WEB, CLIENT, 80, 40000);
    assert_eq!(router.outbound(&mut reply), Some(PEER));
    assert_eq!(
        reply,
        tcp(WEB, CLIENT, 80, 40000),
        "the by-IP flow keeps its source"
    );

    // The flow by name next to it still gets its proxy IP back.
    assert!(router.inbound(PEER, &mut tcp(CLIENT, PROXY_B, 40001, 80)));
    let mut reply = tcp(WEB, CLIENT, 80, 40001);
    assert_eq!(router.outbound(&mut reply), Some(PEER));
    assert_eq!(source(&reply), PROXY_B);
}

/// An ICMP "port unreachable" from `from` to `to`, quoting the first bytes of `quoted`.
fn port_unreachable(from: [u8; 4], to: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut error = Vec::new();
    PacketBuilder::ipv4(from, to, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut error, &quoted[..28])
        .unwrap();
    error
}

#[test]
fn an_icmp_error_quoting_another_clients_packet_is_dropped() {
    let mut router = GatewayRouter::new();
    let icmp_and_http = ResourceGrant {
        rules: vec![],
        ..cidr_grant()
    };
    router.set_grant(PEER, &addresses(), key("web", None), icmp_and_http.clone());
    router.set_grant(
        OTHER,
        &[IpAddr::from(OTHER_CLIENT)],
        key("web", None),
        icmp_and_http,
    );
    // PEER claims the other client's reply from the web server could not be delivered: the
    // site's connection tracking would tear down OTHER's connection.
    let others_reply = tcp(WEB, OTHER_CLIENT, 80, 40000);
    let mut forged = port_unreachable(CLIENT, WEB, &others_reply);
    assert!(!router.inbound(PEER, &mut forged));
    // Quoting a packet of its own, but sending the error somewhere else than its source.
    let own_reply = tcp(NEIGHBOUR, CLIENT, 80, 40000);
    let mut misdirected = port_unreachable(CLIENT, WEB, &own_reply);
    assert!(!router.inbound(PEER, &mut misdirected));
    assert_eq!(router.stats().dropped_spoofed, 2);
    // An error about a packet the client itself received from the web server passes.
    let own_reply = tcp(WEB, CLIENT, 80, 40000);
    let mut honest = port_unreachable(CLIENT, WEB, &own_reply);
    assert!(router.inbound(PEER, &mut honest));
}

fn portal_resource(id: &str, address: ember_protocol::portal::ResourceAddress) -> ResourceGrant {
    let resource = ember_protocol::portal::Resource {
        id: id.into(),
        name: id.into(),
        address,
        address_description: None,
        site: ember_protocol::portal::SiteInfo {
            id: "site_1".into(),
            name: "Berlin".into(),
        },
        filters: vec![],
    };
    let gateway_public = IpAddr::from([203, 0, 113, 5]);
    crate::grants::resource_grant(&resource, &[], &[], &[gateway_public]).unwrap()
}

#[test]
fn the_internet_resource_does_not_reach_the_site_lan_or_metadata() {
    use ember_protocol::portal::ResourceAddress;

    let mut router = GatewayRouter::new();
    router.set_grant(
        PEER,
        &addresses(),
        key("internet", None),
        portal_resource("internet", ResourceAddress::Internet),
    );
    assert!(router.inbound(PEER, &mut tcp(CLIENT, [198, 51, 100, 7], 40000, 443)));
    for blocked in [
        WEB,                  // the site's LAN (RFC 1918)
        [172, 16, 3, 4],      // RFC 1918
        [192, 168, 1, 1],     // RFC 1918
        [169, 254, 169, 254], // the cloud metadata service
        [169, 254, 0, 1],     // link-local
        [127, 0, 0, 1],       // the gateway's loopback
        [100, 64, 0, 8],      // another client (CGNAT, the tunnel range)
        [203, 0, 113, 5],     // the gateway host's own address
    ] {
        assert!(
            !router.inbound(PEER, &mut tcp(CLIENT, blocked, 40000, 80)),
            "{blocked:?}"
        );
    }
    let mut to_ula = Vec::new();
    PacketBuilder::ipv6(
        CLIENT6,
        [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
        64,
    )
    .tcp(40000, 80, 1, 1024)
    .write(&mut to_ula, b"")
    .unwrap();
    assert!(!router.inbound(PEER, &mut to_ula));
    let mut to_link_local = Vec::new();
    PacketBuilder::ipv6(
        CLIENT6,
        [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        64,
    )
    .tcp(40000, 80, 1, 1024)
    .write(&mut to_link_local, b"")
    .unwrap();
    assert!(!router.inbound(PEER, &mut to_link_local));

    // A resource that names the LAN grants it, next to the internet resource.
    router.set_grant(
        PEER,
        &addresses(),
        key("lan", None),
        portal_resource(
            "lan",
            ResourceAddress::Cidr {
                cidr: "10.77.0.0/24".into(),
            },
        ),
    );
    assert!(router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 80)));
    assert!(!router.inbound(PEER, &mut tcp(CLIENT, [169, 254, 169, 254], 40000, 80)));
}
