//! `ember-e2e demo`: the local demo in network namespaces, for `scripts/run.sh` and for people.
//!
//! The same world as the tests, with fixed names (`ember-demo-*` namespaces), a veth from this
//! machine into the demo's internet (so a browser here can open the portal's sign-in page),
//! and the tunnel service's socket where the tray app looks for it. The machine's own DNS and
//! default route are never touched: the resource is reached from the client namespace.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use ember_e2e::{Options, World, addr, portal};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the tunnel service puts its socket (the tray app's default is /run/ember).
    #[arg(long, default_value = "/run/ember")]
    runtime_dir: PathBuf,
    /// Written once everything is up (for scripts that wait for the demo).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Do not sign the tunnel service in (sign in from the app instead).
    #[arg(long)]
    no_sign_in: bool,
}

const PREFIX: &str = "ember-demo";
const UPLINK: &str = "ember-demo0";

pub fn run(args: DemoArgs) -> Result<()> {
    let mut world = World::start(Options {
        prefix: Some(PREFIX.into()),
        host_uplink: Some(UPLINK.into()),
        service_runtime_dir: Some(args.runtime_dir.clone()),
        ..Options::infrastructure_only()
    })
    .context("cannot build the demo")?;
    let client_ns = world.client.host.ns.clone();

    let mut problems = Vec::new();
    if let Err(e) = world.start_gateway() {
        problems.push(format!("the gateway did not start: {e}"));
    }
    let service = world.start_tunnel();
    if let Err(e) = &service {
        problems.push(format!("the tunnel service did not start: {e}"));
    }
    let mut signed_in = false;
    if service.is_ok() && !args.no_sign_in {
        match world.sign_in_as(portal::ADA) {
            Ok(_) => signed_in = true,
            Err(e) => problems.push(format!("the tunnel service did not sign in: {e}")),
        }
    }

    println!(
        "Ember demo is up (namespaces {PREFIX}-*; logs in {})",
        world.dir().display()
    );
    println!(
        "  portal:    {}  (from this machine through {UPLINK})",
        world.portal_url()
    );
    println!("  account:   {}", portal::ACCOUNT);
    println!("  user:      {}", portal::ADA);
    println!("  password:  {}", world.password);
    println!("  relay:     turn:{}", world.coturn.addr);
    println!(
        "  resources: http://{}/ (tcp/80 only), http://{}/, any name under {}",
        addr::WEB_NAME,
        addr::RESOURCE,
        addr::APPS_PATTERN
    );
    println!(
        "  service:   {} ({})",
        world.service_socket().display(),
        if signed_in {
            "signed in as Ada"
        } else {
            "not signed in"
        }
    );
    println!(
        "  try:       sudo ip netns exec {client_ns} curl http://{}/",
        addr::WEB_NAME
    );
    println!(
        "             sudo {} status --socket {}",
        world
            .bins
            .tunnel()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "ember-tunnel".into()),
        world.service_socket().display()
    );
    if signed_in {
        match world.client_curl(
            &format!("http://{}/", addr::WEB_NAME),
            std::time::Duration::from_secs(15),
        ) {
            Ok(page) => println!(
                "  checked:   curl http://{}/ → {} {}",
                addr::WEB_NAME,
                page.status,
                page.text().trim()
            ),
            Err(e) => problems.push(format!(
                "the demo resource is not reachable by name yet: {e}"
            )),
        }
    }
    for problem in &problems {
        eprintln!("demo: {problem}");
    }
    if let Some(ready) = &args.ready_file {
        std::fs::write(ready, problems.join("\n")).context("cannot write the ready file")?;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })?;
    println!("demo: stopping");
    drop(world);
    Ok(())
}
