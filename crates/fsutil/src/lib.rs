//! Replacing a file so that a reader, or the disk after a crash or a power cut, sees the old
//! contents or the new ones, never a mix: the new contents go to a temporary file in the same
//! folder, which is flushed to disk and then renamed over the target.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::path::Path;
//! // A key only its owner may read, from its first byte on.
//! ember_fsutil::write_atomically(Path::new("/var/lib/ember/private_key"), b"...\n", Some(0o600))?;
//! # Ok(())
//! # }
//! ```
//!
//! Contents produced piece by piece (a zip archive) go through [`AtomicFile`]: write to it,
//! then [`AtomicFile::commit`]; dropped without a commit, it removes its temporary file and
//! leaves the target as it was.
//!
//! The rename replaces the target on every system (on Windows `std::fs::rename` asks for
//! `MOVEFILE_REPLACE_EXISTING`). The folder is synced after the rename on Unix, so the new
//! name survives a power cut too; Windows has no equivalent for a folder.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `contents` atomically; see the crate documentation.
///
/// `mode` is the file's Unix permission bits, applied exactly (the process's umask does not
/// narrow them) before any byte is written; `None` gives a new file's default, as
/// [`File::create`]. Windows ignores it: the file gets the folder's inherited ACL. The folder
/// must exist.
pub fn write_atomically(path: &Path, contents: &[u8], mode: Option<u32>) -> io::Result<()> {
    let mut file = AtomicFile::create(path, mode)?;
    file.write_all(contents)?;
    file.commit()
}

/// A replacement for a file, being written under a temporary name next to it.
#[derive(Debug)]
pub struct AtomicFile {
    // Declared before `temporary`, so an uncommitted file is closed before it is removed
    // (Windows cannot remove an open file).
    file: File,
    temporary: Temporary,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file next to `path`, with `mode` as in [`write_atomically`].
    pub fn create(path: &Path, mode: Option<u32>) -> io::Result<Self> {
        let temporary = Temporary {
            path: temporary_path(path)?,
            armed: true,
        };
        // Left by a crashed process that had this process's id; the name is this code's alone.
        let _ = std::fs::remove_file(&temporary.path);
        let mut options = File::options();
        // `create_new` never follows a link someone placed under the temporary name.
        options.write(true).read(true).create_new(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let file = options.open(&temporary.path)?;
        // Created with at most `mode` (the umask only removes bits); now exactly `mode`.
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(Self {
            file,
            temporary,
            target: path.to_owned(),
        })
    }

    /// The temporary file, for writers that need more than [`Write`] (a seekable archive).
    pub fn as_file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Flushes the contents to disk and renames them over the target. On an error the target
    /// is as it was and the temporary file is gone.
    pub fn commit(self) -> io::Result<()> {
        let Self {
            file,
            mut temporary,
            target,
        } = self;
        let synced = file.sync_all();
        // Closed before `temporary` can remove it on an error (see the field order).
        drop(file);
        synced?;
        std::fs::rename(&temporary.path, &target)?;
        temporary.armed = false;
        sync_folder(&target)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        self.file.seek(position)
    }
}

/// The temporary file's name; removes the file when dropped unless it was renamed.
#[derive(Debug)]
struct Temporary {
    path: PathBuf,
    armed: bool,
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `.<name>.ember-tmp-<pid>-<n>` beside `path`: hidden, and distinct for every process and
/// every write, since a folder such as `/etc` is shared by services in other network
/// namespaces and by threads writing the same file.
fn temporary_path(path: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        ));
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".ember-tmp-{}-{n}", std::process::id()));
    Ok(path.with_file_name(temporary))
}

#[cfg(unix)]
fn sync_folder(path: &Path) -> io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(folder)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests;
