//! Noticing that the network under the tunnel changed: a route (and with it, usually, an
//! address) appeared, vanished or changed on any interface but our own TUN device. The device
//! moved networks; every connection should start over (`Command::Reset`).

use std::io;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;

/// Changes come in bursts (an interface going down drops all its routes); one report per burst.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Reports each burst of changes as one `()`. Runs until the receiver is dropped. Call inside
/// a tokio runtime, in the network namespace to watch.
pub fn watch(ignore_interface: u32) -> io::Result<mpsc::Receiver<()>> {
    let handle = net_route::Handle::new()?;
    let (changes_tx, changes_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let changes = handle.route_listen_stream();
        tokio::pin!(changes);
        while let Some(change) = changes.next().await {
            let (net_route::RouteChange::Add(route)
            | net_route::RouteChange::Delete(route)
            | net_route::RouteChange::Change(route)) = change;
            if route.ifindex == Some(ignore_interface) {
                continue;
            }
            // Let the burst settle.
            loop {
                match tokio::time::timeout(SETTLE, changes.next()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!("The network changed");
            if changes_tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(changes_rx)
}
