//! What the app shows per resource: its state (from the routing and the engine's
//! statistics), path, round-trip time, bytes, and why it is broken or unreachable.

use std::collections::HashMap;

use ember_engine::{ConnectionState, ConnectionStats, FailureReason, PeerId};
use ember_protocol::ipc::{ConnectionPath, ResourceState, ResourceView};
use ember_protocol::portal::ResourceAddress;

use crate::routing::Routing;

/// What the app shows per resource, from the router's state and the engine's statistics.
pub(crate) fn resource_views(
    routing: &Routing,
    stats: &HashMap<PeerId, ConnectionStats>,
) -> Vec<ResourceView> {
    routing
        .table
        .iter()
        .map(|resource| {
            let mut view = ResourceView {
                id: resource.id.clone(),
                name: resource.name.clone(),
                address: match &resource.address {
                    ResourceAddress::Cidr { cidr } => cidr.clone(),
                    ResourceAddress::Ip { ip } => ip.to_string(),
                    ResourceAddress::Dns { pattern } => pattern.clone(),
                    ResourceAddress::Internet => "Internet".into(),
                },
                address_description: resource.address_description.clone(),
                site: resource.site.name.clone(),
                state: ResourceState::Unknown,
                reason: None,
                path: None,
                rtt_ms: None,
                rx_bytes: 0,
                tx_bytes: 0,
                enabled: (resource.address == ResourceAddress::Internet)
                    .then_some(routing.table.internet_enabled()),
            };
            if let Some(denial) = routing.denied.get(&resource.id) {
                view.state = ResourceState::Unreachable;
                view.reason = Some(denial.message.clone());
            } else if let Some(grant) = routing.granted.get(&resource.id) {
                let failure = routing.peers.get(grant.peer).and_then(|p| p.failure);
                match stats.get(&grant.peer) {
                    Some(stats) => {
                        view.state = match stats.state {
                            ConnectionState::Connecting => ResourceState::Connecting,
                            ConnectionState::Active => ResourceState::Active,
                            ConnectionState::Idle => ResourceState::Idle,
                            ConnectionState::Broken => ResourceState::Broken,
                        };
                        view.path = stats.path.map(|_| {
                            if stats.through_relay {
                                ConnectionPath::Relayed
                            } else {
                                ConnectionPath::Direct
                            }
                        });
                        view.rtt_ms = stats
                            .rtt
                            .map(|rtt| u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX));
                        view.rx_bytes = stats.rx_bytes;
                        view.tx_bytes = stats.tx_bytes;
                    }
                    None => match failure {
                        Some(reason) => {
                            view.state = ResourceState::Broken;
                            view.reason = Some(failure_text(reason).into());
                        }
                        None => view.state = ResourceState::Connecting,
                    },
                }
            } else if routing.pending.keys().any(|k| k.resource == resource.id) {
                view.state = ResourceState::Connecting;
            }
            view
        })
        .collect()
}

fn failure_text(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::ConnectTimeout => "no path to the gateway could be found",
        FailureReason::PathDead => "the path to the gateway stopped working",
        FailureReason::PeerSilent => "the gateway stopped answering",
        FailureReason::Reset => "the network changed",
        FailureReason::Replaced => "the connection was replaced",
    }
}
