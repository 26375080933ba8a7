//! A real TUN device in a namespace of its own: packets the kernel routes into it come out of
//! `Tun::recv`, and packets written with `Tun::send_one` reach a socket. Root only.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers outside #[test] functions

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use ember_io::tun::{DEFAULT_MTU, Tun, TunConfig};
use ember_testbed::{Error, Testbed};

const TUN_ADDR: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

#[tokio::test]
async fn packets_cross_a_real_tun_device_both_ways() {
    let Some(mut testbed) = testbed() else { return };
    let host = testbed.add_public_host("tun").unwrap();
    let (tun, socket) = with_tun(&testbed, &host.ns, 11, |tun| {
        (tun, UdpSocket::bind((TUN_ADDR, 0)).unwrap())
    });
    assert_eq!(tun.name(), "ember0");
    let local_port = socket.local_addr().unwrap().port();

    // Out: the kernel routes 100.64.0.0/11 into the device.
    socket.send_to(b"ping", (PEER, 9999)).unwrap();
    let mut batch = tun.recv_batch();
    let packet = 'found: loop {
        tokio::time::timeout(Duration::from_secs(2), tun.recv(&mut batch))
            .await
            .expect("the packet reaches the TUN device")
            .unwrap();
        // Skip anything else the kernel sends (e.g. IPv6 router solicitations).
        for packet in batch.packets_mut() {
            if packet[0] >> 4 == 4 && packet[9] == 17 {
                break 'found packet.to_vec();
            }
        }
    };
    assert_eq!(
        Ipv4Addr::from(<[u8; 4]>::try_from(&packet[16..20]).unwrap()),
        PEER
    );
    assert_eq!(u16::from_be_bytes([packet[22], packet[23]]), 9999);
    assert_eq!(&packet[28..], b"ping");

    // In: a packet written to the device is delivered to the socket.
    tun.send_one(&udp_packet(
        SocketAddrV4::new(PEER, 9999),
        SocketAddrV4::new(TUN_ADDR, local_port),
        b"pong",
    ))
    .await
    .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut reply = [0u8; 16];
    let (len, from) = socket
        .recv_from(&mut reply)
        .expect("the written packet reaches the socket");
    assert_eq!(&reply[..len], b"pong");
    assert_eq!(
        from,
        std::net::SocketAddr::V4(SocketAddrV4::new(PEER, 9999))
    );
}

/// An IPv4/UDP packet (UDP checksum 0, which IPv4 allows).
fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&src.ip().octets());
    packet.extend_from_slice(&dst.ip().octets());
    let checksum = !packet
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>()
        .to_be_bytes()
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>() as u16;
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(&src.port().to_be_bytes());
    packet.extend_from_slice(&dst.port().to_be_bytes());
    packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
}

#[tokio::test]
async fn routes_follow_the_wanted_set_and_are_removed_on_clear() {
    use std::collections::BTreeSet;

    use ember_io::routes::{Prefix, Routes};

    let Some(mut testbed) = testbed() else { return };
    let host = testbed.add_public_host("routes").unwrap();
    let (tun, mut routes) = with_tun(&testbed, &host.ns, 32, |tun| {
        let routes = Routes::new(tun.index()).unwrap();
        (tun, routes)
    });
    let show = || {
        ip(
            &testbed,
            &host.ns,
            &["route", "show", "table", "177", "dev", "ember0"],
        )
    };
    let rules = || ip(&testbed, &host.ns, &["rule", "show"]);
    let prefix = |text: &str, len| Prefix::new(text.parse().unwrap(), len).unwrap();

    let wanted = BTreeSet::from([prefix("10.20.0.0", 16), prefix("100.96.0.0", 11)]);
    routes.apply(&wanted).await.unwrap();
    let table = show();
    assert!(
        table.contains("10.20.0.0/16") && table.contains("100.96.0.0/11"),
        "{table}"
    );
    // Unmarked traffic looks in Ember's table first; the tunnel's own sockets skip it.
    assert!(
        rules().contains("not from all fwmark 0x656d lookup 177"),
        "{}",
        rules()
    );

    let wanted = BTreeSet::from([prefix("100.96.0.0", 11), prefix("192.0.2.7", 32)]);
    routes.apply(&wanted).await.unwrap();
    let table = show();
    assert!(!table.contains("10.20.0.0/16"), "{table}");
    assert!(table.contains("192.0.2.7"), "{table}");
    assert_eq!(routes.installed(), &wanted);

    routes.clear().await.unwrap();
    assert_eq!(show().trim(), "", "no route of ours is left");
    assert!(!rules().contains("0x656d"), "{}", rules());
    drop(tun);
}

/// A run that crashed leaves its rules behind; the next one replaces them instead of adding a
/// second set, and its clear leaves none of either.
#[tokio::test]
async fn rules_left_by_a_crashed_run_are_replaced_not_doubled() {
    use std::collections::BTreeSet;

    use ember_io::routes::{Prefix, Routes};

    let Some(mut testbed) = testbed() else { return };
    let host = testbed.add_public_host("rules").unwrap();
    let (tun, mut crashed, mut next) = with_tun(&testbed, &host.ns, 32, |tun| {
        let crashed = Routes::new(tun.index()).unwrap();
        let next = Routes::new(tun.index()).unwrap();
        (tun, crashed, next)
    });
    let count = |family: &str, what: &str| {
        ip(&testbed, &host.ns, &[family, "rule", "show"])
            .lines()
            .filter(|line| line.contains(what))
            .count()
    };
    let prefix = |text: &str| Prefix::new(text.parse().unwrap(), 16).unwrap();
    crashed
        .apply(&BTreeSet::from([prefix("10.40.0.0")]))
        .await
        .unwrap();
    next.apply(&BTreeSet::from([prefix("10.41.0.0")]))
        .await
        .unwrap();
    for family in ["-4", "-6"] {
        assert_eq!(count(family, "lookup 177"), 1, "{family}");
        assert_eq!(count(family, "suppress_prefixlength 0"), 1, "{family}");
        assert_eq!(count(family, "lookup 178"), 1, "{family}");
    }
    next.clear().await.unwrap();
    for family in ["-4", "-6"] {
        assert_eq!(count(family, "0x656d"), 0, "{family}");
        assert_eq!(count(family, "suppress_prefixlength"), 0, "{family}");
    }
    drop(crashed);
    drop(tun);
}

/// A packet from one of the tunnel's own (marked) sockets to an address a resource covers
/// leaves through the normal route, not into the TUN device.
#[tokio::test]
async fn the_tunnels_own_sockets_bypass_the_routes_into_the_tunnel() {
    use std::collections::BTreeSet;

    use ember_io::routes::{Prefix, Routes};

    let Some(mut testbed) = testbed() else { return };
    let host = testbed.add_public_host("marks").unwrap();
    let (tun, mut routes) = with_tun(&testbed, &host.ns, 32, |tun| {
        let routes = Routes::new(tun.index()).unwrap();
        (tun, routes)
    });
    // The whole internet side is a "resource" here, and so is the peer below.
    let internet = Prefix::new("198.51.100.0".parse().unwrap(), 24).unwrap();
    routes.apply(&BTreeSet::from([internet])).await.unwrap();
    let route_get = |mark: &str| {
        let mut args = vec!["route", "get", "198.51.100.1"];
        if !mark.is_empty() {
            args.extend(["mark", mark]);
        }
        ip(&testbed, &host.ns, &args)
    };
    assert!(route_get("").contains("dev ember0"), "{}", route_get(""));
    let marked = route_get("0x656d");
    assert!(!marked.contains("ember0"), "{marked}");

    // And the sockets the IO shell makes do carry the mark.
    let socket = testbed
        .in_ns(&host.ns, || std::net::UdpSocket::bind("0.0.0.0:0").unwrap())
        .unwrap();
    let marked = socket.try_clone().unwrap();
    let _socket = ember_io::udp::UdpSocket::from_std(socket).unwrap();
    let mark = nix::sys::socket::getsockopt(&marked, nix::sys::socket::sockopt::Mark).unwrap();
    assert_eq!(mark, ember_io::policy::FWMARK);
    routes.clear().await.unwrap();
    drop(tun);
}

/// With the internet resource on, everything without a more specific route goes into the
/// tunnel, while the host's own networks (the LAN) and a resource inside them behave as before.
#[tokio::test]
async fn default_routes_take_the_internet_but_leave_the_lan_and_resources_alone() {
    use std::collections::BTreeSet;

    use ember_io::routes::{Prefix, Routes};

    let Some(mut testbed) = testbed() else { return };
    let host = testbed.add_public_host("internet").unwrap();
    let (tun, mut routes) = with_tun(&testbed, &host.ns, 32, |tun| {
        let routes = Routes::new(tun.index()).unwrap();
        (tun, routes)
    });
    let prefix = |text: &str, len| Prefix::new(text.parse().unwrap(), len).unwrap();
    let route_get = |to: &str| ip(&testbed, &host.ns, &["route", "get", to]);
    // The host sits in 198.51.100.0/24; one address of it is a resource.
    let resource = prefix("198.51.100.77", 32);
    routes.apply(&BTreeSet::from([resource])).await.unwrap();
    let before = route_get("203.0.113.9");
    assert!(!before.contains("ember0"), "{before}");

    let internet = BTreeSet::from([resource, prefix("0.0.0.0", 0), prefix("::", 0)]);
    routes.apply(&internet).await.unwrap();
    assert!(
        route_get("203.0.113.9").contains("dev ember0"),
        "{}",
        route_get("203.0.113.9")
    );
    let lan = route_get("198.51.100.1");
    assert!(
        !lan.contains("ember0"),
        "the LAN stays outside the tunnel: {lan}"
    );
    assert!(
        route_get("198.51.100.77").contains("dev ember0"),
        "{}",
        route_get("198.51.100.77")
    );
    let marked = ip(
        &testbed,
        &host.ns,
        &["route", "get", "203.0.113.9", "mark", "0x656d"],
    );
    assert!(
        !marked.contains("ember0"),
        "the tunnel's own traffic: {marked}"
    );

    routes.apply(&BTreeSet::from([resource])).await.unwrap();
    assert!(
        !route_get("203.0.113.9").contains("ember0"),
        "{}",
        route_get("203.0.113.9")
    );
    routes.clear().await.unwrap();
    drop(tun);
}

#[tokio::test]
async fn a_network_change_is_reported_but_our_own_routes_are_not() {
    use std::collections::BTreeSet;

    use ember_io::routes::{Prefix, Routes};

    let Some(mut testbed) = testbed() else { return };
    let host = testbed.add_public_host("watch").unwrap();
    let (tun, mut routes, mut changes) = with_tun(&testbed, &host.ns, 32, |tun| {
        let routes = Routes::new(tun.index()).unwrap();
        let changes = ember_io::netwatch::watch(tun.index()).unwrap();
        (tun, routes, changes)
    });

    let ours = BTreeSet::from([Prefix::new("10.30.0.0".parse().unwrap(), 16).unwrap()]);
    routes.apply(&ours).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(1), changes.recv()).await;
    assert!(
        quiet.is_err(),
        "our own route was reported as a network change"
    );

    testbed
        .exec(
            &host.ns,
            "ip",
            &["route", "add", "203.0.113.0/24", "via", "198.51.100.1"],
        )
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), changes.recv())
        .await
        .expect("the new route is reported")
        .expect("the watch is running");
    drop(tun);
}

fn testbed() -> Option<Testbed> {
    match Testbed::new() {
        Ok(testbed) => Some(testbed),
        Err(Error::NotRoot) => {
            ember_testbed::skip("TUN devices, routes and namespaces need root");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Creates `ember0` with `TUN_ADDR/prefix` in namespace `ns` and hands it to `setup`, which runs
/// there too (inside the test's runtime), so everything it opens belongs to that namespace.
fn with_tun<T: Send>(
    testbed: &Testbed,
    ns: &str,
    prefix: u8,
    setup: impl FnOnce(Tun) -> T + Send,
) -> T {
    let runtime = tokio::runtime::Handle::current();
    testbed
        .in_ns(ns, move || {
            let _entered = runtime.enter();
            let tun = Tun::create(&TunConfig {
                name: "ember0".into(),
                mtu: DEFAULT_MTU,
                ipv4: Some((TUN_ADDR, prefix)),
                ipv6: None,
                wintun_dll: None,
            })
            .unwrap();
            setup(tun)
        })
        .unwrap()
}

/// What `ip ARGS` prints in namespace `ns`; a failing command fails the test.
fn ip(testbed: &Testbed, ns: &str, args: &[&str]) -> String {
    String::from_utf8(testbed.exec(ns, "ip", args).unwrap().stdout).unwrap()
}
