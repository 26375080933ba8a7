//! Throttles: failed password sign-ins back off per account and per client address, and a
//! device's access requests draw from a token bucket.
//!
//! The client address of a sign-in is the TCP peer, unless the peer is one of the configured
//! trusted proxies: then it is the nearest address in `X-Forwarded-For` that is not itself a
//! trusted proxy. Behind the documented TLS proxy every request comes from the proxy, so
//! without this all users would share one bucket; and a header from anyone else is ignored, so
//! a client cannot pick a fresh bucket per attempt. IPv6 clients are grouped by /64, the
//! smallest prefix a network hands out: one host has all of its addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The header a reverse proxy appends the address of its client to.
const FORWARDED_FOR: &str = "x-forwarded-for";
/// Keys kept before old ones are swept, bounding what an attacker with many addresses costs.
const MAX_KEYS: usize = 100_000;

/// The backoff of one key: after `free` failures the next attempt waits `first`, and each
/// further failure doubles the wait, up to `max`. A key that stays quiet for `forget_after`
/// once its wait is over starts afresh. Nobody is locked out: the right password after the
/// wait always works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub free: u32,
    pub first: Duration,
    pub max: Duration,
    pub forget_after: Duration,
}

/// Failed sign-ins per key (see [`address_key`], [`account_key`]).
#[derive(Debug)]
pub struct FailureLimiter {
    policy: BackoffPolicy,
    failures: HashMap<String, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl FailureLimiter {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: HashMap::new(),
        }
    }

    /// How long until `key` may try again, if it must wait now.
    pub fn blocked_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let failures = self.failures.get(key)?;
        let until = failures.last + self.wait_after(failures.count);
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    pub fn record_failure(&mut self, key: &str, now: Instant) {
        let policy = self.policy;
        let failures = self.failures.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        let quiet_since = failures.last + wait_after(&policy, failures.count);
        if now.saturating_duration_since(quiet_since) >= policy.forget_after {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        if self.failures.len() > MAX_KEYS {
            self.failures.retain(|_, f| {
                let quiet_since = f.last + wait_after(&policy, f.count);
                now.saturating_duration_since(quiet_since) < policy.forget_after
            });
        }
    }

    pub fn clear(&mut self, key: &str) {
        self.failures.remove(key);
    }

    fn wait_after(&self, count: u32) -> Duration {
        wait_after(&self.policy, count)
    }
}

/// The wait after `count` failures: none before `free`, then `first`, doubling, at most `max`.
fn wait_after(policy: &BackoffPolicy, count: u32) -> Duration {
    let Some(excess) = count.checked_sub(policy.free) else {
        return Duration::ZERO;
    };
    let factor = 1u32.checked_shl(excess).unwrap_or(u32::MAX);
    policy
        .first
        .checked_mul(factor)
        .unwrap_or(policy.max)
        .min(policy.max)
}

/// The address a request comes from: `peer`, or, when `peer` is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not a trusted proxy (the leftmost when all are).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !trusted(&peer) {
        return peer;
    }
    // Each proxy appends the address it got the request from: read from the right, and stop
    // at the first hop a trusted proxy did not vouch for. Whatever stands left of it was
    // written by the client and proves nothing.
    let hops: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, or one with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The failure key of a client address; IPv6 by /64.
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let network = Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX));
            format!("ip:{network}/64")
        }
    }
}

/// The failure key of an account's user (the email as typed, lower-cased by the caller).
pub fn account_key(account_slug: &str, email: &str) -> String {
    format!("user:{account_slug}/{email}")
}

/// A trusted proxy as configured: a network (`10.0.0.0/8`) or one address.
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an address or a network (CIDR)"))
}

/// Up to `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(burst: u32, per_second: u32, now: Instant) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            tokens: f64::from(burst),
            updated: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Whether the bucket is back to its burst (forgetting it changes nothing).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            free: 3,
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            forget_after: Duration::from_secs(300),
        }
    }

    #[test]
    fn failures_beyond_the_free_ones_double_the_wait_up_to_the_maximum() {
        let mut limiter = FailureLimiter::new(policy());
        let t0 = Instant::now();
        for i in 0..2 {
            limiter.record_failure("k", t0);
            assert_eq!(limiter.blocked_for("k", t0), None, "failure {i}");
        }
        let mut now = t0;
        for expected in [1, 2, 4, 8, 16, 32, 60, 60] {
            limiter.record_failure("k", now);
            assert_eq!(
                limiter.blocked_for("k", now),
                Some(Duration::from_secs(expected))
            );
            now += Duration::from_secs(expected);
            assert_eq!(limiter.blocked_for("k", now), None, "never a lockout");
        }
        assert_eq!(limiter.blocked_for("other", now), None);
    }

    #[test]
    fn a_quiet_key_starts_afresh() {
        let mut limiter = FailureLimiter::new(policy());
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.record_failure("k", t0);
        }
        let later = t0 + Duration::from_secs(4 + 300);
        limiter.record_failure("k", later);
        assert_eq!(limiter.blocked_for("k", later), None);
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxies = vec![parse_trusted_proxy("10.0.0.0/8").unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            FORWARDED_FOR,
            "6.6.6.6, 203.0.113.7, 10.1.1.1".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(
            client_address(proxy, &headers, &proxies),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "the nearest untrusted hop, not what the client wrote before it"
        );
        assert_eq!(client_address(stranger, &headers, &proxies), stranger);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &proxies), proxy);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "ip:192.0.2.1");
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, 2, t0);
        assert!((0..3).all(|_| bucket.take(t0)));
        assert!(!bucket.take(t0));
        assert!(bucket.take(t0 + Duration::from_millis(500)));
        assert!(!bucket.take(t0 + Duration::from_millis(500)));
        assert!(bucket.is_full(t0 + Duration::from_secs(2)));
    }
}
