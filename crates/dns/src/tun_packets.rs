//! DNS that travels as IP packets. The system resolver sends its queries to the sentinel
//! addresses, which are routed into the TUN device; the client answers them from the packets
//! themselves, without a socket on port 53, and wraps the upstream answers of forwarded
//! queries the same way.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ember_packet::{udp_packet, udp_parts};

use crate::{Outcome, StubResolver};

pub const DNS_PORT: u16 = 53;

/// What to do with a packet read from the TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intercepted {
    /// Not a DNS query to a sentinel: the data plane handles it.
    NotDns,
    /// Write this IP packet back into the TUN device.
    Reply(Vec<u8>),
    /// Send `query` to an upstream resolver; wrap its answer with `ember_packet::udp_packet`
    /// using `client` and `sentinel`.
    Forward {
        query: Vec<u8>,
        client: SocketAddr,
        sentinel: SocketAddr,
    },
    /// A query to a sentinel that deserves no answer (not even a DNS header).
    Dropped,
}

/// Answers or forwards a UDP DNS query addressed to one of `sentinels`.
pub fn intercept(
    stub: &mut StubResolver,
    sentinels: &[IpAddr],
    packet: &[u8],
    now: Instant,
) -> Intercepted {
    let Some((client, sentinel, query)) = udp_parts(packet) else {
        return Intercepted::NotDns;
    };
    if sentinel.port() != DNS_PORT || !sentinels.contains(&sentinel.ip()) {
        return Intercepted::NotDns;
    }
    match stub.handle_query(query, now) {
        Outcome::Answer(answer) => match udp_packet(sentinel, client, &answer) {
            Some(reply) => Intercepted::Reply(reply),
            None => Intercepted::Dropped,
        },
        Outcome::Forward => Intercepted::Forward {
            query: query.to_vec(),
            client,
            sentinel,
        },
        Outcome::Drop => Intercepted::Dropped,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::{DnsResource, ProxyRanges};

    const SENTINEL: IpAddr = IpAddr::V4(Ipv4Addr::new(100, 100, 111, 1));
    const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(100, 64, 0, 7)), 40000);

    fn stub() -> StubResolver {
        let mut stub = StubResolver::new(ProxyRanges::default());
        stub.set_resources(vec![DnsResource {
            id: "db".into(),
            pattern: "db.corp.example".parse().unwrap(),
        }]);
        stub
    }

    fn query_packet(name: &str, to: SocketAddr) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 42;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        udp_packet(CLIENT, to, &message.to_vec().unwrap()).unwrap()
    }

    #[test]
    fn a_resource_query_is_answered_with_a_packet_back_to_the_client() {
        let mut stub = stub();
        let packet = query_packet("db.corp.example.", SocketAddr::new(SENTINEL, 53));
        let Intercepted::Reply(reply) = intercept(&mut stub, &[SENTINEL], &packet, Instant::now())
        else {
            panic!("expected a reply");
        };
        let (from, to, payload) = udp_parts(&reply).unwrap();
        assert_eq!((from, to), (SocketAddr::new(SENTINEL, 53), CLIENT));
        let answer = Message::from_vec(payload).unwrap();
        assert_eq!(answer.metadata.id, 42);
        assert_eq!(answer.answers.len(), crate::PROXY_IPS_PER_NAME);
        // The kernel would drop a reply with a bad checksum; etherparse verifies it here.
        let sliced = SlicedPacket::from_ip(&reply).unwrap();
        let Some(TransportSlice::Udp(udp)) = sliced.transport else {
            panic!("not UDP");
        };
        let NetSlice::Ipv4(ip) = sliced.net.unwrap() else {
            panic!("not IPv4");
        };
        let expected = udp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
            .unwrap();
        assert_eq!(udp.checksum(), expected);
    }

    #[test]
    fn other_names_are_handed_back_for_forwarding_with_the_addresses_to_reply_with() {
        let mut stub = stub();
        let packet = query_packet("example.org.", SocketAddr::new(SENTINEL, 53));
        let Intercepted::Forward {
            query,
            client,
            sentinel,
        } = intercept(&mut stub, &[SENTINEL], &packet, Instant::now())
        else {
            panic!("expected a forward");
        };
        assert_eq!((client, sentinel), (CLIENT, SocketAddr::new(SENTINEL, 53)));
        assert_eq!(Message::from_vec(&query).unwrap().metadata.id, 42);
    }

    #[test]
    fn traffic_that_is_not_dns_to_a_sentinel_passes_through() {
        let mut stub = stub();
        let to_resource = query_packet("db.corp.example.", "10.0.0.5:53".parse().unwrap());
        assert_eq!(
            intercept(&mut stub, &[SENTINEL], &to_resource, Instant::now()),
            Intercepted::NotDns
        );
        let other_port = query_packet("db.corp.example.", SocketAddr::new(SENTINEL, 5353));
        assert_eq!(
            intercept(&mut stub, &[SENTINEL], &other_port, Instant::now()),
            Intercepted::NotDns
        );
        assert_eq!(
            intercept(&mut stub, &[SENTINEL], b"\x45garbage", Instant::now()),
            Intercepted::NotDns
        );
        assert_eq!(
            intercept(&mut stub, &[SENTINEL], &[], Instant::now()),
            Intercepted::NotDns
        );
    }
}
