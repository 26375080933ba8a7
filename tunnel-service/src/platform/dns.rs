//! Pointing the system's DNS at the stub resolver while signed in, and back: on stop and, after
//! a crash, at the next start.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(any(target_os = "linux", windows)))]
mod unsupported;
#[cfg(windows)]
mod windows;
#[cfg(any(windows, test))]
mod windows_nrpt;

#[cfg(target_os = "linux")]
pub use linux::*;
#[cfg(not(any(target_os = "linux", windows)))]
pub use unsupported::*;
#[cfg(windows)]
pub use windows::*;

/// The suffix the system should send to the stub for a resource pattern (a routing domain
/// for systemd-resolved, a resolver file on macOS, an NRPT rule on Windows): the labels
/// after the last wildcard (`*.corp.example`, `db.?.corp.example` → `corp.example`).
#[cfg_attr(
    not(any(target_os = "linux", windows, test)),
    expect(
        dead_code,
        reason = "macOS resolver files and Windows NRPT rules come next"
    )
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
