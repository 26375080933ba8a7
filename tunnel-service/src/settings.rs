//! The settings the service owns: which portal it trusts and how much it logs.
//!
//! Kept in `settings.json` in the state folder, readable by root only, replaced atomically so
//! a crash mid-write never leaves a half-written file.

use std::io;
use std::path::{Path, PathBuf};

use ember_protocol::ipc::{IpcError, ServiceSettings};

/// The portal `ember-portal --demo` serves on this machine.
pub const DEFAULT_PORTAL_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_LOG_FILTER: &str = "info";
const MAX_LOG_FILTER_LEN: usize = 1024;
const MAX_URL_LEN: usize = 2048;

pub fn defaults() -> ServiceSettings {
    ServiceSettings {
        portal_url: DEFAULT_PORTAL_URL.to_owned(),
        log_filter: DEFAULT_LOG_FILTER.to_owned(),
    }
}

/// The settings used until the user saves their own: [`defaults`], with the portal URL the
/// installer was given (`msiexec … PORTAL_URL=…`) when there is one. An installed URL that is
/// not valid is ignored, and the reason returned for the log.
pub fn defaults_with_installed(
    installed_portal_url: Option<&str>,
    plain_http: &PlainHttpPortals,
) -> (ServiceSettings, Option<String>) {
    let mut settings = defaults();
    let Some(url) = installed_portal_url
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return (settings, None);
    };
    let candidate = ServiceSettings {
        portal_url: url.to_owned(),
        ..settings.clone()
    };
    let checked = validate(&candidate)
        .map_err(|e| e.to_string())
        .and_then(|()| plain_http.permit_str(url).map_err(|e| e.to_string()));
    match checked {
        Ok(()) => {
            settings = candidate;
            (settings, None)
        }
        Err(e) => (
            settings,
            Some(format!(
                "ignoring the portal URL the installer was given: {e}"
            )),
        ),
    }
}

/// Where a portal may be reached over plain `http`: loopback always (`ember-portal --demo` on
/// this machine), and the networks the administrator names with `--allow-http-portal` (the
/// test worlds). Everywhere else the token and the sign-in secret travel only over TLS.
#[derive(Debug, Clone, Default)]
pub struct PlainHttpPortals {
    networks: Vec<ipnet::IpNet>,
}

impl PlainHttpPortals {
    pub fn new(networks: Vec<ipnet::IpNet>) -> Self {
        Self { networks }
    }

    /// Whether `url` may be used: `https` anywhere, `http` only to an allowed address.
    pub fn permit(&self, url: &url::Url) -> Result<(), IpcError> {
        let refuse = |reason: &str| IpcError::InvalidSettings {
            field: "portal_url".into(),
            reason: reason.into(),
        };
        match url.scheme() {
            "https" | "wss" => Ok(()),
            "http" | "ws" => {
                let ip = match url.host() {
                    Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
                    Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
                    Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
                        return Ok(());
                    }
                    _ => {
                        return Err(refuse(
                            "plain http is allowed only for a portal on this machine; use https",
                        ));
                    }
                };
                if ip.is_loopback() || self.networks.iter().any(|net| net.contains(&ip)) {
                    Ok(())
                } else {
                    Err(refuse(
                        "plain http is allowed only for a portal on this machine; use https",
                    ))
                }
            }
            _ => Err(refuse("the scheme must be https")),
        }
    }

    /// [`Self::permit`] for a URL still in text form.
    pub fn permit_str(&self, url: &str) -> Result<(), IpcError> {
        let url = url::Url::parse(url).map_err(|e| IpcError::InvalidSettings {
            field: "portal_url".into(),
            reason: format!("not a URL: {e}"),
        })?;
        self.permit(&url)
    }
}

/// Checks settings before they are saved or used; the error names the field.
pub fn validate(settings: &ServiceSettings) -> Result<(), IpcError> {
    let invalid = |field: &str, reason: String| IpcError::InvalidSettings {
        field: field.to_owned(),
        reason,
    };
    if settings.portal_url.len() > MAX_URL_LEN {
        return Err(invalid(
            "portal_url",
            format!("longer than {MAX_URL_LEN} characters"),
        ));
    }
    let url = url::Url::parse(&settings.portal_url)
        .map_err(|e| invalid("portal_url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(
            "portal_url",
            "the scheme must be https or http".into(),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("portal_url", "a host is required".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "portal_url",
            "credentials do not belong in the URL".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "portal_url",
            "a query or fragment is not allowed".into(),
        ));
    }
    if settings.log_filter.len() > MAX_LOG_FILTER_LEN {
        return Err(invalid(
            "log_filter",
            format!("longer than {MAX_LOG_FILTER_LEN} characters"),
        ));
    }
    ember_logging::parse_filter(&settings.log_filter)
        .map_err(|e| invalid("log_filter", e.to_string()))?;
    Ok(())
}

/// The file whose presence means the user switched the internet resource on (off by default:
/// sending all traffic through the tunnel is the user's choice).
const INTERNET_ENABLED_FILE: &str = "internet-resource-enabled";

pub fn internet_enabled(state_dir: &Path) -> bool {
    state_dir.join(INTERNET_ENABLED_FILE).exists()
}

pub fn save_internet_enabled(state_dir: &Path, enabled: bool) -> Result<(), SettingsError> {
    let path = state_dir.join(INTERNET_ENABLED_FILE);
    let result = if enabled {
        std::fs::write(&path, b"")
    } else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    result.map_err(|source| SettingsError::Write { path, source })
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not valid settings: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone)]
pub struct SettingsStore {
    path: PathBuf,
}

impl SettingsStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("settings.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved settings, or `None` when nothing was saved yet.
    pub fn load(&self) -> Result<Option<ServiceSettings>, SettingsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SettingsError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let invalid = |reason: String| SettingsError::Invalid {
            path: self.path.clone(),
            reason,
        };
        let settings: ServiceSettings =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        validate(&settings).map_err(|e| invalid(e.to_string()))?;
        Ok(Some(settings))
    }

    /// Replaces the file atomically, readable by its owner only (mode 0600 on Unix).
    pub fn save(&self, settings: &ServiceSettings) -> Result<(), SettingsError> {
        let write_err = |source| SettingsError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let json =
            serde_json::to_vec_pretty(settings).map_err(|e| write_err(io::Error::other(e)))?;
        ember_fsutil::write_atomically(&self.path, &json, Some(0o600)).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internet_switch_is_off_by_default_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!internet_enabled(dir.path()));
        save_internet_enabled(dir.path(), true).unwrap();
        assert!(internet_enabled(dir.path()));
        save_internet_enabled(dir.path(), false).unwrap();
        save_internet_enabled(dir.path(), false).unwrap();
        assert!(!internet_enabled(dir.path()));
    }

    fn with(portal_url: &str, log_filter: &str) -> ServiceSettings {
        ServiceSettings {
            portal_url: portal_url.into(),
            log_filter: log_filter.into(),
        }
    }

    fn rejected_field(settings: ServiceSettings) -> String {
        match validate(&settings) {
            Err(IpcError::InvalidSettings { field, .. }) => field,
            other => panic!("expected invalid settings, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        validate(&defaults()).unwrap();
        validate(&with("https://portal.example.com/base", "warn,ember=debug")).unwrap();
    }

    #[test]
    fn rejects_bad_portal_urls() {
        for url in [
            "",
            "portal.example.com",
            "ftp://portal.example.com",
            "file:///etc/passwd",
            "https://user:pw@portal.example.com",
            "https://portal.example.com/?next=evil",
        ] {
            assert_eq!(rejected_field(with(url, "info")), "portal_url", "{url}");
        }
    }

    #[test]
    fn plain_http_is_refused_outside_loopback_and_the_allowed_networks() {
        let test_world = PlainHttpPortals::new(vec!["198.51.100.0/24".parse().unwrap()]);
        let url = |u: &str| url::Url::parse(u).unwrap();
        for allowed in [
            "https://portal.example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://198.51.100.2:8080",
        ] {
            test_world.permit(&url(allowed)).unwrap();
        }
        for refused in ["http://portal.example.com", "http://198.51.101.2:8080"] {
            assert!(test_world.permit(&url(refused)).is_err(), "{refused}");
        }
        let default = PlainHttpPortals::default();
        assert!(default.permit(&url("http://198.51.100.2:8080")).is_err());
        default.permit(&url(DEFAULT_PORTAL_URL)).unwrap();
    }

    #[test]
    fn the_installers_portal_url_replaces_the_default() {
        let (settings, problem) = defaults_with_installed(
            Some(" https://portal.example.com "),
            &PlainHttpPortals::default(),
        );
        assert_eq!(settings.portal_url, "https://portal.example.com");
        assert_eq!(problem, None);
        let (settings, problem) = defaults_with_installed(Some(""), &PlainHttpPortals::default());
        assert_eq!(settings, defaults());
        assert_eq!(problem, None);
    }

    #[test]
    fn an_invalid_or_plain_http_installed_portal_url_is_ignored_with_a_reason() {
        for url in [
            "not a url",
            "http://portal.example.com",
            "ftp://portal.example.com",
        ] {
            let (settings, problem) =
                defaults_with_installed(Some(url), &PlainHttpPortals::default());
            assert_eq!(settings, defaults(), "{url}");
            assert!(problem.is_some(), "{url}");
        }
    }

    #[test]
    fn rejects_a_malformed_log_filter() {
        assert_eq!(
            rejected_field(with(DEFAULT_PORTAL_URL, "info,=[[")),
            "log_filter"
        );
        assert_eq!(
            rejected_field(with(
                DEFAULT_PORTAL_URL,
                &"a".repeat(MAX_LOG_FILTER_LEN + 1)
            )),
            "log_filter"
        );
    }

    #[test]
    fn saves_atomically_with_private_permissions_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(&dir.path().join("state"));
        assert_eq!(store.load().unwrap(), None);

        let settings = with("https://portal.example.com", "debug");
        store.save(&settings).unwrap();
        assert_eq!(store.load().unwrap(), Some(settings));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec!["settings.json"]);
    }

    #[test]
    fn a_corrupt_file_is_reported_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path());
        std::fs::write(store.path(), "{\"portal_url\": 3").unwrap();
        assert!(matches!(store.load(), Err(SettingsError::Invalid { .. })));
        std::fs::write(
            store.path(),
            r#"{"portal_url":"gopher://x","log_filter":"info"}"#,
        )
        .unwrap();
        assert!(matches!(store.load(), Err(SettingsError::Invalid { .. })));
    }
}
