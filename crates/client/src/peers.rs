//! The gateway peers: one engine peer per gateway in use, one gateway per site at a time.

use std::collections::{BTreeMap, HashMap};

use ember_engine::{FailureReason, PeerId};

#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) gateway_id: String,
    pub(crate) site_id: String,
    /// A fresh connection was asked for and not answered yet.
    pub(crate) reconnecting: bool,
    /// Why its last connection failed, until a grant brings a new one.
    pub(crate) failure: Option<FailureReason>,
}

#[derive(Debug)]
pub(crate) struct Peers {
    peers: BTreeMap<PeerId, Peer>,
    site_peer: HashMap<String, PeerId>,
    gateway_peer: HashMap<String, PeerId>,
    next_peer: u64,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            peers: BTreeMap::new(),
            site_peer: HashMap::new(),
            gateway_peer: HashMap::new(),
            next_peer: 1,
        }
    }
}

impl Peers {
    pub(crate) fn get(&self, peer: PeerId) -> Option<&Peer> {
        self.peers.get(&peer)
    }

    pub(crate) fn get_mut(&mut self, peer: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(&peer)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (PeerId, &Peer)> {
        self.peers.iter().map(|(id, peer)| (*id, peer))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.peers.values_mut()
    }

    pub(crate) fn of_gateway(&self, gateway_id: &str) -> Option<PeerId> {
        self.gateway_peer.get(gateway_id).copied()
    }

    pub(crate) fn of_site(&self, site_id: &str) -> Option<PeerId> {
        self.site_peer.get(site_id).copied()
    }

    /// A new peer for `gateway_id` in `site_id`. The caller has removed the site's old one.
    pub(crate) fn insert(&mut self, gateway_id: &str, site_id: &str) -> PeerId {
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(
            peer,
            Peer {
                gateway_id: gateway_id.to_owned(),
                site_id: site_id.to_owned(),
                reconnecting: false,
                failure: None,
            },
        );
        self.site_peer.insert(site_id.to_owned(), peer);
        self.gateway_peer.insert(gateway_id.to_owned(), peer);
        peer
    }

    pub(crate) fn remove(&mut self, peer: PeerId) -> Option<Peer> {
        let state = self.peers.remove(&peer)?;
        if self.site_peer.get(&state.site_id) == Some(&peer) {
            self.site_peer.remove(&state.site_id);
        }
        if self.gateway_peer.get(&state.gateway_id) == Some(&peer) {
            self.gateway_peer.remove(&state.gateway_id);
        }
        Some(state)
    }
}
