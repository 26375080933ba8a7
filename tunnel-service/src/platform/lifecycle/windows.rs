//! Stopping and readiness on Windows. Under the Service Control Manager (`ember-tunnel
//! service`, see [`scm`]) the SCM's Stop/Shutdown is the shutdown signal and Running is reported
//! once the pipe listens; from a console (`ember-tunnel run`) Ctrl-C stops it.

mod scm;

pub use scm::{Body, SERVICE_NAME, StopSignal, run_as_service};

/// Waits for Ctrl-C (the console form).
pub async fn shutdown_signal() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        Err(_) => std::future::pending().await,
    }
}

/// The console form has nobody to tell.
pub fn notify_ready() {}
