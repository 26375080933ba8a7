//! State-machine property tests: random sequences of network and user events with invariants
//! checked after every step, and arbitrary datagrams fed to an engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ember_engine::{ConnectionState, Engine, EngineConfig, Event, LivenessPolicy, PeerId, Role};
use ember_sim::{HostId, NatConfig, Sim, app_packet, app_seq, logging};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Action {
    /// The client sends `n` packets to gateway `gw`.
    Send {
        gw: usize,
        n: u8,
    },
    /// Gateway `gw` answers with one packet.
    Reply {
        gw: usize,
    },
    /// Nothing happens for a while (long enough to go idle, or to let NAT mappings expire).
    Idle {
        secs: u16,
    },
    Run {
        millis: u16,
    },
    Cut {
        host: usize,
    },
    Restore {
        host: usize,
    },
    /// The client's NAT gets a new public address.
    Roam,
    /// The client moves to another network (new local address, told to the engine).
    Move,
    RestartPeer {
        gw: usize,
    },
    /// New relay credentials.
    RotateRelayCredentials,
    /// A new relay instead of the old one.
    ReplaceRelays,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..2usize, 1..20u8).prop_map(|(gw, n)| Action::Send { gw, n }),
        2 => (0..2usize).prop_map(|gw| Action::Reply { gw }),
        2 => (5..400u16).prop_map(|secs| Action::Idle { secs }),
        3 => (10..3000u16).prop_map(|millis| Action::Run { millis }),
        1 => (0..3usize).prop_map(|host| Action::Cut { host }),
        1 => (0..3usize).prop_map(|host| Action::Restore { host }),
        1 => Just(Action::Roam),
        1 => Just(Action::Move),
        1 => (0..2usize).prop_map(|gw| Action::RestartPeer { gw }),
        1 => Just(Action::RotateRelayCredentials),
        1 => Just(Action::ReplaceRelays),
    ]
}

/// Packets encode their intended receiver in the high bits of the sequence number.
fn seq_for(receiver: HostId, n: u64) -> u64 {
    ((receiver.0 as u64) << 32) | n
}

struct World {
    sim: Sim,
    client: HostId,
    gateways: [HostId; 2],
    next: u64,
    /// Packets the client handed to the engine while it had no established connection.
    buffered: BTreeMap<usize, Vec<u64>>,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut sim = Sim::new(seed);
        sim.add_relay();
        let nat = NatConfig::friendly(Duration::from_secs(120));
        let client = sim.add_host(
            "client",
            Role::Client,
            LivenessPolicy::ember(),
            Some(nat),
            Duration::from_millis(10),
        );
        let g0 = sim.add_host(
            "gw0",
            Role::Gateway,
            LivenessPolicy::ember(),
            Some(nat),
            Duration::from_millis(10),
        );
        let g1 = sim.add_host(
            "gw1",
            Role::Gateway,
            LivenessPolicy::ember(),
            None,
            Duration::from_millis(10),
        );
        Self {
            sim,
            client,
            gateways: [g0, g1],
            next: 0,
            buffered: BTreeMap::new(),
        }
    }

    fn host(&self, i: usize) -> HostId {
        if i == 0 {
            self.client
        } else {
            self.gateways[i - 1]
        }
    }

    fn apply(&mut self, a: &Action) {
        match *a {
            Action::Send { gw, n } => {
                let to = self.gateways[gw];
                for _ in 0..n {
                    self.next += 1;
                    let seq = seq_for(to, self.next);
                    let state = self.sim.hosts[self.client.0].engine.state(to.peer());
                    if matches!(state, None | Some(ConnectionState::Connecting)) {
                        self.buffered.entry(to.0).or_default().push(seq);
                    }
                    self.sim.send_app(self.client, to, &app_packet(seq, 120));
                }
                self.sim.run_for(Duration::from_millis(50));
            }
            Action::Reply { gw } => {
                self.next += 1;
                let seq = seq_for(self.client, self.next);
                self.sim
                    .send_app(self.gateways[gw], self.client, &app_packet(seq, 120));
                self.sim.run_for(Duration::from_millis(50));
            }
            Action::Idle { secs } => self.sim.run_for(Duration::from_secs(secs.into())),
            Action::Run { millis } => self.sim.run_for(Duration::from_millis(millis.into())),
            Action::Cut { host } => {
                let h = self.host(host);
                self.sim.set_cut(h, true);
            }
            Action::Restore { host } => {
                let h = self.host(host);
                self.sim.set_cut(h, false);
            }
            Action::Roam => self.sim.rebind_nat(self.client),
            Action::Move => self.sim.move_host(self.client),
            Action::RestartPeer { gw } => self.sim.restart(self.gateways[gw]),
            Action::RotateRelayCredentials => self.sim.rotate_relay_credentials(),
            Action::ReplaceRelays => self.sim.replace_relays(),
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        // No packet reaches the wrong host or claims the wrong sender.
        for (i, h) in self.sim.hosts.iter().enumerate() {
            for d in &h.delivered {
                let seq = app_seq(&d.packet)
                    .ok_or_else(|| TestCaseError::fail("unparsable packet delivered"))?;
                prop_assert_eq!(
                    (seq >> 32) as usize,
                    i,
                    "packet delivered to the wrong host"
                );
                if i == self.client.0 {
                    prop_assert!(self.gateways.iter().any(|g| g.peer() == d.from));
                } else {
                    prop_assert_eq!(
                        d.from,
                        self.client.peer(),
                        "gateway got a packet from a non-peer"
                    );
                }
            }
        }
        // Buffered packets: delivered at most once, and in the order they were sent.
        for (gw, seqs) in &self.buffered {
            let delivered: Vec<u64> = self.sim.hosts[*gw]
                .delivered
                .iter()
                .filter_map(|d| app_seq(&d.packet))
                .filter(|s| seqs.contains(s))
                .collect();
            let mut sorted = delivered.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(
                &delivered,
                &sorted,
                "buffered packets duplicated or reordered"
            );
        }
        Ok(())
    }

    /// Restores every link, waits for every connection to settle.
    fn heal_and_settle(&mut self) -> Result<(), TestCaseError> {
        for i in 0..3 {
            let h = self.host(i);
            self.sim.set_cut(h, false);
        }
        self.sim.run_for(Duration::from_secs(30));
        for g in self.gateways {
            let state = self.sim.hosts[self.client.0].engine.state(g.peer());
            let reported = self.sim.hosts[self.client.0].events.iter().any(
                |(_, e)| matches!(e, Event::ConnectionFailed { peer, .. } if *peer == g.peer()),
            );
            prop_assert!(
                matches!(state, Some(ConnectionState::Active | ConnectionState::Idle))
                    || state.is_none() && (reported || !self.ever_sent_to(g)),
                "connection to {:?} stuck in {:?}",
                g,
                state
            );
        }
        // After healing, traffic gets through to every gateway.
        for g in self.gateways {
            self.next += 1;
            let seq = seq_for(g, self.next);
            self.sim.send_app(self.client, g, &app_packet(seq, 120));
            let ok = self.sim.run_until_cond(Duration::from_secs(15), |s| {
                s.hosts[g.0]
                    .delivered
                    .iter()
                    .any(|d| app_seq(&d.packet) == Some(seq))
            });
            prop_assert!(ok, "after healing, a packet to {:?} was not delivered", g);
        }
        Ok(())
    }

    fn ever_sent_to(&self, g: HostId) -> bool {
        self.sim.hosts[self.client.0]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::ConnectionNeeded { peer } if *peer == g.peer()))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_every_invariant(seed in 0u64..1000, actions in prop::collection::vec(action(), 1..24)) {
        let _log = logging::fail_on_error();
        let mut world = World::new(seed);
        for a in &actions {
            world.apply(a);
            world.check()?;
        }
        world.heal_and_settle()?;
        world.check()?;
    }

    #[test]
    fn arbitrary_datagrams_never_panic_the_engine(datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..50), prefix in 0u8..6) {
        let _log = logging::fail_on_error();
        let now = Instant::now();
        let mut engine = Engine::new(EngineConfig::new(Role::Gateway, [7; 32], 1), now);
        let local: SocketAddr = "198.51.100.7:51820".parse().map_err(|_| TestCaseError::fail("addr"))?;
        let from: SocketAddr = "203.0.113.5:3478".parse().map_err(|_| TestCaseError::fail("addr"))?;
        engine.handle_local_addresses(&[local], now);
        for mut d in datagrams {
            // Steer some inputs into each demultiplexer branch.
            match prefix {
                0 if d.len() >= 8 => { d[0] = 0; d[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]); }
                1 if !d.is_empty() => d[0] = 0x40,
                2 if d.len() >= 4 => { d[0] = 1 + d[1] % 4; d[1..4].copy_from_slice(&[0, 0, 0]); }
                _ => {}
            }
            engine.handle_network_packet(local, from, &d, now);
            engine.handle_tun_packet(PeerId(3), &d, now);
        }
        while engine.poll_transmit().is_some() {}
        let _ = engine.poll_timeout();
    }
}
