//! What Ember reads and writes of IP packets, in one place for the client, the gateway and the
//! DNS stub:
//!
//! - [`addresses`] of an IPv4 or IPv6 packet;
//! - [`udp_packet`] builds an IP/UDP packet (checksums filled in), [`udp_parts`] takes one
//!   apart;
//! - [`prohibited`]: the ICMP "administratively prohibited" error for a packet;
//! - [`translate`]: address translation in place with incremental checksums (the gateway's
//!   proxy IPs).
//!
//! Nothing here panics on input: a packet that does not parse is `None` or an error.

pub mod translate;

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice, icmpv4, icmpv6,
};

/// The hop limit of packets made here.
const TTL: u8 = 64;

/// Source and destination of an IPv4 or IPv6 packet.
pub fn addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some((src.into(), dst.into()))
        }
        6 if packet.len() >= 40 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some((src.into(), dst.into()))
        }
        _ => None,
    }
}

/// An ICMP "administratively prohibited" for `packet`, back to its sender, so an application
/// fails at once instead of waiting out its timeout. `None` for ICMP other than echo requests
/// (an error is never answered with an error), later fragments and what does not parse.
pub fn prohibited(packet: &[u8]) -> Option<Vec<u8>> {
    let (src, dst) = addresses(packet)?;
    let mut reply = Vec::new();
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let header_len = usize::from(packet.first()? & 0x0f) * 4;
            let fragment_offset = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            let is_icmp = *packet.get(9)? == 1;
            if header_len < 20
                || fragment_offset != 0
                || (is_icmp && packet.get(header_len) != Some(&8))
            {
                return None;
            }
            let quoted = packet.get(..packet.len().min(header_len + 8))?;
            PacketBuilder::ipv4(dst.octets(), src.octets(), 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    icmpv4::DestUnreachableHeader::FilterProhibited,
                ))
                .write(&mut reply, quoted)
                .ok()?;
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let is_icmp = *packet.get(6)? == 58;
            if is_icmp && packet.get(40) != Some(&128) {
                return None;
            }
            // The error fits the minimum MTU: 40 + 8 bytes of headers, the rest quoted.
            let quoted = packet.get(..packet.len().min(1280 - 48))?;
            PacketBuilder::ipv6(dst.octets(), src.octets(), 64)
                .icmpv6(Icmpv6Type::DestinationUnreachable(
                    icmpv6::DestUnreachableCode::Prohibited,
                ))
                .write(&mut reply, quoted)
                .ok()?;
        }
        _ => return None,
    }
    Some(reply)
}

/// An IP/UDP packet from `from` to `to` carrying `payload`, checksums filled in. `None` when
/// the families differ.
pub fn udp_packet(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let builder = match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => PacketBuilder::ipv4(src.octets(), dst.octets(), TTL),
        (IpAddr::V6(src), IpAddr::V6(dst)) => PacketBuilder::ipv6(src.octets(), dst.octets(), TTL),
        _ => return None,
    }
    .udp(from.port(), to.port());
    let mut packet = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut packet, payload).ok()?;
    Some(packet)
}

/// Source, destination and payload of an IPv4 or IPv6 UDP packet.
pub fn udp_parts(packet: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let TransportSlice::Udp(udp) = sliced.transport? else {
        return None;
    };
    Some((
        SocketAddr::new(src, udp.source_port()),
        SocketAddr::new(dst, udp.destination_port()),
        udp.payload(),
    ))
}
