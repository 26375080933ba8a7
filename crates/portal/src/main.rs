//! `ember-portal`: serve the portal, run the demo, or administer the model.
#![allow(clippy::print_stdout)] // the admin CLI's answers are its output

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;

mod bench;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use ember_portal::audit::{AuditEvent, AuditFilter, AuditKind};
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
    Admin(AdminCommand),
    /// Read a password on standard input and print its argon2 hash (for `password_hash`).
    HashPassword,
    /// Run the benchmark: a portal process and many simulated clients and gateways; prints figures.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    #[command(subcommand)]
    Account(AccountCommand),
    #[command(subcommand)]
    User(UserCommand),
    #[command(subcommand)]
    Group(GroupCommand),
    #[command(subcommand)]
    Site(SiteCommand),
    #[command(subcommand)]
    Resource(ResourceCommand),
    #[command(subcommand)]
    Policy(PolicyCommand),
    #[command(subcommand)]
    Gateway(GatewayCommand),
    #[command(subcommand)]
    Token(TokenCommand),
    /// Read the audit log as JSON lines, oldest first (sign-ins, grants, denials,
    /// revocations, admin changes).
    Audit(AuditArgs),
}

impl AdminCommand {
    /// Whether the command changes the model (and so goes into the audit log).
    fn changes_something(&self) -> bool {
        !matches!(
            self,
            Self::Token(TokenCommand::List { .. }) | Self::Audit(_)
        )
    }
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Only events of the last period: `90s`, `30m`, `24h`, `7d`.
    #[arg(long, value_parser = parse_period)]
    last: Option<std::time::Duration>,
    #[arg(long, value_enum)]
    kind: Option<ember_portal::audit::AuditKind>,
    /// A user id, `cli:<login>`, `portal`, or the email a failed sign-in typed.
    #[arg(long)]
    actor: Option<String>,
    /// A resource id, a device id, an account slug.
    #[arg(long)]
    subject: Option<String>,
    /// The account's slug.
    #[arg(long)]
    account: Option<String>,
    /// The newest this many events at most.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

fn parse_period(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a period like 30m, 24h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: the unit is s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(
        number.saturating_mul(seconds),
    ))
}

/// Who ran the admin command, for the audit log.
fn cli_actor() -> String {
    let login = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{login}")
}

#[derive(Debug, Args)]
struct AccountArg {
    /// The account's slug.
    #[arg(long)]
    account: String,
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create or update a user. Without --password-stdin a random password is printed.
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    Disable {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: String,
    },
    Enable {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: String,
    },
    /// Revoke every token of a user: their devices are signed out within a second.
    RevokeTokens {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: String,
    },
    AddMember {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        group: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ResourceCommand {
    /// Create or update a resource.
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        site: String,
        #[arg(long)]
        name: String,
        /// `10.0.0.0/24`, `10.0.0.9`, `db.corp.example`, `*.corp.example`, `?.corp.example`, `internet`.
        #[arg(long)]
        address: String,
        #[arg(long)]
        description: Option<String>,
        /// `tcp`, `udp/53`, `tcp/8000-8100`, `icmp`; repeat for several.
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        group: String,
        #[arg(long)]
        resource: String,
    },
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        group: String,
        #[arg(long)]
        resource: String,
    },
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Create the gateway if needed and print a new token for it.
    Token {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        site: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    List {
        #[command(flatten)]
        account: AccountArg,
    },
    /// Revoke one token by id: a device or gateway using it is disconnected within a second.
    Revoke {
        #[arg(long)]
        id: String,
    },
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
            let audited = command.changes_something().then(|| format!("{command:?}"));
            let result = run_admin(&store, command).await;
            if let Some(what) = audited {
                let outcome = if result.is_ok() { "success" } else { "failure" };
                let event = AuditEvent::now(AuditKind::Admin, outcome, &cli_actor(), &what).detail(
                    serde_json::json!({
                        "error": result.as_ref().err().map(|e| format!("{e:#}")),
                    }),
                );
                if let Err(e) = store.insert_audit_events(&[event]).await {
                    tracing::warn!("The audit log could not record this change: {e}");
                }
            }
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

async fn run_admin(store: &Store, command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Account(AccountCommand::Create { slug, name }) => {
            let id = store.ensure_account(&slug, &name).await?;
            println!("account {slug} ({id})");
        }
        AdminCommand::User(command) => match command {
            UserCommand::Create {
                account,
                email,
                name,
                password_stdin,
            } => {
                let account_id = store.account_id(&account.account).await?;
                let (password, generated) = if password_stdin {
                    let mut password = String::new();
                    std::io::stdin().read_to_string(&mut password)?;
                    (password.trim_end_matches(['\r', '\n']).to_owned(), false)
                } else {
                    (crypto::random_password(), true)
                };
                if password.is_empty() {
                    bail!("the password is empty");
                }
                let hash = crypto::hash_password(&password)?;
                let id = store
                    .ensure_user(&account_id, &email, &name, Some(&hash))
                    .await?;
                println!("user {email} ({id})");
                if generated {
                    println!("password: {password}");
                }
            }
            UserCommand::Disable { account, email } => {
                let user_id = user(store, &account.account, &email).await?;
                store.set_user_disabled(&user_id, true).await?;
                println!("user {email} disabled");
            }
            UserCommand::Enable { account, email } => {
                let user_id = user(store, &account.account, &email).await?;
                store.set_user_disabled(&user_id, false).await?;
                println!("user {email} enabled");
            }
            UserCommand::RevokeTokens { account, email } => {
                let user_id = user(store, &account.account, &email).await?;
                let n = store.revoke_tokens_of(&user_id).await?;
                println!("revoked {n} token(s) of {email}");
            }
        },
        AdminCommand::Group(GroupCommand::Create { account, name }) => {
            let account_id = store.account_id(&account.account).await?;
            let id = store.ensure_group(&account_id, &name).await?;
            println!("group {name} ({id})");
        }
        AdminCommand::Group(GroupCommand::AddMember {
            account,
            group,
            email,
        }) => {
            let account_id = store.account_id(&account.account).await?;
            let group_id = store.group_id(&account_id, &group).await?;
            let user_id = store.user_id(&account_id, &email).await?;
            store.add_group_member(&group_id, &user_id).await?;
            println!("{email} is in {group}");
        }
        AdminCommand::Site(SiteCommand::Create { account, name }) => {
            let account_id = store.account_id(&account.account).await?;
            let id = store.ensure_site(&account_id, &name).await?;
            println!("site {name} ({id})");
        }
        AdminCommand::Resource(ResourceCommand::Create {
            account,
            site,
            name,
            address,
            description,
            filters,
        }) => {
            let account_id = store.account_id(&account.account).await?;
            let site_id = store.site_id(&account_id, &site).await?;
            let id = store
                .upsert_resource(
                    &account_id,
                    &site_id,
                    &name,
                    &address,
                    description.as_deref(),
                    &filters,
                )
                .await?;
            println!("resource {name} ({id})");
        }
        AdminCommand::Resource(ResourceCommand::Delete { account, name }) => {
            let account_id = store.account_id(&account.account).await?;
            let id = store.resource_id(&account_id, &name).await?;
            store.delete_resource(&id).await?;
            println!("resource {name} deleted");
        }
        AdminCommand::Policy(PolicyCommand::Create {
            account,
            group,
            resource,
        }) => {
            let account_id = store.account_id(&account.account).await?;
            let group_id = store.group_id(&account_id, &group).await?;
            let resource_id = store.resource_id(&account_id, &resource).await?;
            store
                .ensure_policy(&account_id, &group_id, &resource_id)
                .await?;
            println!("{group} may use {resource}");
        }
        AdminCommand::Policy(PolicyCommand::Delete {
            account,
            group,
            resource,
        }) => {
            let account_id = store.account_id(&account.account).await?;
            let group_id = store.group_id(&account_id, &group).await?;
            let resource_id = store.resource_id(&account_id, &resource).await?;
            store.delete_policy(&group_id, &resource_id).await?;
            println!("{group} may no longer use {resource}");
        }
        AdminCommand::Gateway(GatewayCommand::Token {
            account,
            site,
            name,
        }) => {
            let account_id = store.account_id(&account.account).await?;
            let site_id = store.site_id(&account_id, &site).await?;
            let token = admin::create_gateway_token(store, &account_id, &site_id, &name).await?;
            println!("gateway token for {name}: {token}");
        }
        AdminCommand::Token(TokenCommand::List { account }) => {
            let account_id = store.account_id(&account.account).await?;
            for token in store.list_tokens(&account_id).await? {
                let owner = token.user_id.or(token.gateway_id).unwrap_or_default();
                let state = match (token.revoked_at, token.expires_at) {
                    (Some(_), _) => "revoked".to_owned(),
                    (None, Some(e)) => format!("expires {e}"),
                    (None, None) => "no expiry".to_owned(),
                };
                println!("{}\t{:?}\t{owner}\t{state}", token.id, token.kind);
            }
        }
        AdminCommand::Token(TokenCommand::Revoke { id }) => {
            store.revoke_token(&id).await?;
            println!("token {id} revoked");
        }
        AdminCommand::Audit(args) => {
            let account_id = match &args.account {
                Some(slug) => Some(store.account_id(slug).await?),
                None => None,
            };
            let filter = AuditFilter {
                since_ms: args.last.map(|period| {
                    ember_portal::audit::now_ms()
                        .saturating_sub(i64::try_from(period.as_millis()).unwrap_or(i64::MAX))
                }),
                until_ms: None,
                kind: args.kind,
                actor: args.actor,
                subject: args.subject,
                account_id,
                limit: Some(args.limit),
            };
            let mut out = std::io::stdout().lock();
            for event in store.audit_events(&filter).await? {
                serde_json::to_writer(&mut out, &event)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

async fn user(store: &Store, account: &str, email: &str) -> Result<String> {
    let account_id = store.account_id(account).await?;
    Ok(store.user_id(&account_id, email).await?)
}
