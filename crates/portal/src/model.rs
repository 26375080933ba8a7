//! The portal's model in memory: a [`Snapshot`] of accounts, users, groups, sites, resources,
//! policies and gateways, loaded from the store and replaced whole when the store's generation
//! changes. Policy evaluation is a pure function of a snapshot.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ember_protocol::portal::{
    AccountInfo, ActorInfo, DenialReason, Filter, FilterProtocol, PortRange, Resource,
    ResourceAddress, SiteInfo, dns_pattern_matches,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid resource address `{address}`: {reason}")]
    InvalidAddress { address: String, reason: String },
    #[error(
        "invalid filter `{filter}`: expected tcp, udp or icmp, optionally with /PORT or /FIRST-LAST"
    )]
    InvalidFilter { filter: String },
}

/// Parses a resource address as an administrator writes it: `internet`, a CIDR, an IP
/// address, or a DNS name or pattern (`db.corp.example`, `*.corp.example`, `?.corp.example`).
pub fn parse_address(address: &str) -> Result<ResourceAddress, ModelError> {
    let address = address.trim();
    let invalid = |reason: &str| ModelError::InvalidAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    if address.eq_ignore_ascii_case("internet") {
        return Ok(ResourceAddress::Internet);
    }
    if address.contains('/') {
        let net: ipnet::IpNet = address
            .parse()
            .map_err(|_| invalid("not a valid CIDR range"))?;
        return Ok(ResourceAddress::Cidr {
            cidr: net.trunc().to_string(),
        });
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(ResourceAddress::Ip { ip });
    }
    let pattern = address.trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || pattern.len() > 253 {
        return Err(invalid("a DNS name has 1 to 253 characters"));
    }
    let labels: Vec<&str> = pattern.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        let ok = match *label {
            "*" => i == 0 && labels.len() > 1,
            "?" => true,
            l => {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
        };
        if !ok {
            return Err(invalid(
                "labels are letters, digits, `-` and `_`; `*` only as the whole first label, `?` only as a whole label",
            ));
        }
    }
    Ok(ResourceAddress::Dns { pattern })
}

/// Parses `tcp`, `udp/53`, `tcp/8000-8100`, `icmp`.
pub fn parse_filter(filter: &str) -> Result<Filter, ModelError> {
    let invalid = || ModelError::InvalidFilter {
        filter: filter.to_owned(),
    };
    let (protocol, ports) = match filter.trim().split_once('/') {
        Some((p, ports)) => (p, Some(ports)),
        None => (filter.trim(), None),
    };
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => FilterProtocol::Tcp,
        "udp" => FilterProtocol::Udp,
        "icmp" => FilterProtocol::Icmp,
        _ => return Err(invalid()),
    };
    let ports = match ports {
        None => None,
        Some(_) if protocol == FilterProtocol::Icmp => return Err(invalid()),
        Some(ports) => {
            let (start, end) = ports.split_once('-').unwrap_or((ports, ports));
            let start: u16 = start.parse().map_err(|_| invalid())?;
            let end: u16 = end.parse().map_err(|_| invalid())?;
            if start == 0 || end < start {
                return Err(invalid());
            }
            Some(PortRange { start, end })
        }
    };
    Ok(Filter { protocol, ports })
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub name: String,
    pub disabled: bool,
    /// A service account: never signs in interactively (see `store::UserKind`).
    pub service: bool,
    pub groups: Vec<String>,
}

impl UserRecord {
    pub fn actor(&self) -> ActorInfo {
        ActorInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SiteRecord {
    pub account_id: String,
    pub info: SiteInfo,
}

#[derive(Debug, Clone)]
pub struct ResourceRecord {
    pub account_id: String,
    pub site_id: String,
    pub resource: Resource,
}

#[derive(Debug, Clone)]
pub struct GatewayRecord {
    pub id: String,
    pub account_id: String,
    pub site_id: String,
    pub name: String,
}

/// Everything policy evaluation needs, as of one store generation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: i64,
    pub accounts: HashMap<String, AccountInfo>,
    pub users: HashMap<String, UserRecord>,
    pub sites: HashMap<String, SiteRecord>,
    pub resources: HashMap<String, ResourceRecord>,
    /// group id → resource ids.
    pub policies: HashMap<String, Vec<String>>,
    pub gateways: HashMap<String, GatewayRecord>,
    /// Ids of tokens that were revoked.
    pub revoked_tokens: HashSet<String>,
}

impl Snapshot {
    /// Resource ids a user may see and use, in a stable order.
    pub fn visible_resource_ids(&self, user_id: &str) -> BTreeSet<String> {
        let Some(user) = self.users.get(user_id) else {
            return BTreeSet::new();
        };
        if user.disabled {
            return BTreeSet::new();
        }
        user.groups
            .iter()
            .filter_map(|g| self.policies.get(g))
            .flatten()
            .filter(|r| {
                self.resources
                    .get(*r)
                    .is_some_and(|rec| rec.account_id == user.account_id)
            })
            .cloned()
            .collect()
    }

    /// The resources a user sees, sorted by name.
    pub fn visible_resources(&self, user_id: &str) -> Vec<Resource> {
        let mut resources: Vec<Resource> = self
            .visible_resource_ids(user_id)
            .iter()
            .filter_map(|id| self.resources.get(id))
            .map(|r| r.resource.clone())
            .collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        resources
    }

    /// Policy check for an access request. `Ok` carries the resource.
    pub fn evaluate_access(
        &self,
        user_id: &str,
        resource_id: &str,
        domain: Option<&str>,
    ) -> Result<&ResourceRecord, (DenialReason, String)> {
        let user = self.users.get(user_id);
        let resource = self
            .resources
            .get(resource_id)
            .filter(|r| user.is_some_and(|u| u.account_id == r.account_id));
        let Some(resource) = resource else {
            return Err((
                DenialReason::NotFound,
                "there is no such resource in this account".into(),
            ));
        };
        if !self.visible_resource_ids(user_id).contains(resource_id) {
            return Err((
                DenialReason::Forbidden,
                format!("no policy gives you access to {}", resource.resource.name),
            ));
        }
        if let ResourceAddress::Dns { pattern } = &resource.resource.address {
            match domain {
                Some(domain) if dns_pattern_matches(pattern, domain) => {}
                Some(_) => {
                    return Err((
                        DenialReason::InvalidDomain,
                        format!("the name does not match `{pattern}`"),
                    ));
                }
                None => {
                    return Err((
                        DenialReason::InvalidDomain,
                        "a DNS resource needs the name that was looked up".into(),
                    ));
                }
            }
        }
        Ok(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for acc in ["acc_a", "acc_b"] {
            s.accounts.insert(
                acc.into(),
                AccountInfo {
                    id: acc.into(),
                    slug: acc.into(),
                    name: acc.into(),
                },
            );
        }
        let user = |id: &str, account: &str, groups: &[&str], disabled: bool| UserRecord {
            id: id.into(),
            account_id: account.into(),
            email: format!("{id}@example.com"),
            name: id.into(),
            disabled,
            service: false,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        s.users
            .insert("ada".into(), user("ada", "acc_a", &["eng"], false));
        s.users
            .insert("bob".into(), user("bob", "acc_a", &["sales"], false));
        s.users
            .insert("eve".into(), user("eve", "acc_b", &["eng_b"], false));
        s.users
            .insert("old".into(), user("old", "acc_a", &["eng"], true));
        let site = SiteInfo {
            id: "site".into(),
            name: "Berlin".into(),
        };
        for (id, account, address) in [
            ("db", "acc_a", "*.db.corp.example"),
            ("lan", "acc_a", "10.0.0.0/24"),
            ("crm", "acc_a", "crm.corp.example"),
            ("other", "acc_b", "10.1.0.0/24"),
        ] {
            s.resources.insert(
                id.into(),
                ResourceRecord {
                    account_id: account.into(),
                    site_id: "site".into(),
                    resource: Resource {
                        id: id.into(),
                        name: id.to_uppercase(),
                        address: parse_address(address).unwrap(),
                        address_description: None,
                        site: site.clone(),
                        filters: vec![],
                    },
                },
            );
        }
        s.policies
            .insert("eng".into(), vec!["db".into(), "lan".into()]);
        s.policies.insert("sales".into(), vec!["crm".into()]);
        // A policy that (wrongly) points across accounts must not leak.
        s.policies
            .insert("eng_b".into(), vec!["other".into(), "lan".into()]);
        s
    }

    #[test]
    fn users_see_exactly_the_resources_of_their_groups_policies() {
        let s = snapshot();
        let names = |u: &str| {
            s.visible_resources(u)
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("ada"), ["db", "lan"]);
        assert_eq!(names("bob"), ["crm"]);
        assert_eq!(names("eve"), ["other"]);
        assert!(names("old").is_empty(), "disabled users see nothing");
        assert!(names("nobody").is_empty());
    }

    #[test]
    fn access_is_denied_with_the_specific_reason() {
        let s = snapshot();
        assert!(s.evaluate_access("ada", "lan", None).is_ok());
        assert_eq!(
            s.evaluate_access("bob", "lan", None).unwrap_err().0,
            DenialReason::Forbidden
        );
        assert_eq!(
            s.evaluate_access("ada", "nope", None).unwrap_err().0,
            DenialReason::NotFound
        );
        assert_eq!(
            s.evaluate_access("ada", "other", None).unwrap_err().0,
            DenialReason::NotFound,
            "another account's resource does not exist for this user"
        );
        assert_eq!(
            s.evaluate_access("old", "lan", None).unwrap_err().0,
            DenialReason::Forbidden
        );
    }

    #[test]
    fn dns_resources_need_a_matching_name() {
        let s = snapshot();
        assert!(
            s.evaluate_access("ada", "db", Some("eu.db.corp.example"))
                .is_ok()
        );
        assert_eq!(
            s.evaluate_access("ada", "db", Some("db.corp.example"))
                .unwrap_err()
                .0,
            DenialReason::InvalidDomain
        );
        assert_eq!(
            s.evaluate_access("ada", "db", None).unwrap_err().0,
            DenialReason::InvalidDomain
        );
    }

    #[test]
    fn addresses_parse_into_their_kinds() {
        assert_eq!(
            parse_address("internet").unwrap(),
            ResourceAddress::Internet
        );
        assert_eq!(
            parse_address("10.0.0.7/24").unwrap(),
            ResourceAddress::Cidr {
                cidr: "10.0.0.0/24".into()
            }
        );
        assert!(matches!(
            parse_address("fd00::1").unwrap(),
            ResourceAddress::Ip { .. }
        ));
        assert_eq!(
            parse_address("*.Corp.Example.").unwrap(),
            ResourceAddress::Dns {
                pattern: "*.corp.example".into()
            }
        );
        for bad in [
            "10.0.0.0/33",
            "a.*.example",
            "*",
            "a..b",
            "bad name",
            "x*.corp.example",
            "",
        ] {
            assert!(parse_address(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn filters_parse_protocols_and_port_ranges() {
        assert_eq!(
            parse_filter("tcp/8000-8100").unwrap(),
            Filter {
                protocol: FilterProtocol::Tcp,
                ports: Some(PortRange {
                    start: 8000,
                    end: 8100
                })
            }
        );
        assert_eq!(parse_filter("icmp").unwrap().ports, None);
        for bad in ["icmp/1", "tcp/0", "tcp/90-80", "sctp", "udp/70000", "tcp/"] {
            assert!(parse_filter(bad).is_err(), "{bad} should be rejected");
        }
    }
}
