//! macOS: `route_manager` over the routing socket.

use std::io;

use tokio::sync::mpsc;

use super::{CHANGE_QUEUE, Change, Route};

/// Adds and deletes routes through the routing socket.
pub struct Handle(route_manager::AsyncRouteManager);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    pub fn new() -> io::Result<Self> {
        route_manager::AsyncRouteManager::new().map(Self)
    }

    pub async fn add(&mut self, route: &Route) -> io::Result<()> {
        self.0.add(&os_route(route)).await
    }

    pub async fn delete(&mut self, route: &Route) -> io::Result<()> {
        self.0.delete(&os_route(route)).await
    }
}

/// Every change to the routing table, until the receiver is dropped. Call inside a tokio
/// runtime.
pub fn listen() -> io::Result<mpsc::Receiver<Change>> {
    let mut listener = route_manager::AsyncRouteManager::listener()?;
    let (changes_tx, changes_rx) = mpsc::channel(CHANGE_QUEUE);
    tokio::spawn(async move {
        loop {
            let route = match listener.listen().await {
                Ok(
                    route_manager::RouteChange::Add(route)
                    | route_manager::RouteChange::Delete(route)
                    | route_manager::RouteChange::Change(route),
                ) => route,
                Err(e) => {
                    tracing::warn!(
                        "Cannot read the routing socket; network changes go unnoticed: {e}"
                    );
                    return;
                }
            };
            let change = Change {
                destination: route.destination(),
                prefix: route.prefix(),
                interface: route.if_index(),
                table: None,
            };
            if changes_tx.send(change).await.is_err() {
                return;
            }
        }
    });
    Ok(changes_rx)
}

/// The table is Linux's notion; macOS has one routing table.
fn os_route(route: &Route) -> route_manager::Route {
    route_manager::Route::new(route.prefix.addr(), route.prefix.len())
        .with_if_index(route.interface)
}
