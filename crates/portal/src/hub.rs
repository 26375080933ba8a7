//! Who is connected right now: client devices and gateways with a channel to their WebSocket
//! task, the grants between them, and gateway choice. All in memory of one portal process; a
//! client and the gateway it is granted must be connected to the same replica.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::time::Instant;

use ember_protocol::PresharedKey;
use ember_protocol::portal::{
    IceCredentials, Interface, PortalToClient, PortalToGateway, Resource, SignOutReason,
};

use crate::model::Snapshot;
pub use crate::outbox::{Inbox, Outbound, Outbox};
use crate::throttle::TokenBucket;

/// How many messages may wait for one client; a client that falls further behind is
/// disconnected (see [`crate::outbox`]).
pub const CLIENT_QUEUE: usize = 256;
/// Gateways carry the grants of many clients, so more may wait for them; one that falls
/// further behind is disconnected too, and confirms its grants again when it comes back.
pub const GATEWAY_QUEUE: usize = 8192;

/// Access requests one device may make at once, and per second after that: enough for a
/// client that starts with many resources in use, too few to make the portal and the gateways
/// busy for everyone else.
pub const ACCESS_BURST: u32 = 100;
pub const ACCESS_PER_SECOND: u32 = 20;

pub type Sender = Outbox;

#[derive(Debug)]
pub struct ClientEntry {
    pub session: u64,
    pub device_id: String,
    pub user_id: String,
    pub account_id: String,
    pub token_id: String,
    pub expires_at: Option<i64>,
    pub public_key: String,
    pub interface: Interface,
    pub tx: Sender,
    /// The resource list this client was last sent.
    pub resources: Vec<Resource>,
}

#[derive(Debug)]
pub struct GatewayEntry {
    pub session: u64,
    pub gateway_id: String,
    pub account_id: String,
    pub site_id: String,
    pub token_id: String,
    pub public_key: String,
    pub interface: Interface,
    pub tx: Sender,
    /// What the gateway last reported in `health`.
    pub reported_connections: u32,
    /// When it was last chosen (a counter), to rotate among equally loaded gateways.
    pub last_chosen: u64,
}

/// What both ends of one client–gateway connection share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCredentials {
    pub preshared_key: PresharedKey,
    pub client_ice: IceCredentials,
    pub gateway_ice: IceCredentials,
}

/// How long a disconnected device keeps its grants.
pub const RECONNECT_GRACE_SECS: i64 = 60;

#[derive(Debug)]
struct Departed {
    user_id: String,
    token_id: String,
    left_at: i64,
}

/// What applying a snapshot took away: devices signed out (with why) and grants withdrawn
/// (gateway, device, resources).
#[derive(Debug, Default)]
pub struct Revoked {
    pub signed_out: Vec<(String, &'static str)>,
    pub withdrawn: Vec<(String, String, Vec<String>)>,
}

/// A read-only view of who is connected, for [`Hub::online`].
#[derive(Debug, serde::Serialize)]
pub struct Online {
    pub devices: Vec<OnlineDevice>,
    pub gateways: Vec<OnlineGateway>,
}

#[derive(Debug, serde::Serialize)]
pub struct OnlineDevice {
    pub device_id: String,
    pub user_id: String,
    pub grants: Vec<OnlineGrant>,
}

/// The resources a device may reach through one gateway.
#[derive(Debug, serde::Serialize)]
pub struct OnlineGrant {
    pub gateway_id: String,
    pub resource_ids: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct OnlineGateway {
    pub gateway_id: String,
    pub site_id: String,
    /// What the gateway last reported in `health`.
    pub connections: u32,
}

#[derive(Debug, Default)]
pub struct Hub {
    clients: HashMap<String, ClientEntry>,
    gateways: HashMap<String, GatewayEntry>,
    /// device id → gateway id → granted resource ids, each with the [`access_fingerprint`] of
    /// the definition it was granted for.
    grants: HashMap<String, HashMap<String, BTreeMap<String, u64>>>,
    /// gateway id → devices with grants through it (the reverse of `grants`, for load and
    /// failover without scanning every device).
    clients_of: HashMap<String, HashSet<String>>,
    /// (device id, gateway id) → the credentials of their connection, repeated in every grant
    /// while the pair has grants so a second resource does not disturb the connection.
    pair_credentials: HashMap<(String, String), PairCredentials>,
    /// Devices whose connection dropped, with the user they were and when they left. Their
    /// grants stay for [`RECONNECT_GRACE_SECS`], so a client that only lost its link to the
    /// portal (not to the gateway) gets the same credentials again and its tunnel is not torn
    /// down and rebuilt.
    departed: HashMap<String, Departed>,
    /// device id → its access requests' bucket; kept across reconnects, dropped once full.
    access_buckets: HashMap<String, TokenBucket>,
    next_session: u64,
    choices: u64,
}

/// What of a resource decides what its grant allows at a gateway. A grant made for one
/// definition is withdrawn when this changes (the id stays when a resource is edited), so
/// nobody keeps the old network or ports; a new name or description changes nothing.
pub fn access_fingerprint(resource: &Resource) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    encode(&(&resource.address, &resource.filters, &resource.site.id)).hash(&mut hasher);
    hasher.finish()
}

/// Whether the snapshot still has the definition a grant was made for.
fn definition_unchanged(snapshot: &Snapshot, resource_id: &str, fingerprint: u64) -> bool {
    snapshot
        .resources
        .get(resource_id)
        .is_some_and(|r| access_fingerprint(&r.resource) == fingerprint)
}

pub fn encode<T: serde::Serialize>(message: &T) -> String {
    // Our message types serialise infallibly (no maps with non-string keys, no custom impls).
    serde_json::to_string(message).unwrap_or_else(|e| {
        format!(r#"{{"type":"error","code":"internal","message":"cannot encode: {e}"}}"#)
    })
}

fn send(tx: &Sender, message: Outbound) {
    // Not queued: the connection is gone, or it closes because it fell behind (the outbox
    // never drops a message and carries on).
    let _ = tx.send(message);
}

impl Hub {
    pub fn next_session(&mut self) -> u64 {
        self.next_session += 1;
        self.next_session
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    pub fn gateways(&self) -> usize {
        self.gateways.len()
    }

    /// What of `account_id` is connected to this replica now: devices, gateways, and the
    /// grants each device holds (for the admin API; read-only, sorted for stable answers).
    pub fn online(&self, account_id: &str) -> Online {
        let mut devices: Vec<OnlineDevice> = self
            .clients
            .values()
            .filter(|c| c.account_id == account_id)
            .map(|c| OnlineDevice {
                device_id: c.device_id.clone(),
                user_id: c.user_id.clone(),
                grants: self
                    .grants
                    .get(&c.device_id)
                    .into_iter()
                    .flatten()
                    .map(|(gateway_id, resources)| OnlineGrant {
                        gateway_id: gateway_id.clone(),
                        resource_ids: resources.keys().cloned().collect(),
                    })
                    .collect(),
            })
            .collect();
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        for device in &mut devices {
            device
                .grants
                .sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
        }
        let mut gateways: Vec<OnlineGateway> = self
            .gateways
            .values()
            .filter(|g| g.account_id == account_id)
            .map(|g| OnlineGateway {
                gateway_id: g.gateway_id.clone(),
                site_id: g.site_id.clone(),
                connections: g.reported_connections,
            })
            .collect();
        gateways.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
        Online { devices, gateways }
    }

    /// Registers a client, replacing (and closing) an older connection of the same device.
    /// The same device and user keep their grants across the replacement; anyone else on that
    /// device starts without them.
    pub fn add_client(&mut self, entry: ClientEntry) {
        let device_id = entry.device_id.clone();
        let user_id = entry.user_id.clone();
        let departed = self.departed.remove(&device_id);
        let previous_user = match self.clients.insert(device_id.clone(), entry) {
            Some(old) => {
                send(
                    &old.tx,
                    Outbound::Close(encode(&PortalToClient::SignedOut {
                        reason: SignOutReason::Replaced,
                        message: "this device connected again".into(),
                    })),
                );
                Some(old.user_id)
            }
            None => departed.map(|d| d.user_id),
        };
        if previous_user.is_some_and(|previous| previous != user_id) {
            self.drop_grants_of_client(&device_id);
        }
    }

    /// Removes a client if `session` is still its current connection. Its grants stay for
    /// [`RECONNECT_GRACE_SECS`] (see [`Hub::expire`]).
    pub fn remove_client(&mut self, device_id: &str, session: u64, now: i64) {
        if self
            .clients
            .get(device_id)
            .is_none_or(|c| c.session != session)
        {
            return;
        }
        let Some(client) = self.clients.remove(device_id) else {
            return;
        };
        if self.grants.contains_key(device_id) {
            self.departed.insert(
                device_id.to_owned(),
                Departed {
                    user_id: client.user_id,
                    token_id: client.token_id,
                    left_at: now,
                },
            );
        }
    }

    fn drop_grants_of_client(&mut self, device_id: &str) {
        let Some(grants) = self.grants.remove(device_id) else {
            return;
        };
        for gateway_id in grants.keys() {
            self.pair_credentials
                .remove(&(device_id.to_owned(), gateway_id.clone()));
            if let Some(devices) = self.clients_of.get_mut(gateway_id) {
                devices.remove(device_id);
            }
            if let Some(gateway) = self.gateways.get(gateway_id) {
                send(
                    &gateway.tx,
                    Outbound::Message(encode(&PortalToGateway::Revoke {
                        client_id: device_id.to_owned(),
                        resource_ids: Vec::new(),
                    })),
                );
            }
        }
    }

    pub fn add_gateway(&mut self, entry: GatewayEntry) {
        let gateway_id = entry.gateway_id.clone();
        if let Some(old) = self.gateways.insert(gateway_id, entry) {
            send(
                &old.tx,
                Outbound::Close(encode(&PortalToGateway::Error {
                    code: ember_protocol::portal::ErrorCode::HelloExpected,
                    message: "this gateway connected again; closing the older connection".into(),
                })),
            );
        }
    }

    /// Removes a gateway if `session` is still its current connection, and tells every client
    /// with grants through it which resources need a new gateway.
    pub fn remove_gateway(&mut self, gateway_id: &str, session: u64) {
        if self
            .gateways
            .get(gateway_id)
            .is_none_or(|g| g.session != session)
        {
            return;
        }
        self.gateways.remove(gateway_id);
        let devices = self.clients_of.remove(gateway_id).unwrap_or_default();
        for device_id in &devices {
            self.pair_credentials
                .remove(&(device_id.clone(), gateway_id.to_owned()));
            let Some(per_gateway) = self.grants.get_mut(device_id) else {
                continue;
            };
            let Some(resource_ids) = per_gateway.remove(gateway_id) else {
                continue;
            };
            if per_gateway.is_empty() {
                self.grants.remove(device_id);
            }
            if let Some(client) = self.clients.get(device_id) {
                send(
                    &client.tx,
                    Outbound::Message(encode(&PortalToClient::GatewayOffline {
                        gateway_id: gateway_id.to_owned(),
                        resource_ids: resource_ids.into_keys().collect(),
                    })),
                );
            }
        }
    }

    pub fn client(&self, device_id: &str) -> Option<&ClientEntry> {
        self.clients.get(device_id)
    }

    pub fn gateway(&self, gateway_id: &str) -> Option<&GatewayEntry> {
        self.gateways.get(gateway_id)
    }

    pub fn set_reported_connections(&mut self, gateway_id: &str, session: u64, connections: u32) {
        if let Some(g) = self
            .gateways
            .get_mut(gateway_id)
            .filter(|g| g.session == session)
        {
            g.reported_connections = connections;
        }
    }

    /// The least loaded online gateway of a site (load: clients granted through it here, or
    /// what it reported, whichever is higher); among equals, the one chosen longest ago.
    pub fn choose_gateway(&mut self, account_id: &str, site_id: &str) -> Option<&GatewayEntry> {
        let clients_of = &self.clients_of;
        let chosen = self
            .gateways
            .values()
            .filter(|g| g.account_id == account_id && g.site_id == site_id)
            .min_by_key(|g| {
                let granted = clients_of.get(&g.gateway_id).map_or(0, HashSet::len);
                let load = u32::try_from(granted)
                    .unwrap_or(u32::MAX)
                    .max(g.reported_connections);
                (load, g.last_chosen, g.gateway_id.clone())
            })?
            .gateway_id
            .clone();
        self.choices += 1;
        let gateway = self.gateways.get_mut(&chosen)?;
        gateway.last_chosen = self.choices;
        Some(gateway)
    }

    /// Whether this device already has a grant through a gateway of the site; reused so one
    /// device keeps one connection per site.
    pub fn gateway_in_use(&self, device_id: &str, site_id: &str) -> Option<&GatewayEntry> {
        self.grants
            .get(device_id)?
            .keys()
            .filter_map(|g| self.gateways.get(g))
            .find(|g| g.site_id == site_id)
    }

    /// The pair's current credentials, or new ones from `fresh` when the pair has no grant yet
    /// or the client asked for a new connection (its last one failed).
    pub fn pair_credentials(
        &mut self,
        device_id: &str,
        gateway_id: &str,
        new_connection: bool,
        fresh: impl FnOnce() -> PairCredentials,
    ) -> PairCredentials {
        let key = (device_id.to_owned(), gateway_id.to_owned());
        let reuse = !new_connection && self.has_grant(device_id, gateway_id);
        match self.pair_credentials.get(&key) {
            Some(existing) if reuse => existing.clone(),
            _ => {
                let credentials = fresh();
                self.pair_credentials.insert(key, credentials.clone());
                credentials
            }
        }
    }

    /// Records that `device_id` was granted `resource` (as defined now) through `gateway_id`.
    pub fn record_grant(&mut self, device_id: &str, gateway_id: &str, resource: &Resource) {
        self.grants
            .entry(device_id.to_owned())
            .or_default()
            .entry(gateway_id.to_owned())
            .or_default()
            .insert(resource.id.clone(), access_fingerprint(resource));
        self.clients_of
            .entry(gateway_id.to_owned())
            .or_default()
            .insert(device_id.to_owned());
    }

    /// Whether `device_id` may make another access request now (see [`ACCESS_BURST`]).
    pub fn allow_access_request(&mut self, device_id: &str, now: Instant) -> bool {
        if self.access_buckets.len() > 2 * self.clients.len() + 1024 {
            let clients = &self.clients;
            self.access_buckets
                .retain(|device, bucket| clients.contains_key(device) || !bucket.is_full(now));
        }
        self.access_buckets
            .entry(device_id.to_owned())
            .or_insert_with(|| TokenBucket::new(ACCESS_BURST, ACCESS_PER_SECOND, now))
            .take(now)
    }

    pub fn has_grant(&self, device_id: &str, gateway_id: &str) -> bool {
        self.grants
            .get(device_id)
            .is_some_and(|g| g.contains_key(gateway_id))
    }

    /// Applies a new snapshot: closes connections whose token was revoked or whose user was
    /// disabled, pushes changed resource lists, and withdraws grants no policy allows anymore.
    /// Returns what it took away, for the audit log.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Revoked {
        let mut revoked = Revoked::default();
        // A device that is away cannot be told what changed: a revoked token, a disabled user,
        // a grant no policy allows any more or one for a resource since edited withdraws all
        // its grants. It asks again on return.
        let lapsed: Vec<String> = self
            .departed
            .iter()
            .filter(|(device_id, away)| {
                let user_ok = snapshot
                    .users
                    .get(&away.user_id)
                    .is_some_and(|u| !u.disabled);
                let visible: HashSet<String> = snapshot
                    .visible_resources(&away.user_id)
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                let granted_still_visible = self.grants.get(*device_id).is_none_or(|per_gateway| {
                    per_gateway.values().flatten().all(|(r, fingerprint)| {
                        visible.contains(r) && definition_unchanged(snapshot, r, *fingerprint)
                    })
                });
                snapshot.revoked_tokens.contains(&away.token_id)
                    || !user_ok
                    || !granted_still_visible
            })
            .map(|(device_id, _)| device_id.clone())
            .collect();
        for device_id in lapsed {
            self.departed.remove(&device_id);
            self.drop_grants_of_client(&device_id);
            revoked.signed_out.push((device_id, "away_and_changed"));
        }
        let mut withdrawn: Vec<(String, String, Vec<String>)> = Vec::new();
        let mut closed: Vec<String> = Vec::new();
        for client in self.clients.values_mut() {
            let user_ok = snapshot
                .users
                .get(&client.user_id)
                .is_some_and(|u| !u.disabled);
            if snapshot.revoked_tokens.contains(&client.token_id) || !user_ok {
                send(
                    &client.tx,
                    Outbound::Close(encode(&PortalToClient::SignedOut {
                        reason: SignOutReason::Revoked,
                        message: "this device's sign-in was revoked".into(),
                    })),
                );
                closed.push(client.device_id.clone());
                continue;
            }
            let resources = snapshot.visible_resources(&client.user_id);
            if resources != client.resources {
                send(
                    &client.tx,
                    Outbound::Message(encode(&PortalToClient::ResourcesUpdated {
                        resources: resources.clone(),
                    })),
                );
                client.resources = resources;
            }
            let Some(per_gateway) = self.grants.get_mut(&client.device_id) else {
                continue;
            };
            // Gone: no longer visible, or edited since it was granted (the client drops its
            // grant of a changed resource on `resources_updated` and asks again).
            for (gateway_id, resource_ids) in per_gateway.iter_mut() {
                let gone: Vec<String> = resource_ids
                    .iter()
                    .filter(|(r, fingerprint)| {
                        !client.resources.iter().any(|v| &v.id == *r)
                            || !definition_unchanged(snapshot, r, **fingerprint)
                    })
                    .map(|(r, _)| r.clone())
                    .collect();
                if !gone.is_empty() {
                    resource_ids.retain(|r, _| !gone.contains(r));
                    withdrawn.push((gateway_id.clone(), client.device_id.clone(), gone));
                }
            }
            per_gateway.retain(|gateway_id, r| {
                if r.is_empty()
                    && let Some(devices) = self.clients_of.get_mut(gateway_id)
                {
                    devices.remove(&client.device_id);
                }
                !r.is_empty()
            });
        }
        for (gateway_id, device_id, resource_ids) in withdrawn {
            if let Some(gateway) = self.gateways.get(&gateway_id) {
                send(
                    &gateway.tx,
                    Outbound::Message(encode(&PortalToGateway::Revoke {
                        client_id: device_id.clone(),
                        resource_ids: resource_ids.clone(),
                    })),
                );
            }
            revoked
                .withdrawn
                .push((gateway_id, device_id, resource_ids));
        }
        for device_id in closed {
            revoked
                .signed_out
                .push((device_id.clone(), "token_revoked_or_user_disabled"));
            if let Some(client) = self.clients.remove(&device_id) {
                drop(client);
                self.drop_grants_of_client(&device_id);
            }
        }
        let revoked_gateways: Vec<String> = self
            .gateways
            .values()
            .filter(|g| {
                snapshot.revoked_tokens.contains(&g.token_id)
                    || !snapshot.gateways.contains_key(&g.gateway_id)
            })
            .map(|g| g.gateway_id.clone())
            .collect();
        for gateway_id in revoked_gateways {
            if let Some(gateway) = self.gateways.get(&gateway_id) {
                let session = gateway.session;
                send(
                    &gateway.tx,
                    Outbound::Close(encode(&PortalToGateway::Error {
                        code: ember_protocol::portal::ErrorCode::TokenExpired,
                        message: "this gateway's token was revoked".into(),
                    })),
                );
                self.remove_gateway(&gateway_id, session);
            }
        }
        revoked
    }

    /// Signs out clients whose token expired by `now` (unix seconds).
    pub fn expire(&mut self, now: i64) {
        let gone: Vec<String> = self
            .departed
            .iter()
            .filter(|(_, d)| now - d.left_at >= RECONNECT_GRACE_SECS)
            .map(|(device, _)| device.clone())
            .collect();
        for device_id in gone {
            self.departed.remove(&device_id);
            self.drop_grants_of_client(&device_id);
        }
        let expired: Vec<String> = self
            .clients
            .values()
            .filter(|c| c.expires_at.is_some_and(|e| e <= now))
            .map(|c| c.device_id.clone())
            .collect();
        for device_id in expired {
            if let Some(client) = self.clients.remove(&device_id) {
                send(
                    &client.tx,
                    Outbound::Close(encode(&PortalToClient::SignedOut {
                        reason: SignOutReason::Expired,
                        message: "this device's sign-in expired; sign in again".into(),
                    })),
                );
                self.drop_grants_of_client(&device_id);
            }
        }
    }
}

impl Hub {
    /// Closes every connection (portal shutdown).
    pub fn close_all(&mut self) {
        let closing = || {
            Outbound::Close(encode(&PortalToClient::Error {
                code: ember_protocol::portal::ErrorCode::Internal,
                message: "the portal is shutting down; reconnect shortly".into(),
            }))
        };
        for client in self.clients.values() {
            send(&client.tx, closing());
        }
        for gateway in self.gateways.values() {
            send(&gateway.tx, closing());
        }
    }
}

#[cfg(test)]
mod tests {
    use ember_protocol::portal::{ResourceAddress, SiteInfo};

    use super::*;
    use crate::outbox::outbox;

    fn interface() -> Interface {
        Interface {
            ipv4: "100.64.0.2".parse().unwrap(),
            ipv6: "fd00:2021:1111::2".parse().unwrap(),
        }
    }

    fn lan() -> Resource {
        Resource {
            id: "res_lan".into(),
            name: "LAN".into(),
            address: ResourceAddress::Cidr {
                cidr: "10.20.0.0/16".into(),
            },
            address_description: None,
            site: SiteInfo {
                id: "site".into(),
                name: "Berlin".into(),
            },
            filters: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_gateway_whose_queue_overflows_is_disconnected_not_silently_skipped() {
        let mut hub = Hub::default();
        let (gateway_tx, mut gateway_rx) = outbox(2, "fell behind".into());
        hub.add_gateway(GatewayEntry {
            session: 1,
            gateway_id: "gw".into(),
            account_id: "acc".into(),
            site_id: "site".into(),
            token_id: "tok_gw".into(),
            public_key: String::new(),
            interface: interface(),
            tx: gateway_tx,
            reported_connections: 0,
            last_chosen: 0,
        });
        let (client_tx, _client_rx) = outbox(8, String::new());
        hub.add_client(ClientEntry {
            session: 2,
            device_id: "dev".into(),
            user_id: "ada".into(),
            account_id: "acc".into(),
            token_id: "tok_ada".into(),
            expires_at: None,
            public_key: String::new(),
            interface: interface(),
            tx: client_tx,
            resources: vec![lan()],
        });
        hub.record_grant("dev", "gw", &lan());
        // The gateway is busy: as many messages as its queue holds wait for it.
        for _ in 0..2 {
            let gateway = hub.gateway("gw").unwrap();
            assert!(gateway.tx.send(Outbound::Message("grant".into())));
        }
        // The device goes away for good: its grant is withdrawn, and the revocation does not
        // fit. Skipping it would leave the gateway serving the device; it is disconnected.
        hub.remove_client("dev", 2, 0);
        hub.expire(RECONNECT_GRACE_SECS);
        let next = gateway_rx.recv().await;
        assert!(
            matches!(&next, Some(Outbound::Close(m)) if m == "fell behind"),
            "{next:?}"
        );
    }

    #[test]
    fn a_device_flooding_access_requests_runs_dry_and_refills() {
        let mut hub = Hub::default();
        let t0 = Instant::now();
        let allowed = (0..ACCESS_BURST * 2)
            .filter(|_| hub.allow_access_request("dev", t0))
            .count();
        assert_eq!(allowed, ACCESS_BURST as usize);
        assert!(hub.allow_access_request("other", t0), "per device");
        let later = t0 + std::time::Duration::from_secs(1);
        let refilled = (0..ACCESS_BURST)
            .filter(|_| hub.allow_access_request("dev", later))
            .count();
        assert_eq!(refilled, ACCESS_PER_SECOND as usize);
    }

    #[test]
    fn only_what_decides_access_is_in_the_fingerprint() {
        let mut described = lan();
        described.name = "Office".into();
        described.address_description = Some("the office".into());
        assert_eq!(access_fingerprint(&described), access_fingerprint(&lan()));
        let mut widened = lan();
        widened.address = ResourceAddress::Cidr {
            cidr: "10.0.0.0/8".into(),
        };
        assert_ne!(access_fingerprint(&widened), access_fingerprint(&lan()));
    }
}
