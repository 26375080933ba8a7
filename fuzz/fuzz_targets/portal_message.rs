//! Frames from the portal's WebSocket (and, on the portal, from clients and gateways): every
//! message type decodes without a panic, and what decodes encodes back to the same message.
#![no_main]

use ember_protocol::portal::{
    ClientMessage, GatewayMessage, PortalToClient, PortalToGateway, decode, dns_pattern_matches,
    relay_host_port,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T>(text: &str, types: &[&str])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(message) = decode::<T>(text, types) else {
        return;
    };
    let encoded = serde_json::to_string(&message).expect("a decoded message encodes");
    let again = decode::<T>(&encoded, types).expect("our own encoding decodes");
    assert_eq!(again, message);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<PortalToClient>(text, PortalToClient::TYPES);
    round_trip::<PortalToGateway>(text, PortalToGateway::TYPES);
    round_trip::<ClientMessage>(text, ClientMessage::TYPES);
    round_trip::<GatewayMessage>(text, GatewayMessage::TYPES);
    let _ = relay_host_port(text);
    if let Some((pattern, name)) = text.split_once('\n') {
        let _ = dns_pattern_matches(pattern, name);
    }
});
