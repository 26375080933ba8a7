//! Routes into the TUN device: resource prefixes and the proxy ranges (split tunnel), plus the
//! default routes while the internet resource is on; kept in step with a wanted set so the
//! tables never hold a stale route of ours. They go into Ember's own tables, which the
//! tunnel's own sockets skip; default routes into one consulted after the system's specific
//! routes, so the LAN stays reachable (see [`crate::policy`]).

use std::collections::BTreeSet;
use std::fmt;
use std::io;

pub use ember_protocol::Prefix;

#[derive(Debug, thiserror::Error)]
#[error("{failed} of {attempted} route changes failed; first: {first}")]
pub struct RoutesError {
    pub attempted: usize,
    pub failed: usize,
    pub first: io::Error,
}

/// The routes this process installed through one interface.
pub struct Routes {
    handle: crate::route_table::Handle,
    interface: u32,
    installed: BTreeSet<Prefix>,
    rules_installed: bool,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("interface", &self.interface)
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// Call inside a tokio runtime (the handle keeps a netlink task on Linux), in the network
    /// namespace the routes are for.
    pub fn new(interface: u32) -> io::Result<Self> {
        Ok(Self {
            handle: crate::route_table::Handle::new()?,
            interface,
            installed: BTreeSet::new(),
            rules_installed: false,
        })
    }

    pub fn installed(&self) -> &BTreeSet<Prefix> {
        &self.installed
    }

    /// Adds what is missing and removes what is no longer wanted. Every change is attempted
    /// even when one fails; the routes that worked are kept track of either way.
    pub async fn apply(&mut self, wanted: &BTreeSet<Prefix>) -> Result<(), RoutesError> {
        if !self.rules_installed && !wanted.is_empty() {
            crate::policy::install_rules(&self.handle)
                .await
                .map_err(|first| RoutesError {
                    attempted: 1,
                    failed: 1,
                    first,
                })?;
            self.rules_installed = true;
        }
        let stale: Vec<Prefix> = self.installed.difference(wanted).copied().collect();
        let missing: Vec<Prefix> = wanted.difference(&self.installed).copied().collect();
        let attempted = stale.len() + missing.len();
        let mut errors = Vec::new();
        for prefix in stale {
            let route = self.route(prefix);
            match self.handle.delete(&route).await {
                Ok(()) => {
                    self.installed.remove(&prefix);
                }
                // Gone already (the interface went down, someone removed it): fine.
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) => {
                    self.installed.remove(&prefix);
                }
                Err(e) => errors.push(e),
            }
        }
        for prefix in missing {
            let route = self.route(prefix);
            match self.handle.add(&route).await {
                Ok(()) => {
                    self.installed.insert(prefix);
                }
                Err(e) => errors.push(e),
            }
        }
        tracing::debug!(routes = self.installed.len(), "Routes applied");
        let failed = errors.len();
        match errors.into_iter().next() {
            None => Ok(()),
            Some(first) => Err(RoutesError {
                attempted,
                failed,
                first,
            }),
        }
    }

    /// Removes every route this process added, and the rules that lead to them.
    pub async fn clear(&mut self) -> Result<(), RoutesError> {
        let result = self.apply(&BTreeSet::new()).await;
        if self.rules_installed {
            if let Err(e) = crate::policy::remove_rules(&self.handle).await {
                tracing::warn!("Cannot remove the routing rules: {e}");
            }
            self.rules_installed = false;
        }
        result
    }

    fn route(&self, prefix: Prefix) -> crate::route_table::Route {
        crate::route_table::Route {
            prefix,
            interface: self.interface,
            table: if prefix.is_empty() {
                crate::policy::INTERNET_TABLE
            } else {
                crate::policy::ROUTE_TABLE
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised_so_equal_networks_compare_equal() {
        let a = Prefix::new("10.1.2.3".parse().unwrap(), 16).unwrap();
        let b = Prefix::new("10.1.0.0".parse().unwrap(), 16).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "10.1.0.0/16");
        let v6 = Prefix::new("fd00:2021:1111:8000::abcd".parse().unwrap(), 107).unwrap();
        assert_eq!(v6.to_string(), "fd00:2021:1111:8000::/107");
        assert_eq!(
            Prefix::new("0.0.0.0".parse().unwrap(), 0)
                .unwrap()
                .to_string(),
            "0.0.0.0/0"
        );
        assert!(Prefix::new("10.0.0.0".parse().unwrap(), 33).is_none());
    }
}
