//! The log bundle a user sends to support: one zip named with a timestamp, holding one folder
//! with the app's logs, the service's logs and the connection details. It is written under a
//! temporary name and renamed when complete (`ember_fsutil::AtomicFile`), so a half-written
//! bundle never looks finished.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write the log bundle {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the log bundle: {0}")]
    Zip(#[from] zip::result::ZipError),
}

/// What goes into a bundle besides the app's own log folder.
#[derive(Debug, Default)]
pub struct BundleContents {
    /// (file name, bytes) as the service sent them.
    pub service_logs: Vec<(String, Vec<u8>)>,
    /// Pretty JSON of what the app currently shows (no secrets: the view carries none).
    pub connection_details: String,
}

/// Writes `ember-logs-<stamp>.zip` into `destination` and returns its path.
pub fn write_bundle(
    destination: &Path,
    stamp: &str,
    app_log_dir: &Path,
    contents: &BundleContents,
) -> Result<PathBuf, BundleError> {
    let top = format!("ember-logs-{stamp}");
    let final_path = destination.join(format!("{top}.zip"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BundleError::Io { path, source }
    };
    // Dropped on an error before the commit, it removes the half-written bundle.
    let file = ember_fsutil::AtomicFile::create(&final_path, None).map_err(io(&final_path))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);

    let mut app_logs: Vec<PathBuf> = std::fs::read_dir(app_log_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    app_logs.sort();
    for path in app_logs {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        zip.start_file(format!("{top}/app/{name}"), options)?;
        zip.write_all(&bytes).map_err(io(&final_path))?;
    }
    for (name, bytes) in &contents.service_logs {
        // The service names files without folders; anything else is not trusted as a path.
        let name = name.replace(['/', '\\'], "_");
        zip.start_file(format!("{top}/service/{name}"), options)?;
        zip.write_all(bytes).map_err(io(&final_path))?;
    }
    zip.start_file(format!("{top}/connection.json"), options)?;
    zip.write_all(contents.connection_details.as_bytes())
        .map_err(io(&final_path))?;
    zip.finish()?.commit().map_err(io(&final_path))?;
    Ok(final_path)
}

/// Deletes the app's log files except the one being written today.
pub fn clear_app_logs(app_log_dir: &Path, keep: Option<&Path>) -> std::io::Result<u32> {
    let mut removed = 0;
    for entry in std::fs::read_dir(app_log_dir)? {
        let path = entry?.path();
        if path.is_file() && Some(path.as_path()) != keep {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `20261125-221530` in UTC, for file names that sort by time.
pub fn stamp(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn stamps_are_utc_and_sort_by_time() {
        assert_eq!(stamp(UNIX_EPOCH), "19700101-000000");
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_secs(1_795_644_930)),
            "20261125-221530"
        );
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229-000000"
        );
    }

    #[test]
    fn a_bundle_has_one_top_folder_with_app_and_service_logs_and_the_details() {
        let logs = tempfile::tempdir().unwrap();
        std::fs::write(logs.path().join("app.2026-11-25.log"), "app line\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let contents = BundleContents {
            service_logs: vec![
                ("service.log".into(), b"service line\n".to_vec()),
                ("../escape.log".into(), b"x".to_vec()),
            ],
            connection_details: "{\"session\":\"signed_in\"}".into(),
        };
        let path = write_bundle(out.path(), "20261125-221530", logs.path(), &contents).unwrap();
        assert_eq!(path.file_name().unwrap(), "ember-logs-20261125-221530.zip");
        let leftovers: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no partial file left behind");

        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut names: Vec<String> = zip.file_names().map(str::to_owned).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ember-logs-20261125-221530/app/app.2026-11-25.log",
                "ember-logs-20261125-221530/connection.json",
                "ember-logs-20261125-221530/service/.._escape.log",
                "ember-logs-20261125-221530/service/service.log",
            ]
        );
        let mut text = String::new();
        zip.by_name("ember-logs-20261125-221530/service/service.log")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "service line\n");
    }
}
