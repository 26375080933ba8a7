//! The test client's state for `ember_io`'s driver: an engine whose only peer is the gateway.

use std::net::SocketAddr;
use std::time::Instant;

use ember_engine::{ConnectionStats, Engine, Event, Grant, RelayConfig, Transmit};
use ember_io::driver::State;
use tokio::sync::oneshot;

use super::GATEWAY_PEER;

#[derive(Debug)]
pub enum ClientInput {
    Grant(Box<Grant>),
    RemoteCandidate(String),
    Relays(Vec<RelayConfig>),
    Stats(oneshot::Sender<Option<ConnectionStats>>),
}

#[derive(Debug)]
pub enum ClientOutput {
    LocalCandidate(String),
}

#[derive(Debug)]
pub struct ClientState {
    pub engine: Engine,
}

impl State for ClientState {
    type Input = ClientInput;
    type Output = ClientOutput;

    fn handle_input(&mut self, input: ClientInput, now: Instant) {
        let result = match input {
            ClientInput::Grant(grant) => self.engine.handle_grant(*grant, now),
            ClientInput::RemoteCandidate(candidate) => {
                self.engine
                    .handle_remote_candidate(GATEWAY_PEER, &candidate, now)
            }
            ClientInput::Relays(relays) => {
                self.engine.handle_relays(relays, now);
                Ok(())
            }
            ClientInput::Stats(reply) => {
                let _ = reply.send(self.engine.stats(GATEWAY_PEER, now));
                Ok(())
            }
        };
        if let Err(e) = result {
            eprintln!("the test client's engine refused an input: {e}");
        }
    }

    fn handle_local_addresses(&mut self, addresses: &[SocketAddr], now: Instant) {
        self.engine.handle_local_addresses(addresses, now);
    }

    fn handle_network_change(&mut self, now: Instant) {
        self.engine.reset(now);
    }

    fn handle_tun_packet(&mut self, packet: &mut [u8], now: Instant) {
        // Only IPv4 to the routed site and proxy ranges; the kernel's own IPv6 chatter stays.
        if packet.first().map(|b| b >> 4) == Some(4) {
            self.engine.handle_tun_packet(GATEWAY_PEER, packet, now);
        }
    }

    fn handle_network_packet(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        self.engine
            .handle_network_packet(local, from, datagram, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.engine.poll_transmit()
    }

    fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        self.engine.poll_packet().map(|(_, packet)| packet)
    }

    fn poll_output(&mut self) -> Option<ClientOutput> {
        loop {
            if let Event::LocalCandidate { candidate, .. } = self.engine.poll_event()? {
                return Some(ClientOutput::LocalCandidate(candidate));
            }
        }
    }

    fn poll_timeout(&mut self) -> Option<(Instant, &'static str)> {
        self.engine
            .poll_timeout()
            .map(|(at, timer)| (at, timer.as_str()))
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        self.engine.recycle(buffer);
    }
}
