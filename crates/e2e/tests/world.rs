//! The world the scenarios run in, without Ember's data plane: the portal, its real sign-in
//! flow, coturn, the routers, the site LAN, the resource's servers and both DNS servers behave
//! as the scenarios assume. Root only; skipped with a message otherwise.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Duration;

use ember_e2e::{Error, Options, World, addr, portal};

fn world() -> Option<World> {
    match World::start(Options::infrastructure_only()) {
        Ok(world) => Some(world),
        Err(Error::NotRoot) => {
            ember_testbed::skip("the end-to-end world needs root");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn world_comes_up_and_the_resource_is_reachable_from_the_gateway_host_but_not_from_the_client_host()
{
    let Some(world) = world() else { return };
    let gateway = world.gateway.host.ns.clone();
    let short = Duration::from_secs(3);

    let page = world
        .curl(&gateway, &format!("http://{}/", addr::RESOURCE), short, &[])
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.text(),
        format!("ember e2e resource {}:80\n", addr::RESOURCE)
    );
    let web = world
        .curl(&gateway, &format!("http://{}/", addr::WEB), short, &[])
        .unwrap();
    assert_eq!(web.text(), format!("ember e2e resource {}:80\n", addr::WEB));
    let alt = world
        .curl(
            &gateway,
            &format!("http://{}:{}/", addr::WEB, addr::HTTP_ALT_PORT),
            short,
            &[],
        )
        .unwrap();
    assert_eq!(alt.status, 200);
    let sum = world
        .download(
            &gateway,
            &format!("http://{}/{}", addr::RESOURCE, world.download.name),
            Duration::from_secs(30),
            &[],
        )
        .unwrap();
    assert_eq!(sum, world.download.sha256);
    world
        .testbed
        .exec(
            &gateway,
            "iperf3",
            &["-c", &addr::RESOURCE.to_string(), "-t", "1"],
        )
        .unwrap();

    // Not from the client host (nor from another host on the internet): the site is private.
    let from_client = world.client_curl(&format!("http://{}/", addr::RESOURCE), short);
    assert!(
        matches!(from_client, Err(Error::Curl { .. })),
        "{from_client:?}"
    );
    let from_portal_host = world.curl(
        &world.portal_host.ns,
        &format!("http://{}/", addr::RESOURCE),
        short,
        &[],
    );
    assert!(from_portal_host.is_err(), "{from_portal_host:?}");
}

#[test]
fn corp_names_resolve_on_the_gateway_host_and_public_names_on_the_client_host() {
    let Some(world) = world() else { return };
    let (gateway, client) = (&world.gateway.host.ns, &world.client.host.ns);

    assert_eq!(world.resolve(gateway, addr::WEB_NAME).unwrap(), [addr::WEB]);
    assert_eq!(
        world.resolve(gateway, addr::APPS_EXAMPLE_NAME).unwrap(),
        [addr::APPS]
    );
    assert_eq!(
        world.resolve(client, addr::PUBLIC_NAME).unwrap(),
        [world.portal_host.addr]
    );
    // Without Ember the client host knows nothing of the corp names.
    assert!(world.resolve(client, addr::WEB_NAME).unwrap().is_empty());
    assert_eq!(
        world.client_resolv_conf().unwrap(),
        world.original_client_resolv_conf()
    );
}

#[test]
fn the_browser_sign_in_flow_yields_a_code_that_only_the_verifier_redeems() {
    let Some(world) = world() else { return };
    let (ns, url) = (world.client.host.ns.clone(), world.portal_url());

    let signed_in = world.browser_sign_in(portal::ADA).unwrap();
    let key = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    // The code from the deep link is worth nothing without the verifier the app kept.
    let other_verifier = "A".repeat(43);
    let (status, _) =
        portal::redeem(&ns, &url, signed_in.code.expose(), &other_verifier, key).unwrap();
    assert_eq!(status, 401);
    let signed_in = world.browser_sign_in(portal::ADA).unwrap();
    let (status, body) = portal::redeem(
        &ns,
        &url,
        signed_in.code.expose(),
        signed_in.verifier.expose(),
        key,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(
        portal::upgrade_status(&ns, &url, "/api/client", &token).unwrap(),
        101
    );
    let forged = "0".repeat(64);
    assert_eq!(
        portal::upgrade_status(&ns, &url, "/api/client", &forged).unwrap(),
        401
    );

    let wrong_password =
        portal::sign_in_through_browser(&ns, &url, portal::ADA, "wrong", world.dir());
    assert!(wrong_password.is_err(), "{wrong_password:?}");

    let gateway_token = world
        .gateway_token(portal::HQ_SITE, portal::HQ_GATEWAY)
        .unwrap();
    let gateway_ns = world.gateway.host.ns.clone();
    assert_eq!(
        portal::upgrade_status(&gateway_ns, &url, "/api/gateway", &gateway_token).unwrap(),
        101
    );
}

#[test]
fn coturn_sees_each_natted_host_at_its_routers_public_address() {
    let Some(world) = world() else { return };
    for host in [&world.client, &world.gateway] {
        let relay = world.coturn.addr;
        let mapped = world
            .testbed
            .in_ns(&host.host.ns, move || {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                ember_testbed::coturn_stun_binding(&socket, relay, Duration::from_secs(2))
            })
            .unwrap()
            .expect("coturn answered");
        assert_eq!(*mapped.ip(), host.router.addr);
    }
}
