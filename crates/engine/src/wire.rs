//! Demultiplexing one UDP socket: STUN, TURN ChannelData and WireGuard.

use ember_turn::stun_msg;

/// What a datagram on the shared socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// Top two bits of byte 0 clear and the magic cookie 0x2112A442 at bytes 4..8.
    Stun,
    /// TURN ChannelData: byte 0 in 0x40..=0x7F.
    ChannelData,
    /// WireGuard: type 1–4 followed by three zero bytes.
    WireGuard,
    Unknown,
}

/// Classifies a datagram without parsing it.
#[must_use]
pub fn classify(data: &[u8]) -> Datagram {
    let Some(&first) = data.first() else {
        return Datagram::Unknown;
    };
    if stun_msg::is_stun(data) {
        return Datagram::Stun;
    }
    if stun_msg::is_channel_data(data) {
        return Datagram::ChannelData;
    }
    if (1..=4).contains(&first) && data.get(1..4) == Some(&[0, 0, 0][..]) {
        return Datagram::WireGuard;
    }
    Datagram::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_turn::stun_msg::MAGIC_COOKIE;

    #[test]
    fn each_protocol_is_recognised_by_its_header() {
        let mut stun = vec![0u8; 20];
        stun[1] = 1;
        stun[4..8].copy_from_slice(&MAGIC_COOKIE);
        assert_eq!(classify(&stun), Datagram::Stun);
        assert_eq!(
            classify(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4]),
            Datagram::ChannelData
        );
        assert_eq!(classify(&[4, 0, 0, 0, 9, 9, 9, 9]), Datagram::WireGuard);
        assert_eq!(classify(&[5, 0, 0, 0]), Datagram::Unknown);
        assert_eq!(classify(&[]), Datagram::Unknown);
        assert_eq!(
            classify(&stun[..12]),
            Datagram::Unknown,
            "truncated STUN is not STUN"
        );
    }
}
