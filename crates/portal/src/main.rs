//! `ember-portal`: serve the portal, run the demo, or administer the model.
#![allow(clippy::print_stdout)] // the admin CLI's answers are its output

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;

mod admin_cli;
mod bench;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use ember_portal::store::Store;
use ember_portal::{Config, Portal, admin, crypto};

#[derive(Debug, Parser)]
#[command(
    name = "ember-portal",
    version,
    about = "Ember's self-hostable control plane"
)]
struct Cli {
    /// The TOML configuration (defaults apply without one).
    #[arg(long, short, global = true, env = "EMBER_PORTAL_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `server.database` (`sqlite://portal.db`, `postgres://…`).
    #[arg(long, global = true, env = "EMBER_PORTAL_DATABASE")]
    database: Option<String>,
    /// Overrides `server.listen`.
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Same as the `demo` command.
    #[arg(long)]
    demo: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sign-in page and the client and gateway APIs (the default).
    Serve,
    /// Create a demo account, user, site, gateway token and resource, print them, then serve.
    Demo,
    /// Change the model in the database; running portals pick changes up within a second.
    #[command(subcommand)]
    Admin(admin_cli::AdminCommand),
    /// Read a password on standard input and print its argon2 hash (for `password_hash`).
    HashPassword,
    /// Run the benchmark: a portal process and many simulated clients and gateways; prints figures.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let _log = ember_logging::init(
        &std::env::var("EMBER_LOG").unwrap_or_else(|_| "info".into()),
        None,
        "portal",
    )
    .context("cannot set up logging")?;
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::parse("")?,
    };
    if let Some(database) = cli.database {
        config.server.database = database;
    }
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
    }
    let command = match (cli.demo, cli.command) {
        (true, None | Some(Command::Demo)) => Command::Demo,
        (true, Some(_)) => bail!("--demo cannot be combined with another command"),
        (false, command) => command.unwrap_or(Command::Serve),
    };
    match command {
        Command::Serve => serve(config).await,
        Command::Demo => {
            let store = Store::connect(&config.server.database)
                .await
                .with_context(|| format!("cannot open the database {}", config.server.database))?;
            let demo = admin::demo(&store)
                .await
                .context("cannot create the demo")?;
            store.close().await;
            let url = format!("http://{}", config.server.listen);
            println!("Ember portal demo");
            println!("  portal:         {url}");
            println!("  account:        {}", demo.account);
            println!("  user:           {}", demo.email);
            println!("  password:       {}", demo.password);
            println!("  site:           {}", demo.site);
            println!("  gateway token:  {}", demo.gateway_token);
            println!("  resource:       {}", demo.resource);
            println!(
                "  sign-in page:   {url}/sign-in?as=client&state=<64 hex>&challenge=<43 base64url> (the app opens it)"
            );
            serve(config).await
        }
        Command::Admin(command) => {
            let store = Store::connect(&config.server.database)
                .await
                .with_context(|| format!("cannot open the database {}", config.server.database))?;
            let result = admin_cli::run(&store, command).await;
            store.close().await;
            result
        }
        Command::Bench(args) => bench::run(args).await,
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("the password is empty");
            }
            println!("{}", crypto::hash_password(password)?);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    let listen = config.server.listen;
    let mut portal = Portal::start(config)
        .await
        .with_context(|| format!("cannot start the portal on {listen}"))?;
    tracing::info!(
        addr = %portal.addr,
        "serving; stop with Ctrl-C or SIGTERM, reload the TLS certificate with SIGHUP"
    );
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => {
                if let Err(e) = portal.reload_tls() {
                    tracing::error!("Keeping the TLS certificate in use: {e}");
                }
            }
            result = portal.wait() => {
                result.context("the server stopped")?;
                return Ok(());
            }
        }
    }
    tracing::info!("stopping");
    portal.shutdown().await;
    Ok(())
}
