//! `ember-tunnel service`: the entry point the Service Control Manager starts (the MSI
//! registers it as `EmberTunnel`: LocalSystem, automatic start, restarted on failure).
//! `ember-tunnel run` stays the console form for development.
//!
//! The body is the same `run` as the console form, given the SCM's Stop or Shutdown as its
//! shutdown signal and a callback that reports Running once the IPC endpoint listens. Without
//! the dispatcher the SCM would kill the process after 30 s (error 1053).

use std::ffi::OsString;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::watch;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

/// The service's name in the SCM; `installer/windows/ember.wxs` registers the same.
pub const SERVICE_NAME: &str = "EmberTunnel";

/// Stopping restores DNS and routes; the SCM waits this long before it presumes a hang.
const STOP_WAIT_HINT: Duration = Duration::from_secs(20);

/// The service body: the console form's `run`, given the stop signal and the readiness callback.
pub type Body = Box<dyn FnOnce(StopSignal, Box<dyn FnOnce() + Send>) -> Result<()> + Send>;

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

/// The dispatcher calls `service_main` without arguments of ours: the body waits here.
static BODY: Mutex<Option<Body>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service has stopped. Fails at once when the
/// process was not started by the SCM (then use `ember-tunnel run`).
pub fn run_as_service(body: Body) -> Result<()> {
    if let Ok(mut slot) = BODY.lock() {
        *slot = Some(body);
    }
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
            let _ = stop_tx.send(Some("a stop request from the service manager"));
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
    let report = move |state: ServiceState, exit: Exit| {
        handle.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accepted_controls(state),
            exit_code: exit.code(),
            checkpoint: 0,
            wait_hint: STOP_WAIT_HINT,
            process_id: None,
        })
    };
    report(ServiceState::StartPending, Exit::Clean)?;
    let body = BODY.lock().ok().and_then(|mut slot| slot.take());
    let Some(body) = body else {
        report(ServiceState::Stopped, Exit::Failed)?;
        anyhow::bail!("run_as_service was not given the service body");
    };
    let ready_report = report;
    let result = body(
        StopSignal(stop_rx),
        Box::new(move || {
            if let Err(e) = ready_report(ServiceState::Running, Exit::Clean) {
                tracing::warn!("Cannot tell the service manager the service runs: {e}");
            }
        }),
    );
    if let Err(e) = &result {
        tracing::error!("The tunnel service stopped with an error: {e:#}");
    }
    report(ServiceState::Stopped, Exit::of(&result))?;
    result
}

fn accepted_controls(state: ServiceState) -> ServiceControlAccept {
    if state == ServiceState::Running {
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
    } else {
        ServiceControlAccept::empty()
    }
}

/// How the service ended, as the SCM needs it: a clean stop must report exit code 0, or the
/// SCM (with the MSI's "restart also after a stop with an error" flag) restarts a service the
/// administrator just stopped; a failure reports a service-specific error, which triggers the
/// recovery actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Clean,
    Failed,
}

impl Exit {
    fn of<T>(result: &Result<T>) -> Self {
        if result.is_ok() {
            Self::Clean
        } else {
            Self::Failed
        }
    }

    fn code(self) -> ServiceExitCode {
        match self {
            Self::Clean => ServiceExitCode::Win32(0),
            Self::Failed => ServiceExitCode::ServiceSpecific(1),
        }
    }
}
