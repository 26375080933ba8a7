//! Ember end to end, in network namespaces (ISSUE 5's testbed).
//!
//! A [`World`] is a small internet built with [`ember_testbed`], running the real parts:
//!
//! ```text
//!                           internet (198.51.100.0/24, bridge)
//!   ┌──────────┬──────────┬───────────┬────────────────────┬────────────────────────┐
//!  portal    relay      dns        client router         gateway router
//!  ember-    coturn     dnsmasq    (NAT: EIM or          (NAT: EIM or symmetric)
//!  portal               (upstream  symmetric)                 │ 192.168.2.0/24
//!                        for the      │ 192.168.1.0/24     gateway host ── ember-gateway
//!                        client)   client host                 │ lan0 10.20.0.1
//!                                  ember-tunnel, curl     site LAN 10.20.0.0/24 (bridge)
//!                                                          ├─ resource 10.20.0.10 (+.30 .40 .41 .50 .51):
//!                                                          │  HTTP :80 and :8080, iperf3, dnsmasq for corp names
//!                                                          └─ other 10.20.0.20 (no resource)
//! ```
//!
//! The portal's model (see [`portal::config_toml`]): user Ada in group `eng` may use
//! the CIDR resource `10.20.0.8/29` (the resource host), `web.corp.example` (tcp/80 only) and
//! `*.apps.corp.example`; `Finance` (`10.20.0.30/32`) exists but has no policy for her.
//!
//! Everything is torn down when the [`World`] is dropped: processes stopped (the tunnel service
//! with SIGTERM first, so it can restore DNS), namespaces deleted, `/etc/netns/…` removed.
//! Needs root; [`World::start`] returns [`Error::NotRoot`] otherwise so tests can skip.
//!
//! The binaries under test (`ember-portal`, `ember-gateway`, `ember-tunnel`) are taken from
//! the cargo target folder of the running executable (or `EMBER_BIN_DIR`); build them first.

pub mod http;
pub mod portal;
pub mod stats;
mod world;

pub use world::{
    Binaries, Download, Fetched, Options, PendingDownload, World, addr, names, wait_until,
};

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the end-to-end world needs root (network namespaces, nftables, TUN devices)")]
    NotRoot,
    #[error(transparent)]
    Testbed(ember_testbed::Error),
    #[error(
        "`{binary}` not found (looked in {looked}); build it first: `cargo build -p {package}` \
         (or set EMBER_BIN_DIR)"
    )]
    MissingBinary {
        binary: String,
        package: String,
        looked: String,
    },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("curl {url} failed (exit {exit}): {stderr}")]
    Curl {
        url: String,
        exit: i32,
        stderr: String,
    },
    #[error("timed out after {after:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        after: Duration,
        last: String,
    },
    #[error("{0}")]
    Failed(String),
}

impl From<ember_testbed::Error> for Error {
    fn from(e: ember_testbed::Error) -> Self {
        match e {
            ember_testbed::Error::NotRoot => Self::NotRoot,
            other => Self::Testbed(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
