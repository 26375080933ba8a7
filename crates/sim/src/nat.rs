//! The NAT routers hosts may sit behind: mapping and filtering behaviour, mappings that expire
//! when unused (refreshed by every packet either way, as Linux conntrack does for UDP).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    EndpointIndependent,
    /// A new external port for every destination.
    Symmetric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    EndpointIndependent,
    AddressDependent,
    AddressPortDependent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub timeout: Duration,
}

impl NatConfig {
    /// A typical home router: endpoint-independent mapping, port-restricted filtering.
    #[must_use]
    pub fn friendly(timeout: Duration) -> Self {
        Self {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::AddressPortDependent,
            timeout,
        }
    }

    #[must_use]
    pub fn symmetric(timeout: Duration) -> Self {
        Self {
            mapping: Mapping::Symmetric,
            filtering: Filtering::AddressPortDependent,
            timeout,
        }
    }
}

#[derive(Debug)]
pub(crate) struct NatEntry {
    internal: SocketAddr,
    /// Destination the mapping is for (symmetric NATs only).
    for_dst: Option<SocketAddr>,
    external_port: u16,
    last_active: Instant,
    contacted: HashSet<SocketAddr>,
}

#[derive(Debug)]
pub(crate) struct Nat {
    public_ip: IpAddr,
    config: NatConfig,
    entries: Vec<NatEntry>,
    next_port: u16,
}

impl Nat {
    pub(crate) fn new(public_ip: IpAddr, config: NatConfig) -> Self {
        Self {
            public_ip,
            config,
            entries: Vec::new(),
            next_port: 40000,
        }
    }

    pub(crate) fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    /// Forgets every mapping (a reboot, a conntrack flush).
    pub(crate) fn forget_all(&mut self) {
        self.entries.clear();
    }

    /// Forgets every mapping and takes a new public address.
    pub(crate) fn renumber(&mut self, public_ip: IpAddr) {
        self.entries.clear();
        self.public_ip = public_ip;
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        let timeout = self.config.timeout;
        self.entries.retain(|e| now < e.last_active + timeout);
    }

    pub(crate) fn outbound(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        now: Instant,
    ) -> SocketAddr {
        self.expire(now);
        let symmetric = self.config.mapping == Mapping::Symmetric;
        let found = self
            .entries
            .iter_mut()
            .find(|e| e.internal == src && (!symmetric || e.for_dst == Some(dst)));
        let entry = match found {
            Some(e) => e,
            None => {
                let port = self.next_port;
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                self.entries.push(NatEntry {
                    internal: src,
                    for_dst: symmetric.then_some(dst),
                    external_port: port,
                    last_active: now,
                    contacted: HashSet::new(),
                });
                let last = self.entries.len() - 1;
                &mut self.entries[last]
            }
        };
        entry.last_active = now;
        entry.contacted.insert(dst);
        SocketAddr::new(self.public_ip, entry.external_port)
    }

    pub(crate) fn inbound(
        &mut self,
        src: SocketAddr,
        dst_port: u16,
        now: Instant,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let filtering = self.config.filtering;
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.external_port == dst_port)?;
        let allowed = match filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => entry.contacted.iter().any(|c| c.ip() == src.ip()),
            Filtering::AddressPortDependent => entry.contacted.contains(&src),
        };
        if !allowed {
            return None;
        }
        entry.last_active = now;
        Some(entry.internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("literal address")
    }

    fn nat(mapping: Mapping, filtering: Filtering) -> Nat {
        Nat::new(
            addr("198.51.100.1:0").ip(),
            NatConfig {
                mapping,
                filtering,
                timeout: Duration::from_secs(30),
            },
        )
    }

    #[test]
    fn endpoint_independent_mapping_reuses_the_port_and_symmetric_does_not() {
        let now = Instant::now();
        let (inside, a, b) = (
            addr("10.0.0.2:5000"),
            addr("203.0.113.1:1"),
            addr("203.0.113.2:2"),
        );
        let mut eim = nat(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
        assert_eq!(eim.outbound(inside, a, now), eim.outbound(inside, b, now));
        let mut sym = nat(Mapping::Symmetric, Filtering::EndpointIndependent);
        assert_ne!(sym.outbound(inside, a, now), sym.outbound(inside, b, now));
    }

    #[test]
    fn filtering_admits_only_what_the_inside_contacted() {
        let now = Instant::now();
        let inside = addr("10.0.0.2:5000");
        let (peer, same_ip_other_port, stranger) = (
            addr("203.0.113.1:1"),
            addr("203.0.113.1:9"),
            addr("203.0.113.7:1"),
        );
        for (filtering, admits) in [
            (Filtering::EndpointIndependent, [true, true, true]),
            (Filtering::AddressDependent, [true, true, false]),
            (Filtering::AddressPortDependent, [true, false, false]),
        ] {
            let mut n = nat(Mapping::EndpointIndependent, filtering);
            let port = n.outbound(inside, peer, now).port();
            let got =
                [peer, same_ip_other_port, stranger].map(|src| n.inbound(src, port, now).is_some());
            assert_eq!(got, admits, "{filtering:?}");
        }
    }

    #[test]
    fn unused_mappings_expire_and_traffic_either_way_refreshes_them() {
        let start = Instant::now();
        let (inside, peer) = (addr("10.0.0.2:5000"), addr("203.0.113.1:1"));
        let mut n = nat(
            Mapping::EndpointIndependent,
            Filtering::AddressPortDependent,
        );
        let port = n.outbound(inside, peer, start).port();
        // Inbound at 20 s refreshes; still there at 45 s; gone 30 s after the last packet.
        assert!(
            n.inbound(peer, port, start + Duration::from_secs(20))
                .is_some()
        );
        assert!(
            n.inbound(peer, port, start + Duration::from_secs(45))
                .is_some()
        );
        assert!(
            n.inbound(peer, port, start + Duration::from_secs(80))
                .is_none()
        );
    }
}
