//! What the service's integration tests share: the real portal, the real service in a network
//! namespace, and an app's side of the IPC.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

pub mod app;
pub mod portal;
pub mod service;

pub use portal::TestPortal;
