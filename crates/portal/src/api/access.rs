//! Access requests: rate limit, policy, gateway choice, and the grant to both sides.

use std::net::IpAddr;

use ember_protocol::portal::{
    ClientPeer, DenialReason, IceCredentials, PeerInfo, PortalToClient, PortalToGateway,
};
use ember_protocol::{IcePassword, PresharedKey};

use super::{ClientConnection, MAX_FIELD_CHARS};
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto;
use crate::hub::{Outbound, PairCredentials, encode};

impl ClientConnection {
    pub(super) fn request_access(&self, request: AccessRequest) -> String {
        let AccessRequest {
            request_id,
            resource_id,
            domain,
            proxy_ips,
            new_connection,
        } = request;
        let deny = |reason: DenialReason, message: String, resource_id: String| {
            // A flooding device is not recorded request by request (see `audit`).
            if reason != DenialReason::RateLimited {
                self.state.audit.record(
                    AuditEvent::now(
                        AuditKind::Denial,
                        &reason_name(reason),
                        &self.user_id,
                        &resource_id,
                    )
                    .account(&self.account_id)
                    .detail(serde_json::json!({
                        "device_id": self.device_id,
                        "domain": domain,
                        "message": message,
                    })),
                );
            }
            encode(&PortalToClient::AccessDenied {
                request_id,
                resource_id,
                reason,
                message,
            })
        };
        // Counted before anything else, so malformed requests cost their sender too.
        let now = std::time::Instant::now();
        if !self
            .state
            .with_hub(|hub| hub.allow_access_request(&self.device_id, now))
        {
            return deny(
                DenialReason::RateLimited,
                "too many access requests from this device; ask again in a moment".into(),
                resource_id,
            );
        }
        if resource_id.len() > MAX_FIELD_CHARS || domain.as_ref().is_some_and(|d| d.len() > 253) {
            return deny(
                DenialReason::NotFound,
                "there is no such resource in this account".into(),
                String::new(),
            );
        }
        if let Err(message) = check_proxy_ips(&proxy_ips, domain.is_some()) {
            return deny(DenialReason::InvalidDomain, message, resource_id);
        }
        self.state.with_hub(|hub| {
            // Read under the hub's lock: a reload replaces the snapshot before it applies it to
            // the hub, so a grant recorded here is either checked by that apply or made from
            // the new definitions — never an old definition that no apply will see.
            let snapshot = self.state.snapshot();
            let record =
                match snapshot.evaluate_access(&self.user_id, &resource_id, domain.as_deref()) {
                    Ok(record) => record,
                    Err((reason, message)) => return deny(reason, message, resource_id.clone()),
                };
            let Some(user) = snapshot.users.get(&self.user_id) else {
                return deny(
                    DenialReason::Forbidden,
                    "unknown user".into(),
                    resource_id.clone(),
                );
            };
            let Some(client) = hub
                .client(&self.device_id)
                .filter(|c| c.session == self.session)
            else {
                return deny(
                    DenialReason::Forbidden,
                    "this connection was replaced".into(),
                    resource_id.clone(),
                );
            };
            let client_peer = ClientPeer {
                id: self.device_id.clone(),
                public_key: client.public_key.clone(),
                ipv4: client.interface.ipv4,
                ipv6: client.interface.ipv6,
                actor: user.actor(),
            };
            let reuse = hub
                .gateway_in_use(&self.device_id, &record.site_id)
                .map(|g| g.gateway_id.clone());
            let gateway = match reuse {
                Some(id) => hub.gateway(&id),
                None => hub.choose_gateway(&self.account_id, &record.site_id),
            };
            let Some(gateway) = gateway else {
                return deny(
                    DenialReason::Offline,
                    format!("all gateways of {} are offline", record.resource.site.name),
                    resource_id.clone(),
                );
            };
            let gateway_id = gateway.gateway_id.clone();
            let PairCredentials {
                preshared_key,
                client_ice,
                gateway_ice,
            } = hub.pair_credentials(&self.device_id, &gateway_id, new_connection, || {
                PairCredentials {
                    preshared_key: PresharedKey::new(crypto::random_key_base64()),
                    client_ice: ice_credentials(),
                    gateway_ice: ice_credentials(),
                }
            });
            let Some(gateway) = hub.gateway(&gateway_id) else {
                return deny(
                    DenialReason::Offline,
                    format!("all gateways of {} are offline", record.resource.site.name),
                    resource_id.clone(),
                );
            };
            let grant = PortalToGateway::Grant {
                client: client_peer,
                resource: record.resource.clone(),
                domain: domain.clone(),
                proxy_ips,
                preshared_key: preshared_key.clone(),
                local_ice: gateway_ice.clone(),
                remote_ice: client_ice.clone(),
                expires_at: self
                    .token
                    .expires_at
                    .and_then(|e| u64::try_from(e).ok())
                    .unwrap_or(u64::MAX),
            };
            if !gateway.tx.send(Outbound::Message(encode(&grant))) {
                return deny(
                    DenialReason::Offline,
                    "the gateway does not answer".into(),
                    resource_id.clone(),
                );
            }
            let granted = PortalToClient::AccessGranted {
                request_id,
                resource_id: resource_id.clone(),
                domain: domain.clone(),
                gateway: PeerInfo {
                    id: gateway.gateway_id.clone(),
                    public_key: gateway.public_key.clone(),
                    ipv4: gateway.interface.ipv4,
                    ipv6: gateway.interface.ipv6,
                },
                preshared_key,
                local_ice: client_ice,
                remote_ice: gateway_ice,
            };
            hub.record_grant(&self.device_id, &gateway_id, &record.resource);
            self.state.audit.record(
                AuditEvent::now(AuditKind::Grant, "granted", &self.user_id, &resource_id)
                    .account(&self.account_id)
                    .detail(serde_json::json!({
                        "device_id": self.device_id,
                        "gateway_id": gateway_id,
                        "domain": domain,
                    })),
            );
            encode(&granted)
        })
    }
}

/// The wire name of a denial reason (`forbidden`, `offline`, …).
fn reason_name(reason: DenialReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Proxy IPs come only with a domain, a few per name, from the client's proxy ranges
/// (ARCHITECTURE §3): anything else would let a client make the gateway answer for addresses
/// the client's stub never hands out.
fn check_proxy_ips(proxy_ips: &[IpAddr], has_domain: bool) -> Result<(), String> {
    const MAX_PROXY_IPS: usize = 16;
    if proxy_ips.is_empty() {
        return Ok(());
    }
    if !has_domain {
        return Err("proxy IPs are only for DNS resources".into());
    }
    if proxy_ips.len() > MAX_PROXY_IPS {
        return Err(format!("at most {MAX_PROXY_IPS} proxy IPs per name"));
    }
    let in_proxy_range = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => {
            (u32::from(*v4) >> 21) == (u32::from(std::net::Ipv4Addr::new(100, 96, 0, 0)) >> 21)
        }
        IpAddr::V6(v6) => {
            (u128::from(*v6) >> 21)
                == (u128::from(std::net::Ipv6Addr::new(
                    0xfd00, 0x2021, 0x1111, 0x8000, 0, 0, 0, 0,
                )) >> 21)
        }
    };
    match proxy_ips.iter().find(|ip| !in_proxy_range(ip)) {
        Some(ip) => Err(format!("{ip} is not in the proxy ranges")),
        None => Ok(()),
    }
}

pub(super) struct AccessRequest {
    pub(super) request_id: u64,
    pub(super) resource_id: String,
    pub(super) domain: Option<String>,
    pub(super) proxy_ips: Vec<IpAddr>,
    pub(super) new_connection: bool,
}

fn ice_credentials() -> IceCredentials {
    let random = crypto::random_hex32();
    IceCredentials {
        ufrag: random[..8].to_owned(),
        pwd: IcePassword::new(&random[8..40]),
    }
}
