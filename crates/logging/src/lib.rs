//! The one `tracing` setup shared by every Ember binary: human-readable lines to stderr and to
//! daily-rotated files, one filter for both that can be changed while the process runs.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// How many daily files to keep per binary.
pub const KEPT_LOG_FILES: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid log filter `{filter}`: {reason}")]
    InvalidFilter { filter: String, reason: String },
    #[error("cannot create log folder {path}: {source}")]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open log file in {path}: {reason}")]
    LogFile { path: PathBuf, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("the logging system is gone")]
    Gone,
}

/// Keeps the file writer alive and lets the filter change at run time.
/// Dropping it flushes the files.
#[derive(Debug)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    _file_writer: Option<WorkerGuard>,
}

impl LogHandle {
    /// Replaces the filter of every layer, e.g. after the user changed the log level.
    pub fn set_filter(&self, directives: &str) -> Result<(), Error> {
        let filter = parse_filter(directives)?;
        self.filter.reload(filter).map_err(|_| Error::Gone)
    }
}

/// Appended to every filter: the WebSocket library logs the whole handshake request — the
/// portal token in its `Authorization` header — at TRACE, so that module never goes below
/// INFO, whatever a user or an environment variable asks for.
pub const SECRET_GUARD: &str = "tungstenite::handshake=info";

/// Checks a filter such as `info,ember_tunnel=debug` without installing it.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, Error> {
    let guarded = if directives.trim().is_empty() {
        SECRET_GUARD.to_owned()
    } else {
        format!("{directives},{SECRET_GUARD}")
    };
    EnvFilter::builder()
        .parse(&guarded)
        .map_err(|e| Error::InvalidFilter {
            filter: directives.to_owned(),
            reason: e.to_string(),
        })
}

/// Installs the global subscriber. With `log_dir`, files named `{file_prefix}.YYYY-MM-DD.log`
/// are written there, rotated daily, the newest [`KEPT_LOG_FILES`] kept.
pub fn init(
    directives: &str,
    log_dir: Option<&Path>,
    file_prefix: &str,
) -> Result<LogHandle, Error> {
    let (filter, handle) = reload::Layer::new(parse_filter(directives)?);

    let (file_layer, guard) = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| Error::LogDir {
                path: dir.to_owned(),
                source,
            })?;
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix(file_prefix)
                .filename_suffix("log")
                .max_log_files(KEPT_LOG_FILES)
                .build(dir)
                .map_err(|e| Error::LogFile {
                    path: dir.to_owned(),
                    reason: e.to_string(),
                })?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer);
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };

    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(file_layer)
        .try_init()
        .map_err(|_| Error::AlreadyInstalled)?;

    Ok(LogHandle {
        filter: handle,
        _file_writer: guard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_filters() {
        for ok in [
            "info",
            "warn,ember_tunnel=debug",
            "trace",
            "ember=info,tauri=warn",
        ] {
            parse_filter(ok).unwrap();
        }
    }

    #[test]
    fn every_filter_keeps_the_websocket_handshake_and_its_token_out_of_the_logs() {
        for filter in ["", "trace", "info,ember=debug", "off", "tungstenite=trace"] {
            let installed = parse_filter(filter).unwrap().to_string();
            assert!(installed.contains(SECRET_GUARD), "{filter:?} → {installed}");
        }
    }

    #[test]
    fn rejects_a_malformed_filter_with_its_text() {
        let err = parse_filter("info,=[[").unwrap_err();
        assert!(err.to_string().contains("info,=[["), "{err}");
    }

    #[test]
    fn writes_to_a_file_and_reloads_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let handle = init("info", Some(dir.path()), "unit").unwrap();
        tracing::debug!("hidden-at-info");
        handle.set_filter("debug").unwrap();
        tracing::debug!("visible-at-debug");
        assert!(handle.set_filter("=[[").is_err());
        drop(handle);

        let mut text = String::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            assert!(
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("unit.")
            );
            text += &std::fs::read_to_string(path).unwrap();
        }
        assert!(text.contains("visible-at-debug"), "{text}");
        assert!(!text.contains("hidden-at-info"), "{text}");
    }
}
