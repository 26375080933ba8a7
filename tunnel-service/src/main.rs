//! `ember-tunnel`: the privileged half of Ember.
//!
//! `ember-tunnel run` is the daemon (started by systemd or launchd, or from a console);
//! `ember-tunnel service` is the same daemon under the Windows Service Control Manager;
//! `ember-tunnel status` is a small client of the same IPC for scripts and tests.

use std::future::Future;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use ember_ipc::Endpoint;
use ember_ipc::transport::{AccessPolicy, Listener};
use tokio::sync::watch;

use ember_tunnel_service::identity::Identity;
use ember_tunnel_service::service::{Environment, Service};
use ember_tunnel_service::settings::{self, PlainHttpPortals, SettingsStore};
use ember_tunnel_service::{platform, server, status};

#[derive(Debug, Parser)]
#[command(name = "ember-tunnel", version, about = "Ember's tunnel service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service in the foreground.
    Run(RunArgs),
    /// Run the service under the Windows Service Control Manager (how the installer registers
    /// it); the same options as `run`.
    #[cfg(windows)]
    Service(RunArgs),
    /// Print the service's state as JSON.
    Status {
        /// The service's socket (named pipe on Windows).
        #[arg(long, default_value_os_t = Endpoint::system_default().0)]
        socket: PathBuf,
        /// Keep printing the state, one JSON line per change, until the service stops.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Holds the IPC socket.
    #[arg(long, default_value_os_t = platform::paths::default_runtime_dir())]
    runtime_dir: PathBuf,
    /// Holds the settings, the device id and the WireGuard key.
    #[arg(long, default_value_os_t = platform::paths::default_state_dir())]
    state_dir: PathBuf,
    /// Holds the rotated log files.
    #[arg(long, default_value_os_t = platform::paths::default_log_dir())]
    log_dir: PathBuf,
    /// How the system's DNS is pointed at Ember's resolver while signed in.
    #[arg(long, value_enum, default_value = "auto")]
    dns_mode: platform::dns::DnsMode,
    /// A network (CIDR) where the portal may be reached over plain http, for test worlds;
    /// repeatable. Loopback always may; everything else needs https.
    #[arg(long = "allow-http-portal", value_name = "CIDR")]
    allow_http_portal: Vec<ipnet::IpNet>,
}

/// How long stopping may take to undo the session's changes to the system.
const TEARDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(
            args,
            platform::lifecycle::shutdown_signal(),
            platform::lifecycle::notify_ready,
        )),
        #[cfg(windows)]
        Command::Service(args) => {
            platform::lifecycle::run_as_service(Box::new(move |stop, ready| {
                runtime.block_on(run(args, stop.wait(), ready))
            }))
        }
        Command::Status { socket, watch } => {
            runtime.block_on(status::print(&Endpoint(socket), watch))
        }
    }
}

/// The daemon: stops when `stop` resolves (naming what stopped it), calls `ready` once the IPC
/// endpoint listens.
async fn run(
    args: RunArgs,
    stop: impl Future<Output = &'static str> + Send + 'static,
    ready: impl FnOnce(),
) -> Result<()> {
    platform::paths::create_dirs(&args.runtime_dir, &args.state_dir, &args.log_dir)?;

    let store = SettingsStore::new(&args.state_dir);
    let plain_http = PlainHttpPortals::new(args.allow_http_portal.clone());
    let installed_url = platform::installed::portal_url();
    let (defaults, installed_problem) =
        settings::defaults_with_installed(installed_url.as_deref(), &plain_http);
    let (settings, settings_problem) = match store.load() {
        Ok(Some(saved)) => match plain_http.permit_str(&saved.portal_url) {
            Ok(()) => (saved, installed_problem),
            Err(e) => (defaults, Some(e.to_string())),
        },
        Ok(None) => (defaults, installed_problem),
        Err(e) => (defaults, Some(e.to_string())),
    };
    let filter = std::env::var("EMBER_LOG").unwrap_or_else(|_| settings.log_filter.clone());
    let logs = ember_logging::init(&filter, Some(&args.log_dir), "tunnel")
        .context("cannot set up logging")?;
    tracing::info!(
        version = server::SERVICE_VERSION,
        settings = %store.path().display(),
        "Tunnel service starting"
    );
    if let Some(problem) = settings_problem {
        tracing::warn!("Using default settings: {problem}");
    }

    platform::dns::recover_after_crash(&args.state_dir);
    let identity =
        Identity::load_or_create(&args.state_dir).context("cannot set up the device identity")?;

    let group = platform::accounts::service_group();
    // Windows admits apps by the pipe's DACL, not a group.
    if cfg!(unix) && group.is_none() {
        tracing::warn!(
            "The group `{}` does not exist: only root can use the tunnel service",
            ember_protocol::ipc::SERVICE_GROUP
        );
    }
    let endpoint = Endpoint(args.runtime_dir.join(platform::paths::SOCKET_FILE_NAME));
    let listener = Listener::bind(&endpoint, group)
        .await
        .with_context(|| format!("cannot listen on {endpoint}"))?;
    tracing::info!(%endpoint, "Listening for the Ember app");

    let environment = Environment {
        identity,
        state_dir: args.state_dir.clone(),
        dns_mode: args.dns_mode,
        plain_http,
    };
    let (service, handle, requests) = Service::new(settings, store, Some(logs), environment);
    let service_task = tokio::spawn(service.run(requests));
    let service_handle = handle.clone();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        let signal = stop.await;
        tracing::info!("Received {signal}, stopping");
        let _ = shutdown_tx.send(true);
    });
    ready();

    server::serve(
        listener,
        server::Context {
            service: handle,
            policy: AccessPolicy {
                service_uid: platform::accounts::current_uid(),
                allowed_gid: group,
            },
            log_dir: args.log_dir,
            shutdown: shutdown_rx,
        },
    )
    .await;
    if tokio::time::timeout(TEARDOWN_TIMEOUT, service_handle.shutdown())
        .await
        .is_err()
    {
        tracing::error!("Undoing the session's changes took longer than {TEARDOWN_TIMEOUT:?}");
    }
    service_task.abort();
    tracing::info!("Tunnel service stopped");
    Ok(())
}
