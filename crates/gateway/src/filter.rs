//! The gateway's packet filter: what a client may send, checked per packet.
//!
//! A packet from the tunnel passes only if its source is the tunnel address of a client with
//! grants, its destination lies in one of that client's granted resources, and its protocol
//! and destination port match that resource's rules (no rules: everything). Anything else is
//! dropped and counted, never forwarded.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ember_io::routes::Prefix;
use etherparse::{IpNumber, NetSlice, SlicedPacket, TransportSlice};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

/// One allowed protocol, with an inclusive port range (`None`: every port; ignored for ICMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub protocol: Protocol,
    pub ports: Option<RangeInclusive<u16>>,
}

/// One grant of a client: a resource, or for DNS resources one name of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantKey {
    pub resource_id: String,
    pub domain: Option<String>,
}

/// A resource as the gateway enforces it: where it is and what may reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedResource {
    pub id: String,
    /// The resource's addresses; for a DNS resource, the addresses its name resolved to here.
    pub destinations: Vec<Prefix>,
    /// Addresses inside `destinations` this resource does not reach (the internet resource's
    /// private and link-local ranges); another resource may still grant them.
    pub excluded: Vec<Prefix>,
    /// Empty: every protocol and port.
    pub rules: Vec<Rule>,
}

impl GrantedResource {
    fn reaches(&self, ip: IpAddr) -> bool {
        self.destinations.iter().any(|p| p.contains(ip))
            && !self.excluded.iter().any(|p| p.contains(ip))
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("not an IP packet the gateway understands")]
    Malformed,
    #[error("source {0} is not the tunnel address of a client with grants")]
    UnknownSource(IpAddr),
    #[error("no granted resource at {0}")]
    NoResource(IpAddr),
    #[error("{} is outside the resource's rules", describe(*.protocol, *.port))]
    NotAllowed {
        protocol: Option<Protocol>,
        port: Option<u16>,
    },
}

fn describe(protocol: Option<Protocol>, port: Option<u16>) -> String {
    let protocol = match protocol {
        Some(Protocol::Tcp) => "TCP",
        Some(Protocol::Udp) => "UDP",
        Some(Protocol::Icmp) => "ICMP",
        None => "another protocol",
    };
    match port {
        Some(port) => format!("{protocol} to port {port}"),
        None => protocol.to_owned(),
    }
}

/// The grants of every client this gateway serves, keyed by the client's tunnel addresses.
/// Grants are added and removed one at a time: a client with many names under a wildcard
/// costs one update per name, not a rebuild of all its grants.
#[derive(Debug, Default)]
pub struct PacketFilter {
    clients: HashMap<IpAddr, BTreeMap<GrantKey, GrantedResource>>,
}

impl PacketFilter {
    /// Sets what the client with these tunnel addresses may reach (replacing earlier grants),
    /// each resource keyed by its id.
    pub fn set_grants(&mut self, client_addresses: &[IpAddr], resources: Vec<GrantedResource>) {
        self.remove_client(client_addresses);
        for resource in resources {
            let key = GrantKey {
                resource_id: resource.id.clone(),
                domain: None,
            };
            self.set_grant(client_addresses, key, resource);
        }
    }

    /// Adds or replaces one grant of the client with these tunnel addresses.
    pub fn set_grant(
        &mut self,
        client_addresses: &[IpAddr],
        key: GrantKey,
        resource: GrantedResource,
    ) {
        for address in client_addresses {
            self.clients
                .entry(*address)
                .or_default()
                .insert(key.clone(), resource.clone());
        }
    }

    /// Removes one grant of the client with these tunnel addresses.
    pub fn remove_grant(&mut self, client_addresses: &[IpAddr], key: &GrantKey) {
        for address in client_addresses {
            if let Some(grants) = self.clients.get_mut(address) {
                grants.remove(key);
                if grants.is_empty() {
                    self.clients.remove(address);
                }
            }
        }
    }

    /// Forgets a client entirely (signed out, revoked, expired).
    pub fn remove_client(&mut self, client_addresses: &[IpAddr]) {
        for address in client_addresses {
            self.clients.remove(address);
        }
    }

    /// Checks a packet that came out of a client's tunnel; `Ok` names the resource it is for.
    pub fn check(&self, packet: &[u8]) -> Result<&str, Denied> {
        let flow = Flow::parse(packet).ok_or(Denied::Malformed)?;
        let resources = self
            .clients
            .get(&flow.source)
            .ok_or(Denied::UnknownSource(flow.source))?;
        let mut matching = resources
            .values()
            .filter(|r| r.reaches(flow.destination))
            .peekable();
        if matching.peek().is_none() {
            return Err(Denied::NoResource(flow.destination));
        }
        // Overlapping resources: any one that admits the packet is enough.
        matching
            .find(|resource| flow.admitted_by(&resource.rules))
            .map(|resource| resource.id.as_str())
            .ok_or(Denied::NotAllowed {
                protocol: flow.protocol,
                port: flow.port,
            })
    }
}

/// What the filter looks at in a packet.
#[derive(Debug)]
struct Flow {
    source: IpAddr,
    destination: IpAddr,
    protocol: Option<Protocol>,
    /// Destination port; `None` for ICMP, other protocols and fragments without a header.
    port: Option<u16>,
    /// A fragment after the first: no transport header to check.
    later_fragment: bool,
}

impl Flow {
    fn parse(packet: &[u8]) -> Option<Self> {
        let sliced = SlicedPacket::from_ip(packet).ok()?;
        let (source, destination, number, later_fragment): (IpAddr, IpAddr, IpNumber, bool) =
            match sliced.net.as_ref()? {
                NetSlice::Ipv4(ip) => {
                    let header = ip.header();
                    (
                        header.source_addr().into(),
                        header.destination_addr().into(),
                        header.protocol(),
                        header.fragments_offset().value() > 0,
                    )
                }
                NetSlice::Ipv6(ip) => (
                    ip.header().source_addr().into(),
                    ip.header().destination_addr().into(),
                    ip.payload().ip_number,
                    ip.payload().fragmented && sliced.transport.is_none(),
                ),
                _ => return None,
            };
        let (protocol, port) = match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => (Some(Protocol::Tcp), Some(tcp.destination_port())),
            Some(TransportSlice::Udp(udp)) => (Some(Protocol::Udp), Some(udp.destination_port())),
            Some(TransportSlice::Icmpv4(_) | TransportSlice::Icmpv6(_)) => {
                (Some(Protocol::Icmp), None)
            }
            _ => (
                match number {
                    IpNumber::TCP => Some(Protocol::Tcp),
                    IpNumber::UDP => Some(Protocol::Udp),
                    IpNumber::ICMP | IpNumber::IPV6_ICMP => Some(Protocol::Icmp),
                    _ => None,
                },
                None,
            ),
        };
        Some(Self {
            source,
            destination,
            protocol,
            port,
            later_fragment,
        })
    }

    fn admitted_by(&self, rules: &[Rule]) -> bool {
        if rules.is_empty() {
            return true;
        }
        let Some(protocol) = self.protocol else {
            return false;
        };
        rules.iter().any(|rule| {
            rule.protocol == protocol
                && match (&rule.ports, protocol) {
                    (_, Protocol::Icmp) | (None, _) => true,
                    // Without a header the port is unknown: a port rule cannot admit it.
                    (Some(_), _) if self.later_fragment => false,
                    (Some(range), _) => self.port.is_some_and(|port| range.contains(&port)),
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    const CLIENT: [u8; 4] = [100, 64, 0, 7];
    const OTHER_CLIENT: [u8; 4] = [100, 64, 0, 8];

    fn prefix(text: &str, len: u8) -> Prefix {
        Prefix::new(text.parse().unwrap(), len).unwrap()
    }

    fn filter() -> PacketFilter {
        let mut filter = PacketFilter::default();
        filter.set_grants(
            &[IpAddr::from(CLIENT)],
            vec![
                GrantedResource {
                    id: "web".into(),
                    destinations: vec![prefix("10.0.0.0", 24)],
                    excluded: vec![],
                    rules: vec![
                        Rule {
                            protocol: Protocol::Tcp,
                            ports: Some(80..=80),
                        },
                        Rule {
                            protocol: Protocol::Tcp,
                            ports: Some(8000..=8099),
                        },
                        Rule {
                            protocol: Protocol::Icmp,
                            ports: None,
                        },
                    ],
                },
                GrantedResource {
                    id: "dns-server".into(),
                    destinations: vec![prefix("10.0.1.53", 32)],
                    excluded: vec![],
                    rules: vec![],
                },
            ],
        );
        filter
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], port: u16) -> Vec<u8> {
        let builder = PacketBuilder::ipv4(src, dst, 64).tcp(40000, port, 1, 1024);
        let mut packet = Vec::new();
        builder.write(&mut packet, b"GET /").unwrap();
        packet
    }

    fn udp(src: [u8; 4], dst: [u8; 4], port: u16) -> Vec<u8> {
        let builder = PacketBuilder::ipv4(src, dst, 64).udp(40000, port);
        let mut packet = Vec::new();
        builder.write(&mut packet, b"q").unwrap();
        packet
    }

    fn ping(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let builder = PacketBuilder::ipv4(src, dst, 64).icmpv4_echo_request(1, 1);
        let mut packet = Vec::new();
        builder.write(&mut packet, b"ping").unwrap();
        packet
    }

    #[test]
    fn granted_protocol_and_port_pass() {
        let filter = filter();
        assert_eq!(filter.check(&tcp(CLIENT, [10, 0, 0, 5], 80)), Ok("web"));
        assert_eq!(filter.check(&tcp(CLIENT, [10, 0, 0, 5], 8042)), Ok("web"));
        assert_eq!(filter.check(&ping(CLIENT, [10, 0, 0, 5])), Ok("web"));
        assert_eq!(
            filter.check(&udp(CLIENT, [10, 0, 1, 53], 53)),
            Ok("dns-server")
        );
    }

    #[test]
    fn a_port_outside_the_rules_is_dropped() {
        let filter = filter();
        assert_eq!(
            filter.check(&tcp(CLIENT, [10, 0, 0, 5], 22)),
            Err(Denied::NotAllowed {
                protocol: Some(Protocol::Tcp),
                port: Some(22)
            })
        );
        assert!(matches!(
            filter.check(&udp(CLIENT, [10, 0, 0, 5], 80)),
            Err(Denied::NotAllowed { .. })
        ));
    }

    #[test]
    fn addresses_outside_every_grant_are_dropped() {
        let filter = filter();
        assert_eq!(
            filter.check(&tcp(CLIENT, [10, 0, 2, 1], 80)),
            Err(Denied::NoResource(IpAddr::from([10, 0, 2, 1])))
        );
    }

    #[test]
    fn another_clients_source_address_is_not_trusted() {
        let filter = filter();
        assert_eq!(
            filter.check(&tcp(OTHER_CLIENT, [10, 0, 0, 5], 80)),
            Err(Denied::UnknownSource(IpAddr::from(OTHER_CLIENT)))
        );
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let filter = filter();
        assert_eq!(filter.check(&[]), Err(Denied::Malformed));
        assert_eq!(filter.check(b"\x45\x00\x00"), Err(Denied::Malformed));
        for len in 0..64usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let _ = filter.check(&bytes);
        }
    }

    #[test]
    fn a_later_fragment_cannot_pass_a_port_rule() {
        let filter = filter();
        let mut packet = tcp(CLIENT, [10, 0, 0, 5], 80);
        // Fragment offset 8 bytes: this piece carries no TCP header, so no port to check.
        packet[6] = 0x00;
        packet[7] = 0x01;
        assert_eq!(
            filter.check(&packet),
            Err(Denied::NotAllowed {
                protocol: Some(Protocol::Tcp),
                port: None
            })
        );
        // A resource without rules admits it: nothing to check.
        let mut to_open_resource = udp(CLIENT, [10, 0, 1, 53], 53);
        to_open_resource[7] = 0x01;
        assert_eq!(filter.check(&to_open_resource), Ok("dns-server"));
    }

    #[test]
    fn revoking_removes_every_grant_of_the_client() {
        let mut filter = filter();
        filter.remove_client(&[IpAddr::from(CLIENT)]);
        assert!(matches!(
            filter.check(&tcp(CLIENT, [10, 0, 0, 5], 80)),
            Err(Denied::UnknownSource(_))
        ));
    }
}
