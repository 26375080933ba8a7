//! Limits on what names under a DNS resource can cost the gateway, sans-IO.
//!
//! A client with a wildcard resource (`*.corp.example`) can ask for any number of names below
//! it, and each one makes the gateway look the name up and install a grant. So:
//!
//! - a client holds at most [`MAX_NAMES_PER_CLIENT`] names (the router refuses more, and the
//!   gateway's state asks it before starting a lookup);
//! - at most [`MAX_CONCURRENT_LOOKUPS`] lookups run at once, for all clients together; the
//!   others wait their turn in [`Lookups`], in order;
//! - a lookup that failed, or found no address, grants nothing ([`addresses_to_grant`]);
//! - only a host name is looked up ([`ember_protocol::portal::is_host_name`]: letters, digits
//!   and hyphens), so a name cannot mean one thing to the portal and another to the resolver.

use std::collections::VecDeque;
use std::net::IpAddr;

/// DNS names one client may hold grants for at once.
pub const MAX_NAMES_PER_CLIENT: usize = 1_024;
/// Lookups running at once, for all clients together.
pub const MAX_CONCURRENT_LOOKUPS: usize = 32;

/// Lookups in flight and those waiting for a free slot. `T` is whatever the caller needs to
/// start one.
#[derive(Debug)]
pub struct Lookups<T> {
    running: usize,
    waiting: VecDeque<T>,
}

impl<T> Default for Lookups<T> {
    fn default() -> Self {
        Self {
            running: 0,
            waiting: VecDeque::new(),
        }
    }
}

impl<T> Lookups<T> {
    /// Hands `lookup` back when it may start now; otherwise it waits for [`Lookups::finished`].
    #[must_use]
    pub fn start(&mut self, lookup: T) -> Option<T> {
        if self.running < MAX_CONCURRENT_LOOKUPS {
            self.running += 1;
            Some(lookup)
        } else {
            self.waiting.push_back(lookup);
            None
        }
    }

    /// One lookup is done: the next waiting one, if any, starts in its slot.
    #[must_use]
    pub fn finished(&mut self) -> Option<T> {
        match self.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                self.running = self.running.saturating_sub(1);
                None
            }
        }
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The addresses a finished lookup grants: none when it failed or found nothing.
pub fn addresses_to_grant<E>(lookup: Result<Vec<IpAddr>, E>) -> Option<Vec<IpAddr>> {
    lookup.ok().filter(|addresses| !addresses.is_empty())
}

#[cfg(test)]
mod tests {
    use ember_engine::PeerId;
    use ember_io::routes::Prefix;

    use super::*;
    use crate::router::{GatewayRouter, GrantKey, ResourceGrant};

    const PEER: PeerId = PeerId(1);

    fn client() -> Vec<IpAddr> {
        vec!["100.64.0.7".parse().unwrap()]
    }

    fn name_grant(i: u32) -> (GrantKey, ResourceGrant) {
        let real = IpAddr::from([10, 77, (i >> 8) as u8, i as u8]);
        let proxy = IpAddr::from([100, 96, (i >> 8) as u8, i as u8]);
        (
            GrantKey {
                resource_id: "corp".into(),
                domain: Some(format!("n{i}.corp.example")),
            },
            ResourceGrant {
                destinations: vec![Prefix::new(real, 32).unwrap()],
                excluded: vec![],
                rules: vec![],
                proxies: vec![(proxy, real)],
            },
        )
    }

    #[test]
    fn a_wildcard_flood_cannot_grow_grants_past_the_cap() {
        let mut router = GatewayRouter::new();
        let mut installed = 0;
        for i in 0..(MAX_NAMES_PER_CLIENT as u32 + 500) {
            let (key, grant) = name_grant(i);
            if router.may_add(PEER, &key) {
                assert!(router.set_grant(PEER, &client(), key, grant));
                installed += 1;
            } else {
                assert!(!router.set_grant(PEER, &client(), key, grant));
            }
        }
        assert_eq!(installed, MAX_NAMES_PER_CLIENT);
        assert_eq!(router.names(PEER), MAX_NAMES_PER_CLIENT);
        // Renewing a name it holds still works, and a resource that is no name is not capped.
        let (key, grant) = name_grant(3);
        assert!(router.set_grant(PEER, &client(), key.clone(), grant));
        let cidr = GrantKey {
            resource_id: "lan".into(),
            domain: None,
        };
        assert!(router.may_add(PEER, &cidr));
        // A name that expires frees its place.
        assert!(router.revoke_grant(PEER, &key));
        let (key, grant) = name_grant(5_000);
        assert!(router.set_grant(PEER, &client(), key, grant));
        assert_eq!(router.names(PEER), MAX_NAMES_PER_CLIENT);
    }

    #[test]
    fn a_failed_lookup_grants_nothing() {
        let failed: Result<Vec<IpAddr>, String> = Err("NXDOMAIN".into());
        assert_eq!(addresses_to_grant(failed), None);
        assert_eq!(addresses_to_grant(Ok::<_, String>(vec![])), None);
        let found = vec![IpAddr::from([10, 77, 0, 10])];
        assert_eq!(
            addresses_to_grant(Ok::<_, String>(found.clone())),
            Some(found)
        );
    }

    #[test]
    fn lookups_beyond_the_limit_wait_their_turn_in_order() {
        let mut lookups = Lookups::default();
        for i in 0..MAX_CONCURRENT_LOOKUPS + 3 {
            let started = lookups.start(i);
            assert_eq!(started.is_some(), i < MAX_CONCURRENT_LOOKUPS, "{i}");
        }
        assert_eq!((lookups.running(), lookups.waiting()), (32, 3));
        assert_eq!(lookups.finished(), Some(32));
        assert_eq!(lookups.finished(), Some(33));
        assert_eq!(lookups.finished(), Some(34));
        assert_eq!(lookups.finished(), None);
        assert_eq!((lookups.running(), lookups.waiting()), (31, 0));
    }
}
