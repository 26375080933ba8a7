//! The world: namespaces, the real processes in them, and what tests and the benchmark do
//! with them.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ember_ipc::Endpoint;
use ember_protocol::SecretToken;
use ember_protocol::ipc::{
    ClientMessage, IpcError, Reply, Request, ServiceMessage, SessionState, ViewState,
};
use ember_testbed::{Coturn, Lan, Nat, NattedHost, Node, Testbed};
use futures::{SinkExt as _, StreamExt as _};
use nix::sys::signal::Signal;

use crate::http::{self, HttpServer};
use crate::portal;
use crate::{Error, Result, io_error};

mod applications;
mod diagnostics;
mod faults;
mod gateway;
mod portal_side;
mod tunnel;

/// Addresses, names and ports of the world (fixed, so tests and people can type them).
/// The testbed's "internet", where the portal lives, as a CIDR.
fn internet_network() -> String {
    let [a, b, c] = ember_testbed::INTERNET_PREFIX;
    format!("{a}.{b}.{c}.0/24")
}

pub mod addr {
    use std::net::Ipv4Addr;

    /// The site's LAN behind the gateway host.
    pub const SITE_LAN: [u8; 3] = [10, 20, 0];
    /// The gateway host's address on the site LAN (`lan0`).
    pub const GATEWAY_LAN: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
    /// The resource host's main address: inside the CIDR resource; also the corp DNS server.
    pub const RESOURCE: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 10);
    /// Another host on the site LAN that is no resource.
    pub const OTHER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 20);
    /// A second address of the resource host: the resource nobody has a policy for.
    pub const FINANCE: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 30);
    /// Where the corp DNS sends `web.corp.example` (resource host; tcp/80 only).
    pub const WEB: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 40);
    /// Where the corp DNS sends every name below `apps.corp.example` (resource host).
    pub const APPS: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 41);
    /// Resource-host addresses the benchmark's WireGuard and OpenVPN anchors route to.
    pub const ANCHOR_WIREGUARD: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 50);
    pub const ANCHOR_OPENVPN: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 51);
    /// The CIDR resource: the resource host (.8–.15), not the other host.
    pub const CIDR_RESOURCE: &str = "10.20.0.8/29";
    pub const WEB_NAME: &str = "web.corp.example";
    pub const APPS_PATTERN: &str = "*.apps.corp.example";
    /// A name the wildcard resource matches.
    pub const APPS_EXAMPLE_NAME: &str = "wiki.apps.corp.example";
    pub const FINANCE_NAME: &str = "finance.corp.example";
    /// A name only the client's upstream DNS knows (answered with the portal's address).
    pub const PUBLIC_NAME: &str = "public.ember.test";
    /// The client stub's proxy range for DNS resources (ARCHITECTURE §3).
    pub const PROXY_RANGE_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(100, 96, 0, 0), 11);
    pub const PORTAL_PORT: u16 = 8080;
    pub const HTTP_PORT: u16 = 80;
    /// A second HTTP port on the resource host, outside the `Web` resource's filter.
    pub const HTTP_ALT_PORT: u16 = 8080;
    /// A website on the internet (on the portal's host) for the internet resource.
    pub const PUBLIC_HTTP_PORT: u16 = 8081;
    pub const IPERF_PORT: u16 = 5201;
    pub const DOWNLOAD_FILE: &str = "20mb.bin";
    pub const DOWNLOAD_LEN: usize = 20 * 1024 * 1024;
}

/// The suffixes of the namespaces (`{prefix}-{suffix}`).
pub mod names {
    pub const PORTAL: &str = "portal";
    pub const RELAY: &str = "relay";
    pub const DNS: &str = "dns";
    pub const CLIENT: &str = "client";
    pub const GATEWAY: &str = "gw";
    pub const SITE: &str = "site";
    pub const RESOURCE: &str = "res";
    pub const OTHER: &str = "other";
}

const RELAY_SECRET: &str = "ember-e2e-relay-secret";
const SERVICE_TIMEOUT: Duration = Duration::from_secs(20);

/// How to build the world.
#[derive(Debug, Clone)]
pub struct Options {
    pub client_nat: Nat,
    pub gateway_nat: Nat,
    /// Start `ember-gateway` for the HQ site.
    pub gateway: bool,
    /// Start `ember-tunnel` on the client host.
    pub service: bool,
    /// Sign the service in as Ada (through the portal's sign-in page).
    pub sign_in: bool,
    /// Extra sites with one public gateway host each (gateways started on demand with
    /// [`World::start_extra_gateways`]).
    pub extra_sites: u8,
    /// Extra resources for the `bulk` user.
    pub bulk_resources: u32,
    /// A fixed namespace prefix instead of a per-process one.
    pub prefix: Option<String>,
    /// A veth from the machine into the internet (see `Testbed::add_host_uplink`).
    pub host_uplink: Option<String>,
    /// Where the service puts its socket (default: a temporary folder).
    pub service_runtime_dir: Option<PathBuf>,
    /// `EMBER_LOG` for the portal, gateway and service (default: `EMBER_E2E_LOG` or `info`).
    pub log_filter: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            client_nat: Nat::EndpointIndependent,
            gateway_nat: Nat::EndpointIndependent,
            gateway: true,
            service: true,
            sign_in: true,
            extra_sites: 0,
            bulk_resources: 0,
            prefix: None,
            host_uplink: None,
            service_runtime_dir: None,
            log_filter: std::env::var("EMBER_E2E_LOG").unwrap_or_else(|_| "info".into()),
        }
    }
}

impl Options {
    /// Everything but Ember's own data plane: portal, relay, DNS, routers, site LAN, resource.
    pub fn infrastructure_only() -> Self {
        Self {
            gateway: false,
            service: false,
            sign_in: false,
            ..Self::default()
        }
    }

    pub fn nats(mut self, client: Nat, gateway: Nat) -> Self {
        self.client_nat = client;
        self.gateway_nat = gateway;
        self
    }
}

/// The big file on the resource host.
#[derive(Debug, Clone)]
pub struct Download {
    pub name: String,
    pub len: usize,
    pub sha256: String,
}

/// What `curl` reported.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
    pub time_connect: f64,
    pub time_starttransfer: f64,
    pub time_total: f64,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where the binaries under test are.
#[derive(Debug, Clone)]
pub struct Binaries {
    dirs: Vec<PathBuf>,
}

impl Binaries {
    /// `EMBER_BIN_DIR`, else the folder of the running executable and its parent (a test
    /// executable lives in `target/<profile>/deps`, a binary in `target/<profile>`).
    pub fn locate() -> Result<Self> {
        if let Some(dir) = std::env::var_os("EMBER_BIN_DIR") {
            return Ok(Self {
                dirs: vec![PathBuf::from(dir)],
            });
        }
        let exe = std::env::current_exe().map_err(io_error("find the running executable"))?;
        let dirs = exe
            .ancestors()
            .skip(1)
            .take(2)
            .map(Path::to_path_buf)
            .collect();
        Ok(Self { dirs })
    }

    pub fn path(&self, binary: &str, package: &str) -> Result<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| dir.join(binary))
            .find(|path| path.is_file())
            .ok_or_else(|| Error::MissingBinary {
                binary: binary.to_owned(),
                package: package.to_owned(),
                looked: self
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn portal(&self) -> Result<PathBuf> {
        self.path("ember-portal", "ember-portal")
    }

    pub fn gateway(&self) -> Result<PathBuf> {
        self.path("ember-gateway", "ember-gateway")
    }

    pub fn tunnel(&self) -> Result<PathBuf> {
        self.path("ember-tunnel", "ember-tunnel-service")
    }
}

/// A process of the world that tests stop and start.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self, signal: Signal, grace: Duration) {
        ember_testbed::stop_child(&mut self.child, signal, grace);
    }

    /// `Err` with the end of its log when it already exited.
    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Failed(format!(
                "{} exited ({status}); end of its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            ))),
            Err(e) => Err(Error::Failed(format!("cannot check {}: {e}", self.name))),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A download running in the background (see [`World::start_download`]).
#[derive(Debug)]
pub struct PendingDownload {
    child: Child,
    out: PathBuf,
    url: String,
}

impl PendingDownload {
    /// Waits for the download; the SHA-256 of what arrived.
    pub fn finish(mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(io_error("wait for curl"))? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(Error::Timeout {
                    what: format!("the download of {}", self.url),
                    after: timeout,
                    last: format!("{} bytes", file_len(&self.out)),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        if !status.success() {
            return Err(Error::Curl {
                url: self.url.clone(),
                exit: status.code().unwrap_or(-1),
                stderr: format!("{} (after {} bytes)", stderr.trim(), file_len(&self.out)),
            });
        }
        let sum = sha256_file(&self.out);
        let _ = std::fs::remove_file(&self.out);
        sum
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        file_len(&self.out)
    }
}

/// The end-to-end world. See the crate documentation for the picture.
#[derive(Debug)]
pub struct World {
    pub portal_host: Node,
    pub relay_host: Node,
    pub dns_host: Node,
    pub client: NattedHost,
    pub gateway: NattedHost,
    pub site: Lan,
    pub resource: Node,
    pub other: Node,
    /// Public hosts of the extra sites (`Branch i` is `extra_hosts[i - 1]`).
    pub extra_hosts: Vec<Node>,
    pub coturn: Coturn,
    /// The users' password (every user of the model has it).
    pub password: String,
    pub download: Download,
    pub bins: Binaries,
    options: Options,
    dir: PathBuf,
    portal_config: PathBuf,
    portal: Option<Proc>,
    gateway_proc: Option<Proc>,
    extra_gateways: Vec<Proc>,
    tunnel: Option<Proc>,
    token: Option<String>,
    http: Vec<HttpServer>,
    netns_etc: Vec<PathBuf>,
    original_client_resolv_conf: String,
    runtime: tokio::runtime::Runtime,
    counter: AtomicU32,
    _tempdir: Option<tempfile::TempDir>,
    /// Dropped last: deletes the namespaces once every process above is gone.
    pub testbed: Testbed,
}

impl World {
    /// Builds the world and starts what `options` asks for. [`Error::NotRoot`] when not root.
    pub fn start(options: Options) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::NotRoot);
        }
        let bins = Binaries::locate()?;
        bins.portal()?;
        if options.gateway {
            bins.gateway()?;
        }
        if options.service {
            bins.tunnel()?;
        }
        let mut testbed = match &options.prefix {
            Some(prefix) => Testbed::with_prefix(prefix)?,
            None => Testbed::new()?,
        };
        let tempdir = tempfile::Builder::new()
            .prefix("ember-e2e-")
            .tempdir()
            .map_err(io_error("create a temporary folder"))?;
        let dir = tempdir.path().to_path_buf();
        let keep = std::env::var_os("EMBER_E2E_KEEP").is_some();

        let portal_host = testbed.add_public_host(names::PORTAL)?;
        let relay_host = testbed.add_public_host(names::RELAY)?;
        let dns_host = testbed.add_public_host(names::DNS)?;
        let client = testbed.add_natted_host(names::CLIENT, options.client_nat)?;
        let gateway = testbed.add_natted_host(names::GATEWAY, options.gateway_nat)?;
        let site = testbed.add_lan(names::SITE, addr::SITE_LAN)?;
        testbed.attach(&site, &gateway.host.ns, "lan0", 1)?;
        let resource = testbed.add_lan_host(&site, names::RESOURCE, 10)?;
        let other = testbed.add_lan_host(&site, names::OTHER, 20)?;
        for extra in [
            addr::FINANCE,
            addr::WEB,
            addr::APPS,
            addr::ANCHOR_WIREGUARD,
            addr::ANCHOR_OPENVPN,
        ] {
            testbed.ip(&resource.ns, &format!("addr add {extra}/24 dev eth0"))?;
        }
        let mut extra_hosts = Vec::new();
        for i in 1..=options.extra_sites {
            let host = testbed.add_public_host(&format!("br{i}"))?;
            let (_, _, address) = portal::extra_site(i);
            testbed.ip(&host.ns, &format!("addr add {address}/32 dev lo"))?;
            extra_hosts.push(host);
        }
        if let Some(device) = &options.host_uplink {
            testbed.add_host_uplink(device)?;
        }

        let coturn = Coturn::start(&mut testbed, &relay_host, RELAY_SECRET)?;

        // DNS: an upstream resolver on the internet for the client, the corp resolver on the
        // resource host for the gateway.
        spawn_dnsmasq(
            &mut testbed,
            &dns_host.ns,
            dns_host.addr,
            "ember.test",
            &[(addr::PUBLIC_NAME, portal_host.addr)],
            &dir.join("dnsmasq-upstream.log"),
        )?;
        spawn_dnsmasq(
            &mut testbed,
            &resource.ns,
            addr::RESOURCE,
            "corp.example",
            &[
                (addr::WEB_NAME, addr::WEB),
                (addr::APPS_PATTERN, addr::APPS),
                (addr::FINANCE_NAME, addr::FINANCE),
            ],
            &dir.join("dnsmasq-corp.log"),
        )?;
        let mut netns_etc = Vec::new();
        let original_client_resolv_conf = format!(
            "# ember-e2e: the client host's DNS\nnameserver {}\n",
            dns_host.addr
        );
        netns_etc.push(write_netns_resolv_conf(
            &client.host.ns,
            &original_client_resolv_conf,
        )?);
        netns_etc.push(write_netns_resolv_conf(
            &gateway.host.ns,
            &format!(
                "# ember-e2e: the gateway host's DNS\nnameserver {}\n",
                addr::RESOURCE
            ),
        )?);

        // The resource: HTTP on two ports, iperf3.
        let bytes = Arc::new(http::pseudo_random_bytes(addr::DOWNLOAD_LEN, 0x00e2_e0e2));
        let file_path = dir.join(addr::DOWNLOAD_FILE);
        std::fs::write(&file_path, bytes.as_slice())
            .map_err(io_error(format!("write {}", file_path.display())))?;
        let download = Download {
            name: addr::DOWNLOAD_FILE.to_owned(),
            len: addr::DOWNLOAD_LEN,
            sha256: sha256_file(&file_path)?,
        };
        let files = vec![http::File {
            name: addr::DOWNLOAD_FILE.to_owned(),
            bytes,
        }];
        let http = vec![
            HttpServer::start(&testbed, &resource.ns, addr::HTTP_PORT, files.clone())?,
            HttpServer::start(&testbed, &resource.ns, addr::HTTP_ALT_PORT, files)?,
            HttpServer::start(
                &testbed,
                &portal_host.ns,
                addr::PUBLIC_HTTP_PORT,
                Vec::new(),
            )?,
        ];
        testbed.spawn_logged(
            &resource.ns,
            "iperf3",
            &["-s", "-p", &addr::IPERF_PORT.to_string()],
            &[],
            &dir.join("iperf3-server.log"),
        )?;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error("start a tokio runtime"))?;
        let password = hex::encode(rand::random::<[u8; 10]>());
        let mut world = Self {
            portal_host,
            relay_host,
            dns_host,
            client,
            gateway,
            site,
            resource,
            other,
            extra_hosts,
            coturn,
            password,
            download,
            bins,
            portal_config: dir.join("portal.toml"),
            dir,
            portal: None,
            gateway_proc: None,
            extra_gateways: Vec::new(),
            tunnel: None,
            token: None,
            http,
            netns_etc,
            original_client_resolv_conf,
            runtime,
            counter: AtomicU32::new(0),
            _tempdir: if keep {
                let _ = tempdir.keep();
                None
            } else {
                Some(tempdir)
            },
            testbed,
            options,
        };
        world.write_portal_config()?;
        world.start_portal()?;
        if world.options.gateway {
            world.start_gateway()?;
        }
        if world.options.service {
            world.start_tunnel()?;
            if world.options.sign_in {
                world.sign_in_as(portal::ADA)?;
            }
        }
        Ok(world)
    }

    /// The folder with every log and state folder of this world.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn portal_url(&self) -> String {
        format!("http://{}:{}", self.portal_host.addr, addr::PORTAL_PORT)
    }
}

impl Drop for World {
    #[allow(clippy::print_stderr)] // the logs of a failed test are its diagnosis
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- ember-e2e: logs of the world ({}) ---\n{}",
                self.dir.display(),
                self.logs(40)
            );
        }
        self.stop_tunnel(Signal::SIGTERM);
        self.stop_extra_gateways();
        self.stop_gateway(Signal::SIGTERM);
        self.stop_portal(Signal::SIGTERM);
        for server in &mut self.http {
            server.stop(&self.testbed);
        }
        for dir in self.netns_etc.drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A view state short enough for an error message: the session, the interface, and the
/// resources (all of them only when there are few).
fn summary(state: &ViewState) -> String {
    let resources: Vec<String> = state
        .resources
        .iter()
        .take(8)
        .map(|r| format!("{} {:?} {:?}", r.name, r.state, r.path))
        .collect();
    format!(
        "session {:?}, interface {:?}, {} resources: {}{}",
        state.session,
        state.interface,
        state.resources.len(),
        resources.join("; "),
        if state.resources.len() > 8 {
            "; …"
        } else {
            ""
        }
    )
}

/// Polls `probe` every 100 ms until it returns `Some`, an error, or `timeout` passes.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        if started.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                after: timeout,
                last: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs curl; the HTTP status and (connect, first byte, total) seconds.
fn run_curl(
    ns: &str,
    url: &str,
    max_time: Duration,
    extra: &[&str],
    out: &Path,
) -> Result<(u16, [f64; 3])> {
    let output = ember_testbed::netns_command(ns, "curl")
        .args(["-sS", "--max-time"])
        .arg(format!("{:.3}", max_time.as_secs_f64()))
        .arg("-o")
        .arg(out)
        .args([
            "-w",
            "%{http_code} %{time_connect} %{time_starttransfer} %{time_total}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .map_err(io_error("run curl"))?;
    if !output.status.success() {
        return Err(Error::Curl {
            url: url.to_owned(),
            exit: output.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    let mut fields = printed.split_whitespace();
    let status = fields.next().and_then(|s| s.parse().ok());
    let times: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
    match (status, times.as_slice()) {
        (Some(status), [connect, first, total]) => Ok((status, [*connect, *first, *total])),
        _ => Err(Error::Failed(format!("curl printed `{printed}`"))),
    }
}

/// A DNS server for `zone` like a real one: the given names (`*.suffix` for every name below
/// the suffix), NXDOMAIN for the rest of the zone, REFUSED outside it (no upstream). Exact
/// names answer AAAA with NODATA; for wildcards dnsmasq answers AAAA with NXDOMAIN, which a
/// resolver must tolerate next to the A answer.
fn spawn_dnsmasq(
    testbed: &mut Testbed,
    ns: &str,
    listen: Ipv4Addr,
    zone: &str,
    names: &[(&str, Ipv4Addr)],
    log: &Path,
) -> Result<()> {
    let mut args = dnsmasq_args(listen, names, log);
    args.push(format!("--local=/{zone}/"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    testbed.spawn_logged(ns, "dnsmasq", &args, &[], &log.with_extension("out"))?;
    Ok(())
}

fn dnsmasq_args(listen: Ipv4Addr, names: &[(&str, Ipv4Addr)], log: &Path) -> Vec<String> {
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--bind-interfaces".to_owned(),
        format!("--listen-address={listen}"),
        "--pid-file=".to_owned(),
        "--user=root".to_owned(),
        "--log-queries".to_owned(),
        format!("--log-facility={}", log.display()),
    ];
    for (name, addr) in names {
        match name.strip_prefix("*.") {
            Some(suffix) => args.push(format!("--address=/{suffix}/{addr}")),
            None => args.push(format!("--host-record={name},{addr}")),
        }
    }
    args
}

/// `/etc/netns/NS/`: what `ip netns exec NS` bind-mounts over `/etc`.
fn netns_etc_dir(ns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(ns)
}

fn write_netns_resolv_conf(ns: &str, contents: &str) -> Result<PathBuf> {
    let dir = netns_etc_dir(ns);
    std::fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
    let path = dir.join("resolv.conf");
    std::fs::write(&path, contents).map_err(io_error(format!("write {}", path.display())))?;
    Ok(dir)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(format!("create {}", path.display())))?;
    file.write_all(contents.as_bytes())
        .map_err(io_error(format!("write {}", path.display())))
}

/// Whether namespace `ns` holds an established TCP connection to `peer` (`IP:PORT`).
fn connected_to(ns: &str, peer: &str) -> Result<bool> {
    let output = ember_testbed::netns_command(ns, "ss")
        .args(["-Htn", "state", "established", "dst", peer])
        .output()
        .map_err(io_error("run ss"))?;
    Ok(!String::from_utf8_lossy(&output.stdout).trim().is_empty())
}

fn sha256_file(path: &Path) -> Result<String> {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(io_error("run sha256sum"))?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .filter(|sum| sum.len() == 64)
        .map(str::to_owned)
        .ok_or_else(|| Error::Failed(format!("sha256sum {} failed", path.display())))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return format!("(cannot read {})", path.display());
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn collect_logs(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_logs(&path, files);
        } else if path.extension().is_some_and(|e| e == "log" || e == "out")
            || path.to_string_lossy().contains(".log.")
        {
            files.push(path);
        }
    }
}
