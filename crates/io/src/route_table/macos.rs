//! macOS: `route_manager` over the routing socket.

use std::io;

use tokio::sync::mpsc;

use super::{CHANGE_QUEUE, Change, Route, os_prefixes};

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

    /// A default route goes in as its two halves (`os_prefixes`); when one half fails, the
    /// other is taken out again, so the route is in or out as a whole.
    pub async fn add(&mut self, route: &Route) -> io::Result<()> {
        let mut added = Vec::new();
        for os_route in os_routes(route) {
            if let Err(e) = self.0.add(&os_route).await {
                for os_route in added {
                    let _ = self.0.delete(&os_route).await;
                }
                return Err(e);
            }
            added.push(os_route);
        }
        Ok(())
    }

    /// Deletes every half; the first error is returned after all were tried.
    pub async fn delete(&mut self, route: &Route) -> io::Result<()> {
        let mut result = Ok(());
        for os_route in os_routes(route) {
            if let Err(e) = self.0.delete(&os_route).await {
                result = result.and(Err(e));
            }
        }
        result
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
fn os_routes(route: &Route) -> Vec<route_manager::Route> {
    os_prefixes(route.prefix)
        .into_iter()
        .map(|prefix| {
            route_manager::Route::new(prefix.addr(), prefix.len()).with_if_index(route.interface)
        })
        .collect()
}
