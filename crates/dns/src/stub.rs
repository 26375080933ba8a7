//! The client's stub resolver, sans-IO: bytes of a query in, an [`Outcome`] out.
//!
//! Each name gets its own proxy IPs on first use. Names are not kept forever — a wildcard
//! resource has no end of names below it: a name neither asked for nor used by traffic for
//! [`NAME_IDLE`] is forgotten and its addresses reused, and at [`MAX_NAMES`] the least recently
//! used name makes room if it has been idle for [`NAME_MIN_IDLE`] (long past its answers'
//! [`RESOURCE_TTL`]). Traffic through a proxy IP ([`StubResolver::handle_traffic`]) keeps its
//! name, so a live flow never loses its address.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

use crate::NamePattern;

/// Proxy addresses handed out per name and family.
pub const PROXY_IPS_PER_NAME: usize = 4;
/// Short, so a client asks again soon after resources change.
pub const RESOURCE_TTL: u32 = 1;
/// A name without a query or traffic for this long is forgotten.
pub const NAME_IDLE: Duration = Duration::from_secs(15 * 60);
/// Names kept at most; beyond, the least recently used one idle for [`NAME_MIN_IDLE`] goes.
pub const MAX_NAMES: usize = 1_024;
/// How long a name must have been idle before a new name may take its place early.
pub const NAME_MIN_IDLE: Duration = Duration::from_secs(60);

/// A resource the stub answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsResource {
    pub id: String,
    pub pattern: NamePattern,
}

/// The address ranges proxy IPs come from (ARCHITECTURE §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRanges {
    pub ipv4: (Ipv4Addr, u8),
    pub ipv6: (Ipv6Addr, u8),
}

impl Default for ProxyRanges {
    fn default() -> Self {
        Self {
            ipv4: (Ipv4Addr::new(100, 96, 0, 0), 11),
            ipv6: (
                Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0x8000, 0, 0, 0, 0),
                107,
            ),
        }
    }
}

/// The proxy addresses of one name, and the resource they lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIps {
    pub name: String,
    /// `None` once no resource covers the name any more: its traffic must be dropped. The
    /// addresses stay reserved so a cached answer never leads to another name.
    pub resource_id: Option<String>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back to the asker.
    Answer(Vec<u8>),
    /// Not ours: send the query, unchanged, to an upstream resolver and relay its answer.
    Forward,
    /// Not even a DNS header: ignore it.
    Drop,
}

#[derive(Debug)]
pub struct StubResolver {
    resources: Vec<DnsResource>,
    ranges: ProxyRanges,
    by_name: HashMap<String, Entry>,
    by_ip: HashMap<IpAddr, String>,
    /// Names by when they were last seen used, updated lazily: an entry's own `last_used` is
    /// the truth, and a stale position is corrected when it comes up for eviction.
    by_age: BTreeSet<(Instant, String)>,
    /// Index of the next never-used block of [`PROXY_IPS_PER_NAME`] addresses in each range.
    next_block: u64,
    /// Blocks of forgotten names, to reuse.
    free_blocks: Vec<u64>,
}

#[derive(Debug)]
struct Entry {
    proxy: ProxyIps,
    block: u64,
    last_used: Instant,
}

impl StubResolver {
    pub fn new(ranges: ProxyRanges) -> Self {
        Self {
            resources: Vec::new(),
            ranges,
            by_name: HashMap::new(),
            by_ip: HashMap::new(),
            by_age: BTreeSet::new(),
            next_block: 0,
            free_blocks: Vec::new(),
        }
    }

    /// Replaces the resources. Names keep their proxy IPs for the session; a name no resource
    /// covers any more stops being answered.
    pub fn set_resources(&mut self, mut resources: Vec<DnsResource>) {
        resources.sort_by_key(|r| std::cmp::Reverse(r.pattern.specificity()));
        self.resources = resources;
        for entry in self.by_name.values_mut() {
            entry.proxy.resource_id =
                Self::find(&self.resources, &entry.proxy.name).map(|r| r.id.clone());
        }
    }

    /// The proxy IPs handed out for `name` so far, if any.
    pub fn proxy_ips_of(&self, name: &str) -> Option<&ProxyIps> {
        self.by_name
            .get(&name.trim_end_matches('.').to_ascii_lowercase())
            .map(|entry| &entry.proxy)
    }

    /// The name and resource behind a proxy IP, for the data plane.
    pub fn lookup_proxy_ip(&self, ip: IpAddr) -> Option<&ProxyIps> {
        self.by_ip
            .get(&ip)
            .and_then(|name| self.by_name.get(name))
            .map(|entry| &entry.proxy)
    }

    /// A packet to (or from) `ip`: if it is a proxy IP, its name is in use and kept.
    pub fn handle_traffic(&mut self, ip: IpAddr, now: Instant) {
        if let Some(name) = self.by_ip.get(&ip)
            && let Some(entry) = self.by_name.get_mut(name)
        {
            entry.last_used = now;
        }
    }

    /// Names currently holding proxy IPs.
    pub fn names(&self) -> usize {
        self.by_name.len()
    }

    pub fn handle_query(&mut self, query: &[u8], now: Instant) -> Outcome {
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(_) => return form_error(query),
        };
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return Outcome::Forward;
        }
        let [question] = request.queries.as_slice() else {
            return Outcome::Forward;
        };
        let name = question
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let Some(resource) = Self::find(&self.resources, &name) else {
            return Outcome::Forward;
        };
        let resource_id = resource.id.clone();

        let mut response = Message::response(request.metadata.id, OpCode::Query);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        response.add_query(question.clone());
        let owner = question.name().clone();
        match self.proxy_ips(&name, &resource_id, now) {
            None => response.metadata.response_code = ResponseCode::ServFail,
            Some(proxy) => match question.query_type() {
                RecordType::A => {
                    for ip in &proxy.ipv4 {
                        response.add_answer(Record::from_rdata(
                            owner.clone(),
                            RESOURCE_TTL,
                            RData::A(A(*ip)),
                        ));
                    }
                }
                RecordType::AAAA => {
                    for ip in &proxy.ipv6 {
                        response.add_answer(Record::from_rdata(
                            owner.clone(),
                            RESOURCE_TTL,
                            RData::AAAA(AAAA(*ip)),
                        ));
                    }
                }
                // The name exists but has no other records: NOERROR, no answers. Never ask
                // upstream about an internal name.
                _ => {}
            },
        }
        match response.to_vec() {
            Ok(bytes) => Outcome::Answer(bytes),
            Err(e) => {
                tracing::debug!("Cannot encode a DNS answer: {e}");
                Outcome::Drop
            }
        }
    }

    fn find<'a>(resources: &'a [DnsResource], name: &str) -> Option<&'a DnsResource> {
        // Sorted by specificity, so the first match is the best one.
        resources.iter().find(|r| r.pattern.matches(name))
    }

    /// The name's proxy IPs, assigned on first use; `None` when the ranges are exhausted or
    /// every kept name is in use.
    fn proxy_ips(&mut self, name: &str, resource_id: &str, now: Instant) -> Option<&ProxyIps> {
        if let Some(entry) = self.by_name.get_mut(name) {
            entry.last_used = now;
        } else {
            self.evict_idle(now);
            if self.by_name.len() >= MAX_NAMES && !self.evict_oldest(now, NAME_MIN_IDLE) {
                return None;
            }
            let block = match self.free_blocks.pop() {
                Some(block) => block,
                None => self.next_block,
            };
            let ipv4 = addresses_v4(self.ranges.ipv4, block)?;
            let ipv6 = addresses_v6(self.ranges.ipv6, block)?;
            if block == self.next_block {
                self.next_block += 1;
            }
            for ip in ipv4
                .iter()
                .map(|ip| IpAddr::V4(*ip))
                .chain(ipv6.iter().map(|ip| IpAddr::V6(*ip)))
            {
                self.by_ip.insert(ip, name.to_owned());
            }
            self.by_age.insert((now, name.to_owned()));
            self.by_name.insert(
                name.to_owned(),
                Entry {
                    proxy: ProxyIps {
                        name: name.to_owned(),
                        resource_id: Some(resource_id.to_owned()),
                        ipv4,
                        ipv6,
                    },
                    block,
                    last_used: now,
                },
            );
        }
        self.by_name.get(name).map(|entry| &entry.proxy)
    }

    /// Forgets every name idle for [`NAME_IDLE`].
    fn evict_idle(&mut self, now: Instant) {
        while self.evict_oldest(now, NAME_IDLE) {}
    }

    /// Forgets the least recently used name if it has been idle for `idle`; whether one went.
    fn evict_oldest(&mut self, now: Instant, idle: Duration) -> bool {
        while let Some((queued_at, name)) = self.by_age.pop_first() {
            let Some(entry) = self.by_name.get(&name) else {
                continue;
            };
            if entry.last_used > queued_at {
                // Used since it was queued: back in line at its real age.
                self.by_age.insert((entry.last_used, name));
                continue;
            }
            if now.saturating_duration_since(entry.last_used) < idle {
                self.by_age.insert((queued_at, name));
                return false;
            }
            if let Some(entry) = self.by_name.remove(&name) {
                for ip in entry
                    .proxy
                    .ipv4
                    .iter()
                    .map(|ip| IpAddr::V4(*ip))
                    .chain(entry.proxy.ipv6.iter().map(|ip| IpAddr::V6(*ip)))
                {
                    self.by_ip.remove(&ip);
                }
                self.free_blocks.push(entry.block);
            }
            return true;
        }
        false
    }
}

fn addresses_v4((base, prefix): (Ipv4Addr, u8), block: u64) -> Option<Vec<Ipv4Addr>> {
    let size = 1u64 << (32 - u32::from(prefix));
    let first = block.checked_mul(PROXY_IPS_PER_NAME as u64)?;
    (first + PROXY_IPS_PER_NAME as u64 <= size).then(|| {
        (0..PROXY_IPS_PER_NAME as u64)
            .map(|i| Ipv4Addr::from(u32::from(base) + (first + i) as u32))
            .collect()
    })
}

fn addresses_v6((base, prefix): (Ipv6Addr, u8), block: u64) -> Option<Vec<Ipv6Addr>> {
    let size = 1u128 << (128 - u32::from(prefix));
    let first = u128::from(block).checked_mul(PROXY_IPS_PER_NAME as u128)?;
    (first + PROXY_IPS_PER_NAME as u128 <= size).then(|| {
        (0..PROXY_IPS_PER_NAME as u128)
            .map(|i| Ipv6Addr::from(u128::from(base) + first + i))
            .collect()
    })
}

/// A FORMERR with the query's id when at least the header is there.
fn form_error(query: &[u8]) -> Outcome {
    let Some(id) = query.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Outcome::Drop;
    };
    if query.len() < 12 {
        return Outcome::Drop;
    }
    match Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec() {
        Ok(bytes) => Outcome::Answer(bytes),
        Err(_) => Outcome::Drop,
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;

    fn stub() -> StubResolver {
        let mut stub = StubResolver::new(ProxyRanges::default());
        stub.set_resources(vec![
            DnsResource {
                id: "db".into(),
                pattern: "db.corp.example".parse().unwrap(),
            },
            DnsResource {
                id: "corp".into(),
                pattern: "*.corp.example".parse().unwrap(),
            },
            DnsResource {
                id: "eu".into(),
                pattern: "?.eu.corp.example".parse().unwrap(),
            },
        ]);
        stub
    }

    fn query(id: u16, name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn answer(outcome: Outcome) -> Message {
        let Outcome::Answer(bytes) = outcome else {
            panic!("expected an answer, got {outcome:?}");
        };
        Message::from_vec(&bytes).unwrap()
    }

    fn a_records(message: &Message) -> Vec<Ipv4Addr> {
        message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_a_resource_name_with_four_stable_proxy_ips() {
        let mut stub = stub();
        let first =
            answer(stub.handle_query(&query(7, "db.corp.example.", RecordType::A), Instant::now()));
        assert_eq!(first.metadata.id, 7);
        assert_eq!(first.metadata.response_code, ResponseCode::NoError);
        let ips = a_records(&first);
        assert_eq!(ips.len(), PROXY_IPS_PER_NAME);
        assert!(
            ips.iter()
                .all(|ip| ip.octets()[0] == 100 && (96..128).contains(&ip.octets()[1]))
        );
        assert!(first.answers.iter().all(|r| r.ttl == RESOURCE_TTL));

        let again =
            answer(stub.handle_query(&query(8, "DB.corp.example.", RecordType::A), Instant::now()));
        assert_eq!(
            a_records(&again),
            ips,
            "proxy IPs are stable for the session"
        );
        let proxy = stub.lookup_proxy_ip(IpAddr::V4(ips[2])).unwrap();
        assert_eq!(proxy.name, "db.corp.example");
        assert_eq!(proxy.resource_id.as_deref(), Some("db"));
    }

    #[test]
    fn each_name_under_a_wildcard_gets_its_own_addresses_and_aaaa_works() {
        let mut stub = stub();
        let a = a_records(&answer(stub.handle_query(
            &query(1, "a.corp.example.", RecordType::A),
            Instant::now(),
        )));
        let b = a_records(&answer(stub.handle_query(
            &query(2, "b.x.corp.example.", RecordType::A),
            Instant::now(),
        )));
        assert!(a.iter().all(|ip| !b.contains(ip)));
        let v6 = answer(stub.handle_query(
            &query(3, "a.corp.example.", RecordType::AAAA),
            Instant::now(),
        ));
        assert_eq!(v6.answers.len(), PROXY_IPS_PER_NAME);
        let proxy = stub.lookup_proxy_ip(IpAddr::V4(b[0])).unwrap();
        assert_eq!(proxy.resource_id.as_deref(), Some("corp"));
    }

    #[test]
    fn the_most_specific_resource_wins() {
        let mut stub = stub();
        let ips = a_records(&answer(stub.handle_query(
            &query(1, "fra.eu.corp.example.", RecordType::A),
            Instant::now(),
        )));
        assert_eq!(
            stub.lookup_proxy_ip(IpAddr::V4(ips[0]))
                .unwrap()
                .resource_id
                .as_deref(),
            Some("eu")
        );
    }

    #[test]
    fn other_names_are_forwarded_untouched() {
        let mut stub = stub();
        assert_eq!(
            stub.handle_query(&query(1, "example.org.", RecordType::A), Instant::now()),
            Outcome::Forward
        );
        assert_eq!(
            stub.handle_query(&query(1, "corp.example.", RecordType::A), Instant::now()),
            Outcome::Forward
        );
    }

    #[test]
    fn other_record_types_of_a_resource_name_get_an_empty_answer_not_forwarded() {
        let mut stub = stub();
        let reply = answer(stub.handle_query(
            &query(1, "db.corp.example.", RecordType::MX),
            Instant::now(),
        ));
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
    }

    #[test]
    fn garbage_gets_a_format_error_or_is_dropped_never_a_panic() {
        let mut stub = stub();
        assert_eq!(stub.handle_query(&[], Instant::now()), Outcome::Drop);
        assert_eq!(stub.handle_query(&[1, 2, 3], Instant::now()), Outcome::Drop);
        let mut truncated = query(99, "db.corp.example.", RecordType::A);
        truncated.truncate(20);
        let reply = answer(stub.handle_query(&truncated, Instant::now()));
        assert_eq!(
            (reply.metadata.id, reply.metadata.response_code),
            (99, ResponseCode::FormErr)
        );
        for seed in 0..2000u32 {
            let bytes: Vec<u8> = (0..(seed % 80))
                .map(|i| (seed.wrapping_mul(2654435761) >> (i % 24)) as u8)
                .collect();
            let _ = stub.handle_query(&bytes, Instant::now());
        }
    }

    #[test]
    fn a_removed_resource_is_no_longer_answered() {
        let mut stub = stub();
        let ips = a_records(&answer(
            stub.handle_query(&query(1, "db.corp.example.", RecordType::A), Instant::now()),
        ));
        stub.set_resources(vec![]);
        assert_eq!(
            stub.handle_query(&query(2, "db.corp.example.", RecordType::A), Instant::now()),
            Outcome::Forward
        );
        let proxy = stub.lookup_proxy_ip(IpAddr::V4(ips[0])).unwrap();
        assert_eq!(
            proxy.resource_id, None,
            "traffic to the old proxy IPs leads nowhere"
        );
    }

    #[test]
    fn exhausted_ranges_answer_servfail() {
        let mut stub = StubResolver::new(ProxyRanges {
            ipv4: (Ipv4Addr::new(100, 96, 0, 0), 30),
            ipv6: (Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 126),
        });
        stub.set_resources(vec![DnsResource {
            id: "c".into(),
            pattern: "*.corp.example".parse().unwrap(),
        }]);
        let first =
            answer(stub.handle_query(&query(1, "a.corp.example.", RecordType::A), Instant::now()));
        assert_eq!(first.answers.len(), 4);
        let second =
            answer(stub.handle_query(&query(2, "b.corp.example.", RecordType::A), Instant::now()));
        assert_eq!(second.metadata.response_code, ResponseCode::ServFail);
    }
}

#[cfg(test)]
mod eviction {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;

    fn wildcard() -> StubResolver {
        let mut stub = StubResolver::new(ProxyRanges::default());
        stub.set_resources(vec![DnsResource {
            id: "corp".into(),
            pattern: "*.corp.example".parse().unwrap(),
        }]);
        stub
    }

    fn ask(stub: &mut StubResolver, name: &str, now: Instant) -> Vec<Ipv4Addr> {
        let mut message = Message::query();
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let Outcome::Answer(bytes) = stub.handle_query(&message.to_vec().unwrap(), now) else {
            panic!("no answer for {name}");
        };
        Message::from_vec(&bytes)
            .unwrap()
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn unused_wildcard_names_are_evicted_but_live_ones_kept() {
        let mut stub = wildcard();
        let start = Instant::now();
        let live = ask(&mut stub, "live.corp.example.", start);
        let asked = ask(&mut stub, "asked.corp.example.", start);
        // A flood of names nobody uses again.
        for i in 0..MAX_NAMES - 2 {
            ask(&mut stub, &format!("n{i}.corp.example."), start);
        }
        assert_eq!(stub.names(), MAX_NAMES);
        // Traffic keeps one name alive, a repeated query the other.
        let mut now = start;
        while now < start + NAME_IDLE + Duration::from_secs(60) {
            now += Duration::from_secs(30);
            stub.handle_traffic(IpAddr::V4(live[0]), now);
            assert_eq!(ask(&mut stub, "asked.corp.example.", now), asked);
        }
        // The next new name sweeps out every idle one.
        ask(&mut stub, "new.corp.example.", now);
        assert_eq!(stub.names(), 3);
        assert_eq!(ask(&mut stub, "live.corp.example.", now), live);
        let proxy = stub.lookup_proxy_ip(IpAddr::V4(live[0])).unwrap();
        assert_eq!(proxy.name, "live.corp.example");
        assert!(stub.proxy_ips_of("n7.corp.example").is_none());
    }

    #[test]
    fn at_the_cap_a_name_in_use_is_never_displaced() {
        let mut stub = wildcard();
        let start = Instant::now();
        for i in 0..MAX_NAMES {
            ask(&mut stub, &format!("n{i}.corp.example."), start);
        }
        // Everything is fresh: the newcomer gets SERVFAIL, nobody loses an address.
        let mut message = Message::query();
        message.add_query(Query::query(
            Name::from_ascii("late.corp.example.").unwrap(),
            RecordType::A,
        ));
        let Outcome::Answer(bytes) = stub.handle_query(&message.to_vec().unwrap(), start) else {
            panic!("no answer");
        };
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        // After a minute the least recently used name makes room, its block reused.
        let first = stub.proxy_ips_of("n0.corp.example").unwrap().ipv4.clone();
        for i in 1..MAX_NAMES {
            stub.handle_traffic(
                IpAddr::V4(
                    stub.proxy_ips_of(&format!("n{i}.corp.example"))
                        .unwrap()
                        .ipv4[0],
                ),
                start + NAME_MIN_IDLE,
            );
        }
        let late = ask(&mut stub, "late.corp.example.", start + NAME_MIN_IDLE);
        assert_eq!(late, first);
        assert!(stub.proxy_ips_of("n0.corp.example").is_none());
        assert_eq!(stub.names(), MAX_NAMES);
    }
}
