//! macOS's split DNS: one file per domain in `/etc/resolver` (resolver(5)), named after the
//! domain, listing the servers for names under it. Ember writes one per resource suffix, each
//! pointing at the stub's sentinel addresses and marked as Ember's by its first line.
//!
//! The files outlive the service (they are files on disk, kept across a crash and a reboot),
//! so what is Ember's is known by the mark alone: a file without it is someone else's (a
//! developer's `/etc/resolver/test`, another VPN's) and is never changed or removed; its suffix
//! then keeps going to that file's servers, and the service says so.
//!
//! The folder is a parameter, so the bookkeeping is tested on Linux in a temporary folder.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::routing_domain;

/// The first line of every file Ember writes; how crash recovery knows its own.
pub const MARK: &str =
    "# Written by Ember's tunnel service (dev.ember.tunnel); removed when it stops.";

/// The files of one tunnel, kept in step with the DNS resources.
#[derive(Debug)]
pub struct ResolverFiles {
    dir: PathBuf,
    contents: String,
    /// Suffixes whose file is ours and up to date.
    written: BTreeSet<String>,
    /// Suffixes whose file is someone else's, already warned about.
    foreign: BTreeSet<String>,
}

/// What a suffix's file is now.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Absent,
    Ours(String),
    /// Someone else's file, or something that is not a plain file (a link, a folder).
    Foreign,
}

impl ResolverFiles {
    /// Files in `dir` that send names to `servers` (at most three are read by the system; the
    /// stub has one per address family).
    pub fn new(dir: impl Into<PathBuf>, servers: &[IpAddr]) -> Self {
        let mut contents = format!("{MARK}\n");
        for server in servers {
            contents.push_str(&format!("nameserver {server}\n"));
        }
        Self {
            dir: dir.into(),
            contents,
            written: BTreeSet::new(),
            foreign: BTreeSet::new(),
        }
    }

    /// Makes the folder hold a file of ours for each resource pattern's suffix and for no other
    /// suffix. Every suffix is attempted; the first error is returned.
    pub fn set_patterns(&mut self, patterns: &[String]) -> io::Result<()> {
        let wanted = suffixes(patterns);
        let mut result = Ok(());
        if !wanted.is_empty() {
            create_folder(&self.dir)?;
        }
        let stale: Vec<String> = self.written.difference(&wanted).cloned().collect();
        for suffix in stale {
            match remove_if_ours(&self.dir.join(&suffix)) {
                Ok(_) => {
                    self.written.remove(&suffix);
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        self.foreign.retain(|suffix| wanted.contains(suffix));
        for suffix in wanted {
            let path = self.dir.join(&suffix);
            match existing(&path) {
                Ok(Existing::Ours(text)) if text == self.contents => {
                    self.written.insert(suffix);
                }
                Ok(Existing::Absent | Existing::Ours(_)) => {
                    // The system watches the folder: it sees the old file or the new one,
                    // never half of one. A crash leaves at most a temporary file in the
                    // folder, which recovery removes by its mark like any other.
                    match ember_fsutil::write_atomically(
                        &path,
                        self.contents.as_bytes(),
                        Some(0o644),
                    ) {
                        Ok(()) => {
                            self.written.insert(suffix);
                        }
                        Err(e) => result = result.and(Err(e)),
                    }
                }
                Ok(Existing::Foreign) => {
                    self.written.remove(&suffix);
                    if self.foreign.insert(suffix) {
                        tracing::warn!(
                            file = %path.display(),
                            "A resolver file Ember did not write is in place for a resource \
                             domain; it is left alone, and names under it do not reach Ember"
                        );
                    }
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        result
    }

    /// Removes every file this tunnel wrote (and only while it still carries the mark).
    pub fn remove_all(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for suffix in std::mem::take(&mut self.written) {
            if let Err(e) = remove_if_ours(&self.dir.join(&suffix)) {
                result = result.and(Err(e));
            }
        }
        result
    }
}

/// Removes every file in `dir` that carries Ember's mark: what a run that crashed left
/// behind. Returns how many were removed; a missing folder holds none.
pub fn remove_marked(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    let mut result = Ok(());
    for entry in entries {
        match entry.and_then(|entry| remove_if_ours(&entry.path())) {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => result = result.and(Err(e)),
        }
    }
    result.map(|()| removed)
}

/// The resolver-file names for the resource patterns: their fixed suffixes, when such a
/// suffix is a plain domain name. A pattern comes from the portal, and its suffix becomes a
/// path: anything but letters, digits, `-` and `_` in dot-separated labels is refused, so no
/// pattern can name a file outside the folder (`..`, `/`) or a hidden one.
pub fn suffixes(patterns: &[String]) -> BTreeSet<String> {
    patterns
        .iter()
        .filter_map(|pattern| routing_domain(pattern))
        .filter(|suffix| {
            let plain = is_plain_domain(suffix);
            if !plain {
                tracing::warn!("A DNS resource's domain cannot be a resolver file name; skipped");
            }
            plain
        })
        .collect()
}

fn is_plain_domain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn create_folder(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Looks without following a link: a link in the folder is never Ember's.
fn existing(path: &Path) -> io::Result<Existing> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_file() {
        return Ok(Existing::Foreign);
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // Not text: not ours.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(Existing::Foreign),
        Err(e) => return Err(e),
    };
    Ok(if text.lines().next() == Some(MARK) {
        Existing::Ours(text)
    } else {
        Existing::Foreign
    })
}

/// `true` when the file was Ember's and is gone now.
fn remove_if_ours(path: &Path) -> io::Result<bool> {
    match existing(path)? {
        Existing::Ours(_) => match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Existing::Absent | Existing::Foreign => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(100, 100, 111, 1));

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| (*p).to_owned()).collect()
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn each_resource_suffix_gets_a_marked_file_pointing_at_the_stub() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = dir.path().join("resolver");
        let v6: IpAddr = "fd00:2021:1111::1".parse().unwrap();
        let mut files = ResolverFiles::new(&resolver, &[V4, v6]);
        files
            .set_patterns(&patterns(&[
                "*.corp.example",
                "db.?.corp.example",
                "wiki.lab.example",
            ]))
            .unwrap();
        assert_eq!(
            names(&resolver),
            BTreeSet::from(["corp.example".to_owned(), "wiki.lab.example".to_owned()])
        );
        assert_eq!(
            std::fs::read_to_string(resolver.join("corp.example")).unwrap(),
            format!("{MARK}\nnameserver 100.100.111.1\nnameserver fd00:2021:1111::1\n")
        );
    }

    #[test]
    fn files_follow_the_resources_and_go_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ResolverFiles::new(dir.path(), &[V4]);
        files
            .set_patterns(&patterns(&["a.example", "*.b.example"]))
            .unwrap();
        files
            .set_patterns(&patterns(&["*.b.example", "c.example"]))
            .unwrap();
        assert_eq!(
            names(dir.path()),
            BTreeSet::from(["b.example".to_owned(), "c.example".to_owned()])
        );
        files.remove_all().unwrap();
        assert!(names(dir.path()).is_empty());
    }

    /// A developer's `/etc/resolver/test` or another VPN's file must survive Ember.
    #[test]
    fn a_resolver_file_someone_else_wrote_is_never_changed_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = "nameserver 10.0.0.53\n";
        std::fs::write(dir.path().join("corp.example"), theirs).unwrap();
        std::fs::write(dir.path().join("other.example"), theirs).unwrap();
        let mut files = ResolverFiles::new(dir.path(), &[V4]);
        files.set_patterns(&patterns(&["*.corp.example"])).unwrap();
        files.remove_all().unwrap();
        assert_eq!(remove_marked(dir.path()).unwrap(), 0);
        for name in ["corp.example", "other.example"] {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(name)).unwrap(),
                theirs
            );
        }
    }

    /// A link planted in the folder must not make Ember write through it (or delete its
    /// target).
    #[test]
    fn a_symlink_in_the_resolver_folder_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, format!("{MARK}\nprecious\n")).unwrap();
        let resolver = dir.path().join("resolver");
        std::fs::create_dir(&resolver).unwrap();
        std::os::unix::fs::symlink(&target, resolver.join("corp.example")).unwrap();
        let mut files = ResolverFiles::new(&resolver, &[V4]);
        files.set_patterns(&patterns(&["*.corp.example"])).unwrap();
        files.remove_all().unwrap();
        remove_marked(&resolver).unwrap();
        assert!(resolver.join("corp.example").is_symlink());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            format!("{MARK}\nprecious\n")
        );
    }

    #[test]
    fn after_a_crash_the_next_start_removes_only_marked_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut crashed = ResolverFiles::new(dir.path(), &[V4]);
        crashed
            .set_patterns(&patterns(&["*.corp.example", "lab.example"]))
            .unwrap();
        std::fs::write(dir.path().join("test"), "nameserver 127.0.0.1\n").unwrap();
        // A write the crash interrupted.
        std::fs::write(dir.path().join(".x.ember-tmp-1-0"), format!("{MARK}\n")).unwrap();
        drop(crashed);
        assert_eq!(remove_marked(dir.path()).unwrap(), 3);
        assert_eq!(names(dir.path()), BTreeSet::from(["test".to_owned()]));
        assert_eq!(remove_marked(&dir.path().join("missing")).unwrap(), 0);
    }

    /// Uninstalling after a crash must not leave names pointing at a stub that is gone.
    #[test]
    fn the_uninstaller_removes_the_files_the_service_marks() {
        let script = include_str!("../../../../installer/macos/uninstall.sh");
        assert!(script.contains(&format!("MARK=\"{MARK}\"")), "{script}");
        assert!(script.contains("/etc/resolver/"));
    }

    /// Patterns come from the portal; their suffix becomes a file name as root.
    #[test]
    fn a_pattern_cannot_name_a_file_outside_the_resolver_folder() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = dir.path().join("resolver");
        let mut files = ResolverFiles::new(&resolver, &[V4]);
        let hostile = patterns(&["*.x/../../escaped", "*...", "a/b.example", ".hidden", "*. "]);
        files.set_patterns(&hostile).unwrap();
        assert_eq!(names(dir.path()), BTreeSet::new());
        assert!(suffixes(&hostile).is_empty());
        assert_eq!(
            suffixes(&patterns(&["*.Corp-1.example_x."])),
            BTreeSet::from(["corp-1.example_x".to_owned()])
        );
    }
}
