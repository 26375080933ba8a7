//! `ember-portal admin …`: arguments parsed into typed values, then the operations of
//! `ember_portal::admin` (the ones the admin API runs), acting as `cli:<login>`.

use std::io::{Read as _, Write as _};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use ember_portal::admin::input::{Address, Description, Email, FilterSpec, Name, Password};
use ember_portal::admin::resources::ResourceSpec;
use ember_portal::admin::users::{NewUser, UserUpdate};
use ember_portal::admin::{self, Admin};
use ember_portal::audit::{AuditEvent, AuditFilter, AuditKind};
use ember_portal::crypto;
use ember_portal::store::Store;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
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
    #[command(subcommand)]
    ServiceAccount(ServiceAccountCommand),
    /// Read the audit log as JSON lines, oldest first (sign-ins, grants, denials,
    /// revocations, admin changes).
    Audit(AuditArgs),
}

impl AdminCommand {
    /// Whether the command changes the model (and so a failure goes into the audit log; a
    /// success is recorded by the operation itself).
    fn changes_something(&self) -> bool {
        !matches!(
            self,
            Self::Token(TokenCommand::List { .. }) | Self::Audit(_)
        )
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
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
pub struct AccountArg {
    /// The account's slug.
    #[arg(long)]
    account: String,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create or update a user. Without --password-stdin a random password is printed.
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
        #[arg(long)]
        name: Name,
        #[arg(long)]
        password_stdin: bool,
    },
    Disable {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
    },
    Enable {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
    },
    /// Delete a user with their tokens, devices and memberships; their devices are signed out.
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
    },
    /// Give a user the admin role: their admin tokens and sign-in tokens may use the admin API.
    GrantAdmin {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
    },
    /// Take the admin role away; the user's tokens are refused by the admin API at once.
    RevokeAdmin {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
    },
    /// Revoke every token of a user: their devices are signed out within a second.
    RevokeTokens {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceAccountCommand {
    /// Create a service account (no interactive sign-in) and print its long-lived token.
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: Name,
    },
    /// Delete a group with its memberships and policies.
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: Name,
    },
    AddMember {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        group: Name,
        #[arg(long)]
        email: Email,
    },
    RemoveMember {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        group: Name,
        #[arg(long)]
        email: Email,
    },
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: Name,
    },
    /// Delete a site with its resources and gateways.
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Create or update a resource.
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        site: Name,
        #[arg(long)]
        name: Name,
        /// `10.0.0.0/24`, `10.0.0.9`, `db.corp.example`, `*.corp.example`, `?.corp.example`, `internet`.
        #[arg(long)]
        address: Address,
        #[arg(long)]
        description: Option<String>,
        /// `tcp`, `udp/53`, `tcp/8000-8100`, `icmp`; repeat for several.
        #[arg(long = "filter")]
        filters: Vec<FilterSpec>,
    },
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        group: Name,
        #[arg(long)]
        resource: Name,
    },
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        group: Name,
        #[arg(long)]
        resource: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Create the gateway if needed and print a new token for it.
    Token {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        site: Name,
        #[arg(long)]
        name: Name,
    },
    /// Delete a gateway and its tokens; its connection is closed.
    Delete {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        site: Name,
        #[arg(long)]
        name: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    List {
        #[command(flatten)]
        account: AccountArg,
    },
    /// Revoke one token by id: a device or gateway using it is disconnected within a second.
    Revoke {
        #[arg(long)]
        id: String,
    },
    /// Print a new admin API token for a user with the admin role (see `user grant-admin`).
    CreateAdmin {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        email: Email,
    },
}

/// Runs one admin command; a change that failed is recorded in the audit log too.
pub async fn run(store: &Store, command: AdminCommand) -> Result<()> {
    let audited = command.changes_something().then(|| format!("{command:?}"));
    let actor = cli_actor();
    let result = run_command(store, &actor, command).await;
    if let (Some(what), Err(e)) = (audited, &result) {
        let event = AuditEvent::now(AuditKind::Admin, "failure", &actor, &what)
            .detail(serde_json::json!({ "error": format!("{e:#}") }));
        if let Err(e) = store.insert_audit_events(&[event]).await {
            tracing::warn!("The audit log could not record this failed change: {e}");
        }
    }
    result
}

async fn acting<'a>(store: &'a Store, actor: &str, account: &AccountArg) -> Result<Admin<'a>> {
    let account_id = store.account_id(&account.account).await?;
    Ok(Admin::new(store, account_id, actor))
}

async fn user_id(admin: &Admin<'_>, email: &Email) -> Result<String> {
    match admin::users::find(admin, email).await? {
        Some(user) => Ok(user.id),
        None => bail!("user `{}` not found", email.as_str()),
    }
}

async fn group_id(admin: &Admin<'_>, name: &Name) -> Result<String> {
    match admin::groups::find(admin, name).await? {
        Some(group) => Ok(group.id),
        None => bail!("group `{}` not found", name.as_str()),
    }
}

async fn site_id(admin: &Admin<'_>, name: &Name) -> Result<String> {
    match admin::sites::find(admin, name).await? {
        Some(site) => Ok(site.id),
        None => bail!("site `{}` not found", name.as_str()),
    }
}

async fn resource_id(admin: &Admin<'_>, name: &Name) -> Result<String> {
    match admin::resources::find(admin, name).await? {
        Some(resource) => Ok(resource.id),
        None => bail!("resource `{}` not found", name.as_str()),
    }
}

async fn run_command(store: &Store, actor: &str, command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Account(AccountCommand::Create { slug, name }) => {
            let id = admin::create_account(store, actor, &slug, &name).await?;
            println!("account {slug} ({id})");
        }
        AdminCommand::User(command) => run_user(store, actor, command).await?,
        AdminCommand::ServiceAccount(ServiceAccountCommand::Create { account, name }) => {
            let admin = acting(store, actor, &account).await?;
            let (user, token) = admin::users::create_service_account(&admin, name).await?;
            println!("service account {} ({})", user.name, user.id);
            println!("token: {}", token.token);
        }
        AdminCommand::Group(command) => run_group(store, actor, command).await?,
        AdminCommand::Site(SiteCommand::Create { account, name }) => {
            let admin = acting(store, actor, &account).await?;
            let site = match admin::sites::find(&admin, &name).await? {
                Some(site) => site,
                None => admin::sites::create(&admin, name).await?,
            };
            println!("site {} ({})", site.name, site.id);
        }
        AdminCommand::Site(SiteCommand::Delete { account, name }) => {
            let admin = acting(store, actor, &account).await?;
            let id = site_id(&admin, &name).await?;
            admin::sites::delete(&admin, &id).await?;
            println!("site {} deleted", name.as_str());
        }
        AdminCommand::Resource(command) => run_resource(store, actor, command).await?,
        AdminCommand::Policy(command) => run_policy(store, actor, command).await?,
        AdminCommand::Gateway(GatewayCommand::Token {
            account,
            site,
            name,
        }) => {
            let admin = acting(store, actor, &account).await?;
            let site_id = site_id(&admin, &site).await?;
            let shown = name.as_str().to_owned();
            let token = admin::sites::ensure_gateway_with_token(&admin, &site_id, name).await?;
            println!("gateway token for {shown}: {}", token.token);
        }
        AdminCommand::Gateway(GatewayCommand::Delete {
            account,
            site,
            name,
        }) => {
            let admin = acting(store, actor, &account).await?;
            let site_id = site_id(&admin, &site).await?;
            let Some(gateway) = admin::sites::list_gateways(&admin)
                .await?
                .into_iter()
                .find(|g| g.site_id == site_id && g.name == name.as_str())
            else {
                bail!("gateway `{}` not found in {}", name.as_str(), site.as_str());
            };
            admin::sites::delete_gateway(&admin, &gateway.id).await?;
            println!("gateway {} deleted", name.as_str());
        }
        AdminCommand::Token(command) => run_token(store, actor, command).await?,
        AdminCommand::Audit(args) => print_audit(store, args).await?,
    }
    Ok(())
}

async fn run_user(store: &Store, actor: &str, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Create {
            account,
            email,
            name,
            password_stdin,
        } => {
            let admin = acting(store, actor, &account).await?;
            let (password, generated) = if password_stdin {
                let mut password = String::new();
                std::io::stdin().read_to_string(&mut password)?;
                (password.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (crypto::random_password(), true)
            };
            let password = Password::try_from(password.clone())
                .map_err(anyhow::Error::msg)
                .context("the password is empty")?;
            let user = match admin::users::find(&admin, &email).await? {
                Some(existing) => {
                    let update = UserUpdate {
                        name: Some(name),
                        password: Some(password.clone()),
                        ..UserUpdate::default()
                    };
                    admin::users::update(&admin, &existing.id, update).await?
                }
                None => {
                    let user = NewUser {
                        email,
                        name,
                        password: Some(password.clone()),
                        admin: false,
                    };
                    admin::users::create(&admin, user).await?
                }
            };
            println!("user {} ({})", user.email, user.id);
            if generated {
                println!("password: {}", password.expose());
            }
        }
        UserCommand::Disable { account, email } => {
            let admin = acting(store, actor, &account).await?;
            let id = user_id(&admin, &email).await?;
            admin::users::set_disabled(&admin, &id, true).await?;
            println!("user {} disabled", email.as_str());
        }
        UserCommand::Enable { account, email } => {
            let admin = acting(store, actor, &account).await?;
            let id = user_id(&admin, &email).await?;
            admin::users::set_disabled(&admin, &id, false).await?;
            println!("user {} enabled", email.as_str());
        }
        UserCommand::Delete { account, email } => {
            let admin = acting(store, actor, &account).await?;
            let id = user_id(&admin, &email).await?;
            admin::users::delete(&admin, &id).await?;
            println!("user {} deleted", email.as_str());
        }
        UserCommand::GrantAdmin { account, email } => {
            let admin = acting(store, actor, &account).await?;
            let id = user_id(&admin, &email).await?;
            admin::users::set_admin(&admin, &id, true).await?;
            println!("{} is an admin", email.as_str());
        }
        UserCommand::RevokeAdmin { account, email } => {
            let admin = acting(store, actor, &account).await?;
            let id = user_id(&admin, &email).await?;
            admin::users::set_admin(&admin, &id, false).await?;
            println!("{} is no longer an admin", email.as_str());
        }
        UserCommand::RevokeTokens { account, email } => {
            let admin = acting(store, actor, &account).await?;
            let id = user_id(&admin, &email).await?;
            let n = admin::users::revoke_tokens(&admin, &id).await?;
            println!("revoked {n} token(s) of {}", email.as_str());
        }
    }
    Ok(())
}

async fn run_group(store: &Store, actor: &str, command: GroupCommand) -> Result<()> {
    match command {
        GroupCommand::Create { account, name } => {
            let admin = acting(store, actor, &account).await?;
            let group = match admin::groups::find(&admin, &name).await? {
                Some(group) => group,
                None => admin::groups::create(&admin, name).await?,
            };
            println!("group {} ({})", group.name, group.id);
        }
        GroupCommand::Delete { account, name } => {
            let admin = acting(store, actor, &account).await?;
            let id = group_id(&admin, &name).await?;
            admin::groups::delete(&admin, &id).await?;
            println!("group {} deleted", name.as_str());
        }
        GroupCommand::AddMember {
            account,
            group,
            email,
        } => {
            let admin = acting(store, actor, &account).await?;
            let group_id = group_id(&admin, &group).await?;
            let user_id = user_id(&admin, &email).await?;
            admin::groups::add_member(&admin, &group_id, &user_id).await?;
            println!("{} is in {}", email.as_str(), group.as_str());
        }
        GroupCommand::RemoveMember {
            account,
            group,
            email,
        } => {
            let admin = acting(store, actor, &account).await?;
            let group_id = group_id(&admin, &group).await?;
            let user_id = user_id(&admin, &email).await?;
            admin::groups::remove_member(&admin, &group_id, &user_id).await?;
            println!("{} is no longer in {}", email.as_str(), group.as_str());
        }
    }
    Ok(())
}

async fn run_resource(store: &Store, actor: &str, command: ResourceCommand) -> Result<()> {
    match command {
        ResourceCommand::Create {
            account,
            site,
            name,
            address,
            description,
            filters,
        } => {
            let admin = acting(store, actor, &account).await?;
            let spec = ResourceSpec {
                site_id: site_id(&admin, &site).await?,
                name,
                address,
                description: description
                    .map(Description::try_from)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                filters,
            };
            let resource = admin::resources::save(&admin, spec).await?;
            println!("resource {} ({})", resource.name, resource.id);
        }
        ResourceCommand::Delete { account, name } => {
            let admin = acting(store, actor, &account).await?;
            let id = resource_id(&admin, &name).await?;
            admin::resources::delete(&admin, &id).await?;
            println!("resource {} deleted", name.as_str());
        }
    }
    Ok(())
}

async fn run_policy(store: &Store, actor: &str, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Create {
            account,
            group,
            resource,
        } => {
            let admin = acting(store, actor, &account).await?;
            let group_id = group_id(&admin, &group).await?;
            let resource_id = resource_id(&admin, &resource).await?;
            if admin::resources::find_policy(&admin, &group_id, &resource_id)
                .await?
                .is_none()
            {
                admin::resources::create_policy(&admin, &group_id, &resource_id).await?;
            }
            println!("{} may use {}", group.as_str(), resource.as_str());
        }
        PolicyCommand::Delete {
            account,
            group,
            resource,
        } => {
            let admin = acting(store, actor, &account).await?;
            let group_id = group_id(&admin, &group).await?;
            let resource_id = resource_id(&admin, &resource).await?;
            let Some(policy) =
                admin::resources::find_policy(&admin, &group_id, &resource_id).await?
            else {
                bail!("{} has no policy for {}", group.as_str(), resource.as_str());
            };
            admin::resources::delete_policy(&admin, &policy.id).await?;
            println!("{} may no longer use {}", group.as_str(), resource.as_str());
        }
    }
    Ok(())
}

async fn run_token(store: &Store, actor: &str, command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::List { account } => {
            let admin = acting(store, actor, &account).await?;
            for token in admin::tokens::list(&admin).await? {
                let owner = token.user_id.or(token.gateway_id).unwrap_or_default();
                let state = match (token.revoked_at, token.expires_at) {
                    (Some(_), _) => "revoked".to_owned(),
                    (None, Some(e)) => format!("expires {e}"),
                    (None, None) => "no expiry".to_owned(),
                };
                println!("{}\t{}\t{owner}\t{state}", token.id, token.kind);
            }
        }
        TokenCommand::Revoke { id } => {
            // The CLI names no account here: the token's own is the one acted on.
            let Some(token) = store.token_by_id(&id).await? else {
                bail!("token `{id}` not found");
            };
            let admin = Admin::new(store, token.account_id, actor);
            admin::tokens::revoke(&admin, &id).await?;
            println!("token {id} revoked");
        }
        TokenCommand::CreateAdmin { account, email } => {
            let admin = acting(store, actor, &account).await?;
            let id = user_id(&admin, &email).await?;
            let token = admin::users::issue_admin_token(&admin, &id).await?;
            println!(
                "admin token for {} ({}): {}",
                email.as_str(),
                token.id,
                token.token
            );
        }
    }
    Ok(())
}

async fn print_audit(store: &Store, args: AuditArgs) -> Result<()> {
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
    Ok(())
}
