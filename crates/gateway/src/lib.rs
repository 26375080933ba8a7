//! Ember's gateway: the far end of tunnels, in the customer's network.
//!
//! - [`filter`]: every packet a client sends is checked against what the portal granted that
//!   client — source, destination resource, protocol and port — before it is forwarded. The
//!   gateway never trusts the client.

pub mod filter;
