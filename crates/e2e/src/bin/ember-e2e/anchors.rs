//! The benchmark's anchors between the same client and gateway hosts as Ember: the raw path
//! (port forwards through both routers and the gateway host to the resource), wireguard-go and
//! OpenVPN (both from Debian), each terminating on the gateway host and routing to its own
//! address of the resource host, as Ember's gateway does.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use ember_e2e::{World, addr, wait_until};

pub const RAW_PORT: u16 = 5202;
const WIREGUARD_PORT: u16 = 51820;
const OPENVPN_PORT: u16 = 1194;
const WIREGUARD_NET: [u8; 3] = [10, 99, 0];
const OPENVPN_NET: [u8; 3] = [10, 98, 0];

/// Port forwards on the gateway router (like any VPN server behind NAT needs) and on the gateway
/// host (the raw path to the resource, NAT for the anchors' tunnel addresses).
pub fn plumb(world: &World) -> Result<()> {
    let gateway_lan = world.gateway.host.addr;
    world.testbed.nft(
        &world.gateway.router.ns,
        &format!(
            "table ip e2e_anchor_dnat {{
                chain prerouting {{
                    type nat hook prerouting priority -100;
                    iifname \"wan\" udp dport {{ {WIREGUARD_PORT}, {OPENVPN_PORT} }} dnat to {gateway_lan}
                    iifname \"wan\" tcp dport {RAW_PORT} dnat to {gateway_lan}
                }}
            }}
            insert rule ip testbed forward ct status dnat accept"
        ),
    )?;
    world.testbed.exec(
        &world.gateway.host.ns,
        "sysctl",
        &["-qw", "net.ipv4.ip_forward=1"],
    )?;
    let [w1, w2, w3] = WIREGUARD_NET;
    let [o1, o2, o3] = OPENVPN_NET;
    world.testbed.nft(
        &world.gateway.host.ns,
        &format!(
            "table ip e2e_anchor {{
                chain prerouting {{
                    type nat hook prerouting priority -100;
                    iifname \"eth0\" tcp dport {RAW_PORT} dnat to {res}:{iperf}
                }}
                chain postrouting {{
                    type nat hook postrouting priority 100;
                    oifname \"lan0\" ip saddr {{ {w1}.{w2}.{w3}.0/24, {o1}.{o2}.{o3}.0/24 }} masquerade
                    oifname \"lan0\" ct status dnat masquerade
                }}
            }}",
            res = addr::RESOURCE,
            iperf = addr::IPERF_PORT,
        ),
    )?;
    Ok(())
}

/// Ember offers the anchors' tunnel addresses as host candidates like any other address, and
/// ICE happily nominates a pair through wireguard-go: Ember's throughput would then be measured
/// inside wireguard-go. Its sockets carry Ember's mark, so this keeps them out until
/// [`stop_isolating`].
pub fn isolate(world: &World) -> Result<()> {
    for ns in [&world.client.host.ns, &world.gateway.host.ns] {
        world.testbed.nft(
            ns,
            &format!(
                "table inet e2e_anchor_isolation {{
                    chain output {{
                        type filter hook output priority 0;
                        oifname \"wg*\" meta mark {mark:#x} drop
                        oifname \"ov*\" meta mark {mark:#x} drop
                    }}
                }}",
                mark = ember_io::policy::FWMARK
            ),
        )?;
    }
    Ok(())
}

/// Lifts [`isolate`]. A connection set up meanwhile stays on its path; the next one may run
/// through wireguard-go again. Kept only for the throughput rows: with the anchors blocked a
/// restarted service did not reach the resource within 10 s in the cold time-to-first-byte
/// runs. The cause found since (a restarted service asked for the credentials its gateway
/// still held a connection for) is fixed in the tunnel service; keeping the rule for the whole
/// run has not been tried again.
pub fn stop_isolating(world: &World) -> Result<()> {
    for ns in [&world.client.host.ns, &world.gateway.host.ns] {
        world
            .testbed
            .nft(ns, "delete table inet e2e_anchor_isolation")?;
    }
    Ok(())
}

/// Removes wireguard-go's UAPI sockets of this process on drop: they live in the machine's
/// `/var/run/wireguard`, and a killed wireguard-go leaves them behind.
#[derive(Debug)]
pub struct WireguardSockets;

impl Drop for WireguardSockets {
    fn drop(&mut self) {
        let pid = std::process::id();
        for side in ["wgc", "wgg"] {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{side}{pid}.sock"));
        }
    }
}

/// A tunnel anchor: its two processes (client side, gateway side) and the address to test.
#[derive(Debug)]
pub struct Tunnel {
    pub pids: [u32; 2],
    pub target: Ipv4Addr,
}

impl Tunnel {
    pub fn stop(self, world: &mut World) {
        for pid in self.pids {
            let _ = world.testbed.kill(
                pid,
                nix::sys::signal::Signal::SIGTERM,
                Duration::from_secs(5),
            );
        }
    }
}

/// wireguard-go on both ends, 25 s persistent keepalive from the client (the usual setting
/// behind NAT).
pub fn wireguard(world: &mut World, work: &Path) -> Result<Tunnel> {
    let (client_ns, gateway_ns) = (world.client.host.ns.clone(), world.gateway.host.ns.clone());
    let pid = std::process::id();
    let (client_if, gateway_if) = (format!("wgc{pid}"), format!("wgg{pid}"));
    let key = |name: &str| -> Result<(PathBuf, String)> {
        let private = run_stdout("wg", &["genkey"], "")?;
        let public = run_stdout("wg", &["pubkey"], &private)?;
        let path = work.join(format!("{name}.key"));
        std::fs::write(&path, private.trim()).context("write a WireGuard key")?;
        Ok((path, public.trim().to_owned()))
    };
    let (client_key, client_pub) = key("wg-client")?;
    let (gateway_key, gateway_pub) = key("wg-gateway")?;
    let net = |host: u8| {
        let [a, b, c] = WIREGUARD_NET;
        Ipv4Addr::new(a, b, c, host)
    };

    let mut pids = [0; 2];
    for (i, (ns, ifname)) in [(&client_ns, &client_if), (&gateway_ns, &gateway_if)]
        .into_iter()
        .enumerate()
    {
        pids[i] = world.testbed.spawn_logged(
            ns,
            "wireguard-go",
            &["-f", ifname],
            &[("WG_PROCESS_FOREGROUND", "1"), ("LOG_LEVEL", "error")],
            &work.join(format!("{ifname}.log")),
        )?;
        let socket = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
        wait_until("wireguard-go's socket", Duration::from_secs(10), || {
            Ok(socket.exists().then_some(()))
        })?;
    }
    let wg = |ns: &str, args: &[&str]| world.testbed.exec(ns, "wg", args).map(drop);
    wg(
        &gateway_ns,
        &[
            "set",
            &gateway_if,
            "private-key",
            &gateway_key.to_string_lossy(),
            "listen-port",
            &WIREGUARD_PORT.to_string(),
            "peer",
            &client_pub,
            "allowed-ips",
            &format!("{}/32", net(2)),
        ],
    )?;
    wg(
        &client_ns,
        &[
            "set",
            &client_if,
            "private-key",
            &client_key.to_string_lossy(),
            "peer",
            &gateway_pub,
            "endpoint",
            &format!("{}:{WIREGUARD_PORT}", world.gateway.router.addr),
            "allowed-ips",
            &format!("{}/32,{}/32", net(1), addr::ANCHOR_WIREGUARD),
            "persistent-keepalive",
            "25",
        ],
    )?;
    for (ns, ifname, host) in [(&gateway_ns, &gateway_if, 1), (&client_ns, &client_if, 2)] {
        world
            .testbed
            .ip(ns, &format!("addr add {}/24 dev {ifname}", net(host)))?;
        world.testbed.ip(ns, &format!("link set {ifname} up"))?;
    }
    world.testbed.ip(
        &client_ns,
        &format!("route add {}/32 dev {client_if}", addr::ANCHOR_WIREGUARD),
    )?;
    let tunnel = Tunnel {
        pids,
        target: addr::ANCHOR_WIREGUARD,
    };
    check_reachable(world, tunnel.target).context("wireguard-go tunnel")?;
    Ok(tunnel)
}

/// OpenVPN 2.6 on both ends: UDP, TLS with self-signed certificates pinned by fingerprint,
/// AES-256-GCM, no kernel offload (`--disable-dco`, as the kernel module is not here).
pub fn openvpn(world: &mut World, work: &Path) -> Result<Tunnel> {
    let (client_ns, gateway_ns) = (world.client.host.ns.clone(), world.gateway.host.ns.clone());
    let pid = std::process::id();
    let (client_if, gateway_if) = (format!("ovc{pid}"), format!("ovg{pid}"));
    let cert = |name: &str| -> Result<(PathBuf, PathBuf, String)> {
        let (key, crt) = (
            work.join(format!("{name}.key")),
            work.join(format!("{name}.crt")),
        );
        run_stdout(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key.to_string_lossy(),
                "-out",
                &crt.to_string_lossy(),
            ],
            "",
        )?;
        let fingerprint = run_stdout(
            "openssl",
            &[
                "x509",
                "-in",
                &crt.to_string_lossy(),
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
            "",
        )?;
        let fingerprint = fingerprint
            .trim()
            .rsplit_once('=')
            .map(|(_, f)| f.to_owned())
            .context("openssl printed no fingerprint")?;
        Ok((key, crt, fingerprint))
    };
    let (client_key, client_crt, client_fp) = cert("ovpn-client")?;
    let (gateway_key, gateway_crt, gateway_fp) = cert("ovpn-gateway")?;
    let net = |host: u8| {
        let [a, b, c] = OPENVPN_NET;
        Ipv4Addr::new(a, b, c, host)
    };
    let common = |ifname: &str| -> Vec<String> {
        [
            "--dev",
            ifname,
            "--dev-type",
            "tun",
            "--proto",
            "udp",
            "--disable-dco",
            "--topology",
            "p2p",
            "--data-ciphers",
            "AES-256-GCM",
            "--verb",
            "3",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let mut gateway_args = common(&gateway_if);
    gateway_args.extend(
        [
            "--lport",
            &OPENVPN_PORT.to_string(),
            "--tls-server",
            "--dh",
            "none",
            "--cert",
            &gateway_crt.to_string_lossy(),
            "--key",
            &gateway_key.to_string_lossy(),
            "--peer-fingerprint",
            &client_fp,
            "--ifconfig",
            &net(1).to_string(),
            &net(2).to_string(),
        ]
        .map(str::to_owned),
    );
    let mut client_args = common(&client_if);
    client_args.extend(
        [
            "--remote",
            &world.gateway.router.addr.to_string(),
            &OPENVPN_PORT.to_string(),
            "--nobind",
            "--tls-client",
            "--cert",
            &client_crt.to_string_lossy(),
            "--key",
            &client_key.to_string_lossy(),
            "--peer-fingerprint",
            &gateway_fp,
            "--ifconfig",
            &net(2).to_string(),
            &net(1).to_string(),
        ]
        .map(str::to_owned),
    );
    let client_log = work.join("openvpn-client.log");
    let mut pids = [0; 2];
    for (i, (ns, args, log)) in [
        (&gateway_ns, &gateway_args, work.join("openvpn-gateway.log")),
        (&client_ns, &client_args, client_log.clone()),
    ]
    .into_iter()
    .enumerate()
    {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pids[i] = world
            .testbed
            .spawn_logged(ns, "openvpn", &args, &[], &log)?;
    }
    // pids: [gateway, client]; keep [client, gateway] like the others.
    pids.swap(0, 1);
    wait_until("OpenVPN to connect", Duration::from_secs(20), || {
        let log = std::fs::read_to_string(&client_log).unwrap_or_default();
        Ok(log
            .contains("Initialization Sequence Completed")
            .then_some(()))
    })?;
    world.testbed.ip(
        &client_ns,
        &format!("route add {}/32 dev {client_if}", addr::ANCHOR_OPENVPN),
    )?;
    let tunnel = Tunnel {
        pids,
        target: addr::ANCHOR_OPENVPN,
    };
    check_reachable(world, tunnel.target).context("OpenVPN tunnel")?;
    Ok(tunnel)
}

fn check_reachable(world: &World, target: Ipv4Addr) -> Result<()> {
    let page = world.client_curl(&format!("http://{target}/"), Duration::from_secs(10))?;
    if page.status != 200 {
        bail!("http://{target}/ answered {}", page.status);
    }
    Ok(())
}

fn run_stdout(program: &str, args: &[&str], stdin: &str) -> Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {program}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
