//! The one `tracing` setup shared by every Ember binary: human-readable lines to stderr and to
//! daily-rotated files, one filter for both that can be changed while the process runs.

use std::path::{Path, PathBuf};

use tracing::Metadata;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{FilterFn, LevelFilter, filter_fn};
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

/// The most each of these libraries may log, whatever the filter says. The WebSocket library
/// logs the whole handshake request (the portal token in its `Authorization` header) and every
/// frame's payload (preshared keys, ICE and TURN passwords in the portal's messages) at DEBUG
/// and TRACE; the ICE agent logs its credentials at TRACE. A filter directive cannot keep them
/// out — a more specific one (`tungstenite::handshake::client=trace`) or a span filter wins
/// over it — so these ceilings are a layer of their own that the reloadable filter never
/// touches. A target matches its entry exactly or as a `::` module path below it.
///
/// One more entry is noise, not secrets: the netlink library warns on every link dump that a
/// newer kernel sends more IPv6 settings than it knows (four WARN lines per start of the
/// service and the gateway on Linux 6.x), which says nothing to a user; its errors still show.
pub const LIBRARY_CEILINGS: &[(&str, LevelFilter)] = &[
    ("tungstenite", LevelFilter::INFO),
    ("tokio_tungstenite", LevelFilter::INFO),
    ("is", LevelFilter::DEBUG),
    (
        "netlink_packet_route::link::buffer_tool",
        LevelFilter::ERROR,
    ),
];

/// The fixed layer that enforces [`LIBRARY_CEILINGS`]. [`init`] installs it; it is public so
/// a test can build the same stack around its own writer.
pub fn library_ceilings() -> FilterFn<impl Fn(&Metadata<'_>) -> bool> {
    filter_fn(|metadata| {
        ceiling(metadata.target()).is_none_or(|ceiling| *metadata.level() <= ceiling)
    })
}

fn ceiling(target: &str) -> Option<LevelFilter> {
    LIBRARY_CEILINGS.iter().find_map(|(library, ceiling)| {
        let below = target
            .strip_prefix(library)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        below.then_some(*ceiling)
    })
}

/// Checks a filter such as `info,ember_tunnel=debug` without installing it.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, Error> {
    EnvFilter::builder()
        .parse(directives)
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
        .with(library_ceilings())
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

    /// What a subscriber with `filter` and the fixed ceilings writes for one event of each
    /// kind below.
    fn written_with(filter: &str) -> String {
        written_with_event(filter, || {
            tracing::trace!(target: "tungstenite::handshake::client", "handshake-secret");
            tracing::debug!(target: "tungstenite::protocol", "frame-secret");
            tracing::trace!(target: "tokio_tungstenite", "tokio-frame-secret");
            tracing::info!(target: "tungstenite::handshake", "handshake-info");
            tracing::trace!(target: "is::agent", "ice-trace-secret");
            tracing::debug!(target: "is::agent", "ice-debug");
            tracing::trace!(target: "isolation", "other-crate-trace");
            tracing::trace!(target: "ember_tunnel", "ember-trace");
        })
    }

    /// What a subscriber with `filter` and the fixed ceilings writes while `events` runs.
    fn written_with_event(filter: &str, events: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::registry()
            .with(parse_filter(filter).unwrap())
            .with(library_ceilings())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, events);
        String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn no_filter_raises_the_websocket_library_or_the_ice_agent_above_their_ceilings() {
        for filter in [
            "trace",
            "tungstenite=trace",
            "tungstenite::handshake::client=trace",
            "tokio_tungstenite=trace,tungstenite::protocol=trace,is=trace,is::agent=trace",
            "[{x}]=trace,trace",
        ] {
            let written = written_with(filter);
            assert!(
                !written.contains("secret"),
                "{filter:?} let through:\n{written}"
            );
        }
        let everything = written_with("trace");
        for shown in [
            "handshake-info",
            "ice-debug",
            "other-crate-trace",
            "ember-trace",
        ] {
            assert!(everything.contains(shown), "{shown} missing: {everything}");
        }
        assert!(
            !written_with("info").contains("ice-debug"),
            "the filter still lowers"
        );
    }

    #[test]
    fn the_netlink_librarys_warning_about_a_newer_kernel_is_not_written() {
        let written = written_with_event("info", || {
            tracing::warn!(
                target: "netlink_packet_route::link::buffer_tool",
                "holds more (most likely new kernel) data"
            );
            tracing::error!(target: "netlink_packet_route::link::buffer_tool", "a real error");
        });
        assert!(!written.contains("new kernel"), "{written}");
        assert!(written.contains("a real error"), "{written}");
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
