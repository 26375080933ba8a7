//! Stopping on Windows when run from a console: Ctrl-C.

pub async fn shutdown_signal() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        Err(_) => std::future::pending().await,
    }
}

pub fn notify_ready() {}
