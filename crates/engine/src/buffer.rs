//! Bounded buffer for packets of a connection that is not up yet.

use std::collections::VecDeque;
use std::net::IpAddr;

/// Packets waiting for a connection: bounded, oldest dropped first, in order.
///
/// A retransmitted TCP SYN (same addresses, ports and sequence number) replaces the earlier
/// copy instead of taking a second slot, so a stalled connect costs one slot per flow.
#[derive(Debug)]
pub struct PacketBuffer {
    capacity: usize,
    packets: VecDeque<Vec<u8>>,
    dropped: u64,
}

impl PacketBuffer {
    /// The engine's default capacity per connection.
    pub const DEFAULT_CAPACITY: usize = 128;

    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            packets: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues a packet; returns `true` if an older packet had to be dropped to make room.
    pub fn push(&mut self, packet: Vec<u8>) -> bool {
        if let Some(key) = tcp_syn_key(&packet)
            && let Some(slot) = self
                .packets
                .iter_mut()
                .find(|p| tcp_syn_key(p).as_ref() == Some(&key))
        {
            *slot = packet;
            return false;
        }
        let mut dropped = false;
        if self.packets.len() >= self.capacity {
            self.packets.pop_front();
            self.dropped += 1;
            dropped = true;
        }
        self.packets.push_back(packet);
        dropped
    }

    /// Takes every queued packet, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.packets.drain(..)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Packets dropped so far because the buffer was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Identifies a TCP SYN (without ACK): addresses, ports and initial sequence number.
fn tcp_syn_key(packet: &[u8]) -> Option<(IpAddr, IpAddr, u16, u16, u32)> {
    let version = packet.first()? >> 4;
    let (src, dst, tcp) = match version {
        4 => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            if *packet.get(9)? != 6 {
                return None;
            }
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), packet.get(ihl..)?)
        }
        6 => {
            if *packet.get(6)? != 6 {
                return None;
            }
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), packet.get(40..)?)
        }
        _ => return None,
    };
    let flags = *tcp.get(13)?;
    let syn = flags & 0x02 != 0;
    let ack = flags & 0x10 != 0;
    if !syn || ack {
        return None;
    }
    let sport = u16::from_be_bytes(tcp.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(tcp.get(2..4)?.try_into().ok()?);
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    Some((src, dst, sport, dport, seq))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal IPv4 TCP segment with the given ports, sequence number and flags.
    pub(crate) fn tcp_v4(sport: u16, dport: u16, seq: u32, flags: u8, marker: u8) -> Vec<u8> {
        let mut p = vec![0u8; 41];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&41u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[100, 64, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 5]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[33] = flags;
        p[40] = marker;
        p
    }

    #[test]
    fn full_buffer_drops_oldest_and_keeps_order() {
        let mut b = PacketBuffer::new(128);
        for i in 0..130u32 {
            b.push(i.to_be_bytes().to_vec());
        }
        assert_eq!(b.dropped(), 2);
        let got: Vec<u32> = b
            .drain()
            .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
            .collect();
        assert_eq!(got, (2..130).collect::<Vec<_>>());
    }

    #[test]
    fn retransmitted_syn_replaces_the_earlier_copy() {
        let mut b = PacketBuffer::new(128);
        b.push(tcp_v4(40000, 443, 7, 0x02, 1));
        b.push(tcp_v4(40001, 443, 9, 0x02, 2));
        b.push(tcp_v4(40000, 443, 7, 0x02, 3));
        let got: Vec<_> = b.drain().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0][40], 3, "retransmission took the first copy's slot");
        assert_eq!(got[1][40], 2);
    }

    #[test]
    fn syn_ack_and_data_segments_are_not_deduplicated() {
        let mut b = PacketBuffer::new(128);
        b.push(tcp_v4(443, 40000, 7, 0x12, 1));
        b.push(tcp_v4(443, 40000, 7, 0x12, 2));
        b.push(tcp_v4(40000, 443, 8, 0x18, 3));
        b.push(tcp_v4(40000, 443, 8, 0x18, 4));
        assert_eq!(b.len(), 4);
    }
}
