//! `ember-e2e bench`: Ember's data plane measured end to end in one world, with its anchors
//! (raw path, wireguard-go, OpenVPN) measured in the same run between the same hosts, printed
//! as one table. A figure that cannot be measured says `n/a (why)`; nothing is estimated.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ember_e2e::{Options, World, addr, portal, stats, wait_until};
use ember_protocol::ipc::ResourceState;
use nix::sys::signal::Signal;

use crate::anchors;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Short windows (iperf3 3 s × 3, idle 60 s, wake-ups 30 s, 10 TTFB runs) to check the
    /// benchmark itself; the figures are noisier.
    #[arg(long)]
    quick: bool,
    /// Only the throughput and CPU rows (no extra sites, no idle or memory figures): for
    /// iterating on the data path.
    #[arg(long)]
    throughput_only: bool,
    /// Sites with one gateway each for the many-connections wake-up figure.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=200))]
    sites: u8,
    /// Resources of the user whose session's memory is measured.
    #[arg(long, default_value_t = 1000)]
    resources: u32,
}

struct Plan {
    iperf_seconds: u32,
    iperf_runs: usize,
    idle: Duration,
    wake_window: Duration,
    ttfb_runs: usize,
}

/// One measured figure, or why there is none.
type Figure = std::result::Result<String, String>;

fn na(why: impl std::fmt::Display) -> Figure {
    Err(reason(why))
}

/// The first line of an error, shortened for a table cell.
fn reason(why: impl std::fmt::Display) -> String {
    let why = why.to_string();
    let line = why.lines().next().unwrap_or_default();
    line.chars().take(160).collect()
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, [Option<Figure>; 4], String)>,
}

impl Table {
    fn row(&mut self, name: &str, cells: [Option<Figure>; 4], goal: &str) {
        self.rows.push((name.to_owned(), cells, goal.to_owned()));
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "| figure | raw path | wireguard-go | OpenVPN | Ember | goal |\n|---|---|---|---|---|---|\n",
        );
        for (name, cells, goal) in &self.rows {
            let cells: Vec<String> = cells
                .iter()
                .map(|cell| match cell {
                    None => "—".to_owned(),
                    Some(Ok(value)) => value.clone(),
                    Some(Err(reason)) => format!("n/a ({reason})"),
                })
                .collect();
            let _ = writeln!(out, "| {name} | {} | {goal} |", cells.join(" | "));
        }
        out
    }
}

struct Throughput {
    median_mbits: f64,
    cpu_per_gb: Option<f64>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let plan = if args.quick {
        Plan {
            iperf_seconds: 3,
            iperf_runs: 3,
            idle: Duration::from_secs(60),
            wake_window: Duration::from_secs(30),
            ttfb_runs: 10,
        }
    } else {
        Plan {
            iperf_seconds: 10,
            iperf_runs: 3,
            idle: Duration::from_secs(300),
            wake_window: Duration::from_secs(60),
            ttfb_runs: 20,
        }
    };
    let started = Instant::now();
    let _sockets = anchors::WireguardSockets;
    let mut world = World::start(Options {
        extra_sites: if args.throughput_only { 0 } else { args.sites },
        bulk_resources: if args.throughput_only {
            0
        } else {
            args.resources
        },
        log_filter: std::env::var("EMBER_E2E_LOG").unwrap_or_else(|_| "warn".into()),
        ..Options::infrastructure_only()
    })
    .context("cannot build the world")?;
    let work = world.dir().join("bench");
    std::fs::create_dir_all(&work)?;
    anchors::plumb(&world)?;
    eprintln!(
        "bench: world up in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        world.dir().display()
    );

    // Throughput: raw, wireguard-go, OpenVPN, then Ember.
    let raw = throughput(
        &world,
        &plan,
        world.gateway.router.addr,
        anchors::RAW_PORT,
        &[],
    );
    eprintln!("bench: raw path done");
    let wireguard = anchors::wireguard(&mut world, &work);
    let wireguard_throughput = match &wireguard {
        Ok(tunnel) => throughput(&world, &plan, tunnel.target, addr::IPERF_PORT, &tunnel.pids),
        Err(e) => Err(format!("{e:#}")),
    };
    eprintln!("bench: wireguard-go done");
    let openvpn_throughput = match anchors::openvpn(&mut world, &work) {
        Ok(tunnel) => {
            let result = throughput(&world, &plan, tunnel.target, addr::IPERF_PORT, &tunnel.pids);
            tunnel.stop(&mut world);
            result
        }
        Err(e) => Err(format!("{e:#}")),
    };
    eprintln!("bench: OpenVPN done");

    anchors::isolate(&world)?;
    let ember = start_ember(&mut world);
    let ember_throughput = match &ember {
        Ok(()) => {
            let pids = ember_pids(&world);
            throughput(&world, &plan, addr::RESOURCE, addr::IPERF_PORT, &pids)
        }
        Err(e) => Err(e.clone()),
    };
    anchors::stop_isolating(&world)?;
    eprintln!("bench: Ember throughput done");

    let mut table = Table::default();
    let mbits = |t: &Result<Throughput, String>| -> Figure {
        t.as_ref()
            .map(|t| format!("{:.0} Mbit/s", t.median_mbits))
            .map_err(reason)
    };
    let cpu = |t: &Result<Throughput, String>| -> Figure {
        match t {
            Ok(Throughput {
                cpu_per_gb: Some(cpu),
                ..
            }) => Ok(format!("{cpu:.2} s")),
            Ok(_) => na("no tunnel process"),
            Err(e) => na(e),
        }
    };
    table.row(
        &format!(
            "TCP throughput, iperf3 {} s × {}, median",
            plan.iperf_seconds, plan.iperf_runs
        ),
        [
            Some(mbits(&raw)),
            Some(mbits(&wireguard_throughput)),
            Some(mbits(&openvpn_throughput)),
            Some(mbits(&ember_throughput)),
        ],
        "Ember ≥ 2 × wireguard-go",
    );
    let ratio = match (&ember_throughput, &wireguard_throughput) {
        (Ok(e), Ok(w)) if w.median_mbits > 0.0 => {
            Ok(format!("{:.2} ×", e.median_mbits / w.median_mbits))
        }
        (Err(e), _) => na(e),
        (_, Err(w)) => na(format!("wireguard-go: {w}")),
        _ => na("wireguard-go moved nothing"),
    };
    table.row(
        "throughput relative to wireguard-go",
        [None, None, None, Some(ratio)],
        "≥ 2 × (below 1 × is a defect)",
    );
    table.row(
        "CPU seconds per GB (both tunnel ends)",
        [
            Some(na("no tunnel process")),
            Some(cpu(&wireguard_throughput)),
            Some(cpu(&openvpn_throughput)),
            Some(cpu(&ember_throughput)),
        ],
        "",
    );

    if args.throughput_only {
        if let Ok(tunnel) = wireguard {
            tunnel.stop(&mut world);
        }
        print_table(&world, &args, started, &table);
        return Ok(());
    }

    // Time to first byte.
    let (warm, cold) = match &ember {
        Ok(()) => (ttfb_warm(&world, &plan), ttfb_cold(&mut world, &plan)),
        Err(e) => (na(e), na(e)),
    };
    eprintln!("bench: time to first byte done");
    table.row(
        &format!(
            "time to first byte, cold (no connection yet), {} runs: median / p95",
            plan.ttfb_runs
        ),
        [None, None, None, Some(cold)],
        "≤ 100 ms median, no dropped first packet",
    );
    table.row(
        &format!(
            "time to first byte, warm, {} runs: median / p95",
            plan.ttfb_runs
        ),
        [None, None, None, Some(warm)],
        "",
    );

    // Idle: datagrams on the client's WAN and the service's wake-ups, same window.
    let idle = idle_window(&world, &plan, ember.is_ok(), wireguard.is_ok());
    eprintln!("bench: idle window done");
    let minutes = plan.idle.as_secs_f64() / 60.0;
    let (ember_idle, wireguard_idle, wakeups_one) = match idle {
        Ok(idle) => (
            if ember.is_ok() {
                Ok(per_window(idle.ember_datagrams, minutes))
            } else {
                na(ember.as_ref().err().cloned().unwrap_or_default())
            },
            if wireguard.is_ok() {
                Ok(per_window(idle.wireguard_datagrams, minutes))
            } else {
                na("no wireguard-go tunnel")
            },
            idle.tunnel_switches
                .map(|n| format!("{:.1}", n as f64 / minutes))
                .map_err(reason),
        ),
        Err(e) => (na(&e), na(&e), na(&e)),
    };
    table.row(
        &format!(
            "datagrams on the client's WAN per idle connection, {:.0} min window (per 5 min)",
            minutes
        ),
        [None, Some(wireguard_idle), None, Some(ember_idle)],
        "≤ 10 per 5 min (engine goal: ≤ 120 per hour)",
    );
    table.row(
        "ember-tunnel wake-ups per idle minute, 1 idle connection",
        [None, None, None, Some(wakeups_one)],
        "",
    );

    let rss = |pid: Option<u32>| -> Figure {
        match pid {
            Some(pid) => stats::rss_kib(pid)
                .map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0))
                .map_err(reason),
            None => na(ember
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "not running".into())),
        }
    };
    let tunnel_rss = rss(world.tunnel_pid());
    let gateway_rss = rss(world.gateway_pid());

    let wakeups_many = match &ember {
        Ok(()) => many_connections(&mut world, &plan, args.sites),
        Err(e) => na(e),
    };
    eprintln!("bench: many connections done");
    table.row(
        &format!(
            "ember-tunnel wake-ups per idle minute, {} idle connections (one gateway per site)",
            args.sites
        ),
        [None, None, None, Some(wakeups_many)],
        "O(1) in connections",
    );
    table.row(
        "ember-tunnel RSS (one site signed in)",
        [None, None, None, Some(tunnel_rss)],
        "",
    );
    table.row(
        "ember-gateway RSS",
        [None, None, None, Some(gateway_rss)],
        "",
    );
    let bulk = match &ember {
        Ok(()) => bulk_rss(&mut world, args.resources),
        Err(e) => na(e),
    };
    table.row(
        &format!("ember-tunnel RSS with {} resources", args.resources),
        [None, None, None, Some(bulk)],
        "≤ 30 MB",
    );

    if let Ok(tunnel) = wireguard {
        tunnel.stop(&mut world);
    }
    print_table(&world, &args, started, &table);
    Ok(())
}

fn print_table(world: &World, args: &BenchArgs, started: Instant, table: &Table) {
    println!(
        "\nEmber data-plane benchmark ({}; {} run, {:.0} s; binaries from {})\n",
        machine_summary(),
        match (args.quick, args.throughput_only) {
            (true, true) => "quick, throughput only",
            (false, true) => "full, throughput only",
            (true, false) => "quick",
            (false, false) => "full",
        },
        started.elapsed().as_secs_f64(),
        world
            .bins
            .portal()
            .map(|p| p
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default())
            .unwrap_or_default(),
    );
    println!("{}", table.render());
}

fn start_ember(world: &mut World) -> Result<(), String> {
    world.start_gateway().map_err(|e| format!("gateway: {e}"))?;
    world
        .start_tunnel()
        .map_err(|e| format!("tunnel service: {e}"))?;
    world
        .sign_in_as(portal::ADA)
        .map_err(|e| format!("sign-in: {e}"))?;
    let page = world
        .client_curl(
            &format!("http://{}/", addr::RESOURCE),
            Duration::from_secs(15),
        )
        .map_err(|e| format!("no traffic through the tunnel: {e}"))?;
    if page.status != 200 {
        return Err(format!("the resource answered {}", page.status));
    }
    Ok(())
}

fn ember_pids(world: &World) -> Vec<u32> {
    world
        .tunnel_pid()
        .into_iter()
        .chain(world.gateway_pid())
        .collect()
}

/// iperf3 from the client host, `runs` times; the median and the CPU time of `pids` per GB.
fn throughput(
    world: &World,
    plan: &Plan,
    target: std::net::Ipv4Addr,
    port: u16,
    pids: &[u32],
) -> Result<Throughput, String> {
    let mut mbits = Vec::new();
    let (mut bytes, mut cpu) = (0u64, 0.0);
    for _ in 0..plan.iperf_runs {
        let before: Result<Vec<f64>, _> = pids.iter().map(|p| stats::cpu_seconds(*p)).collect();
        let before = before.map_err(|e| e.to_string())?;
        let out = world
            .testbed
            .exec(
                &world.client.host.ns,
                "iperf3",
                &[
                    "-c",
                    &target.to_string(),
                    "-p",
                    &port.to_string(),
                    "-t",
                    &plan.iperf_seconds.to_string(),
                    "-J",
                ],
            )
            .map_err(|e| format!("iperf3: {e}"))?;
        let after: Result<Vec<f64>, _> = pids.iter().map(|p| stats::cpu_seconds(*p)).collect();
        let after = after.map_err(|e| e.to_string())?;
        cpu += after.iter().sum::<f64>() - before.iter().sum::<f64>();
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 JSON: {e}"))?;
        let received = &report["end"]["sum_received"];
        let (Some(bps), Some(n)) = (
            received["bits_per_second"].as_f64(),
            received["bytes"].as_u64(),
        ) else {
            return Err(format!("iperf3 reported no result: {}", report["error"]));
        };
        mbits.push(bps / 1e6);
        bytes += n;
        // Let the CPU settle between runs (both ends and iperf3 share the cores).
        std::thread::sleep(Duration::from_secs(1));
    }
    let (median_mbits, _) = stats::median_p95(&mbits).ok_or("no runs")?;
    Ok(Throughput {
        median_mbits,
        cpu_per_gb: (!pids.is_empty() && bytes > 0).then(|| cpu / (bytes as f64 / 1e9)),
    })
}

fn ttfb_warm(world: &World, plan: &Plan) -> Figure {
    let target = format!("http://{}/", addr::RESOURCE);
    let mut times = Vec::new();
    for _ in 0..=plan.ttfb_runs {
        match world.client_curl(&target, Duration::from_secs(10)) {
            Ok(page) => times.push(page.time_starttransfer),
            Err(e) => return na(e),
        }
    }
    times.remove(0); // the first one may set the connection up again
    median_p95_ms(&times)
}

/// Each run: a fresh service (stopped, started, signed in: no connection yet), then one request.
fn ttfb_cold(world: &mut World, plan: &Plan) -> Figure {
    let target = format!("http://{}/", addr::RESOURCE);
    let mut times = Vec::new();
    let mut retransmitted = 0;
    for _ in 0..plan.ttfb_runs {
        world.stop_tunnel(Signal::SIGTERM);
        if let Err(e) = world
            .start_tunnel()
            .and_then(|()| world.sign_in_again().map(drop))
        {
            return na(e);
        }
        match world.client_curl(&target, Duration::from_secs(10)) {
            Ok(page) => {
                times.push(page.time_starttransfer);
                // A lost SYN costs a one-second retransmission.
                if page.time_connect >= 1.0 {
                    retransmitted += 1;
                }
            }
            Err(e) => return na(e),
        }
    }
    median_p95_ms(&times).map(|f| {
        format!(
            "{f}; SYN retransmitted in {retransmitted} of {}",
            times.len()
        )
    })
}

fn median_p95_ms(times: &[f64]) -> Figure {
    match stats::median_p95(times) {
        Some((median, p95)) => Ok(format!("{:.0} / {:.0} ms", median * 1e3, p95 * 1e3)),
        None => na("no runs"),
    }
}

struct Idle {
    ember_datagrams: u64,
    wireguard_datagrams: u64,
    tunnel_switches: Result<u64, String>,
}

fn per_window(datagrams: u64, minutes: f64) -> String {
    format!("{datagrams} ({:.1})", datagrams as f64 / minutes * 5.0)
}

/// Counts UDP datagrams through the client's router (both directions, DNS excluded) split into
/// wireguard-go's and the rest (Ember's), and the service's voluntary context switches.
fn idle_window(world: &World, plan: &Plan, ember: bool, wireguard: bool) -> Result<Idle, String> {
    let target = format!("http://{}/", addr::RESOURCE);
    if ember {
        world
            .client_curl(&target, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let _ = world.wait_for_state("the connection to go idle", Duration::from_secs(60), |s| {
            s.resources
                .iter()
                .any(|r| r.name == portal::LAN_SERVERS && r.state == ResourceState::Idle)
        });
    }
    if wireguard {
        let _ = world.client_curl(
            &format!("http://{}/", addr::ANCHOR_WIREGUARD),
            Duration::from_secs(10),
        );
    }
    // Let the last application packets' handshakes and acknowledgements pass.
    std::thread::sleep(Duration::from_secs(5));
    let router = &world.client.router.ns;
    world
        .testbed
        .nft(
            router,
            "table ip e2e_idle {
                counter ember {}
                counter wireguard {}
                chain forward {
                    type filter hook forward priority -20;
                    udp dport 53 return
                    udp sport 53 return
                    udp dport 51820 counter name \"wireguard\" return
                    udp sport 51820 counter name \"wireguard\" return
                    meta l4proto udp counter name \"ember\"
                }
            }",
        )
        .map_err(|e| e.to_string())?;
    let pid = world.tunnel_pid();
    let switches_before = pid.map(stats::voluntary_switches);
    std::thread::sleep(plan.idle);
    let switches_after = pid.map(stats::voluntary_switches);
    let count = |name| {
        world
            .nft_packets(router, "e2e_idle", name)
            .map_err(|e| e.to_string())
    };
    let idle = Idle {
        ember_datagrams: count("ember")?,
        wireguard_datagrams: count("wireguard")?,
        tunnel_switches: match (switches_before, switches_after) {
            (Some(Ok(a)), Some(Ok(b))) => Ok(b.saturating_sub(a)),
            (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e.to_string()),
            _ => Err("the tunnel service is not running".into()),
        },
    };
    let _ = world.testbed.nft(router, "delete table ip e2e_idle");
    Ok(idle)
}

/// Signs in as the user with one resource on each extra site, opens a connection to every site
/// (a TCP SYN to its host: a reset back proves the round trip), lets them go idle, and counts
/// the service's wake-ups.
fn many_connections(world: &mut World, plan: &Plan, sites: u8) -> Figure {
    let result = (|| -> Result<String> {
        world.start_extra_gateways()?;
        world.sign_out()?;
        world.sign_in_as(portal::MULTI)?;
        let mut reached = 0;
        for i in 1..=sites {
            let (_, _, host) = portal::extra_site(i);
            // curl's exit 7 is "connection refused": the host answered through the tunnel.
            match world.client_curl(&format!("http://{host}:9/"), Duration::from_secs(10)) {
                Err(ember_e2e::Error::Curl { exit: 7, .. }) | Ok(_) => reached += 1,
                Err(_) => {}
            }
        }
        if reached < sites {
            bail!("only {reached} of {sites} sites reached through the tunnel");
        }
        wait_until(
            "the connections to go idle",
            Duration::from_secs(90),
            || {
                let state = world.status()?;
                Ok(state
                    .resources
                    .iter()
                    .all(|r| {
                        r.state != ResourceState::Active && r.state != ResourceState::Connecting
                    })
                    .then_some(()))
            },
        )?;
        let pid = world
            .tunnel_pid()
            .context("the tunnel service is not running")?;
        let before = stats::voluntary_switches(pid)?;
        std::thread::sleep(plan.wake_window);
        let after = stats::voluntary_switches(pid)?;
        let minutes = plan.wake_window.as_secs_f64() / 60.0;
        Ok(format!(
            "{:.1}",
            after.saturating_sub(before) as f64 / minutes
        ))
    })();
    world.stop_extra_gateways();
    result.or_else(|e| na(format!("{e:#}")))
}

fn bulk_rss(world: &mut World, resources: u32) -> Figure {
    let result = (|| -> Result<String> {
        world.sign_out()?;
        world.sign_in_as(portal::BULK)?;
        world.wait_for_state("every resource", Duration::from_secs(30), |s| {
            s.resources.len() >= resources as usize
        })?;
        std::thread::sleep(Duration::from_secs(3));
        let pid = world
            .tunnel_pid()
            .context("the tunnel service is not running")?;
        Ok(format!("{:.1} MiB", stats::rss_kib(pid)? as f64 / 1024.0))
    })();
    result.or_else(|e| na(format!("{e:#}")))
}

fn machine_summary() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    format!("{cores} cores, load {load} at the end")
}
