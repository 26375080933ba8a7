//! Linux: routes through Ember's one netlink connection ([`crate::netlink`]).

use std::io;

use tokio::sync::mpsc;

use super::{CHANGE_QUEUE, Change, Route};
use crate::netlink::Netlink;

/// Adds and deletes routes. It keeps a netlink task: create it inside a tokio runtime, in the
/// network namespace the routes are for; the policy rules go through it too, so they land in
/// the same namespace.
#[derive(Debug)]
pub struct Handle(Netlink);

impl Handle {
    pub fn new() -> io::Result<Self> {
        Netlink::connect().map(Self)
    }

    pub async fn add(&mut self, route: &Route) -> io::Result<()> {
        self.0.add_route(route).await
    }

    pub async fn delete(&mut self, route: &Route) -> io::Result<()> {
        self.0.delete_route(route).await
    }

    pub(crate) fn netlink(&self) -> &Netlink {
        &self.0
    }
}

/// Every change to the routing table, until the receiver is dropped. Call inside a tokio
/// runtime, in the network namespace to watch.
pub fn listen() -> io::Result<mpsc::Receiver<Change>> {
    crate::netlink::listen_routes(CHANGE_QUEUE)
}
