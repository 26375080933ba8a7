//! A small STUN/TURN message codec (RFC 5389 / RFC 5766) for the TURN client and the
//! simulator's relay. ICE connectivity checks use the `is` crate's own codec.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use is::{DefaultSha1HmacProvider, Sha1HmacProvider};
use md5::{Digest, Md5};

/// The STUN magic cookie (bytes 4..8 of every STUN message).
pub const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Whether a datagram looks like STUN: top two bits of byte 0 clear and the magic cookie at
/// bytes 4..8 (RFC 5389 §6). Checks the header only.
#[must_use]
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] & 0xC0 == 0 && data.get(4..8) == Some(&MAGIC_COOKIE[..])
}

/// Whether a datagram looks like TURN ChannelData: byte 0 in 0x40..=0x7F (RFC 8656 §12).
#[must_use]
pub fn is_channel_data(data: &[u8]) -> bool {
    data.len() >= 4 && (0x40..=0x7F).contains(&data[0])
}

pub const BINDING: u16 = 0x001;
pub const ALLOCATE: u16 = 0x003;
pub const REFRESH: u16 = 0x004;
pub const SEND: u16 = 0x006;
pub const DATA: u16 = 0x007;
pub const CREATE_PERMISSION: u16 = 0x008;
pub const CHANNEL_BIND: u16 = 0x009;

pub const REQUEST: u16 = 0x000;
pub const INDICATION: u16 = 0x010;
pub const SUCCESS: u16 = 0x100;
pub const ERROR: u16 = 0x110;

pub const ATTR_USERNAME: u16 = 0x0006;
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ATTR_ERROR_CODE: u16 = 0x0009;
pub const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
pub const ATTR_LIFETIME: u16 = 0x000D;
pub const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
pub const ATTR_DATA: u16 = 0x0013;
pub const ATTR_REALM: u16 = 0x0014;
pub const ATTR_NONCE: u16 = 0x0015;
pub const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A decoded STUN message: method, class, transaction ID and attributes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub method: u16,
    pub class: u16,
    pub tid: [u8; 12],
    pub attrs: Vec<(u16, Vec<u8>)>,
    /// Byte offset of MESSAGE-INTEGRITY in the datagram it was decoded from.
    integrity_at: Option<usize>,
}

impl Message {
    #[must_use]
    pub fn new(method: u16, class: u16, tid: [u8; 12]) -> Self {
        Self {
            method,
            class,
            tid,
            attrs: Vec::new(),
            integrity_at: None,
        }
    }

    #[must_use]
    pub fn with(mut self, typ: u16, value: Vec<u8>) -> Self {
        self.attrs.push((typ, value));
        self
    }

    #[must_use]
    pub fn with_str(self, typ: u16, value: &str) -> Self {
        self.with(typ, value.as_bytes().to_vec())
    }

    #[must_use]
    pub fn with_u32(self, typ: u16, value: u32) -> Self {
        self.with(typ, value.to_be_bytes().to_vec())
    }

    #[must_use]
    pub fn with_addr(self, typ: u16, addr: SocketAddr) -> Self {
        let tid = self.tid;
        self.with(typ, encode_xor_addr(addr, &tid))
    }

    #[must_use]
    pub fn with_error(self, code: u16, reason: &str) -> Self {
        let mut v = vec![
            0,
            0,
            u8::try_from(code / 100).unwrap_or(0),
            u8::try_from(code % 100).unwrap_or(0),
        ];
        v.extend_from_slice(reason.as_bytes());
        self.with(ATTR_ERROR_CODE, v)
    }

    #[must_use]
    pub fn attr(&self, typ: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(t, _)| *t == typ)
            .map(|(_, v)| v.as_slice())
    }

    #[must_use]
    pub fn str_attr(&self, typ: u16) -> Option<&str> {
        std::str::from_utf8(self.attr(typ)?).ok()
    }

    #[must_use]
    pub fn u32_attr(&self, typ: u16) -> Option<u32> {
        Some(u32::from_be_bytes(
            self.attr(typ)?.get(..4)?.try_into().ok()?,
        ))
    }

    #[must_use]
    pub fn addr_attr(&self, typ: u16) -> Option<SocketAddr> {
        decode_xor_addr(self.attr(typ)?, &self.tid)
    }

    #[must_use]
    pub fn error_code(&self) -> Option<u16> {
        let v = self.attr(ATTR_ERROR_CODE)?;
        Some(u16::from(*v.get(2)? & 0x07) * 100 + u16::from(*v.get(3)?))
    }

    /// The reason phrase of an ERROR-CODE attribute, for logs.
    pub fn error_reason(&self) -> Option<String> {
        let v = self.attr(ATTR_ERROR_CODE)?;
        Some(String::from_utf8_lossy(v.get(4..)?).into_owned())
    }

    /// Encodes the message, with MESSAGE-INTEGRITY keyed by `key` when given.
    #[must_use]
    pub fn encode(&self, key: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&(self.method | self.class).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE);
        out.extend_from_slice(&self.tid);
        for (typ, value) in &self.attrs {
            out.extend_from_slice(&typ.to_be_bytes());
            out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(value);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        if let Some(key) = key {
            let len = out.len() - 20 + 24;
            set_len(&mut out, len);
            let mac = DefaultSha1HmacProvider.sha1_hmac(key, &[&out]);
            out.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&mac);
        } else {
            let len = out.len() - 20;
            set_len(&mut out, len);
        }
        out
    }

    /// Decodes a datagram; `None` if it is not a well-formed STUN message.
    #[must_use]
    pub fn decode(data: &[u8]) -> Option<Self> {
        let typ = u16::from_be_bytes(data.get(0..2)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(data.get(2..4)?.try_into().ok()?));
        if typ & 0xC000 != 0 || data.get(4..8)? != MAGIC_COOKIE || data.len() < 20 + len {
            return None;
        }
        let tid: [u8; 12] = data.get(8..20)?.try_into().ok()?;
        let mut msg = Self::new(typ & !0x0110, typ & 0x0110, tid);
        let mut at = 20;
        while at + 4 <= 20 + len {
            let t = u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?);
            let l = usize::from(u16::from_be_bytes(
                data.get(at + 2..at + 4)?.try_into().ok()?,
            ));
            let value = data.get(at + 4..at + 4 + l)?.to_vec();
            if t == ATTR_MESSAGE_INTEGRITY {
                msg.integrity_at = Some(at);
            }
            msg.attrs.push((t, value));
            at += 4 + l.div_ceil(4) * 4;
        }
        Some(msg)
    }

    /// Checks MESSAGE-INTEGRITY of the datagram this message was decoded from.
    #[must_use]
    pub fn verify(&self, data: &[u8], key: &[u8]) -> bool {
        let (Some(at), Some(mac)) = (self.integrity_at, self.attr(ATTR_MESSAGE_INTEGRITY)) else {
            return false;
        };
        let Some(head) = data.get(..at) else {
            return false;
        };
        let mut head = head.to_vec();
        set_len(&mut head, at - 20 + 24);
        let expected = DefaultSha1HmacProvider.sha1_hmac(key, &[&head]);
        // Constant time is not needed for a relay's MAC in a client, but costs nothing.
        expected.len() == mac.len()
            && expected
                .iter()
                .zip(mac)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The long-term credential key: MD5(username ":" realm ":" password).
#[must_use]
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    let mut h = Md5::new();
    h.update(format!("{username}:{realm}:{password}").as_bytes());
    h.finalize().to_vec()
}

/// TURN ChannelData framing.
#[must_use]
pub fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&channel_data_header(channel, payload.len()));
    out.extend_from_slice(payload);
    out
}

/// TURN ChannelData framing in place: the header goes in front of `payload`, which allocates
/// nothing when the buffer has four bytes of capacity to spare.
pub fn frame_channel_data(channel: u16, payload: &mut Vec<u8>) {
    let len = payload.len();
    payload.resize(len + 4, 0);
    payload.copy_within(..len, 4);
    payload[..4].copy_from_slice(&channel_data_header(channel, len));
}

fn channel_data_header(channel: u16, len: usize) -> [u8; 4] {
    let [c0, c1] = channel.to_be_bytes();
    let [l0, l1] = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [c0, c1, l0, l1]
}

/// Splits a ChannelData datagram into channel number and payload.
#[must_use]
pub fn parse_channel_data(data: &[u8]) -> Option<(u16, &[u8])> {
    let channel = u16::from_be_bytes(data.get(0..2)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(data.get(2..4)?.try_into().ok()?));
    Some((channel, data.get(4..4 + len)?))
}

fn set_len(out: &mut [u8], len: usize) {
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    out[2] = len[0];
    out[3] = len[1];
}

fn encode_xor_addr(addr: SocketAddr, tid: &[u8; 12]) -> Vec<u8> {
    let port = addr.port() ^ 0x2112;
    let mut v = vec![0];
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(1);
            v.extend_from_slice(&port.to_be_bytes());
            for (b, k) in ip.octets().iter().zip(MAGIC_COOKIE) {
                v.push(b ^ k);
            }
        }
        IpAddr::V6(ip) => {
            v.push(2);
            v.extend_from_slice(&port.to_be_bytes());
            let key: Vec<u8> = MAGIC_COOKIE.iter().chain(tid.iter()).copied().collect();
            for (b, k) in ip.octets().iter().zip(key) {
                v.push(b ^ k);
            }
        }
    }
    v
}

fn decode_xor_addr(v: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes(v.get(2..4)?.try_into().ok()?) ^ 0x2112;
    match v.get(1)? {
        1 => {
            let b = v.get(4..8)?;
            let ip = Ipv4Addr::new(b[0] ^ 0x21, b[1] ^ 0x12, b[2] ^ 0xA4, b[3] ^ 0x42);
            Some(SocketAddr::new(ip.into(), port))
        }
        2 => {
            let b = v.get(4..20)?;
            let key: Vec<u8> = MAGIC_COOKIE.iter().chain(tid.iter()).copied().collect();
            let mut octets = [0u8; 16];
            for (i, o) in octets.iter_mut().enumerate() {
                *o = b[i] ^ key[i];
            }
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_with_integrity() {
        let key = long_term_key("user", "realm", "pass");
        let peer: SocketAddr = "203.0.113.9:4000".parse().expect("literal");
        let peer6: SocketAddr = "[2001:db8::1]:5000".parse().expect("literal");
        let msg = Message::new(CREATE_PERMISSION, REQUEST, [7; 12])
            .with_str(ATTR_USERNAME, "user")
            .with_addr(ATTR_XOR_PEER_ADDRESS, peer)
            .with_addr(ATTR_XOR_RELAYED_ADDRESS, peer6)
            .with_u32(ATTR_LIFETIME, 600);
        let bytes = msg.encode(Some(&key));
        let back = Message::decode(&bytes).expect("decodes");
        assert_eq!(back.method, CREATE_PERMISSION);
        assert_eq!(back.class, REQUEST);
        assert_eq!(back.addr_attr(ATTR_XOR_PEER_ADDRESS), Some(peer));
        assert_eq!(back.addr_attr(ATTR_XOR_RELAYED_ADDRESS), Some(peer6));
        assert_eq!(back.u32_attr(ATTR_LIFETIME), Some(600));
        assert!(back.verify(&bytes, &key));
        assert!(!back.verify(&bytes, b"wrong key"));
    }

    #[test]
    fn truncated_or_garbage_input_is_rejected_without_panic() {
        let bytes = Message::new(BINDING, REQUEST, [1; 12])
            .with_str(ATTR_USERNAME, "u")
            .encode(None);
        for cut in 0..bytes.len() {
            let _ = Message::decode(&bytes[..cut]);
        }
        assert!(Message::decode(&bytes[..bytes.len() - 1]).is_none());
        assert_eq!(parse_channel_data(&[0x40, 0, 0, 9, 1]), None);
    }

    #[test]
    fn channel_data_framed_in_place_matches_the_copying_framing() {
        let payload: Vec<u8> = (0..=255).collect();
        let mut framed = Vec::with_capacity(payload.len() + 4);
        framed.extend_from_slice(&payload);
        let address = framed.as_ptr();
        frame_channel_data(0x4001, &mut framed);
        assert_eq!(framed, channel_data(0x4001, &payload));
        assert_eq!(framed.as_ptr(), address, "framed without a new buffer");
        assert_eq!(parse_channel_data(&framed), Some((0x4001, &payload[..])));
    }
}
