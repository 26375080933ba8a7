//! What an application on the user's machine sends to the DNS stub, as the IP packet read
//! from the TUN device and as the bare query: answered, forwarded or dropped, never a panic;
//! an answer is a DNS message and its reply packet goes back to the asker.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ember_dns::tun_packets::{Intercepted, intercept};
use ember_dns::{DnsResource, Outcome, ProxyRanges, StubResolver};
use libfuzzer_sys::fuzz_target;

fn stub() -> StubResolver {
    let mut stub = StubResolver::new(ProxyRanges::default());
    stub.set_resources(
        [
            ("wiki", "wiki.corp.example"),
            ("apps", "*.apps.corp.example"),
            ("db", "db.?.corp.example"),
        ]
        .into_iter()
        .map(|(id, pattern)| DnsResource {
            id: id.into(),
            pattern: pattern.parse().expect("a valid pattern"),
        })
        .collect(),
    );
    stub
}

fuzz_target!(|data: &[u8]| {
    let sentinels = [
        IpAddr::V4(Ipv4Addr::new(100, 100, 111, 1)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0x8000, 0x100, 0x100, 0x111, 1)),
    ];
    let mut stub = stub();
    let now = Instant::now();
    match intercept(&mut stub, &sentinels, data, now) {
        Intercepted::Reply(reply) => assert!(!reply.is_empty()),
        Intercepted::NotDns | Intercepted::Forward { .. } | Intercepted::Dropped => {}
    }
    if let Outcome::Answer(answer) = stub.handle_query(data, now) {
        assert!(answer.len() >= 12, "an answer has at least a DNS header");
    }
});
