//! Ember's gateway: the far end of tunnels, in the customer's network. This library is the
//! sans-IO part; the `ember-gateway` binary wires it to the portal, the IO driver and the
//! kernel.
//!
//! - [`filter`]: every packet a client sends is checked against what the portal granted that
//!   client — source, destination resource, protocol and port — before it is forwarded. The
//!   gateway never trusts the client.
//! - translation of proxy IPs in place, with checksum updates, is `ember_packet::translate`.
//! - [`router`]: the per-packet decisions both ways (source check, translation, filter, which
//!   client a reply goes to), with counters.
//! - [`names`]: limits on DNS names granted per client and on lookups at once.
//! - [`grants`]: the portal's resources, filters, keys and relay URLs turned into the above.
//! - [`state`]: the gateway as one state machine — the engine, the router, the grants and
//!   their timers — that `ember_io`'s driver runs and the controller feeds.

pub mod filter;
pub mod grants;
pub mod names;
pub mod router;
pub mod state;
