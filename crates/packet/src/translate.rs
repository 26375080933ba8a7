//! Address translation in place: the gateway rewrites the destination of packets a client
//! sends to a DNS resource's proxy IP to the address the name resolved to, and the source of
//! the replies back, so the client only ever sees its proxy IPs.
//!
//! Checksums are updated incrementally (RFC 1624): the IPv4 header checksum, and the TCP, UDP
//! and ICMPv6 checksums whose pseudo-header holds the addresses. ICMP errors quote the packet
//! that caused them; the quoted addresses are translated too (so path MTU discovery and "port
//! unreachable" work through the translation) and the ICMP checksum is computed afresh.
//!
//! Nothing here panics on input: every offset is checked, a packet that cannot be translated
//! is an error and the caller drops it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("not an IPv4 or IPv6 packet the gateway can translate")]
    Malformed,
    #[error("the new address is of the other IP family")]
    FamilyMismatch,
    #[error("a fragmented ICMP error cannot be translated")]
    FragmentedIcmpError,
}

/// The ends of a flow as the filter and the translation see them: ports for TCP and UDP, the
/// echo identifier (as both ports) for ICMP echo, zero otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub protocol: u8,
    pub source: IpAddr,
    pub source_port: u16,
    pub destination: IpAddr,
    pub destination_port: u16,
}

/// What the router needs to know about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub endpoints: Endpoints,
    /// For ICMP errors: the packet they are about, as it was sent.
    pub quoted: Option<Endpoints>,
}

/// Which addresses to replace; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub source: Option<IpAddr>,
    pub destination: Option<IpAddr>,
    /// In the packet an ICMP error quotes.
    pub quoted_source: Option<IpAddr>,
    pub quoted_destination: Option<IpAddr>,
}

/// Reads the addresses, protocol and ports of an IP packet.
pub fn summarize(packet: &[u8]) -> Option<Summary> {
    let layout = Layout::parse(packet)?;
    let endpoints = layout.endpoints(packet);
    let quoted = layout
        .quoted_offset(packet)
        .and_then(|offset| packet.get(offset..))
        .and_then(|quoted| Layout::parse_quoted(quoted).map(|l| l.endpoints(quoted)));
    Some(Summary { endpoints, quoted })
}

/// Replaces addresses in place and fixes every checksum that covers them.
pub fn rewrite(packet: &mut [u8], rewrite: Rewrite) -> Result<(), TranslateError> {
    let layout = Layout::parse(packet).ok_or(TranslateError::Malformed)?;
    let quoted = rewrite.quoted_source.is_some() || rewrite.quoted_destination.is_some();
    let icmp_error_offset = if quoted {
        let offset = layout
            .quoted_offset(packet)
            .ok_or(TranslateError::Malformed)?;
        if layout.fragmented {
            return Err(TranslateError::FragmentedIcmpError);
        }
        Some(offset)
    } else {
        None
    };

    if let Some(offset) = icmp_error_offset {
        let inner = packet
            .get_mut(offset..layout.end)
            .ok_or(TranslateError::Malformed)?;
        let inner_layout = Layout::parse_quoted(inner).ok_or(TranslateError::Malformed)?;
        if let Some(new) = rewrite.quoted_source {
            inner_layout.set_address(inner, Field::Source, new)?;
        }
        if let Some(new) = rewrite.quoted_destination {
            inner_layout.set_address(inner, Field::Destination, new)?;
        }
    }
    if let Some(new) = rewrite.source {
        layout.set_address(packet, Field::Source, new)?;
    }
    if let Some(new) = rewrite.destination {
        layout.set_address(packet, Field::Destination, new)?;
    }
    if icmp_error_offset.is_some() {
        layout.recompute_icmp_checksum(packet)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Source,
    Destination,
}

/// Where things are in one IP packet (or in the packet an ICMP error quotes, which may be cut
/// short after its transport header's first 8 bytes).
#[derive(Debug, Clone)]
struct Layout {
    v6: bool,
    source: Range<usize>,
    destination: Range<usize>,
    protocol: u8,
    /// Start of the transport header, when this fragment carries it.
    transport: Option<usize>,
    /// End of the packet (IPv4 total length or IPv6 payload length, not the buffer).
    end: usize,
    /// A fragment of a larger datagram (first or later).
    fragmented: bool,
}

impl Layout {
    fn parse(packet: &[u8]) -> Option<Self> {
        Self::parse_inner(packet, false)
    }

    /// A quoted packet's length fields describe the original, not the quote.
    fn parse_quoted(packet: &[u8]) -> Option<Self> {
        Self::parse_inner(packet, true)
    }

    fn parse_inner(packet: &[u8], quoted: bool) -> Option<Self> {
        match packet.first()? >> 4 {
            4 => {
                let header_len = usize::from(packet.first()? & 0x0f) * 4;
                if header_len < 20 || packet.len() < header_len {
                    return None;
                }
                let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
                let end = if quoted {
                    packet.len()
                } else {
                    if total < header_len || total > packet.len() {
                        return None;
                    }
                    total
                };
                let flags_offset = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]);
                let offset = flags_offset & 0x1fff;
                let more_fragments = flags_offset & 0x2000 != 0;
                Some(Self {
                    v6: false,
                    source: 12..16,
                    destination: 16..20,
                    protocol: *packet.get(9)?,
                    transport: (offset == 0).then_some(header_len),
                    end,
                    fragmented: offset != 0 || more_fragments,
                })
            }
            6 => {
                if packet.len() < 40 {
                    return None;
                }
                let payload = usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
                let end = if quoted {
                    packet.len()
                } else {
                    // A zero payload length means a jumbogram, which a 1280-byte tunnel never carries.
                    if payload == 0 || 40 + payload > packet.len() {
                        return None;
                    }
                    40 + payload
                };
                let (protocol, transport, fragmented) = skip_extension_headers(packet, end)?;
                Some(Self {
                    v6: true,
                    source: 8..24,
                    destination: 24..40,
                    protocol,
                    transport,
                    end,
                    fragmented,
                })
            }
            _ => None,
        }
    }

    fn address(&self, packet: &[u8], field: Field) -> IpAddr {
        let range = match field {
            Field::Source => self.source.clone(),
            Field::Destination => self.destination.clone(),
        };
        // Both ranges were checked against the length in `parse`.
        let bytes = packet.get(range).unwrap_or_default();
        if self.v6 {
            <[u8; 16]>::try_from(bytes)
                .map(Ipv6Addr::from)
                .map(IpAddr::V6)
                .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        } else {
            <[u8; 4]>::try_from(bytes)
                .map(Ipv4Addr::from)
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        }
    }

    fn endpoints(&self, packet: &[u8]) -> Endpoints {
        let word = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]))
        };
        let (source_port, destination_port) = match (self.protocol, self.transport) {
            (TCP | UDP, Some(t)) => (word(t).unwrap_or(0), word(t + 2).unwrap_or(0)),
            (ICMP | ICMPV6, Some(t)) if self.is_echo(packet) => {
                let id = word(t + 4).unwrap_or(0);
                (id, id)
            }
            _ => (0, 0),
        };
        Endpoints {
            protocol: self.protocol,
            source: self.address(packet, Field::Source),
            source_port,
            destination: self.address(packet, Field::Destination),
            destination_port,
        }
    }

    fn icmp_type(&self, packet: &[u8]) -> Option<u8> {
        match (self.protocol, self.transport) {
            (ICMP, Some(t)) if !self.v6 => packet.get(t).copied(),
            (ICMPV6, Some(t)) if self.v6 => packet.get(t).copied(),
            _ => None,
        }
    }

    fn is_echo(&self, packet: &[u8]) -> bool {
        matches!(
            (self.v6, self.icmp_type(packet)),
            (false, Some(0 | 8)) | (true, Some(128 | 129))
        )
    }

    /// Where the quoted packet of an ICMP error starts.
    fn quoted_offset(&self, packet: &[u8]) -> Option<usize> {
        let kind = self.icmp_type(packet)?;
        let is_error = if self.v6 {
            // Destination unreachable, packet too big, time exceeded, parameter problem.
            (1..=4).contains(&kind)
        } else {
            // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
            matches!(kind, 3 | 4 | 5 | 11 | 12)
        };
        let offset = self.transport? + 8;
        (is_error && offset < self.end).then_some(offset)
    }

    fn set_address(
        &self,
        packet: &mut [u8],
        field: Field,
        new: IpAddr,
    ) -> Result<(), TranslateError> {
        let new_bytes: Vec<u8> = match (self.v6, new) {
            (false, IpAddr::V4(v4)) => v4.octets().to_vec(),
            (true, IpAddr::V6(v6)) => v6.octets().to_vec(),
            _ => return Err(TranslateError::FamilyMismatch),
        };
        let range = match field {
            Field::Source => self.source.clone(),
            Field::Destination => self.destination.clone(),
        };
        let old_bytes = packet
            .get(range.clone())
            .ok_or(TranslateError::Malformed)?
            .to_vec();
        if old_bytes == new_bytes {
            return Ok(());
        }
        packet
            .get_mut(range)
            .ok_or(TranslateError::Malformed)?
            .copy_from_slice(&new_bytes);
        if !self.v6 {
            adjust_checksum_at(packet, 10, &old_bytes, &new_bytes, false);
        }
        // Checksums whose pseudo-header holds the address; the transport header of a later
        // fragment is in the first one, and ICMPv4 has no pseudo-header.
        if let Some(t) = self.transport {
            match self.protocol {
                TCP => adjust_checksum_at(packet, t + 16, &old_bytes, &new_bytes, false),
                UDP => adjust_checksum_at(packet, t + 6, &old_bytes, &new_bytes, true),
                ICMPV6 if self.v6 => {
                    adjust_checksum_at(packet, t + 2, &old_bytes, &new_bytes, false)
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn recompute_icmp_checksum(&self, packet: &mut [u8]) -> Result<(), TranslateError> {
        let t = self.transport.ok_or(TranslateError::Malformed)?;
        let message = packet.get(t..self.end).ok_or(TranslateError::Malformed)?;
        if message.len() < 8 {
            return Err(TranslateError::Malformed);
        }
        let mut sum: u32 = 0;
        if self.v6 {
            let addresses = packet.get(8..40).ok_or(TranslateError::Malformed)?;
            sum = add_words(sum, addresses);
            let length = u32::try_from(message.len()).map_err(|_| TranslateError::Malformed)?;
            sum = add_words(sum, &length.to_be_bytes());
            sum = add_words(sum, &[0, 0, 0, ICMPV6]);
        }
        // The checksum field itself counts as zero.
        sum = add_words(sum, message.get(..2).unwrap_or_default());
        sum = add_words(sum, message.get(4..).unwrap_or_default());
        let checksum = !fold(sum);
        packet
            .get_mut(t + 2..t + 4)
            .ok_or(TranslateError::Malformed)?
            .copy_from_slice(&checksum.to_be_bytes());
        Ok(())
    }
}

/// Walks IPv6 extension headers: the upper-layer protocol, where its header starts (when this
/// fragment has it), and whether the packet is a fragment.
fn skip_extension_headers(packet: &[u8], end: usize) -> Option<(u8, Option<usize>, bool)> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const DESTINATION_OPTIONS: u8 = 60;
    let mut next = *packet.get(6)?;
    let mut at = 40usize;
    let mut fragmented = false;
    // A bound on the walk: a packet cannot hold more headers than 8-byte units.
    for _ in 0..(end / 8) {
        match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => {
                let len = (usize::from(*packet.get(at + 1)?) + 1) * 8;
                next = *packet.get(at)?;
                at += len;
            }
            FRAGMENT => {
                let offset = u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]) >> 3;
                fragmented = true;
                next = *packet.get(at)?;
                at += 8;
                if offset != 0 {
                    return Some((next, None, true));
                }
            }
            protocol => {
                return Some((protocol, (at <= end).then_some(at), fragmented));
            }
        }
    }
    None
}

fn add_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')` over the changed 16-bit words. `old` and `new`
/// have the same even length. A checksum field beyond the packet (a cut quote) is left alone;
/// for UDP a zero checksum means "none" (IPv4) and a computed zero is sent as `0xffff`.
fn adjust_checksum_at(packet: &mut [u8], at: usize, old: &[u8], new: &[u8], udp: bool) {
    let Some(field) = packet.get_mut(at..at + 2) else {
        return;
    };
    let checksum = u16::from_be_bytes([field[0], field[1]]);
    if udp && checksum == 0 {
        return;
    }
    let mut sum = u32::from(!checksum);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    let mut updated = !fold(sum);
    if udp && updated == 0 {
        updated = 0xffff;
    }
    field.copy_from_slice(&updated.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, icmpv4};

    use super::*;

    const CLIENT4: [u8; 4] = [100, 64, 0, 7];
    const PROXY4: [u8; 4] = [100, 96, 0, 1];
    const REAL4: [u8; 4] = [10, 77, 0, 10];
    const CLIENT6: [u8; 16] = [
        0xfd, 0, 0x20, 0x21, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
    ];
    const PROXY6: [u8; 16] = [
        0xfd, 0, 0x20, 0x21, 0x11, 0x11, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    const REAL6: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::from(a)
    }

    fn v6(a: [u8; 16]) -> IpAddr {
        IpAddr::from(a)
    }

    fn tcp4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut packet = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .tcp(40000, 80, 12345, 64240)
            .syn()
            .write(&mut packet, b"GET / HTTP/1.1\r\n")
            .unwrap();
        packet
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut packet = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .udp(40000, 53)
            .write(&mut packet, payload)
            .unwrap();
        packet
    }

    fn tcp6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
        let mut packet = Vec::new();
        PacketBuilder::ipv6(src, dst, 64)
            .tcp(40000, 443, 7, 64240)
            .write(&mut packet, b"hello")
            .unwrap();
        packet
    }

    fn udp6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
        let mut packet = Vec::new();
        PacketBuilder::ipv6(src, dst, 64)
            .udp(5353, 53)
            .write(&mut packet, b"query")
            .unwrap();
        packet
    }

    fn dnat(packet: &mut [u8], to: IpAddr) {
        rewrite(
            packet,
            Rewrite {
                destination: Some(to),
                ..Rewrite::default()
            },
        )
        .unwrap();
    }

    fn snat(packet: &mut [u8], to: IpAddr) {
        rewrite(
            packet,
            Rewrite {
                source: Some(to),
                ..Rewrite::default()
            },
        )
        .unwrap();
    }

    // A packet translated in place must equal, byte for byte, the packet built with the new
    // address from the start (etherparse computes every checksum from scratch).

    #[test]
    fn ipv4_tcp_and_udp_translate_with_valid_checksums() {
        let mut packet = tcp4(CLIENT4, PROXY4);
        dnat(&mut packet, v4(REAL4));
        assert_eq!(packet, tcp4(CLIENT4, REAL4));

        let mut reply = udp4(REAL4, CLIENT4, b"answer");
        snat(&mut reply, v4(PROXY4));
        assert_eq!(reply, udp4(PROXY4, CLIENT4, b"answer"));
        // Odd payload lengths and many payloads: the checksum arithmetic holds for each.
        for n in 0..64u8 {
            let payload: Vec<u8> = (0..n).map(|i| i.wrapping_mul(97).wrapping_add(n)).collect();
            let mut packet = udp4(CLIENT4, PROXY4, &payload);
            dnat(&mut packet, v4(REAL4));
            assert_eq!(packet, udp4(CLIENT4, REAL4, &payload), "payload {n}");
        }
    }

    #[test]
    fn ipv6_tcp_udp_and_icmpv6_translate_with_valid_checksums() {
        let mut packet = tcp6(CLIENT6, PROXY6);
        dnat(&mut packet, v6(REAL6));
        assert_eq!(packet, tcp6(CLIENT6, REAL6));

        let mut reply = udp6(REAL6, CLIENT6);
        snat(&mut reply, v6(PROXY6));
        assert_eq!(reply, udp6(PROXY6, CLIENT6));

        let ping = |src, dst| {
            let mut p = Vec::new();
            PacketBuilder::ipv6(src, dst, 64)
                .icmpv6_echo_request(9, 1)
                .write(&mut p, b"ping")
                .unwrap();
            p
        };
        let mut packet = ping(CLIENT6, PROXY6);
        dnat(&mut packet, v6(REAL6));
        assert_eq!(packet, ping(CLIENT6, REAL6));
    }

    #[test]
    fn icmpv4_echo_translates_and_its_checksum_stays() {
        let ping = |src, dst| {
            let mut p = Vec::new();
            PacketBuilder::ipv4(src, dst, 64)
                .icmpv4_echo_request(9, 1)
                .write(&mut p, b"ping")
                .unwrap();
            p
        };
        let mut packet = ping(CLIENT4, PROXY4);
        dnat(&mut packet, v4(REAL4));
        assert_eq!(packet, ping(CLIENT4, REAL4));
    }

    #[test]
    fn a_udp_packet_without_checksum_keeps_none() {
        let mut packet = udp4(CLIENT4, PROXY4, b"x");
        packet[26] = 0;
        packet[27] = 0;
        dnat(&mut packet, v4(REAL4));
        let mut expected = udp4(CLIENT4, REAL4, b"x");
        expected[26] = 0;
        expected[27] = 0;
        assert_eq!(packet, expected);
    }

    #[test]
    fn an_icmp_error_about_a_translated_flow_quotes_the_proxy_address() {
        // The resource answers a UDP datagram with "port unreachable", quoting it.
        let original = udp4(CLIENT4, REAL4, b"query");
        let error = |src: [u8; 4], quoted: &[u8]| {
            let mut p = Vec::new();
            PacketBuilder::ipv4(src, CLIENT4, 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    icmpv4::DestUnreachableHeader::Port,
                ))
                .write(&mut p, quoted)
                .unwrap();
            p
        };
        let mut packet = error(REAL4, &original[..28]);
        let summary = summarize(&packet).unwrap();
        let quoted = summary.quoted.unwrap();
        assert_eq!(quoted.source, v4(CLIENT4));
        assert_eq!(quoted.destination, v4(REAL4));
        assert_eq!((quoted.source_port, quoted.destination_port), (40000, 53));
        rewrite(
            &mut packet,
            Rewrite {
                source: Some(v4(PROXY4)),
                quoted_destination: Some(v4(PROXY4)),
                ..Rewrite::default()
            },
        )
        .unwrap();
        let as_sent = udp4(CLIENT4, PROXY4, b"query");
        assert_eq!(packet, error(PROXY4, &as_sent[..28]));
    }

    #[test]
    fn packet_too_big_for_an_ipv6_translated_flow_quotes_the_proxy_address() {
        let original = tcp6(CLIENT6, REAL6);
        let error = |src: [u8; 16], quoted: &[u8]| {
            let mut p = Vec::new();
            PacketBuilder::ipv6(src, CLIENT6, 64)
                .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
                .write(&mut p, quoted)
                .unwrap();
            p
        };
        let mut packet = error(REAL6, &original);
        rewrite(
            &mut packet,
            Rewrite {
                source: Some(v6(PROXY6)),
                quoted_destination: Some(v6(PROXY6)),
                ..Rewrite::default()
            },
        )
        .unwrap();
        assert_eq!(packet, error(PROXY6, &tcp6(CLIENT6, PROXY6)));
    }

    #[test]
    fn summaries_name_ports_and_echo_identifiers() {
        let s = summarize(&tcp4(CLIENT4, PROXY4)).unwrap().endpoints;
        assert_eq!(
            s,
            Endpoints {
                protocol: 6,
                source: v4(CLIENT4),
                source_port: 40000,
                destination: v4(PROXY4),
                destination_port: 80
            }
        );
        let mut ping = Vec::new();
        PacketBuilder::ipv4(CLIENT4, PROXY4, 64)
            .icmpv4_echo_request(4242, 1)
            .write(&mut ping, b"")
            .unwrap();
        let s = summarize(&ping).unwrap();
        assert_eq!(
            (s.endpoints.source_port, s.endpoints.destination_port),
            (4242, 4242)
        );
        assert!(s.quoted.is_none());
    }

    #[test]
    fn a_later_ipv4_fragment_gets_a_valid_header_checksum_only() {
        let mut packet = udp4(CLIENT4, PROXY4, b"0123456789abcdef");
        // Offset 8 bytes, no transport header in this piece.
        packet[6] = 0x00;
        packet[7] = 0x01;
        let header = etherparse::Ipv4Header::from_slice(&packet).unwrap().0;
        packet[10..12].copy_from_slice(&header.calc_header_checksum().to_be_bytes());
        let payload_before = packet[20..].to_vec();
        dnat(&mut packet, v4(REAL4));
        let header = etherparse::Ipv4Header::from_slice(&packet).unwrap().0;
        assert_eq!(header.destination, REAL4);
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        assert_eq!(packet[20..], payload_before[..]);
    }

    #[test]
    fn the_other_family_or_garbage_is_an_error_never_a_panic() {
        let mut packet = tcp4(CLIENT4, PROXY4);
        assert_eq!(
            rewrite(
                &mut packet,
                Rewrite {
                    destination: Some(v6(REAL6)),
                    ..Rewrite::default()
                }
            ),
            Err(TranslateError::FamilyMismatch)
        );
        assert_eq!(
            rewrite(&mut [], Rewrite::default()),
            Err(TranslateError::Malformed)
        );
        // Every prefix of real packets, and noise, with every kind of rewrite.
        let samples = [
            tcp4(CLIENT4, PROXY4),
            tcp6(CLIENT6, PROXY6),
            udp6(REAL6, CLIENT6),
        ];
        for sample in &samples {
            for len in 0..=sample.len() {
                let mut cut = sample[..len].to_vec();
                let _ = summarize(&cut);
                let _ = rewrite(
                    &mut cut,
                    Rewrite {
                        source: Some(v4(REAL4)),
                        destination: Some(v6(REAL6)),
                        quoted_source: Some(v4(REAL4)),
                        quoted_destination: Some(v6(REAL6)),
                    },
                );
            }
        }
        for seed in 0..2000u32 {
            let len = (seed % 97) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) >> 7) as u8)
                .collect();
            if let Some(first) = bytes.first_mut() {
                *first = if seed % 2 == 0 { 0x45 } else { 0x60 };
            }
            let _ = summarize(&bytes);
            let _ = rewrite(
                &mut bytes,
                Rewrite {
                    source: Some(v4(REAL4)),
                    quoted_destination: Some(v4(PROXY4)),
                    ..Rewrite::default()
                },
            );
        }
    }
}
