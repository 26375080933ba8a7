//! DNS for Ember.
//!
//! - [`NamePattern`]: how a DNS resource names its hosts — `db.corp.example`, `*.corp.example`
//!   (any name below, at any depth) or `?.corp.example` (exactly one label below).
//! - [`StubResolver`]: the client's stub resolver, sans-IO. It answers queries for resource
//!   names with proxy IPs that stay stable for the session and tells the caller to forward
//!   every other query, unchanged, to the system's upstream resolvers.
//! - [`tun_packets`]: the same for queries that arrive as IP packets on the TUN device.

mod pattern;
mod stub;
pub mod tun_packets;

pub use pattern::{NamePattern, PatternError};
pub use stub::{
    DnsResource, Outcome, PROXY_IPS_PER_NAME, ProxyIps, ProxyRanges, RESOURCE_TTL, StubResolver,
};
