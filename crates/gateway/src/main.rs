//! `ember-gateway`: the far end of Ember's tunnels, in the customer's network.
//!
//! It connects to the portal with its gateway token, owns a TUN device with the tunnel address
//! the portal assigns, runs the connection engine in the gateway role, checks every packet
//! against the grants the portal pushes (the library's `GatewayState`, run by `ember_io`'s
//! driver) and forwards what passes to the resources, masqueraded behind this host's address
//! (nftables).

mod controller;
mod key;
mod resolve;
mod system;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Parser;

/// The environment variable that may carry the gateway token (instead of `--token-file`).
const TOKEN_ENV: &str = "EMBER_GATEWAY_TOKEN";

#[derive(Debug, Parser)]
#[command(
    name = "ember-gateway",
    version,
    about = "Ember's gateway: the far end of tunnels, in the customer's network"
)]
struct Cli {
    /// The portal, e.g. `https://portal.example.com` or `http://127.0.0.1:8080`.
    #[arg(long)]
    portal_url: String,
    /// A file holding the gateway token. Without it the token comes from the environment
    /// variable EMBER_GATEWAY_TOKEN; it is never taken from the command line.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Where the WireGuard private key is kept (created on first start, mode 0600).
    #[arg(long, default_value = "/var/lib/ember-gateway")]
    state_dir: PathBuf,
    /// Also write daily-rotated log files here.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The TUN device's name; also names the nftables table, so gateways sharing a network
    /// namespace need different names.
    #[arg(long, default_value = "ember-gw0")]
    tun_name: String,
    /// DNS servers for DNS resources (repeatable). Default: the system resolver.
    #[arg(long = "resolver", value_name = "IP:PORT")]
    resolvers: Vec<SocketAddr>,
    /// The name the portal shows for this gateway (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Seconds within which the portal must send a grant again after the link to it came
    /// back; grants it does not confirm are dropped.
    #[arg(long, default_value_t = 120, hide = true)]
    reconfirm_secs: u64,
    /// Log filter, e.g. `info` or `info,ember_gateway=debug` (also EMBER_LOG).
    #[arg(long, env = "EMBER_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = match ember_logging::init(&cli.log, cli.log_dir.as_deref(), "gateway") {
        Ok(handle) => handle,
        Err(e) => {
            report_fatal(&format!("cannot set up logging: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("Cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let token = read_token(cli.token_file.as_deref())?;
    let private_key = key::load_or_create(&cli.state_dir)?;
    let name = match cli.name {
        Some(name) => name,
        None => system::hostname().unwrap_or_else(|| "ember-gateway".into()),
    };
    let resolver = resolve::Resolver::new(cli.resolvers);
    controller::run(controller::Options {
        portal_url: cli.portal_url,
        token: ember_protocol::SecretToken::new(token),
        name,
        private_key,
        tun_name: cli.tun_name,
        resolver,
        reconfirm_within: std::time::Duration::from_secs(cli.reconfirm_secs),
        state_dir: cli.state_dir,
    })
    .await
}

/// The token from `--token-file` or the environment, trimmed; never logged.
fn read_token(file: Option<&std::path::Path>) -> Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?,
        None => match std::env::var(TOKEN_ENV) {
            Ok(token) => token,
            Err(_) => bail!("no gateway token: pass --token-file PATH or set {TOKEN_ENV}"),
        },
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the gateway token is empty");
    }
    Ok(token)
}

/// Before logging exists, stderr is the only way to say why we stop.
#[allow(clippy::print_stderr)]
fn report_fatal(message: &str) {
    eprintln!("ember-gateway: {message}");
}
