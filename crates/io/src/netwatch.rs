//! Noticing that the network under the tunnel changed: a route (and with it, usually, an
//! address) appeared, vanished or changed on any interface but our own TUN device. The device
//! moved networks; every connection should start over (`Command::Reset`).
//!
//! Link-local and multicast routes are not the network: an interface's link-local address
//! finishing duplicate address detection (seconds after it came up, or a virtual interface of
//! another program) must not tear down working connections. Such addresses are never ICE
//! candidates either.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc;

/// Changes come in bursts (an interface going down drops all its routes); one report per burst.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Reports each burst of changes as one `()`. Runs until the receiver is dropped. Call inside
/// a tokio runtime, in the network namespace to watch.
pub fn watch(ignore_interface: u32) -> io::Result<mpsc::Receiver<()>> {
    let mut changes = crate::route_table::listen()?;
    let (changes_tx, changes_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            if change.interface == Some(ignore_interface) || !matters(change.destination) {
                continue;
            }
            // Let the burst settle.
            loop {
                match tokio::time::timeout(SETTLE, changes.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!(
                first = %format_args!("{}/{}", change.destination, change.prefix),
                ifindex = ?change.interface,
                table = ?change.table,
                "The network changed"
            );
            if changes_tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(changes_rx)
}

/// Whether a route to `destination` can change how the device reaches the internet.
fn matters(destination: IpAddr) -> bool {
    !crate::driver::is_link_local(&destination) && !destination.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_multicast_routes_are_not_a_network_change() {
        for quiet in [
            "fe80::142f:55ff:febe:e90",
            "fe80::",
            "ff00::",
            "169.254.1.1",
            "224.0.0.0",
        ] {
            assert!(!matters(quiet.parse().unwrap()), "{quiet}");
        }
        for change in ["0.0.0.0", "192.168.1.0", "::", "2001:db8::1", "fd00::1"] {
            assert!(matters(change.parse().unwrap()), "{change}");
        }
    }
}
