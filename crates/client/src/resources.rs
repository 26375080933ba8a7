//! The resource table: the resources the portal lists for this user, indexed for the packet
//! path (longest prefix first; the internet resource's `/0`s last, while it is switched on),
//! and the routes and DNS patterns they need.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ember_dns::{DnsResource, NamePattern, ProxyRanges};
use ember_protocol::Prefix;
use ember_protocol::portal::{Resource, ResourceAddress};

use crate::{SENTINEL_V4, SENTINEL_V6};

/// The prefixes always routed into the tunnel: the proxy ranges and the sentinel networks.
pub fn fixed_routes() -> Vec<Prefix> {
    let ranges = ProxyRanges::default();
    [
        Prefix::new(ranges.ipv4.0.into(), ranges.ipv4.1),
        Prefix::new(ranges.ipv6.0.into(), ranges.ipv6.1),
        Prefix::new(SENTINEL_V4.into(), 24),
        Prefix::new(SENTINEL_V6.into(), 120),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The networks around the sentinels: nothing there but the stub.
pub(crate) fn sentinel_nets() -> Vec<Prefix> {
    fixed_routes().split_off(2)
}

#[derive(Debug, Default)]
pub(crate) struct ResourceTable {
    resources: BTreeMap<String, Resource>,
    /// CIDR and IP resources, longest prefix first: (length, prefix → resource id); last, the
    /// internet resource's `/0` prefixes while it is switched on.
    prefixes: Vec<(u8, HashMap<Prefix, String>)>,
    /// Whether the internet resource, when the user has one, takes the traffic no other
    /// resource covers.
    internet_enabled: bool,
}

impl ResourceTable {
    /// Replaces the list; returns the ids of resources that changed or went away.
    pub(crate) fn set(&mut self, resources: &[Resource]) -> Vec<String> {
        let new: BTreeMap<String, Resource> = resources
            .iter()
            .map(|r| (r.id.clone(), r.clone()))
            .collect();
        let changed = self
            .resources
            .iter()
            .filter(|(id, old)| new.get(*id) != Some(*old))
            .map(|(id, _)| id.clone())
            .collect();
        self.resources = new;
        self.index_prefixes();
        changed
    }

    /// `false` when nothing changed.
    pub(crate) fn set_internet_enabled(&mut self, enabled: bool) -> bool {
        if self.internet_enabled == enabled {
            return false;
        }
        self.internet_enabled = enabled;
        self.index_prefixes();
        true
    }

    pub(crate) fn internet_enabled(&self) -> bool {
        self.internet_enabled
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.get(id)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.resources.contains_key(id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    /// The resource whose prefix covers `ip`, the longest first.
    pub(crate) fn lookup_prefix(&self, ip: IpAddr) -> Option<&str> {
        self.prefixes.iter().find_map(|(len, map)| {
            let prefix = Prefix::new(ip, *len)?;
            map.get(&prefix).map(String::as_str)
        })
    }

    /// Every route the tunnel needs: [`fixed_routes`] and the resources' prefixes; IPv6 ones
    /// only when the device has IPv6.
    pub(crate) fn routes(&self, ipv6: bool) -> BTreeSet<Prefix> {
        fixed_routes()
            .into_iter()
            .chain(
                self.prefixes
                    .iter()
                    .flat_map(|(_, map)| map.keys().copied()),
            )
            .filter(|prefix| ipv6 || prefix.addr().is_ipv4())
            .collect()
    }

    /// The DNS resources' patterns (for split DNS through the system's resolver).
    pub(crate) fn dns_patterns(&self) -> Vec<String> {
        self.resources
            .values()
            .filter_map(|r| match &r.address {
                ResourceAddress::Dns { pattern } => Some(pattern.clone()),
                _ => None,
            })
            .collect()
    }

    /// The DNS resources the stub answers for; unusable patterns are left out.
    pub(crate) fn dns_resources(&self) -> Vec<DnsResource> {
        self.resources
            .values()
            .filter_map(|resource| {
                let ResourceAddress::Dns { pattern } = &resource.address else {
                    return None;
                };
                match pattern.parse::<NamePattern>() {
                    Ok(pattern) => Some(DnsResource {
                        id: resource.id.clone(),
                        pattern,
                    }),
                    Err(e) => {
                        tracing::warn!(resource = %resource.id, "Unusable DNS resource: {e}");
                        None
                    }
                }
            })
            .collect()
    }

    fn index_prefixes(&mut self) {
        let mut by_len: BTreeMap<u8, HashMap<Prefix, String>> = BTreeMap::new();
        for resource in self.resources.values() {
            let prefixes: Vec<Prefix> = match &resource.address {
                ResourceAddress::Cidr { cidr } => match cidr.parse::<Prefix>() {
                    Ok(prefix) => vec![prefix],
                    Err(e) => {
                        tracing::warn!(resource = %resource.id, "The portal sent an unusable CIDR ({e}); ignored");
                        continue;
                    }
                },
                ResourceAddress::Ip { ip } => vec![Prefix::host(*ip)],
                ResourceAddress::Internet if self.internet_enabled => {
                    [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
                        .into_iter()
                        .filter_map(|any: IpAddr| Prefix::new(any, 0))
                        .collect()
                }
                ResourceAddress::Internet | ResourceAddress::Dns { .. } => continue,
            };
            for prefix in prefixes {
                by_len
                    .entry(prefix.len())
                    .or_default()
                    .insert(prefix, resource.id.clone());
            }
        }
        self.prefixes = by_len.into_iter().rev().collect();
    }
}
