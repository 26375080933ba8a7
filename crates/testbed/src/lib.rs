//! A small internet in network namespaces, for tests that need real packets: an "internet"
//! bridge with public hosts (documentation ranges only), hosts behind NAT routers
//! (endpoint-independent or symmetric mapping), private LANs behind a host, random loss,
//! conntrack timeouts, a router's public address changing (roaming), and the real coturn relay.
//! `crates/e2e` builds Ember's end-to-end world from these parts.
//!
//! Needs root. Everything a [`Testbed`] creates is named with a per-process prefix and removed
//! when it is dropped; traffic never leaves the namespaces it created.
//!
//! Sockets can be opened inside any namespace from the test itself with [`Testbed::in_ns`]: a
//! socket keeps the namespace it was created in, whichever thread uses it afterwards.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod coturn;

pub use coturn::{Coturn, TurnCredentials, stun_binding as coturn_stun_binding};

/// The "internet": 198.51.100.0/24 (TEST-NET-2), a documentation range.
pub const INTERNET_PREFIX: [u8; 3] = [198, 51, 100];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the testbed needs root (network namespaces, nftables)")]
    NotRoot,
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot enter namespace {ns}: {reason}")]
    Setns { ns: String, reason: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a router maps the private source of outgoing UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Keeps the source port where it can, the same mapping for every destination: hole
    /// punching works between two of these.
    EndpointIndependent,
    /// A new random port per destination (`masquerade fully-random`): needs a relay.
    Symmetric,
}

/// A namespace with an address: a host on the internet, a host behind a router, or a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub ns: String,
    pub addr: Ipv4Addr,
}

/// A private network switched by a bridge in its own namespace, e.g. a site's LAN behind a
/// gateway host. Hosts on it have no default route: they answer only what is on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    /// The namespace holding the bridge.
    pub ns: String,
    /// The first three octets of the /24.
    pub prefix: [u8; 3],
}

impl Lan {
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, host)
    }
}

/// A host behind its own NAT router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NattedHost {
    pub host: Node,
    /// The router; `addr` is its public (WAN) address.
    pub router: Node,
}

static NEXT_TESTBED: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    internet: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    next_public: u8,
    next_lan: u8,
    host_uplink: Option<String>,
}

/// A test whose parts are missing here (root, a package). Outside CI it says so and passes;
/// under `EMBER_CI=1`, which `scripts/test.sh` sets on a machine that has every part, it
/// fails: there a skipped test would be a test that silently stopped testing.
pub fn skip(what: &str) {
    if std::env::var_os("EMBER_CI").is_some() {
        panic!("{what} (EMBER_CI=1: every part must be present in CI)");
    }
    #[allow(clippy::print_stderr)] // the test's own report
    {
        eprintln!("SKIPPED: {what}");
    }
}

impl Testbed {
    /// Creates the internet namespace with its bridge. [`Error::NotRoot`] when not root, so
    /// callers can skip with a message.
    pub fn new() -> Result<Self> {
        Self::with_prefix(&format!(
            "eb{}x{}",
            std::process::id(),
            NEXT_TESTBED.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Like [`Testbed::new`], with namespaces named `{prefix}-…` (e.g. a demo whose
    /// namespaces people type by hand). Leftovers of an earlier run with the same prefix are
    /// replaced.
    pub fn with_prefix(prefix: &str) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::NotRoot);
        }
        let prefix = prefix.to_owned();
        let internet = format!("{prefix}-inet");
        let mut testbed = Self {
            prefix,
            internet: internet.clone(),
            namespaces: Vec::new(),
            children: Vec::new(),
            next_public: 10,
            next_lan: 1,
            host_uplink: None,
        };
        testbed.add_ns(&internet)?;
        testbed.ip(&internet, "link add br0 type bridge")?;
        testbed.ip(
            &internet,
            &format!("addr add {}/24 dev br0", Self::upstream()),
        )?;
        testbed.ip(&internet, "link set br0 up")?;
        Ok(testbed)
    }

    /// Every public address's default route. Like the real internet, it takes packets to
    /// anywhere and silently loses those nobody routes (forwarding is off in this namespace):
    /// without it a send to, say, a peer's private address fails at once with "network
    /// unreachable", which real relays and gateways never see (coturn closes an allocation
    /// on that error).
    fn upstream() -> Ipv4Addr {
        let [a, b, c] = INTERNET_PREFIX;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The namespace of the internet bridge itself.
    pub fn internet_ns(&self) -> &str {
        &self.internet
    }

    /// A host with a public address on the internet bridge.
    pub fn add_public_host(&mut self, name: &str) -> Result<Node> {
        let ns = format!("{}-{name}", self.prefix);
        self.add_ns(&ns)?;
        let addr = self.next_public_addr();
        self.plug_into_internet(&ns, "eth0", addr)?;
        Ok(Node { ns, addr })
    }

    /// A host behind its own router that NATs it to a public address.
    pub fn add_natted_host(&mut self, name: &str, nat: Nat) -> Result<NattedHost> {
        let router_ns = format!("{}-{name}-r", self.prefix);
        let host_ns = format!("{}-{name}", self.prefix);
        self.add_ns(&router_ns)?;
        self.add_ns(&host_ns)?;

        let wan = self.next_public_addr();
        self.plug_into_internet(&router_ns, "wan", wan)?;
        let lan = self.next_lan;
        self.next_lan += 1;
        let router_lan = Ipv4Addr::new(192, 168, lan, 1);
        let host_addr = Ipv4Addr::new(192, 168, lan, 2);
        let (a, b) = veth_names();
        run("ip", &format!("link add {a} type veth peer name {b}"))?;
        run("ip", &format!("link set {a} netns {router_ns}"))?;
        run("ip", &format!("link set {b} netns {host_ns}"))?;
        self.ip(&router_ns, &format!("link set {a} name lan"))?;
        self.ip(&host_ns, &format!("link set {b} name eth0"))?;
        self.ip(&router_ns, &format!("addr add {router_lan}/24 dev lan"))?;
        self.ip(&router_ns, "link set lan up")?;
        self.ip(&host_ns, &format!("addr add {host_addr}/24 dev eth0"))?;
        self.ip(&host_ns, "link set eth0 up")?;
        wait_until_passing(&router_ns, "lan")?;
        wait_until_passing(&host_ns, "eth0")?;
        self.ip(&host_ns, &format!("route add default via {router_lan}"))?;

        self.exec(&router_ns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        let masquerade = match nat {
            Nat::EndpointIndependent => "masquerade",
            Nat::Symmetric => "masquerade fully-random",
        };
        // Real routers drop unsolicited inbound packets to their own address; without that an
        // early punch from the peer creates a conntrack entry that steals the port.
        self.nft(
            &router_ns,
            &format!(
                "table ip testbed {{
                    chain postrouting {{ type nat hook postrouting priority 100; oifname \"wan\" {masquerade}; }}
                    chain input {{ type filter hook input priority 0; iifname \"wan\" ct state new drop; }}
                    chain forward {{ type filter hook forward priority 0;
                        iifname \"wan\" ct state established,related accept;
                        iifname \"wan\" drop; }}
                }}"
            ),
        )?;
        Ok(NattedHost {
            host: Node {
                ns: host_ns,
                addr: host_addr,
            },
            router: Node {
                ns: router_ns,
                addr: wan,
            },
        })
    }

    /// Drops `percent` % of the packets a router forwards, both ways (0 removes the rule).
    pub fn set_loss(&self, router: &Node, percent: u8) -> Result<()> {
        let _ = self.nft(&router.ns, "delete table ip testbed_loss");
        if percent == 0 {
            return Ok(());
        }
        self.nft(
            &router.ns,
            &format!(
                "table ip testbed_loss {{
                    chain forward_loss {{
                        type filter hook forward priority -10;
                        numgen random mod 100 < {percent} counter drop;
                    }}
                }}"
            ),
        )
    }

    /// How long the router remembers an idle UDP mapping.
    pub fn set_udp_timeout(&self, router: &Node, seconds: u32) -> Result<()> {
        for key in [
            "net.netfilter.nf_conntrack_udp_timeout",
            "net.netfilter.nf_conntrack_udp_timeout_stream",
        ] {
            self.exec(&router.ns, "sysctl", &["-qw", &format!("{key}={seconds}")])?;
        }
        Ok(())
    }

    /// Makes the router forget its UDP mappings now, as routers forget idle UDP long before
    /// TCP (Linux: 30 s unreplied, 120 s both ways, against 5 days for an established TCP
    /// connection): a TCP connection kept alive through the router, such as a portal link
    /// with heartbeats, survives.
    pub fn forget_udp_mappings(&self, router: &Node) -> Result<()> {
        // conntrack exits 1 when there was nothing to delete.
        let _ = self.exec(&router.ns, "conntrack", &["-D", "-p", "udp"]);
        Ok(())
    }

    /// Makes the router forget every mapping now (a reboot).
    pub fn flush_conntrack(&self, router: &Node) -> Result<()> {
        // conntrack exits 1 when there was nothing to flush.
        let _ = self.exec(&router.ns, "conntrack", &["-F"]);
        Ok(())
    }

    /// Cuts (or restores) a node's link to the internet or its router.
    pub fn set_link(&self, node: &Node, up: bool) -> Result<()> {
        let device = if self.ip(&node.ns, "link show wan").is_ok() {
            "wan"
        } else {
            "eth0"
        };
        self.ip(
            &node.ns,
            &format!("link set {device} {}", if up { "up" } else { "down" }),
        )
    }

    /// The prefix of every namespace this testbed creates.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A LAN (`prefix`.0/24) switched by a bridge in namespace `{prefix}-{name}`.
    pub fn add_lan(&mut self, name: &str, prefix: [u8; 3]) -> Result<Lan> {
        let ns = format!("{}-{name}", self.prefix);
        self.add_ns(&ns)?;
        self.ip(&ns, "link add br0 type bridge")?;
        self.ip(&ns, "link set br0 up")?;
        Ok(Lan { ns, prefix })
    }

    /// Plugs namespace `ns` into `lan` as `device` with address `lan.addr(host)`/24.
    pub fn attach(&mut self, lan: &Lan, ns: &str, device: &str, host: u8) -> Result<Ipv4Addr> {
        let addr = lan.addr(host);
        let (outside, inside) = veth_names();
        run(
            "ip",
            &format!("link add {outside} type veth peer name {inside}"),
        )?;
        run("ip", &format!("link set {outside} netns {}", lan.ns))?;
        run("ip", &format!("link set {inside} netns {ns}"))?;
        self.ip(&lan.ns, &format!("link set {outside} master br0"))?;
        self.ip(&lan.ns, &format!("link set {outside} up"))?;
        self.ip(ns, &format!("link set {inside} name {device}"))?;
        self.ip(ns, &format!("addr add {addr}/24 dev {device}"))?;
        self.ip(ns, &format!("link set {device} up"))?;
        wait_until_passing(&lan.ns, &outside)?;
        wait_until_passing(ns, device)?;
        Ok(addr)
    }

    /// A host on `lan` only (no default route), in namespace `{prefix}-{name}`.
    pub fn add_lan_host(&mut self, lan: &Lan, name: &str, host: u8) -> Result<Node> {
        let ns = format!("{}-{name}", self.prefix);
        self.add_ns(&ns)?;
        let addr = self.attach(lan, &ns, "eth0", host)?;
        Ok(Node { ns, addr })
    }

    /// Gives a router a new public address (the client roamed to another network): the old
    /// address and every mapping made with it are gone. Returns the router with its new address.
    pub fn change_wan_addr(&mut self, router: &Node) -> Result<Node> {
        let addr = self.next_public_addr();
        self.ip(&router.ns, "addr flush dev wan")?;
        self.ip(&router.ns, &format!("addr add {addr}/24 dev wan"))?;
        self.ip(
            &router.ns,
            &format!("route replace default via {}", Self::upstream()),
        )?;
        self.flush_conntrack(router)?;
        Ok(Node {
            ns: router.ns.clone(),
            addr,
        })
    }

    /// A veth from the machine's own namespace into the internet bridge, with `198.51.100.254`
    /// on the machine's side (a documentation range: only the connected route is added, the
    /// machine's default route and DNS are untouched). Lets a person on the machine open the
    /// portal's pages. Removed with the testbed.
    pub fn add_host_uplink(&mut self, device: &str) -> Result<Ipv4Addr> {
        let [a, b, c] = INTERNET_PREFIX;
        let addr = Ipv4Addr::new(a, b, c, 254);
        let _ = run("ip", &format!("link del {device}"));
        let (_, inside) = veth_names();
        run(
            "ip",
            &format!("link add {device} type veth peer name {inside}"),
        )?;
        self.host_uplink = Some(device.to_owned());
        run("ip", &format!("link set {inside} netns {}", self.internet))?;
        self.ip(&self.internet, &format!("link set {inside} master br0"))?;
        self.ip(&self.internet, &format!("link set {inside} up"))?;
        run("ip", &format!("addr add {addr}/24 dev {device}"))?;
        run("ip", &format!("link set {device} up"))?;
        wait_until_passing(&self.internet, &inside)?;
        Ok(addr)
    }

    /// Starts a program in a namespace with extra environment, its output appended to `log`.
    /// It is killed when the testbed is dropped, or earlier with [`Testbed::kill`].
    pub fn spawn_logged(
        &mut self,
        ns: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Result<u32> {
        let child = spawn_in(ns, program, args, env, log)?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Sends `signal` to a process this testbed started and waits up to `grace` for it to
    /// exit, then kills it. Forgets it either way.
    pub fn kill(
        &mut self,
        pid: u32,
        signal: nix::sys::signal::Signal,
        grace: std::time::Duration,
    ) -> Result<()> {
        let Some(index) = self.children.iter().position(|c| c.id() == pid) else {
            return Err(Error::Other(format!(
                "process {pid} is not one of the testbed's"
            )));
        };
        let mut child = self.children.swap_remove(index);
        stop_child(&mut child, signal, grace);
        Ok(())
    }

    /// Applies an nftables ruleset in a namespace (`nft -f -`).
    pub fn nft(&self, ns: &str, ruleset: &str) -> Result<()> {
        nft_in(ns, ruleset)
    }

    /// `ip -n NS ARGS` (arguments split on whitespace).
    pub fn ip(&self, ns: &str, args: &str) -> Result<()> {
        run("ip", &format!("-n {ns} {args}"))
    }

    /// Runs a command in a namespace and waits for it.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Result<Output> {
        let mut command = netns_command(ns, program);
        command.args(args);
        checked(command)
    }

    /// Starts a command in a namespace; it is killed when the testbed is dropped.
    pub fn spawn(&mut self, ns: &str, program: &str, args: &[&str]) -> Result<u32> {
        let child = netns_command(ns, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                command: program.to_owned(),
                source,
            })?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Runs `f` on a thread that lives in namespace `ns`; sockets it opens stay there.
    pub fn in_ns<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = PathBuf::from("/run/netns").join(ns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(&path).map_err(|e| Error::Setns {
                        ns: ns.to_owned(),
                        reason: e.to_string(),
                    })?;
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                        Error::Setns {
                            ns: ns.to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
                    Ok(f())
                })
                .join()
                .map_err(|_| Error::Other(format!("a closure in namespace {ns} panicked")))?
        })
    }

    pub(crate) fn track(&mut self, child: Child) {
        self.children.push(child);
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        // A namespace left by a crashed run of the same pid would make `add` fail.
        let _ = run("ip", &format!("netns del {ns}"));
        run("ip", &format!("netns add {ns}"))?;
        self.namespaces.push(ns.to_owned());
        self.ip(ns, "link set lo up")
    }

    fn plug_into_internet(&self, ns: &str, device: &str, addr: Ipv4Addr) -> Result<()> {
        let (outside, inside) = veth_names();
        run(
            "ip",
            &format!("link add {outside} type veth peer name {inside}"),
        )?;
        run("ip", &format!("link set {outside} netns {}", self.internet))?;
        run("ip", &format!("link set {inside} netns {ns}"))?;
        self.ip(&self.internet, &format!("link set {outside} master br0"))?;
        self.ip(&self.internet, &format!("link set {outside} up"))?;
        self.ip(ns, &format!("link set {inside} name {device}"))?;
        self.ip(ns, &format!("addr add {addr}/24 dev {device}"))?;
        self.ip(ns, &format!("link set {device} up"))?;
        wait_until_passing(&self.internet, &outside)?;
        wait_until_passing(ns, device)?;
        self.ip(ns, &format!("route add default via {}", Self::upstream()))
    }

    fn next_public_addr(&mut self) -> Ipv4Addr {
        let [a, b, c] = INTERNET_PREFIX;
        let addr = Ipv4Addr::new(a, b, c, self.next_public);
        self.next_public += 1;
        addr
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(device) = self.host_uplink.take() {
            let _ = run("ip", &format!("link del {device}"));
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run("ip", &format!("netns del {ns}")) {
                tracing::warn!("Cannot delete namespace {ns}: {e}");
            }
        }
    }
}

/// Names for a veth pair while both ends are still in the root namespace, where names are
/// shared by every process: pid and a counter, within the 15 bytes an interface name has.
fn veth_names() -> (String, String) {
    static NEXT_VETH: AtomicU32 = AtomicU32::new(0);
    let n = NEXT_VETH.fetch_add(1, Ordering::Relaxed);
    let base = format!("e{:06x}{:04x}", std::process::id(), n & 0xffff);
    (format!("{base}a"), format!("{base}b"))
}

/// Waits until a link just set up passes packets. The kernel turns a veth's carrier on at once,
/// but marks the link up and lets a bridge port forward only when its link watcher runs, which
/// it does at most once a second: a packet sent before that is silently lost (a test that sent
/// one datagram right after building a LAN lost it whenever two links came up within a second).
fn wait_until_passing(ns: &str, device: &str) -> Result<()> {
    const PATIENCE: Duration = Duration::from_secs(5);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut command = Command::new("ip");
        command.args(["-n", ns, "-d", "-j", "link", "show", "dev", device]);
        let shown = String::from_utf8_lossy(&checked(command)?.stdout).into_owned();
        let up = shown.contains(r#""operstate":"UP""#);
        let bridge_port = shown.contains(r#""info_slave_kind":"bridge""#);
        if up && (!bridge_port || shown.contains(r#""state":"forwarding""#)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Other(format!(
                "link {device} in namespace {ns} does not pass packets after {PATIENCE:?}: {shown}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run(program: &str, args: &str) -> Result<()> {
    let mut command = Command::new(program);
    command.args(args.split_whitespace());
    checked(command).map(drop)
}

fn checked(mut command: Command) -> Result<Output> {
    let printed = format!("{command:?}");
    let output = command.output().map_err(|source| Error::Spawn {
        command: printed.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: printed,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// Starts `program` in namespace `ns` (through `ip netns exec`, which execs it: the pid is the
/// program's) with extra environment and stdout and stderr appended to `log`.
pub fn spawn_in(
    ns: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> Result<Child> {
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| Error::Spawn {
                command: format!("open {}", log.display()),
                source,
            })
    };
    let (stdout, stderr) = (open_log()?, open_log()?);
    netns_command(ns, program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|source| Error::Spawn {
            command: program.to_owned(),
            source,
        })
}

/// `ip netns exec NS PROGRAM`, arguments to follow: the one place a command is put into a
/// network namespace, for the testbed, the end-to-end world and the tests.
pub fn netns_command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// Sends `signal`, waits up to `grace` for the exit, then kills.
pub fn stop_child(child: &mut Child, signal: nix::sys::signal::Signal, grace: std::time::Duration) {
    let Ok(pid) = i32::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Applies a ruleset through `nft -f -`, which parses multi-line rules reliably.
fn nft_in(ns: &str, ruleset: &str) -> Result<()> {
    use std::io::Write as _;
    let command = format!("nft -f - in {ns}");
    let mut child = netns_command(ns, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let output = child.wait_with_output().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("{command}: {ruleset}"),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}
