//! Where the portal's relays are: each `turn:host:port` URL's host looked up (a name may go
//! through the DNS stub of the very tunnel that needs the relay, so never on the packet path).
//! One resolver for the client and the gateway.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ember_protocol::portal::relay_host_port;

/// How long one relay host name may take to resolve.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses of a relay's usable URLs (UDP only), at most one per family and URL, in the
/// URLs' order, without repeats. Empty when none resolves.
pub async fn relay_addresses(urls: &[String]) -> Vec<SocketAddr> {
    let mut addresses = Vec::new();
    for url in urls {
        let Some((host, port)) = relay_host_port(url) else {
            tracing::debug!(%url, "Relay URL not usable (only turn: over UDP)");
            continue;
        };
        let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((host.as_str(), port));
                match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                    Ok(Ok(found)) => {
                        let found: Vec<SocketAddr> = found.collect();
                        let v4 = found.iter().find(|a| a.is_ipv4());
                        let v6 = found.iter().find(|a| a.is_ipv6());
                        v4.into_iter().chain(v6).copied().collect()
                    }
                    _ => {
                        tracing::warn!(%host, "Cannot resolve a relay's host");
                        Vec::new()
                    }
                }
            }
        };
        for address in found {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_addresses_need_no_lookup_and_tcp_urls_are_skipped() {
        let urls = [
            "turn:198.51.100.7:3478".to_owned(),
            "turn:[2001:db8::7]:3479".to_owned(),
            "turn:198.51.100.7:3478?transport=tcp".to_owned(),
            "turn:198.51.100.7:3478".to_owned(),
        ];
        let found = relay_addresses(&urls).await;
        assert_eq!(
            found,
            vec![
                "198.51.100.7:3478".parse().unwrap(),
                "[2001:db8::7]:3479".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn localhost_resolves_to_one_address_per_family_at_most() {
        let found = relay_addresses(&["turn:localhost:3478".to_owned()]).await;
        assert!(!found.is_empty() && found.len() <= 2, "{found:?}");
        assert!(
            found
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 3478)
        );
    }
}
