//! Windows (the IP helper) and systems Ember does not ship on: `net-route`.

use std::io;

use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::{CHANGE_QUEUE, Change, Route};

/// Adds and deletes routes.
pub struct Handle(net_route::Handle);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    pub fn new() -> io::Result<Self> {
        net_route::Handle::new().map(Self)
    }

    pub async fn add(&mut self, route: &Route) -> io::Result<()> {
        self.0.add(&os_route(route)).await
    }

    pub async fn delete(&mut self, route: &Route) -> io::Result<()> {
        self.0.delete(&os_route(route)).await
    }
}

/// Every change to the routing table, until the receiver is dropped. Call inside a tokio
/// runtime, in the network namespace to watch.
pub fn listen() -> io::Result<mpsc::Receiver<Change>> {
    let handle = net_route::Handle::new()?;
    let (changes_tx, changes_rx) = mpsc::channel(CHANGE_QUEUE);
    tokio::spawn(async move {
        let changes = handle.route_listen_stream();
        tokio::pin!(changes);
        while let Some(change) = changes.next().await {
            let (net_route::RouteChange::Add(route)
            | net_route::RouteChange::Delete(route)
            | net_route::RouteChange::Change(route)) = change;
            let change = Change {
                destination: route.destination,
                prefix: route.prefix,
                interface: route.ifindex,
                table: None,
            };
            if changes_tx.send(change).await.is_err() {
                return;
            }
        }
    });
    Ok(changes_rx)
}

fn os_route(route: &Route) -> net_route::Route {
    net_route::Route::new(route.prefix.addr(), route.prefix.len()).with_ifindex(route.interface)
}
