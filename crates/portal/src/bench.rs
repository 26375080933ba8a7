//! `ember-portal bench`: many simulated clients and gateways over real WebSockets on loopback
//! against a real portal process (this binary, `serve`, on an SQLite file in a temporary
//! folder). Prints: devices held, memory per device (the portal process's RSS), access grants
//! per second with p50/p99 latency at a fixed rate and at full speed, and the time for a
//! resource change to reach every client.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ember_portal::store::{Store, TokenKind, now_unix};
use ember_portal::{admin, crypto};
use ember_protocol::portal::PORTAL_PROTOCOL_VERSION;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Client devices to connect.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Gateways in the one site.
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Access requests per second in the fixed-rate phase.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of the fixed-rate phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in the full-speed phase.
    #[arg(long, default_value_t = 5_000)]
    burst: usize,
}

const KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

struct Portal(Child);

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

enum Event {
    Granted { latency: Duration },
    Denied,
    Updated { at: Instant },
    Closed,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let database = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&database).await?;
    let account = store.ensure_account("bench", "Bench").await?;
    let user = store
        .ensure_user(&account, "bench@ember.invalid", "Bench", None)
        .await?;
    let group = store.ensure_group(&account, "everyone").await?;
    store.add_group_member(&group, &user).await?;
    let site = store.ensure_site(&account, "Site").await?;
    let resource = store
        .upsert_resource(&account, &site, "LAN", "10.0.0.0/8", None, &[])
        .await?;
    store.ensure_policy(&account, &group, &resource).await?;
    let mut gateway_tokens = Vec::new();
    for i in 0..args.gateways {
        gateway_tokens
            .push(admin::create_gateway_token(&store, &account, &site, &format!("gw-{i}")).await?);
    }
    // One client token for all devices: devices are told apart by their device id.
    let token = crypto::random_hex32();
    store
        .insert_token(
            TokenKind::Client,
            &account,
            &user,
            &token,
            Some(now_unix() + 86_400),
        )
        .await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args([
            "--database",
            &database,
            "--listen",
            &addr.to_string(),
            "serve",
        ])
        .env("EMBER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the portal")?;
    let pid = child.id();
    let _portal = Portal(child);
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the portal did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "Ember portal benchmark: {} devices, {} gateways, portal pid {pid} on {addr}",
        args.devices, args.gateways
    );

    let (events, mut event_rx) = mpsc::unbounded_channel();
    for gateway_token in &gateway_tokens {
        spawn_gateway(addr, gateway_token.clone()).await?;
    }
    let rss_before = rss_kib(pid)?;

    // Connect every device (64 handshakes in flight).
    let connect_started = Instant::now();
    let permits = Arc::new(Semaphore::new(64));
    let mut handles = Vec::new();
    for i in 0..args.devices {
        let permit = permits.clone().acquire_owned().await?;
        let token = token.clone();
        let events = events.clone();
        handles.push(tokio::spawn(async move {
            let client = Client::connect(addr, &token, &format!("bench-device-{i}"), events).await;
            drop(permit);
            client
        }));
    }
    let mut clients = Vec::new();
    for handle in handles {
        clients.push(handle.await??);
    }
    let connect_time = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid)?;
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| devices connected and held | {} (hello → init for all in {:.1} s) |",
        clients.len(),
        connect_time.as_secs_f64()
    );
    println!(
        "| portal RSS with gateways only / with all devices | {:.1} MiB / {:.1} MiB |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "| memory per connected device | {:.1} KiB |",
        (rss_after.saturating_sub(rss_before)) as f64 / clients.len().max(1) as f64
    );

    // Fixed rate.
    let total = (u64::from(args.rate) * args.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let phase = Instant::now();
    for n in 0..total {
        ticker.tick().await;
        clients[n % clients.len()].request(&resource, n as u64)?;
    }
    let (latencies, denied) = collect_grants(&mut event_rx, total).await;
    let elapsed = phase.elapsed();
    print_grants(
        &format!("access grants at a fixed {} requests/s", args.rate),
        &latencies,
        denied,
        elapsed,
    );

    // Full speed.
    let phase = Instant::now();
    for n in 0..args.burst {
        clients[n % clients.len()].request(&resource, (total + n) as u64)?;
    }
    let (latencies, denied) = collect_grants(&mut event_rx, args.burst).await;
    print_grants(
        "access grants at full speed",
        &latencies,
        denied,
        phase.elapsed(),
    );

    // A resource change reaching everyone.
    let printer = store
        .upsert_resource(&account, &site, "Printer", "10.9.9.9", None, &[])
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let change = Instant::now();
    store.ensure_policy(&account, &group, &printer).await?;
    let mut reached = 0;
    let mut last = change;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reached < clients.len() {
        match tokio::time::timeout_at(deadline, event_rx.recv()).await {
            Ok(Some(Event::Updated { at })) => {
                reached += 1;
                last = last.max(at);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    println!(
        "| resource change → all clients | {:.0} ms ({reached} of {} clients updated; includes waiting for the portal's next change poll, every 200 ms) |",
        last.duration_since(change).as_secs_f64() * 1000.0,
        clients.len()
    );
    let closed = clients.iter().filter(|c| c.commands.is_closed()).count();
    println!("| connections lost during the run | {closed} |");
    store.close().await;
    Ok(())
}

async fn collect_grants(
    events: &mut mpsc::UnboundedReceiver<Event>,
    expected: usize,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(expected);
    let mut denied = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while latencies.len() + denied < expected {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Granted { latency })) => latencies.push(latency),
            Ok(Some(Event::Denied)) | Ok(Some(Event::Closed)) => denied += 1,
            Ok(Some(Event::Updated { .. })) => {}
            _ => break,
        }
    }
    latencies.sort();
    (latencies, denied)
}

fn print_grants(what: &str, latencies: &[Duration], denied: usize, elapsed: Duration) {
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "| {what} | {:.0} grants/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {denied} denied or lost |",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN),
    );
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

async fn open(
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// A gateway that answers heartbeats and takes grants.
async fn spawn_gateway(addr: SocketAddr, token: String) -> Result<()> {
    let mut ws = open(addr, "/api/gateway", &token).await?;
    let hello = json!({"type": "hello", "protocol_version": PORTAL_PROTOCOL_VERSION, "public_key": KEY, "name": "bench", "version": "0"});
    ws.send(Message::Text(hello.to_string().into())).await?;
    let _init = ws.next().await;
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(text) = message
                && text.contains(r#""type":"heartbeat""#)
                && ws
                    .send(Message::Text(r#"{"type":"heartbeat"}"#.into()))
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    Ok(())
}

struct Client {
    commands: mpsc::UnboundedSender<(u64, String)>,
}

impl Client {
    async fn connect(
        addr: SocketAddr,
        token: &str,
        device_id: &str,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Self> {
        let mut ws = open(addr, "/api/client", token).await?;
        let hello = json!({"type": "hello", "protocol_version": PORTAL_PROTOCOL_VERSION, "device_id": device_id, "public_key": KEY,
                           "name": "bench", "os": "linux", "version": "0"});
        ws.send(Message::Text(hello.to_string().into())).await?;
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"init""#) => {}
            other => bail!("no init: {other:?}"),
        }
        let (commands, mut command_rx) = mpsc::unbounded_channel::<(u64, String)>();
        tokio::spawn(async move {
            let mut pending: std::collections::HashMap<u64, Instant> =
                std::collections::HashMap::new();
            loop {
                tokio::select! {
                    command = command_rx.recv() => {
                        let Some((id, resource)) = command else { return };
                        pending.insert(id, Instant::now());
                        let request = json!({"type": "request_access", "request_id": id, "resource_id": resource});
                        if ws.send(Message::Text(request.to_string().into())).await.is_err() { break }
                    }
                    message = ws.next() => {
                        let Some(Ok(Message::Text(text))) = message else {
                            if matches!(message, Some(Ok(_))) { continue }
                            break;
                        };
                        let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                        match value["type"].as_str() {
                            Some("heartbeat") => {
                                let answered = ws.send(Message::Text(r#"{"type":"heartbeat"}"#.into())).await;
                                if answered.is_err() { break }
                            }
                            Some("access_granted") => {
                                if let Some(sent) = value["request_id"].as_u64().and_then(|id| pending.remove(&id)) {
                                    let _ = events.send(Event::Granted { latency: sent.elapsed() });
                                }
                            }
                            Some("access_denied") => {
                                let _ = events.send(Event::Denied);
                            }
                            Some("resources_updated") => {
                                let _ = events.send(Event::Updated { at: Instant::now() });
                            }
                            _ => {}
                        }
                    }
                }
            }
            let _ = events.send(Event::Closed);
        });
        Ok(Self { commands })
    }

    fn request(&self, resource: &str, id: u64) -> Result<()> {
        self.commands
            .send((id, resource.to_owned()))
            .map_err(|_| anyhow::anyhow!("a client connection is gone"))
    }
}
