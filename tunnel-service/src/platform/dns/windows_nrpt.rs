//! What Ember writes for Windows DNS, as plain data: the NRPT rule that sends resource names to
//! the stub, the `netsh` arguments that make the stub the tunnel interface's resolver, and the
//! state file that remembers the rule across a crash. Pure, so it is tested on every OS; the
//! registry writes are in `windows.rs`.
//!
//! Why registry writes and not PowerShell's `Add-DnsClientNrptRule`: the rule is one key with
//! six values, written in microseconds without starting a PowerShell (a second or more, and
//! blocked or constrained on locked-down machines); the key's name is Ember's own, so finding
//! and removing Ember's rule after a crash needs no parsing of another tool's output.

#![cfg_attr(
    not(windows),
    allow(dead_code, reason = "compiled elsewhere only for its tests")
)]

use std::net::IpAddr;

use super::routing_domain;

/// Where the DNS client reads locally configured NRPT rules (not the Group Policy key, which
/// belongs to the domain's administrators).
pub const NRPT_PARENT: &str =
    r"SYSTEM\CurrentControlSet\Services\Dnscache\Parameters\DnsPolicyConfig";

/// Ember's rule: a fixed GUID-shaped key name no other program uses (`656d6265-72` is "ember").
pub const RULE_KEY: &str = "{656d6265-7200-4e52-5054-72756c650001}";

/// The `Comment` value on Ember's rule; a key under [`NRPT_PARENT`] is removed as Ember's only
/// when it has both Ember's name and this comment.
pub const RULE_COMMENT: &str = "Ember tunnel: resource names go to Ember's DNS resolver";

/// The state file that says Ember's rule exists (written before the rule, removed after it).
pub const STATE_FILE: &str = "nrpt-rule";

/// What the state file holds: the registry key of the rule, for a person reading the folder.
pub fn state_file_contents() -> String {
    format!("HKLM\\{NRPT_PARENT}\\{RULE_KEY}\n")
}

/// `ConfigOptions`: the rule names DNS servers of its own (`GenericDNSServers`).
const CONFIG_OPTIONS_GENERIC_SERVERS: u32 = 0x8;
/// The rule format the DNS client reads.
const RULE_VERSION: u32 = 2;

/// A registry value of the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Dword(u32),
    Sz(String),
    MultiSz(Vec<String>),
}

/// The NRPT namespaces for resource patterns: an exact name as itself, a wildcard pattern as the
/// suffix after its last wildcard with a leading dot (the NRPT form of "any name below").
/// Sorted, without duplicates; empty when no pattern names anything.
pub fn namespaces(patterns: &[String]) -> Vec<String> {
    let mut names: Vec<String> = patterns
        .iter()
        .filter_map(|pattern| {
            let domain = routing_domain(pattern)?;
            let exact = pattern.trim_end_matches('.').eq_ignore_ascii_case(&domain);
            Some(if exact { domain } else { format!(".{domain}") })
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The values of Ember's rule: `namespaces` go to `servers` (the stub's sentinel addresses).
pub fn rule_values(namespaces: &[String], servers: &[IpAddr]) -> Vec<(&'static str, Value)> {
    let servers = servers
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(";");
    vec![
        ("Version", Value::Dword(RULE_VERSION)),
        ("Name", Value::MultiSz(namespaces.to_vec())),
        (
            "ConfigOptions",
            Value::Dword(CONFIG_OPTIONS_GENERIC_SERVERS),
        ),
        ("GenericDNSServers", Value::Sz(servers)),
        ("IPSECCARestriction", Value::Sz(String::new())),
        ("Comment", Value::Sz(RULE_COMMENT.into())),
        ("DisplayName", Value::Sz("Ember".into())),
    ]
}

/// Whether a key found under [`NRPT_PARENT`] is Ember's rule, so recovery may delete it.
pub fn is_ember_rule(key_name: &str, comment: Option<&str>) -> bool {
    key_name.eq_ignore_ascii_case(RULE_KEY) && comment == Some(RULE_COMMENT)
}

/// `netsh` invocations that make `servers` the static resolvers of `interface` (the tunnel),
/// one family at a time: the first address replaces the list, the others are added. Names are
/// not registered in DNS through the tunnel, and the servers are not probed (the stub only
/// answers once the tunnel runs).
pub fn interface_dns_commands(interface: &str, servers: &[IpAddr]) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let of_family = servers.iter().filter(|ip| match family {
            "ipv4" => ip.is_ipv4(),
            _ => ip.is_ipv6(),
        });
        for (i, server) in of_family.enumerate() {
            let mut args: Vec<String> = vec!["interface".into(), family.into()];
            if i == 0 {
                args.extend([
                    "set".into(),
                    "dnsservers".into(),
                    format!("name={interface}"),
                    "source=static".into(),
                    format!("address={server}"),
                    "register=none".into(),
                    "validate=no".into(),
                ]);
            } else {
                args.extend([
                    "add".into(),
                    "dnsservers".into(),
                    format!("name={interface}"),
                    format!("address={server}"),
                    format!("index={}", i + 1),
                    "validate=no".into(),
                ]);
            }
            commands.push(args);
        }
    }
    commands
}

/// A DNS server an adapter lists, as `GetAdaptersAddresses` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterResolver {
    pub adapter: String,
    pub up: bool,
    pub server: IpAddr,
}

/// The resolvers the stub forwards other names to: those of the adapters that are up, never the
/// tunnel's own (its resolver is the stub), never the stub's addresses, never the
/// `fec0:0:0:ffff::1-3` placeholders Windows lists on adapters without IPv6 DNS. In the order
/// Windows lists them, each once.
pub fn upstream_resolvers(found: &[AdapterResolver], tunnel: &str, stub: &[IpAddr]) -> Vec<IpAddr> {
    let mut upstream: Vec<IpAddr> = Vec::new();
    for resolver in found {
        let server = resolver.server;
        let placeholder = matches!(server, IpAddr::V6(v6)
            if v6.segments()[..4] == [0xfec0, 0, 0, 0xffff]);
        if !resolver.up
            || resolver.adapter == tunnel
            || stub.contains(&server)
            || placeholder
            || server.is_unspecified()
            || upstream.contains(&server)
        {
            continue;
        }
        upstream.push(server);
    }
    upstream
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn exact_names_stay_exact_and_wildcards_become_suffixes() {
        let patterns = strings(&[
            "db.corp.example",
            "*.corp.example",
            "db.?.Corp.Example.",
            "*.lab.example",
            "*",
        ]);
        assert_eq!(
            namespaces(&patterns),
            strings(&[".corp.example", ".lab.example", "db.corp.example"])
        );
    }

    #[test]
    fn no_patterns_means_no_namespaces() {
        assert!(namespaces(&[]).is_empty());
        assert!(namespaces(&strings(&["*", "?"])).is_empty());
    }

    #[test]
    fn the_rule_sends_its_namespaces_to_the_stub_and_says_it_is_embers() {
        let servers: Vec<IpAddr> = vec![
            "100.100.111.1".parse().unwrap(),
            "fd00:2021:1111:8000:100:100:111:1".parse().unwrap(),
        ];
        let values = rule_values(&strings(&[".corp.example"]), &servers);
        let get = |name: &str| {
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("Version"), Value::Dword(2));
        assert_eq!(get("ConfigOptions"), Value::Dword(8));
        assert_eq!(get("Name"), Value::MultiSz(strings(&[".corp.example"])));
        assert_eq!(
            get("GenericDNSServers"),
            Value::Sz("100.100.111.1;fd00:2021:1111:8000:100:100:111:1".into())
        );
        assert_eq!(get("IPSECCARestriction"), Value::Sz(String::new()));
        assert_eq!(get("Comment"), Value::Sz(RULE_COMMENT.into()));
    }

    #[test]
    fn the_stub_never_forwards_to_itself_or_through_the_tunnel() {
        let found = |adapter: &str, up: bool, server: &str| AdapterResolver {
            adapter: adapter.into(),
            up,
            server: server.parse().unwrap(),
        };
        let stub: IpAddr = "100.100.111.1".parse().unwrap();
        let upstream = upstream_resolvers(
            &[
                found("ember0", true, "100.100.111.1"),
                found("ember0", true, "192.0.2.99"),
                found("Wi-Fi", true, "192.168.1.1"),
                found("Wi-Fi", true, "fec0:0:0:ffff::1"),
                found("Ethernet", false, "10.0.0.53"),
                found("Ethernet 2", true, "2001:db8::53"),
                found("Ethernet 3", true, "192.168.1.1"),
                found("Leftover", true, "100.100.111.1"),
            ],
            "ember0",
            &[stub],
        );
        assert_eq!(
            upstream,
            vec![
                "192.168.1.1".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_state_file_names_the_rules_key() {
        assert_eq!(
            state_file_contents(),
            "HKLM\\SYSTEM\\CurrentControlSet\\Services\\Dnscache\\Parameters\\DnsPolicyConfig\\\
             {656d6265-7200-4e52-5054-72756c650001}\n"
        );
    }

    #[test]
    fn recovery_never_deletes_a_rule_that_is_not_embers() {
        assert!(is_ember_rule(RULE_KEY, Some(RULE_COMMENT)));
        assert!(is_ember_rule(&RULE_KEY.to_uppercase(), Some(RULE_COMMENT)));
        // Another program's rule, even one that copied the comment or the name.
        assert!(!is_ember_rule(
            "{00000000-0000-0000-0000-000000000000}",
            Some(RULE_COMMENT)
        ));
        assert!(!is_ember_rule(RULE_KEY, Some("corporate VPN")));
        assert!(!is_ember_rule(RULE_KEY, None));
    }

    #[test]
    fn the_stub_becomes_the_tunnels_resolver_for_each_family() {
        let servers: Vec<IpAddr> = vec![
            "100.100.111.1".parse().unwrap(),
            "100.100.111.2".parse().unwrap(),
            "fd00::1".parse().unwrap(),
        ];
        let commands = interface_dns_commands("ember0", &servers);
        assert_eq!(
            commands,
            vec![
                strings(&[
                    "interface",
                    "ipv4",
                    "set",
                    "dnsservers",
                    "name=ember0",
                    "source=static",
                    "address=100.100.111.1",
                    "register=none",
                    "validate=no"
                ]),
                strings(&[
                    "interface",
                    "ipv4",
                    "add",
                    "dnsservers",
                    "name=ember0",
                    "address=100.100.111.2",
                    "index=2",
                    "validate=no"
                ]),
                strings(&[
                    "interface",
                    "ipv6",
                    "set",
                    "dnsservers",
                    "name=ember0",
                    "source=static",
                    "address=fd00::1",
                    "register=none",
                    "validate=no"
                ]),
            ]
        );
    }
}
