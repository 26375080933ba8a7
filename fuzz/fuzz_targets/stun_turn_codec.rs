//! STUN/TURN from the network: the codec on its own (decode, every accessor, MAC check,
//! re-encode), then a client engine with a relay fed the bytes as the relay's answer to its
//! first request and as a datagram from an unknown peer. Nothing may panic, and what the codec
//! decodes it must encode back to the same message.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ember_engine::stun_msg::{self as m, Message};
use ember_engine::{Engine, EngineConfig, RelayConfig, RelayId, Role, classify};
use libfuzzer_sys::fuzz_target;

const LOCAL: &str = "192.0.2.10:50000";
const RELAY: &str = "203.0.113.5:3478";
const PEER: &str = "198.51.100.7:40000";

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    let _ = m::parse_channel_data(data);
    if let Some(message) = Message::decode(data) {
        let _ = message.str_attr(m::ATTR_USERNAME);
        let _ = message.str_attr(m::ATTR_REALM);
        let _ = message.u32_attr(m::ATTR_LIFETIME);
        for typ in [
            m::ATTR_XOR_MAPPED_ADDRESS,
            m::ATTR_XOR_RELAYED_ADDRESS,
            m::ATTR_XOR_PEER_ADDRESS,
        ] {
            let _ = message.addr_attr(typ);
        }
        let _ = message.error_code();
        let _ = message.error_reason();
        let _ = message.verify(data, b"key");
        let again = Message::decode(&message.encode(None)).expect("our own encoding decodes");
        assert_eq!(
            (again.method, again.class, again.tid, &again.attrs),
            (message.method, message.class, message.tid, &message.attrs)
        );
    }

    let (local, relay, peer): (SocketAddr, SocketAddr, SocketAddr) = (
        LOCAL.parse().expect("constant"),
        RELAY.parse().expect("constant"),
        PEER.parse().expect("constant"),
    );
    let now = Instant::now();
    let mut engine = Engine::new(EngineConfig::new(Role::Client, [7; 32], 1), now);
    engine.handle_local_addresses(&[local], now);
    engine.handle_relays(
        vec![RelayConfig {
            id: RelayId(1),
            server: relay,
            username: "1700000000:fuzz".into(),
            password: "fuzz-password".into(),
        }],
        now,
    );
    // Answer the engine's own request: the transaction ID of its first STUN message to the
    // relay goes into the fuzzed bytes, so the TURN client's answer handling is reached.
    let mut tid = None;
    while let Some(transmit) = engine.poll_transmit() {
        if transmit.dst == relay && tid.is_none() {
            tid = Message::decode(&transmit.payload).map(|request| request.tid);
        }
    }
    let mut answer = data.to_vec();
    if let (Some(tid), Some(slot)) = (tid, answer.get_mut(8..20)) {
        slot.copy_from_slice(&tid);
    }
    engine.handle_network_packet(local, relay, &answer, now);
    engine.handle_network_packet(local, relay, data, now);
    engine.handle_network_packet(local, peer, data, now);
    engine.handle_timeout(now + Duration::from_secs(1));
    while engine.poll_transmit().is_some() {}
    while engine.poll_event().is_some() {}
    let _ = engine.poll_timeout();
});
