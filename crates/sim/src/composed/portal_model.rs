//! The portal model: what the real portal promises a client and its gateways (grants through
//! an online gateway of the resource's site, denials with their reason, candidates passed on).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ember_engine::IceCredentials;
use ember_protocol::WireGuardKey;
use ember_protocol::portal::{
    self, AccountInfo, ActorInfo, ClientMessage, ClientPeer, DenialReason, Interface, PeerInfo,
    PortalToClient, PortalToGateway, Relay, Resource,
};
use rand::RngCore;

use super::{CLIENT_ID, CLIENT_TUN, Message, RELAY_PASSWORD, RELAY_USER, World};

impl World {
    pub(super) fn init(&self) -> PortalToClient {
        PortalToClient::Init {
            account: account(),
            actor: actor(),
            interface: Interface {
                ipv4: CLIENT_TUN,
                ipv6: Ipv6Addr::LOCALHOST,
            },
            resources: self.portal.resources.clone(),
            relays: self.portal_relays(),
            heartbeat_interval_ms: 10_000,
        }
    }

    pub(super) fn portal_relays(&self) -> Vec<Relay> {
        self.relays
            .iter()
            .enumerate()
            .map(|(i, r)| Relay {
                id: format!("relay-{i}"),
                urls: vec![format!("turn:{}", r.addr())],
                username: RELAY_USER.into(),
                password: RELAY_PASSWORD.into(),
                expires_at: u64::MAX,
            })
            .collect()
    }

    pub(super) fn portal_handles(&mut self, message: ClientMessage) {
        if !self.portal.up {
            return;
        }
        let at = self.now + self.signal_latency;
        match message {
            ClientMessage::RequestAccess {
                request_id,
                resource_id,
                domain,
                proxy_ips,
                ..
            } => {
                let deny = |reason, message: &str| PortalToClient::AccessDenied {
                    request_id,
                    resource_id: resource_id.clone(),
                    reason,
                    message: message.into(),
                };
                let Some(resource) = self.portal.resources.iter().find(|r| r.id == resource_id)
                else {
                    let answer = deny(DenialReason::NotFound, "no such resource");
                    self.schedule(at, Message::ToClient(Box::new(answer)));
                    return;
                };
                if self.portal.forbidden.contains(&resource_id) {
                    let answer = deny(DenialReason::Forbidden, "no policy grants it");
                    self.schedule(at, Message::ToClient(Box::new(answer)));
                    return;
                }
                let site = resource.site.id.clone();
                let Some(index) = self
                    .gateways
                    .iter()
                    .position(|g| g.online && g.site_id == site)
                else {
                    let answer = deny(DenialReason::Offline, "every gateway is offline");
                    self.schedule(at, Message::ToClient(Box::new(answer)));
                    return;
                };
                let resource = resource.clone();
                self.grant(index, request_id, resource, domain, proxy_ips, at);
            }
            ClientMessage::IceCandidates {
                gateway_id,
                candidates,
            } => {
                if let Some(index) = self.gateways.iter().position(|g| g.id == gateway_id) {
                    let message = PortalToGateway::IceCandidates {
                        client_id: CLIENT_ID.into(),
                        candidates,
                    };
                    self.schedule(at, Message::ToGateway(index, Box::new(message)));
                }
            }
            _ => {}
        }
    }

    pub(super) fn grant(
        &mut self,
        index: usize,
        request_id: u64,
        resource: Resource,
        domain: Option<String>,
        proxy_ips: Vec<IpAddr>,
        at: Instant,
    ) {
        let mut preshared_key = [0u8; 32];
        self.rng.fill_bytes(&mut preshared_key);
        let preshared_key = WireGuardKey::from_bytes(preshared_key).to_base64();
        let client_ice = self.credentials();
        let gateway_ice = self.credentials();
        let gateway = &self.gateways[index];
        let to_gateway = PortalToGateway::Grant {
            client: ClientPeer {
                id: CLIENT_ID.into(),
                public_key: WireGuardKey::from_bytes(self.client.state.engine().public_key())
                    .to_base64(),
                ipv4: CLIENT_TUN,
                ipv6: Ipv6Addr::LOCALHOST,
                actor: actor(),
            },
            resource: resource.clone(),
            domain: domain.clone(),
            proxy_ips,
            preshared_key: preshared_key.as_str().into(),
            local_ice: portal_ice(&gateway_ice),
            remote_ice: portal_ice(&client_ice),
            expires_at: self.unix_now() + 3600,
        };
        let to_client = PortalToClient::AccessGranted {
            request_id,
            resource_id: resource.id,
            domain,
            gateway: PeerInfo {
                id: gateway.id.clone(),
                public_key: WireGuardKey::from_bytes(gateway.state.engine().public_key())
                    .to_base64(),
                ipv4: Ipv4Addr::new(100, 64, 0, 1),
                ipv6: Ipv6Addr::LOCALHOST,
            },
            preshared_key: preshared_key.as_str().into(),
            local_ice: portal_ice(&client_ice),
            remote_ice: portal_ice(&gateway_ice),
        };
        self.portal.grants += 1;
        self.schedule(at, Message::ToGateway(index, Box::new(to_gateway)));
        self.schedule(at, Message::ToClient(Box::new(to_client)));
    }

    pub(super) fn credentials(&mut self) -> IceCredentials {
        IceCredentials {
            ufrag: format!("{:08x}", self.rng.next_u32()),
            pwd: format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64()),
        }
    }
}

pub(super) fn account() -> AccountInfo {
    AccountInfo {
        id: "acc".into(),
        slug: "acme".into(),
        name: "Acme".into(),
    }
}

fn actor() -> ActorInfo {
    ActorInfo {
        id: "ada".into(),
        name: "Ada".into(),
        email: "ada@acme.example".into(),
    }
}

fn portal_ice(credentials: &IceCredentials) -> portal::IceCredentials {
    portal::IceCredentials {
        ufrag: credentials.ufrag.clone(),
        pwd: credentials.pwd.as_str().into(),
    }
}
