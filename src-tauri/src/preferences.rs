//! What the user's app owns (ARCHITECTURE §5 splits settings): start on login, start
//! minimised, connect on start. Kept as JSON in the app's config folder; the service never
//! sees them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The argument the login entry starts the app with.
pub const AUTOSTART_ARG: &str = "--autostart";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(default)]
pub struct AppPreferences {
    /// Start Ember when the user logs in.
    pub start_on_login: bool,
    /// When started at login, stay in the tray instead of opening the window.
    pub start_minimised: bool,
    /// Sign in with the kept token when the app starts.
    pub connect_on_start: bool,
}

impl Default for AppPreferences {
    fn default() -> Self {
        Self {
            start_on_login: true,
            start_minimised: true,
            connect_on_start: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot save the preferences to {path}: {source}")]
pub struct SaveError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The preferences in `dir`, or the defaults when there are none or they do not parse (a
/// broken file must not stop the app; it is replaced on the next save).
pub fn load(dir: &Path) -> AppPreferences {
    let path = file(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), "Ignoring unreadable preferences: {e}");
            AppPreferences::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AppPreferences::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), "Cannot read the preferences: {e}");
            AppPreferences::default()
        }
    }
}

/// Replaces the file atomically, so a crash leaves the old or the new file.
pub fn save(dir: &Path, preferences: &AppPreferences) -> Result<(), SaveError> {
    let path = file(dir);
    let error = |source| SaveError {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    let bytes = serde_json::to_vec_pretty(preferences).map_err(|e| error(e.into()))?;
    ember_fsutil::write_atomically(&path, &bytes, None).map_err(error)
}

fn file(dir: &Path) -> PathBuf {
    dir.join("preferences.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), AppPreferences::default());
        let changed = AppPreferences {
            start_on_login: false,
            start_minimised: false,
            connect_on_start: false,
        };
        save(dir.path(), &changed).unwrap();
        assert_eq!(load(dir.path()), changed);
    }

    #[test]
    fn a_broken_or_partial_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("preferences.json"), "{not json").unwrap();
        assert_eq!(load(dir.path()), AppPreferences::default());
        std::fs::write(
            dir.path().join("preferences.json"),
            r#"{"connect_on_start": false}"#,
        )
        .unwrap();
        assert!(!load(dir.path()).connect_on_start);
        assert!(
            load(dir.path()).start_on_login,
            "missing fields keep their defaults"
        );
    }
}
