//! The portal's messages applied to the state: grants installed (after their name is
//! resolved, for DNS resources), revoked, expired and reconfirmed after a reconnect; ICE
//! candidates; relays.
//!
//! A grant goes into the router before the engine, so no packet is decrypted before the filter
//! knows the grant; a client's last grant gone, its peer leaves the engine.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ember_engine::{Grant, IceCredentials, PeerId, RelayConfig, RelayId};
use ember_protocol::portal::{self, ClientPeer, PortalToGateway, Relay, Resource, ResourceAddress};

use super::{Client, GatewayState, Lookup, LookupId, Output, Timer};
use crate::grants::{decode_key, resource_grant};
use crate::names::addresses_to_grant;
use crate::router::GrantKey;

impl GatewayState {
    /// A client's messages wait while one of its DNS grants is being resolved.
    pub(super) fn handle_portal_message(&mut self, message: PortalToGateway, now: Instant) {
        if let Some(client_id) = client_of_message(&message)
            && let Some(pending) = self.pending.get_mut(client_id)
        {
            pending.queued.push_back(message);
            return;
        }
        self.apply(message, now);
    }

    fn apply(&mut self, message: PortalToGateway, now: Instant) {
        match message {
            PortalToGateway::Init {
                interface, relays, ..
            } => {
                if interface != self.interface {
                    tracing::warn!(ipv4 = %interface.ipv4, ipv6 = %interface.ipv6, "The portal assigned new tunnel addresses; restart the gateway to use them");
                }
                self.ask_for_relays(relays);
                // Every `init` after the first comes with a new link: the portal has forgotten
                // the grants of the old one.
                self.start_reconfirming(now);
            }
            PortalToGateway::RelaysUpdated { relays } => self.ask_for_relays(relays),
            grant @ PortalToGateway::Grant { .. } => self.handle_grant(grant, now),
            PortalToGateway::Revoke {
                client_id,
                resource_ids,
            } => self.revoke(&client_id, &resource_ids),
            PortalToGateway::IceCandidates {
                client_id,
                candidates,
            } => {
                let Some(client) = self.clients.get(&client_id) else {
                    tracing::debug!(%client_id, "ICE candidates for a client without grants");
                    return;
                };
                let peer = client.peer;
                for candidate in candidates {
                    if let Err(e) = self.engine.handle_remote_candidate(peer, &candidate, now) {
                        tracing::warn!(%client_id, "A remote candidate was refused: {e}");
                    }
                }
            }
            PortalToGateway::Heartbeat => {}
            PortalToGateway::Error { code, message } => {
                tracing::warn!(?code, "The portal reported an error: {message}");
            }
        }
    }

    fn handle_grant(&mut self, grant: PortalToGateway, now: Instant) {
        let PortalToGateway::Grant {
            client,
            resource,
            domain,
            expires_at,
            ..
        } = &grant
        else {
            return;
        };
        if *expires_at <= self.wall.unix_at(now) {
            tracing::debug!(client_id = %client.id, "Ignored a grant that has expired already");
            return;
        }
        let ResourceAddress::Dns { pattern } = &resource.address else {
            self.install_grant(grant, &[], now);
            return;
        };
        let Some(domain) = domain.clone() else {
            tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant for a DNS resource without a name");
            return;
        };
        if !portal::dns_pattern_matches(pattern, &domain) {
            tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant whose name does not match its resource");
            return;
        }
        let key = GrantKey {
            resource_id: resource.id.clone(),
            domain: Some(domain.clone()),
        };
        if let Some(entry) = self.clients.get(&client.id)
            && !self.router.may_add(entry.peer, &key)
        {
            tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant for one more name: the client holds the most names a client may");
            return;
        }
        let client_id = client.id.clone();
        self.pending.entry(client_id.clone()).or_default().resolving += 1;
        let lookup = Lookup {
            client_id,
            domain,
            grant: Box::new(grant),
        };
        if let Some(lookup) = self.lookups.start(lookup) {
            self.start_lookup(lookup);
        }
    }

    fn start_lookup(&mut self, lookup: Lookup) {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.outputs.push_back(Output::Resolve {
            lookup: id,
            domain: lookup.domain.clone(),
        });
        self.resolving.insert(id, lookup);
    }

    pub(super) fn handle_resolved(
        &mut self,
        id: LookupId,
        addresses: Result<Vec<IpAddr>, String>,
        now: Instant,
    ) {
        let Some(Lookup {
            client_id, grant, ..
        }) = self.resolving.remove(&id)
        else {
            tracing::debug!(?id, "The answer to a lookup nobody waits for");
            return;
        };
        if let Some(next) = self.lookups.finished() {
            self.start_lookup(next);
        }
        if let Err(e) = &addresses {
            tracing::info!(%client_id, "Cannot resolve a DNS resource for a client: {e}");
        }
        match addresses_to_grant(addresses) {
            Some(addresses) => self.install_grant(*grant, &addresses, now),
            None => tracing::info!(%client_id, "No grant for a name without an address"),
        }
        let Some(pending) = self.pending.get_mut(&client_id) else {
            return;
        };
        pending.resolving = pending.resolving.saturating_sub(1);
        if pending.resolving > 0 {
            return;
        }
        let mut queued = self
            .pending
            .remove(&client_id)
            .map(|p| p.queued)
            .unwrap_or_default();
        while let Some(message) = queued.pop_front() {
            if let Some(pending) = self.pending.get_mut(&client_id) {
                // A queued DNS grant is resolving now: the rest waits behind it again.
                pending.queued.push_back(message);
                pending.queued.extend(queued.drain(..));
                return;
            }
            self.apply(message, now);
        }
    }

    fn install_grant(&mut self, grant: PortalToGateway, resolved: &[IpAddr], now: Instant) {
        let PortalToGateway::Grant {
            client,
            resource,
            domain,
            proxy_ips,
            preshared_key,
            local_ice,
            remote_ice,
            expires_at,
        } = grant
        else {
            return;
        };
        let (Ok(peer_public_key), Ok(preshared_key)) = (
            decode_key(&client.public_key),
            decode_key(preshared_key.expose()),
        ) else {
            tracing::warn!(client_id = %client.id, "Ignored a grant with a malformed key");
            return;
        };
        let data_plane = match resource_grant(&resource, resolved, &proxy_ips, &self.own_addresses)
        {
            Ok(grant) => grant,
            Err(e) => {
                tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant: {e}");
                return;
            }
        };
        let key = GrantKey {
            resource_id: resource.id.clone(),
            domain,
        };
        let peer = self.peer_for(&client);
        if !self
            .router
            .set_grant(peer, &client_addresses(&client), key.clone(), data_plane)
        {
            // Only a client holding names already is refused, so it keeps its peer.
            tracing::warn!(client_id = %client.id, resource_id = %resource.id, "Ignored a grant for one more name: the client holds the most names a client may");
            return;
        }
        log_grant(&client, &resource, key.domain.as_deref(), resolved);
        if let Some(entry) = self.clients.get_mut(&client.id)
            && let Some(old) = entry.expiries.insert(key.clone(), expires_at)
        {
            self.expiries.remove(&(old, peer, key.clone()));
        }
        self.unconfirmed.remove(&(peer, key.clone()));
        self.expiries.insert((expires_at, peer, key));
        let grant = Grant {
            peer,
            peer_public_key,
            preshared_key,
            local_ice: IceCredentials {
                ufrag: local_ice.ufrag,
                pwd: local_ice.pwd.expose().to_owned(),
            },
            remote_ice: IceCredentials {
                ufrag: remote_ice.ufrag,
                pwd: remote_ice.pwd.expose().to_owned(),
            },
        };
        if let Err(e) = self.engine.handle_grant(grant, now) {
            tracing::warn!(client_id = %client.id, "The engine refused a grant: {e}");
        }
    }

    fn peer_for(&mut self, client: &ClientPeer) -> PeerId {
        let addresses = client_addresses(client);
        if let Some(entry) = self.clients.get_mut(&client.id) {
            entry.addresses = addresses;
            return entry.peer;
        }
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        self.clients.insert(
            client.id.clone(),
            Client {
                peer,
                addresses,
                expiries: HashMap::new(),
            },
        );
        self.client_of.insert(peer, client.id.clone());
        peer
    }

    fn revoke(&mut self, client_id: &str, resource_ids: &[String]) {
        let Some(client) = self.clients.get_mut(client_id) else {
            return;
        };
        let peer = client.peer;
        let remaining = self.router.revoke(peer, resource_ids);
        client.expiries.retain(|key, expiry| {
            let keep = !resource_ids.is_empty() && !resource_ids.contains(&key.resource_id);
            if !keep {
                self.expiries.remove(&(*expiry, peer, key.clone()));
            }
            keep
        });
        tracing::info!(%client_id, resources = resource_ids.len(), "Grants withdrawn");
        if !remaining {
            self.forget_client(client_id);
        }
    }

    /// Removes grants whose time is up.
    pub(super) fn expire(&mut self, now: Instant) {
        let unix_now = self.wall.unix_at(now);
        while let Some(first) = self.expiries.first().cloned() {
            if first.0 > unix_now {
                break;
            }
            self.expiries.remove(&first);
            let (_, peer, key) = first;
            let Some(client_id) = self.client_of.get(&peer).cloned() else {
                continue;
            };
            if let Some(client) = self.clients.get_mut(&client_id) {
                client.expiries.remove(&key);
            }
            tracing::info!(%client_id, resource_id = %key.resource_id, "A grant expired");
            if !self.router.revoke_grant(peer, &key) {
                self.forget_client(&client_id);
            }
        }
    }

    /// Every grant held now must come again from the portal within `reconfirm_within`.
    fn start_reconfirming(&mut self, now: Instant) {
        self.unconfirmed = self
            .expiries
            .iter()
            .filter(|(_, peer, key)| self.router.has_grant(*peer, key))
            .map(|(_, peer, key)| (*peer, key.clone()))
            .collect();
        if self.unconfirmed.is_empty() {
            return;
        }
        tracing::info!(
            grants = self.unconfirmed.len(),
            within = ?self.reconfirm_within,
            "Grants from before the reconnect must be confirmed by the portal"
        );
        self.timers
            .set(Timer::Reconfirm, now + self.reconfirm_within);
    }

    pub(super) fn drop_unconfirmed(&mut self) {
        for (peer, key) in std::mem::take(&mut self.unconfirmed) {
            let Some(client_id) = self.client_of.get(&peer).cloned() else {
                continue;
            };
            if let Some(client) = self.clients.get_mut(&client_id)
                && let Some(expiry) = client.expiries.remove(&key)
            {
                self.expiries.remove(&(expiry, peer, key.clone()));
            }
            tracing::info!(%client_id, resource_id = %key.resource_id, "A grant the portal did not confirm after reconnecting was dropped");
            if !self.router.revoke_grant(peer, &key) {
                self.forget_client(&client_id);
            }
        }
    }

    fn forget_client(&mut self, client_id: &str) {
        let Some(client) = self.clients.remove(client_id) else {
            return;
        };
        self.client_of.remove(&client.peer);
        for (key, expiry) in client.expiries {
            self.expiries.remove(&(expiry, client.peer, key));
        }
        self.router.revoke(client.peer, &[]);
        self.engine.remove_peer(client.peer);
        tracing::info!(%client_id, "Client has no grants left; connection removed");
    }

    fn ask_for_relays(&mut self, relays: Vec<Relay>) {
        self.relays_query += 1;
        self.outputs.push_back(Output::ResolveRelays {
            query: self.relays_query,
            relays,
        });
    }

    pub(super) fn handle_relays_resolved(
        &mut self,
        query: u64,
        relays: Vec<(Relay, Vec<SocketAddr>)>,
        now: Instant,
    ) {
        if query != self.relays_query {
            tracing::debug!(query, "Relays resolved for an older list; ignored");
            return;
        }
        let mut configs = Vec::new();
        for (relay, servers) in relays {
            if servers.is_empty() {
                tracing::warn!(relay = %relay.id, "No usable address for a relay");
            }
            // One allocation per address, as the client does: each family gets its relay.
            for server in servers {
                let next = RelayId(u64::try_from(self.relay_ids.len()).unwrap_or(u64::MAX) + 1);
                let id = *self
                    .relay_ids
                    .entry((relay.id.clone(), server))
                    .or_insert(next);
                configs.push(RelayConfig {
                    id,
                    server,
                    username: relay.username.clone(),
                    password: relay.password.expose().to_owned(),
                });
            }
        }
        tracing::debug!(relays = configs.len(), "Relays updated");
        self.engine.handle_relays(configs, now);
    }
}

fn log_grant(client: &ClientPeer, resource: &Resource, domain: Option<&str>, resolved: &[IpAddr]) {
    tracing::info!(client_id = %client.id, resource_id = %resource.id, "Access granted");
    tracing::debug!(
        actor = %client.actor.email,
        resource = %resource.name,
        domain,
        ?resolved,
        "Grant details"
    );
}

fn client_addresses(client: &ClientPeer) -> Vec<IpAddr> {
    vec![IpAddr::V4(client.ipv4), IpAddr::V6(client.ipv6)]
}

/// The client a message is about, for messages that must stay in order per client.
fn client_of_message(message: &PortalToGateway) -> Option<&str> {
    match message {
        PortalToGateway::Grant { client, .. } => Some(&client.id),
        PortalToGateway::Revoke { client_id, .. }
        | PortalToGateway::IceCandidates { client_id, .. } => Some(client_id),
        _ => None,
    }
}
