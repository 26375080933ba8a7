//! Windows: `ember-tunnel service` is the entry point the Service Control Manager starts (the
//! MSI registers it as `EmberTunnel`: LocalSystem, automatic start, restarted on failure).
//! `ember-tunnel run` stays the console form for development.
//!
//! For `tunnel-service/src/platform/windows/service.rs` (the service owner moves it there);
//! not compiled on the Linux CI. It needs, in `tunnel-service`:
//! - `[target.'cfg(windows)'.dependencies] windows-service = "0.8"`;
//! - `main.rs`: a `#[cfg(windows)] Command::Service` that calls
//!   `platform::service::run_as_service(|args, stop, ready| runtime.block_on(run(args, stop, ready)))`,
//!   and `run()` taking the stop signal and the readiness callback as parameters instead of
//!   calling `platform::shutdown_signal()` and `platform::notify_ready()` itself (Linux and
//!   macOS pass those two, so nothing changes there).

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::watch;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

pub const SERVICE_NAME: &str = "EmberTunnel";

/// What the service body is: the same `run` as the console form, given a stop signal (the
/// SCM's Stop or Shutdown) and a callback for "ready" (the SCM hears Running).
pub type Body = fn(StopSignal, Box<dyn FnOnce() + Send>) -> Result<()>;

/// Resolves when the SCM asks the service to stop; names the request for the log.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<Option<&'static str>>);

impl StopSignal {
    pub async fn wait(mut self) -> &'static str {
        loop {
            if let Some(reason) = *self.0.borrow_and_update() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                return "the service control handler went away";
            }
        }
    }
}

static BODY: OnceLock<Body> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service has stopped. Fails at once when the
/// process was not started by the SCM (then use `ember-tunnel run`).
pub fn run_as_service(body: Body) -> Result<()> {
    let _ = BODY.set(body);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
        .context("not started by the Service Control Manager (use `ember-tunnel run`)")
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!("The tunnel service failed: {e:#}");
    }
}

fn serve() -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(None);
    let handler = move |control| match control {
        ServiceControl::Stop => {
            let _ = stop_tx.send(Some("a stop request"));
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Shutdown => {
            let _ = stop_tx.send(Some("system shutdown"));
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(SERVICE_NAME, handler)
        .context("cannot register the service control handler")?;
    let report = move |state: ServiceState, exit_code: u32| {
        let accepted = if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        };
        handle.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accepted,
            exit_code: ServiceExitCode::ServiceSpecific(exit_code),
            checkpoint: 0,
            // Stopping restores DNS and routes; give it the time the Linux unit gets.
            wait_hint: Duration::from_secs(20),
            process_id: None,
        })
    };
    report(ServiceState::StartPending, 0)?;
    let Some(body) = BODY.get().copied() else {
        report(ServiceState::Stopped, 1)?;
        anyhow::bail!("run_as_service was not given the service body");
    };
    let ready_report = report.clone();
    let result = body(
        StopSignal(stop_rx),
        Box::new(move || {
            if let Err(e) = ready_report(ServiceState::Running, 0) {
                tracing::warn!("Cannot tell the SCM the service runs: {e}");
            }
        }),
    );
    // A non-zero exit code makes the SCM apply the restart-on-failure actions.
    report(ServiceState::Stopped, u32::from(result.is_err()))?;
    result
}
