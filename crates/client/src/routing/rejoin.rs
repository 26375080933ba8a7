//! Rejoining a site whose gateway went away. A gateway that restarts is offline for a moment:
//! the portal tells the client at once, and an access request in that moment is denied as
//! `offline`. Waiting for the next packet to ask again is not enough: the far side of a
//! download may be the only one with something to send, and its TCP retransmissions never
//! reach the client's TUN device. So every grant the gateway held is asked for again at once
//! and, while the site stays offline, again with a backoff, until a gateway answers or
//! [`REJOIN_FOR`] has passed.

use std::time::{Duration, Instant};

use ember_engine::PacketBuffer;

use super::{HELD_PER_RESOURCE, Key, Pending, Request, Routing};

/// The first retry after an `offline` denial; doubled up to [`REJOIN_MAX_BACKOFF`].
pub(crate) const REJOIN_FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub(crate) const REJOIN_MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long a site that went offline is asked for again.
pub(crate) const REJOIN_FOR: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub(crate) struct Rejoin {
    /// When to ask again; `None` while a request is out.
    next: Option<Instant>,
    backoff: Duration,
    since: Instant,
}

impl Routing {
    /// A gateway went away: its peer is removed, and every grant it held is asked for again
    /// at once (another gateway of the site, or this one back, may answer).
    pub(crate) fn handle_gateway_offline(&mut self, gateway_id: &str, now: Instant) {
        let Some(peer) = self.peers.of_gateway(gateway_id) else {
            return;
        };
        let keys = self.keys_of(peer);
        self.remove_peer(peer);
        for key in keys {
            self.rejoin.insert(
                key.clone(),
                Rejoin {
                    next: None,
                    backoff: REJOIN_FIRST_BACKOFF,
                    since: now,
                },
            );
            self.ask_to_rejoin(&key, now);
        }
    }

    /// The earliest moment a site that went offline is to be asked for again.
    pub(crate) fn next_rejoin(&self) -> Option<Instant> {
        self.rejoin.values().filter_map(|r| r.next).min()
    }

    /// Asks again for every grant whose retry is due.
    pub(crate) fn handle_rejoin_timeout(&mut self, now: Instant) {
        let due: Vec<Key> = self
            .rejoin
            .iter()
            .filter(|(_, r)| r.next.is_some_and(|at| at <= now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            if let Some(rejoin) = self.rejoin.get_mut(&key) {
                rejoin.next = None;
            }
            // Packets that come meanwhile are held for the answer, not refused.
            self.denied.remove(&key.resource);
            self.ask_to_rejoin(&key, now);
        }
    }

    /// A denial of a request: while the site is offline, asked again after the backoff;
    /// any other answer ends the rejoining of that grant.
    pub(super) fn rejoin_denied(&mut self, key: &Key, offline: bool, now: Instant) {
        let Some(rejoin) = self.rejoin.get_mut(key) else {
            return;
        };
        if !offline || now.saturating_duration_since(rejoin.since) >= REJOIN_FOR {
            self.rejoin.remove(key);
            return;
        }
        rejoin.next = Some(now + rejoin.backoff);
        rejoin.backoff = (rejoin.backoff * 2).min(REJOIN_MAX_BACKOFF);
    }

    /// The portal link came back: requests in flight are lost, so every site still being
    /// rejoined is asked for again at once.
    pub(super) fn rejoin_after_reconnect(&mut self, now: Instant) {
        for rejoin in self.rejoin.values_mut() {
            rejoin.next = Some(now);
        }
    }

    /// One request for `key`; packets that come meanwhile are held for its answer.
    fn ask_to_rejoin(&mut self, key: &Key, now: Instant) {
        let request_id = self.request(key, true);
        self.requests
            .insert(request_id, Request::Access(key.clone()));
        let pending = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            packets: PacketBuffer::new(HELD_PER_RESOURCE),
            request_id,
            asked_at: now,
        });
        if pending.request_id != request_id {
            self.requests.remove(&pending.request_id);
            pending.request_id = request_id;
            pending.asked_at = now;
        }
    }
}
