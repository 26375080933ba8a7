//! Resolving DNS resources on the client's behalf: the system resolver (getaddrinfo: hosts
//! file, resolv.conf, nsswitch), or the DNS servers given with `--resolver`, asked over UDP
//! for A and AAAA records.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, RecordType};
use rand::Rng as _;
use tokio::net::UdpSocket;

/// How long one DNS server (or the system resolver) may take.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
}

impl Resolver {
    /// No servers: the system resolver.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Self { servers }
    }

    /// The IPv4 and IPv6 addresses of `domain`, sorted, without duplicates. An error when
    /// nothing answered or the name has no address.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<IpAddr>> {
        let addresses = if self.servers.is_empty() {
            system(domain).await?
        } else {
            let mut last_error = anyhow!("no DNS server configured");
            let mut found = None;
            for server in &self.servers {
                match ask(*server, domain).await {
                    Ok(addresses) => {
                        found = Some(addresses);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%server, "DNS server failed: {e:#}");
                        last_error = e;
                    }
                }
            }
            found.ok_or(last_error)?
        };
        if addresses.is_empty() {
            bail!("{domain} has no IPv4 or IPv6 address");
        }
        Ok(addresses)
    }
}

async fn system(domain: &str) -> Result<Vec<IpAddr>> {
    let found = tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((domain, 0)))
        .await
        .map_err(|_| anyhow!("the system resolver did not answer within {TIMEOUT:?}"))?
        .with_context(|| format!("cannot resolve {domain}"))?;
    let unique: BTreeSet<IpAddr> = found.map(|a| a.ip()).collect();
    Ok(unique.into_iter().collect())
}

/// Asks one server for A and AAAA at once; both answers (or errors) within the timeout.
async fn ask(server: SocketAddr, domain: &str) -> Result<Vec<IpAddr>> {
    let mut name =
        Name::from_ascii(domain).with_context(|| format!("`{domain}` is not a DNS name"))?;
    name.set_fqdn(true);
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .context("cannot open a UDP socket")?;
    socket
        .connect(server)
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let mut pending = Vec::new();
    for kind in [RecordType::A, RecordType::AAAA] {
        let id: u16 = rand::rng().random();
        let mut query = Message::query();
        query.metadata.id = id;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), kind));
        let bytes = query.to_vec().context("cannot encode a DNS query")?;
        socket
            .send(&bytes)
            .await
            .with_context(|| format!("cannot send to {server}"))?;
        pending.push(id);
    }
    let mut addresses = BTreeSet::new();
    let mut buffer = vec![0u8; 4096];
    let collect = async {
        while !pending.is_empty() {
            let len = socket
                .recv(&mut buffer)
                .await
                .with_context(|| format!("no answer from {server}"))?;
            // Anything that is not an answer to one of our two questions is ignored.
            let Ok(answer) = Message::from_vec(&buffer[..len]) else {
                continue;
            };
            let Some(index) = pending.iter().position(|id| *id == answer.metadata.id) else {
                continue;
            };
            if answer.metadata.message_type != MessageType::Response
                || !answer.queries.iter().any(|q| *q.name() == name)
            {
                continue;
            }
            pending.swap_remove(index);
            match answer.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => {}
                code => bail!("{server} answered {code}"),
            }
            for record in &answer.answers {
                match &record.data {
                    RData::A(A(ip)) => {
                        addresses.insert(IpAddr::V4(*ip));
                    }
                    RData::AAAA(AAAA(ip)) => {
                        addresses.insert(IpAddr::V6(*ip));
                    }
                    _ => {}
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::time::timeout(TIMEOUT, collect)
        .await
        .map_err(|_| anyhow!("{server} did not answer within {TIMEOUT:?}"))??;
    Ok(addresses.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::Record;

    use super::*;

    /// A DNS server on loopback that knows one name, answering over real UDP.
    async fn tiny_server(v4: Ipv4Addr, v6: Ipv6Addr) -> SocketAddr {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let (len, from) = socket.recv_from(&mut buffer).await.unwrap();
                let query = Message::from_vec(&buffer[..len]).unwrap();
                let question = query.queries[0].clone();
                let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                answer.add_query(question.clone());
                let known = question.name().to_ascii() == "web.corp.example.";
                if !known {
                    answer.metadata.response_code = ResponseCode::NXDomain;
                } else {
                    let data = match question.query_type() {
                        RecordType::A => RData::A(A(v4)),
                        _ => RData::AAAA(AAAA(v6)),
                    };
                    answer.add_answer(Record::from_rdata(question.name().clone(), 60, data));
                }
                socket
                    .send_to(&answer.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_configured_server_gives_both_families() {
        let v4 = Ipv4Addr::new(10, 77, 0, 10);
        let v6: Ipv6Addr = "fd77::10".parse().unwrap();
        let server = tiny_server(v4, v6).await;
        let resolver = Resolver::new(vec![server]);
        let found = resolver.resolve("web.corp.example").await.unwrap();
        assert_eq!(found, vec![IpAddr::V4(v4), IpAddr::V6(v6)]);
        let missing = resolver.resolve("nothing.corp.example").await;
        assert!(missing.is_err());
    }

    #[tokio::test]
    async fn a_silent_server_is_skipped_for_the_next_one() {
        // Bound but never answering.
        let silent = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let v4 = Ipv4Addr::new(10, 77, 0, 20);
        let good = tiny_server(v4, "fd77::20".parse().unwrap()).await;
        let resolver = Resolver::new(vec![silent.local_addr().unwrap(), good]);
        let found = resolver.resolve("web.corp.example").await.unwrap();
        assert!(found.contains(&IpAddr::V4(v4)));
    }

    #[tokio::test]
    async fn the_system_resolver_reads_the_hosts_file() {
        let found = Resolver::new(Vec::new())
            .resolve("localhost")
            .await
            .unwrap();
        assert!(found.iter().all(|ip| ip.is_loopback()), "{found:?}");
        assert!(!found.is_empty());
    }
}
