//! Pointing the system's DNS at the stub resolver while signed in, and back: on stop and, after
//! a crash, at the next start.

#[cfg(unix)]
use std::net::IpAddr;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(any(target_os = "macos", all(test, unix)))]
mod resolver_files;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod unsupported;
#[cfg(windows)]
mod windows;
#[cfg(any(windows, test))]
mod windows_nrpt;

#[cfg(target_os = "linux")]
pub use linux::*;
#[cfg(target_os = "macos")]
pub use macos::*;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub use unsupported::*;
#[cfg(windows)]
pub use windows::*;

/// The suffix the system should send to the stub for a resource pattern (a routing domain
/// for systemd-resolved, a resolver file on macOS, an NRPT rule on Windows): the labels
/// after the last wildcard (`*.corp.example`, `db.?.corp.example` → `corp.example`).
#[cfg_attr(
    not(any(target_os = "linux", target_os = "macos", windows, test)),
    expect(dead_code, reason = "no DNS configuration uses it on this OS")
)]
pub(crate) fn routing_domain(pattern: &str) -> Option<String> {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = pattern.split('.').collect();
    let after = labels
        .iter()
        .rposition(|l| *l == "*" || *l == "?")
        .map_or(0, |i| i + 1);
    let suffix = labels.get(after..)?.join(".");
    (!suffix.is_empty()).then_some(suffix)
}

/// The `nameserver` addresses of a resolv.conf (scoped IPv6 addresses are skipped); Linux
/// and macOS read their upstream resolvers from one.
#[cfg(unix)]
pub(crate) fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_domains_are_the_fixed_suffix_of_a_pattern() {
        assert_eq!(
            routing_domain("db.corp.example").as_deref(),
            Some("db.corp.example")
        );
        assert_eq!(
            routing_domain("*.corp.example").as_deref(),
            Some("corp.example")
        );
        assert_eq!(
            routing_domain("db.?.corp.example").as_deref(),
            Some("corp.example")
        );
        assert_eq!(
            routing_domain("?.Corp.Example.").as_deref(),
            Some("corp.example")
        );
    }
}
