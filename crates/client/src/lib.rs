//! Ember's client as one sans-IO state machine, [`ClientState`]: what the tunnel service does
//! between the TUN device, the network and the portal, with no IO, no clock and no lock.
//!
//! - [`resources`]: the resource table (prefixes, DNS patterns, the internet switch) and the
//!   routes it needs.
//! - `routing`: access requests, denials, the one buffer of packets held for a grant, the
//!   gateway peers (`peers`), the DNS stub's interception.
//! - `views`: what the app shows per resource.
//! - [`ClientState`] ties them to the engine (`ember_engine`).
//!
//! Inputs are `handle_*` with the time last (`handle_portal_message`, `handle_tun_packet`,
//! `handle_network_packet`, `handle_dns_answer`, `handle_relays`, `handle_timeout`, …);
//! outputs are `poll_*` (`poll_transmit`, `poll_tun_packet`, `poll_dns_query`,
//! `poll_portal_message`, `poll_view`, `poll_system_change`, and last `poll_timeout`). After
//! every input, drain the outputs, then ask for the timeout. The tunnel service runs it in
//! `ember_io::driver`; the simulator runs it in simulated time.

mod peers;
pub mod resources;
mod routing;
mod state;
mod timers;
mod views;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use routing::{HELD_PER_RESOURCE, REQUEST_TIMEOUT, RETRY_AFTER_DENIAL};
pub use state::{
    ClientConfig, ClientInput, ClientOutput, ClientState, DnsQuery, ResolvedRelay, STATS_INTERVAL,
    SystemChange,
};

/// Where the stub resolver listens (ARCHITECTURE §3).
pub const SENTINEL_V4: Ipv4Addr = Ipv4Addr::new(100, 100, 111, 1);
pub const SENTINEL_V6: Ipv6Addr =
    Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0x8000, 0x100, 0x100, 0x111, 1);
