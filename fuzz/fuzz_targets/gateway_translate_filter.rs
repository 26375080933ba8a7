//! Packets a client sends through its tunnel to the gateway, and replies from the site: the
//! router's filter and address translation (a DNS grant, so translation is on the path), and
//! the translation on its own with addresses the first byte picks. Nothing may panic, and a
//! translated packet reads back with the addresses it was given.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ember_engine::PeerId;
use ember_gateway::filter::{Protocol, Rule};
use ember_gateway::router::{GatewayRouter, GrantKey, ResourceGrant};
use ember_packet::translate::{Rewrite, rewrite, summarize};
use ember_io::routes::Prefix;
use libfuzzer_sys::fuzz_target;

const CLIENT_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(100, 64, 0, 2));
const CLIENT_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 2));
const PROXY_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(100, 96, 0, 1));
const REAL_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 40));
const PROXY_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0x8000, 0, 0, 0, 1));
const REAL_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x40));

fn router() -> GatewayRouter {
    let mut router = GatewayRouter::new();
    let prefix = |ip: IpAddr, len| Prefix::new(ip, len).expect("a valid prefix");
    let added = router.set_grant(
        PeerId(1),
        &[CLIENT_V4, CLIENT_V6],
        GrantKey {
            resource_id: "web".into(),
            domain: Some("web.corp.example".into()),
        },
        ResourceGrant {
            destinations: vec![prefix(REAL_V4, 32), prefix(REAL_V6, 128)],
            excluded: Vec::new(),
            rules: vec![
                Rule {
                    protocol: Protocol::Tcp,
                    ports: Some(80..=443),
                },
                Rule {
                    protocol: Protocol::Udp,
                    ports: None,
                },
                Rule {
                    protocol: Protocol::Icmp,
                    ports: None,
                },
            ],
            proxies: vec![(PROXY_V4, REAL_V4), (PROXY_V6, REAL_V6)],
        },
    );
    assert!(added);
    let added = router.set_grant(
        PeerId(1),
        &[CLIENT_V4, CLIENT_V6],
        GrantKey {
            resource_id: "lan".into(),
            domain: None,
        },
        ResourceGrant {
            destinations: vec![prefix(IpAddr::V4(Ipv4Addr::new(10, 30, 0, 0)), 16)],
            // A hole in the subnet, as the internet resource has for private ranges.
            excluded: vec![prefix(IpAddr::V4(Ipv4Addr::new(10, 30, 99, 0)), 24)],
            rules: Vec::new(),
            proxies: Vec::new(),
        },
    );
    assert!(added);
    router
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, packet)) = data.split_first() else {
        return;
    };
    let _ = summarize(packet);

    let mut router = router();
    let mut inbound = packet.to_vec();
    let _ = router.inbound(PeerId(1), &mut inbound);
    // The same bytes as a reply from the site, after the flow above may have been recorded.
    let mut outbound = packet.to_vec();
    let _ = router.outbound(&mut outbound);

    let pick = |bit: u8, v4: IpAddr, v6: IpAddr| match (control >> bit) & 3 {
        0 => None,
        2 => Some(v6),
        _ => Some(v4),
    };
    let wanted = Rewrite {
        source: pick(0, PROXY_V4, PROXY_V6),
        destination: pick(2, REAL_V4, REAL_V6),
        quoted_source: pick(4, REAL_V4, REAL_V6),
        quoted_destination: pick(6, PROXY_V4, PROXY_V6),
    };
    let mut translated = packet.to_vec();
    if rewrite(&mut translated, wanted).is_ok() {
        let after = summarize(&translated).expect("a translated packet still parses");
        if let Some(source) = wanted.source {
            assert_eq!(after.endpoints.source, source);
        }
        if let Some(destination) = wanted.destination {
            assert_eq!(after.endpoints.destination, destination);
        }
    }
});
