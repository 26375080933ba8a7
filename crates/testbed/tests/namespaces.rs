//! The testbed behaves like the internet our tests assume: NATs map, filter and forget as
//! configured, loss drops packets, and coturn answers. Root only; skipped with a message
//! otherwise.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers outside #[test] functions

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, SystemTime};

use ember_testbed::{Coturn, Error, Nat, Node, Testbed, TurnCredentials};

fn testbed() -> Option<Testbed> {
    match Testbed::new() {
        Ok(testbed) => Some(testbed),
        Err(Error::NotRoot) => {
            ember_testbed::skip("the network testbed needs root");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn socket_in(testbed: &Testbed, node: &Node) -> UdpSocket {
    testbed
        .in_ns(&node.ns, || {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap()
        })
        .unwrap()
}

fn receive(socket: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 1500];
    let (len, from) = socket.recv_from(&mut buf).ok()?;
    Some((buf[..len].to_vec(), from))
}

fn mapped(socket: &UdpSocket, coturn: &Coturn) -> SocketAddrV4 {
    ember_testbed::coturn_stun_binding(socket, coturn.addr, Duration::from_secs(2))
        .expect("coturn answered the binding request")
}

#[test]
fn a_natted_host_is_seen_at_its_routers_public_address() {
    let Some(mut testbed) = testbed() else { return };
    let relay = testbed.add_public_host("relay").unwrap();
    let coturn = Coturn::start(&mut testbed, &relay, "secret").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();

    let socket = socket_in(&testbed, &client.host);
    assert_eq!(*mapped(&socket, &coturn).ip(), client.router.addr);
}

#[test]
fn endpoint_independent_nat_uses_one_mapping_for_all_destinations() {
    let Some(mut testbed) = testbed() else { return };
    let (a, b) = (
        testbed.add_public_host("stun-a").unwrap(),
        testbed.add_public_host("stun-b").unwrap(),
    );
    let (coturn_a, coturn_b) = (
        Coturn::start(&mut testbed, &a, "s").unwrap(),
        Coturn::start(&mut testbed, &b, "s").unwrap(),
    );
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();

    let socket = socket_in(&testbed, &client.host);
    assert_eq!(mapped(&socket, &coturn_a), mapped(&socket, &coturn_b));
}

#[test]
fn symmetric_nat_maps_each_destination_to_its_own_port() {
    let Some(mut testbed) = testbed() else { return };
    let (a, b) = (
        testbed.add_public_host("stun-a").unwrap(),
        testbed.add_public_host("stun-b").unwrap(),
    );
    let (coturn_a, coturn_b) = (
        Coturn::start(&mut testbed, &a, "s").unwrap(),
        Coturn::start(&mut testbed, &b, "s").unwrap(),
    );
    let client = testbed.add_natted_host("client", Nat::Symmetric).unwrap();

    let socket = socket_in(&testbed, &client.host);
    let (via_a, via_b) = (mapped(&socket, &coturn_a), mapped(&socket, &coturn_b));
    assert_eq!(via_a.ip(), via_b.ip());
    assert_ne!(via_a.port(), via_b.port());
}

#[test]
fn unsolicited_packets_from_the_internet_do_not_reach_a_natted_host() {
    let Some(mut testbed) = testbed() else { return };
    let outsider = testbed.add_public_host("outsider").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();

    let inside = testbed
        .in_ns(&client.host.ns, || {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 40000)).unwrap()
        })
        .unwrap();
    let outside = socket_in(&testbed, &outsider);
    outside
        .send_to(b"knock", (client.router.addr, 40000))
        .unwrap();
    assert_eq!(receive(&inside, Duration::from_millis(500)), None);
}

#[test]
fn hole_punching_works_between_endpoint_independent_nats_only() {
    for (nat, expect_direct) in [(Nat::EndpointIndependent, true), (Nat::Symmetric, false)] {
        let Some(mut testbed) = testbed() else { return };
        let relay = testbed.add_public_host("relay").unwrap();
        let coturn = Coturn::start(&mut testbed, &relay, "s").unwrap();
        let a = testbed.add_natted_host("a", nat).unwrap();
        let b = testbed.add_natted_host("b", nat).unwrap();
        let (socket_a, socket_b) = (socket_in(&testbed, &a.host), socket_in(&testbed, &b.host));
        let (mapped_a, mapped_b) = (mapped(&socket_a, &coturn), mapped(&socket_b, &coturn));

        // Both punch at once, a few times, as ICE does.
        let mut reached = false;
        for _ in 0..5 {
            socket_a.send_to(b"from a", mapped_b).unwrap();
            socket_b.send_to(b"from b", mapped_a).unwrap();
            if receive(&socket_b, Duration::from_millis(200)).is_some()
                && receive(&socket_a, Duration::from_millis(200)).is_some()
            {
                reached = true;
                break;
            }
        }
        assert_eq!(reached, expect_direct, "{nat:?}");
    }
}

#[test]
fn a_router_that_forgot_its_mapping_drops_the_peers_packets() {
    let Some(mut testbed) = testbed() else { return };
    let server = testbed.add_public_host("server").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();
    let (inside, outside) = (
        socket_in(&testbed, &client.host),
        socket_in(&testbed, &server),
    );
    let server_addr = SocketAddr::from((server.addr, outside.local_addr().unwrap().port()));

    inside.send_to(b"hello", server_addr).unwrap();
    let (_, mapping) = receive(&outside, Duration::from_secs(1)).unwrap();
    outside.send_to(b"reply", mapping).unwrap();
    assert!(receive(&inside, Duration::from_secs(1)).is_some());

    testbed.flush_conntrack(&client.router).unwrap();
    outside.send_to(b"late reply", mapping).unwrap();
    assert_eq!(receive(&inside, Duration::from_millis(500)), None);
}

#[test]
fn loss_drops_about_the_configured_share_of_packets() {
    let Some(mut testbed) = testbed() else { return };
    let server = testbed.add_public_host("server").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();
    testbed.set_loss(&client.router, 50).unwrap();
    let (inside, outside) = (
        socket_in(&testbed, &client.host),
        socket_in(&testbed, &server),
    );
    let server_addr = SocketAddr::from((server.addr, outside.local_addr().unwrap().port()));

    const SENT: usize = 400;
    for i in 0..SENT {
        inside
            .send_to(&(i as u32).to_be_bytes(), server_addr)
            .unwrap();
    }
    let mut received = 0;
    while receive(&outside, Duration::from_millis(300)).is_some() {
        received += 1;
    }
    // Binomial(400, 0.5): 140..260 is more than five standard deviations wide.
    assert!(
        (140..=260).contains(&received),
        "{received} of {SENT} arrived"
    );

    testbed.set_loss(&client.router, 0).unwrap();
    inside.send_to(b"after", server_addr).unwrap();
    assert!(receive(&outside, Duration::from_secs(1)).is_some());
}

#[test]
fn coturn_rest_credentials_have_the_expected_form() {
    let Some(mut testbed) = testbed() else { return };
    let relay = testbed.add_public_host("relay").unwrap();
    let coturn = Coturn::start(&mut testbed, &relay, "north").unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let TurnCredentials { username, password } =
        coturn.credentials("device-1", Duration::from_secs(3600), now);
    assert_eq!(username, "1700003600:device-1");
    // base64 of a 20-byte HMAC-SHA1.
    assert_eq!(password.len(), 28);
    assert_ne!(
        coturn
            .credentials("device-2", Duration::from_secs(3600), now)
            .password,
        password
    );
}

#[test]
fn a_lan_behind_a_host_is_reachable_from_that_host_only() {
    let Some(mut testbed) = testbed() else { return };
    let outsider = testbed.add_public_host("outsider").unwrap();
    let gateway = testbed
        .add_natted_host("gw", Nat::EndpointIndependent)
        .unwrap();
    let lan = testbed.add_lan("site", [10, 20, 0]).unwrap();
    assert_eq!(
        testbed.attach(&lan, &gateway.host.ns, "lan0", 1).unwrap(),
        Ipv4Addr::new(10, 20, 0, 1)
    );
    let resource = testbed.add_lan_host(&lan, "res", 10).unwrap();
    assert_eq!(resource.addr, Ipv4Addr::new(10, 20, 0, 10));

    let listener = testbed
        .in_ns(&resource.ns, || {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 7000)).unwrap()
        })
        .unwrap();
    let target = SocketAddr::from((resource.addr, 7000));
    socket_in(&testbed, &gateway.host)
        .send_to(b"from the gateway host", target)
        .unwrap();
    let (payload, from) = receive(&listener, Duration::from_secs(1)).unwrap();
    assert_eq!(payload, b"from the gateway host");
    assert_eq!(from.ip(), Ipv4Addr::new(10, 20, 0, 1));

    // The internet has no way in (the public host's default route loses the packet).
    socket_in(&testbed, &outsider)
        .send_to(b"from outside", target)
        .unwrap();
    assert_eq!(receive(&listener, Duration::from_millis(500)), None);
}

#[test]
fn a_router_given_a_new_public_address_maps_there_from_then_on() {
    let Some(mut testbed) = testbed() else { return };
    let relay = testbed.add_public_host("relay").unwrap();
    let coturn = Coturn::start(&mut testbed, &relay, "s").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();
    let socket = socket_in(&testbed, &client.host);
    assert_eq!(*mapped(&socket, &coturn).ip(), client.router.addr);

    let roamed = testbed.change_wan_addr(&client.router).unwrap();
    assert_ne!(roamed.addr, client.router.addr);
    assert_eq!(*mapped(&socket, &coturn).ip(), roamed.addr);
}

#[test]
fn coturn_answers_again_after_a_restart() {
    let Some(mut testbed) = testbed() else { return };
    let relay = testbed.add_public_host("relay").unwrap();
    let mut coturn = Coturn::start(&mut testbed, &relay, "s").unwrap();
    let client = testbed
        .add_natted_host("client", Nat::EndpointIndependent)
        .unwrap();
    let old_pid = coturn.pid;
    coturn.restart(&mut testbed).unwrap();
    assert_ne!(coturn.pid, old_pid);
    let socket = socket_in(&testbed, &client.host);
    assert_eq!(*mapped(&socket, &coturn).ip(), client.router.addr);
}
