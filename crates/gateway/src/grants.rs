//! From the portal's words to the data plane's: resource addresses and filters into the
//! [`ResourceGrant`] the router enforces, proxy IPs paired with resolved addresses, keys and
//! relay URLs decoded. Everything from the wire is checked; bad values are errors, not panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ember_io::routes::Prefix;
use ember_protocol::portal::{Filter, FilterProtocol, Resource, ResourceAddress};

use crate::filter::{Protocol, Rule};
use crate::router::ResourceGrant;

/// Client proxy IPs for DNS resources (ARCHITECTURE §3): a client may only name these.
pub const PROXY_RANGE_V4: (IpAddr, u8) = (IpAddr::V4(std::net::Ipv4Addr::new(100, 96, 0, 0)), 11);
pub const PROXY_RANGE_V6: (IpAddr, u8) = (
    IpAddr::V6(std::net::Ipv6Addr::new(
        0xfd00, 0x2021, 0x1111, 0x8000, 0, 0, 0, 0,
    )),
    107,
);
/// Tunnel addresses of clients and gateways.
pub const TUNNEL_RANGE_V4: (IpAddr, u8) = (IpAddr::V4(std::net::Ipv4Addr::new(100, 64, 0, 0)), 11);
pub const TUNNEL_RANGE_V6: (IpAddr, u8) = (
    IpAddr::V6(std::net::Ipv6Addr::new(
        0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 0,
    )),
    107,
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the resource address `{0}` is not a valid CIDR")]
    BadCidr(String),
    #[error("the port range {start}-{end} is empty")]
    BadPortRange { start: u16, end: u16 },
    #[error("not standard base64 of 32 bytes")]
    BadKey,
}

/// What the internet resource never reaches by itself: the site's private networks (RFC 1918,
/// CGNAT — which holds the tunnel range — and IPv6 ULA), link-local addresses (with the cloud
/// metadata service at 169.254.169.254) and loopback. A resource that names such an address
/// grants it; the internet resource alone does not.
pub const INTERNET_EXCLUDED: [(IpAddr, u8); 10] = [
    (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
    (IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), 10),
    (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    (IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    // IPv4-mapped addresses would reach the IPv4 ranges above by another name.
    (IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0)), 96),
];

/// Builds the grant for `resource`. For a DNS resource `resolved` holds the addresses its
/// domain resolved to here, and `proxy_ips` the client's proxy IPs for that domain.
/// `own_addresses` are the gateway host's: the internet resource excludes them with
/// [`INTERNET_EXCLUDED`].
pub fn resource_grant(
    resource: &Resource,
    resolved: &[IpAddr],
    proxy_ips: &[IpAddr],
    own_addresses: &[IpAddr],
) -> Result<ResourceGrant, GrantError> {
    let rules = rules(&resource.filters)?;
    let mut excluded = Vec::new();
    let (destinations, proxies) = match &resource.address {
        ResourceAddress::Cidr { cidr } => (vec![parse_cidr(cidr)?], Vec::new()),
        ResourceAddress::Ip { ip } => (host_prefix(*ip).into_iter().collect(), Vec::new()),
        ResourceAddress::Internet => {
            excluded = internet_excluded(own_addresses);
            (
                [
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                ]
                .into_iter()
                .filter_map(|any| Prefix::new(any, 0))
                .collect(),
                Vec::new(),
            )
        }
        ResourceAddress::Dns { .. } => (
            resolved.iter().filter_map(|ip| host_prefix(*ip)).collect(),
            pair_proxies(proxy_ips, resolved),
        ),
    };
    Ok(ResourceGrant {
        destinations,
        excluded,
        rules,
        proxies,
    })
}

/// [`INTERNET_EXCLUDED`] and the host's own addresses.
pub fn internet_excluded(own_addresses: &[IpAddr]) -> Vec<Prefix> {
    INTERNET_EXCLUDED
        .iter()
        .filter_map(|(addr, len)| Prefix::new(*addr, *len))
        .chain(own_addresses.iter().filter_map(|ip| host_prefix(*ip)))
        .collect()
}

/// The portal's filters as filter rules (none: everything).
pub fn rules(filters: &[Filter]) -> Result<Vec<Rule>, GrantError> {
    filters
        .iter()
        .map(|filter| {
            let protocol = match filter.protocol {
                FilterProtocol::Tcp => Protocol::Tcp,
                FilterProtocol::Udp => Protocol::Udp,
                FilterProtocol::Icmp => Protocol::Icmp,
            };
            let ports = match filter.ports {
                None => None,
                Some(range) if range.start <= range.end => Some(range.start..=range.end),
                Some(range) => {
                    return Err(GrantError::BadPortRange {
                        start: range.start,
                        end: range.end,
                    });
                }
            };
            Ok(Rule { protocol, ports })
        })
        .collect()
}

/// Pairs each proxy IP with a resolved address of its family, spreading them round-robin.
/// Proxy IPs outside the proxy ranges are ignored: a client must not make the gateway
/// translate addresses of the site or of other clients.
pub fn pair_proxies(proxy_ips: &[IpAddr], resolved: &[IpAddr]) -> Vec<(IpAddr, IpAddr)> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = resolved.iter().partition(|ip| ip.is_ipv4());
    let (mut next_v4, mut next_v6) = (0usize, 0usize);
    let mut pairs = Vec::new();
    for proxy in proxy_ips {
        if !is_proxy_ip(*proxy) || pairs.iter().any(|(p, _)| p == proxy) {
            continue;
        }
        let (reals, next) = if proxy.is_ipv4() {
            (&v4, &mut next_v4)
        } else {
            (&v6, &mut next_v6)
        };
        if reals.is_empty() {
            continue;
        }
        pairs.push((*proxy, reals[*next % reals.len()]));
        *next += 1;
    }
    pairs
}

pub fn is_proxy_ip(ip: IpAddr) -> bool {
    [PROXY_RANGE_V4, PROXY_RANGE_V6]
        .iter()
        .filter_map(|(addr, len)| Prefix::new(*addr, *len))
        .any(|range| range.contains(ip))
}

/// Standard base64 of 32 bytes (WireGuard keys, preshared keys).
pub fn decode_key(text: &str) -> Result<[u8; 32], GrantError> {
    text.parse::<ember_protocol::WireGuardKey>()
        .map(ember_protocol::WireGuardKey::to_bytes)
        .map_err(|_| GrantError::BadKey)
}

pub fn encode_key(key: &[u8; 32]) -> String {
    ember_protocol::WireGuardKey::from_bytes(*key).to_base64()
}

fn parse_cidr(text: &str) -> Result<Prefix, GrantError> {
    text.parse()
        .map_err(|_: ember_protocol::BadPrefix| GrantError::BadCidr(text.to_owned()))
}

fn host_prefix(ip: IpAddr) -> Option<Prefix> {
    Prefix::new(ip, if ip.is_ipv4() { 32 } else { 128 })
}

#[cfg(test)]
mod tests {
    use ember_protocol::portal::{PortRange, SiteInfo};

    use super::*;

    fn resource(address: ResourceAddress, filters: Vec<Filter>) -> Resource {
        Resource {
            id: "res_1".into(),
            name: "Web".into(),
            address,
            address_description: None,
            site: SiteInfo {
                id: "site_1".into(),
                name: "Berlin".into(),
            },
            filters,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_and_ip_resources_become_prefixes_with_their_rules() {
        let grant = resource_grant(
            &resource(
                ResourceAddress::Cidr {
                    cidr: "10.77.0.0/24".into(),
                },
                vec![
                    Filter {
                        protocol: FilterProtocol::Tcp,
                        ports: Some(PortRange { start: 80, end: 80 }),
                    },
                    Filter {
                        protocol: FilterProtocol::Icmp,
                        ports: None,
                    },
                ],
            ),
            &[],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(grant.destinations[0].to_string(), "10.77.0.0/24");
        assert_eq!(
            grant.rules,
            vec![
                Rule {
                    protocol: Protocol::Tcp,
                    ports: Some(80..=80)
                },
                Rule {
                    protocol: Protocol::Icmp,
                    ports: None
                }
            ]
        );
        let grant = resource_grant(
            &resource(ResourceAddress::Ip { ip: ip("fd77::10") }, vec![]),
            &[],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(grant.destinations[0].to_string(), "fd77::10/128");
        let internet =
            resource_grant(&resource(ResourceAddress::Internet, vec![]), &[], &[], &[]).unwrap();
        assert_eq!(internet.destinations.len(), 2);
        assert!(internet.destinations.iter().all(|p| p.is_empty()));
    }

    #[test]
    fn bad_cidrs_and_port_ranges_are_errors() {
        for cidr in ["10.0.0.0", "10.0.0.0/33", "nonsense/8", "::/129"] {
            assert!(
                resource_grant(
                    &resource(ResourceAddress::Cidr { cidr: cidr.into() }, vec![]),
                    &[],
                    &[],
                    &[]
                )
                .is_err(),
                "{cidr}"
            );
        }
        let backwards = Filter {
            protocol: FilterProtocol::Udp,
            ports: Some(PortRange { start: 90, end: 80 }),
        };
        assert!(rules(&[backwards]).is_err());
    }

    #[test]
    fn proxy_ips_pair_with_resolved_addresses_of_their_family() {
        let proxies = [
            ip("100.96.0.1"),
            ip("100.96.0.2"),
            ip("100.96.0.3"),
            ip("fd00:2021:1111:8000::1"),
            ip("fd00:2021:1111:8000::2"),
        ];
        let resolved = [ip("10.77.0.10"), ip("10.77.0.20")];
        let pairs = pair_proxies(&proxies, &resolved);
        assert_eq!(
            pairs,
            vec![
                (ip("100.96.0.1"), ip("10.77.0.10")),
                (ip("100.96.0.2"), ip("10.77.0.20")),
                (ip("100.96.0.3"), ip("10.77.0.10")),
            ],
            "no IPv6 address resolved: the IPv6 proxies stand for nothing"
        );
        let with_v6 = pair_proxies(&proxies, &[ip("fd77::10")]);
        assert_eq!(with_v6.len(), 2);
        assert!(with_v6.iter().all(|(_, real)| *real == ip("fd77::10")));
    }

    #[test]
    fn a_client_cannot_name_site_or_tunnel_addresses_as_proxy_ips() {
        let proxies = [
            ip("10.77.0.11"),
            ip("100.64.0.8"),
            ip("fd00:2021:1111::8"),
            ip("100.96.0.1"),
            ip("100.96.0.1"),
        ];
        assert_eq!(
            pair_proxies(&proxies, &[ip("10.77.0.10")]),
            vec![(ip("100.96.0.1"), ip("10.77.0.10"))]
        );
    }

    #[test]
    fn dns_resources_use_the_resolved_addresses_as_destinations() {
        let grant = resource_grant(
            &resource(
                ResourceAddress::Dns {
                    pattern: "*.corp.example".into(),
                },
                vec![],
            ),
            &[ip("10.77.0.10")],
            &[ip("100.96.0.4")],
            &[],
        )
        .unwrap();
        assert_eq!(grant.destinations[0].to_string(), "10.77.0.10/32");
        assert_eq!(grant.proxies, vec![(ip("100.96.0.4"), ip("10.77.0.10"))]);
    }

    #[test]
    fn keys_decode_only_from_32_bytes_of_base64() {
        let key = [7u8; 32];
        assert_eq!(decode_key(&encode_key(&key)), Ok(key));
        assert_eq!(decode_key("AAAA"), Err(GrantError::BadKey));
        assert_eq!(decode_key("not base64!"), Err(GrantError::BadKey));
    }
}
