//! Readiness under systemd.

/// Tells systemd (`Type=notify`) that the socket is ready; a no-op outside systemd.
pub fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(socket) => socket,
        Err(e) => return tracing::warn!("Cannot notify systemd: {e}"),
    };
    // A leading '@' names a socket in the abstract namespace.
    let result = match path.as_encoded_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(b"READY=1", &addr))
        }
        None => socket.send_to(b"READY=1", &path),
    };
    if let Err(e) = result {
        tracing::warn!("Cannot notify systemd: {e}");
    }
}
