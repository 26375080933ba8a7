//! `/etc/resolv.conf` as the way to point the system at the stub resolver when
//! systemd-resolved is not running. What was there before is backed up to the state folder
//! first and put back on stop — and at the next start, should the service have crashed,
//! because broken DNS after a crash is what users of such clients hate most.
//!
//! A symlinked `/etc/resolv.conf` (resolvconf, systemd-resolved's stub file) is written
//! through: its target's contents are backed up and put back in place, and the link itself is
//! never replaced. Under the shipped unit's `ProtectSystem=strict`, `/etc` is read-only and
//! only the file (the link's target) is writable, so replacing the link cannot work there.

use std::io::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const MARKER: &str = "# Written by Ember's tunnel service; restored when it stops.";
const BACKUP_FILE: &str = "resolv.conf.before-ember";

#[derive(Debug, Clone)]
pub struct ResolvConf {
    path: PathBuf,
    backup: PathBuf,
}

/// What the file was before: a symlink (systemd-resolved, resolvconf) or a plain file.
#[derive(Debug, PartialEq, Eq)]
enum Original {
    /// The link's target and its contents; `None` in backups of versions that replaced the
    /// link instead of writing through it.
    Symlink {
        target: PathBuf,
        contents: Option<String>,
    },
    File(String),
}

impl ResolvConf {
    pub fn new(path: impl Into<PathBuf>, state_dir: &Path) -> Self {
        Self {
            path: path.into(),
            backup: state_dir.join(BACKUP_FILE),
        }
    }

    /// Puts back what was there before Ember. `true` when there was something to restore.
    pub fn restore(&self) -> io::Result<bool> {
        let text = match std::fs::read_to_string(&self.backup) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match parse_backup(&text) {
            Some(Original::Symlink {
                target,
                contents: Some(contents),
            }) if is_symlink(&self.path) => {
                // Still the link we wrote through: its target gets its contents back.
                let _ = target;
                write_in_place(&self.path, &contents)?;
            }
            Some(Original::Symlink { target, contents }) => {
                if let Err(e) = relink(&self.path, &target) {
                    // An old backup whose link cannot be put back (a read-only `/etc`): what
                    // the link points to is rewritten by its owner (resolvconf, resolved);
                    // keeping the backup would only make every later start fail here.
                    let linked = std::fs::read_link(&self.path).ok() == Some(target.clone());
                    if !(linked && contents.is_none()) {
                        return Err(e);
                    }
                }
            }
            Some(Original::File(contents)) => write_atomically(&self.path, &contents, 0o644)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a backup Ember wrote", self.backup.display()),
                ));
            }
        }
        std::fs::remove_file(&self.backup)?;
        Ok(true)
    }

    /// Points the system at `servers` and returns the nameservers it used before, for the
    /// stub to forward other names to. `search` and `options` lines are kept.
    pub fn activate(&self, servers: &[IpAddr]) -> io::Result<Vec<IpAddr>> {
        // A backup still in place means our file is too: never back up our own file.
        self.restore()?;
        let original = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.file_type().is_symlink() => Original::Symlink {
                target: std::fs::read_link(&self.path)?,
                contents: Some(std::fs::read_to_string(&self.path)?),
            },
            Ok(_) => Original::File(std::fs::read_to_string(&self.path)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Original::File(String::new()),
            Err(e) => return Err(e),
        };
        // Through a symlink the contents are the target's.
        let current = std::fs::read_to_string(&self.path).unwrap_or_default();
        if let Some(dir) = self.backup.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomically(&self.backup, &format_backup(&original), 0o600)?;

        let upstream: Vec<IpAddr> = nameservers(&current)
            .into_iter()
            .filter(|ip| !servers.contains(ip))
            .collect();
        let mut ours = format!("{MARKER}\n");
        for server in servers {
            ours += &format!("nameserver {server}\n");
        }
        for line in current.lines() {
            let line = line.trim();
            if line.starts_with("search ") || line.starts_with("options ") {
                ours += line;
                ours.push('\n');
            }
        }
        if matches!(original, Original::Symlink { .. }) {
            write_in_place(&self.path, &ours)?;
        } else {
            write_atomically(&self.path, &ours, 0o644)?;
        }
        Ok(upstream)
    }
}

pub(crate) use crate::platform::dns::nameservers;

fn format_backup(original: &Original) -> String {
    match original {
        Original::Symlink {
            target,
            contents: Some(contents),
        } => format!("symlink-contents\n{}\n{contents}", target.display()),
        Original::Symlink {
            target,
            contents: None,
        } => format!("symlink\n{}", target.display()),
        Original::File(contents) => format!("file\n{contents}"),
    }
}

fn parse_backup(text: &str) -> Option<Original> {
    let (kind, rest) = text.split_once('\n')?;
    match kind {
        "symlink" => Some(Original::Symlink {
            target: PathBuf::from(rest),
            contents: None,
        }),
        "symlink-contents" => {
            let (target, contents) = rest.split_once('\n')?;
            Some(Original::Symlink {
                target: PathBuf::from(target),
                contents: Some(contents.to_owned()),
            })
        }
        "file" => Some(Original::File(rest.to_owned())),
        _ => None,
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

/// Makes `path` a symlink to `target` again (replacing what is there).
fn relink(path: &Path, target: &Path) -> io::Result<()> {
    let temp = temp_path(path);
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)?;
    std::fs::rename(&temp, path)
}

/// A sibling of `path` for this process alone: the folder (`/etc`) is shared with every other
/// network namespace, and two services (tests run several side by side) must not remove each
/// other's link between its creation and its rename.
fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        ".{}.ember-tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ))
}

fn write_atomically(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    match ember_fsutil::write_atomically(path, contents.as_bytes(), Some(mode)) {
        // A read-only folder around a writable file (systemd's ProtectSystem=strict with
        // ReadWritePaths=/etc/resolv.conf), or a bind-mounted file (containers, `ip netns
        // exec`) that cannot be replaced: the file can only be rewritten.
        Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EROFS | nix::libc::EBUSY)) => {
            write_in_place(path, contents)
        }
        other => other,
    }
}

fn write_in_place(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUB: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(100, 100, 111, 1));
    const ORIGINAL: &str = "# from DHCP\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch corp.example\noptions edns0\n";

    fn setup() -> (tempfile::TempDir, ResolvConf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let resolv = ResolvConf::new(
            dir.path().join("etc/resolv.conf"),
            &dir.path().join("state"),
        );
        (dir, resolv)
    }

    #[test]
    fn activate_points_at_the_stub_and_keeps_search_and_options() {
        let (_dir, resolv) = setup();
        std::fs::write(&resolv.path, ORIGINAL).unwrap();
        let upstream = resolv.activate(&[STUB]).unwrap();
        assert_eq!(
            upstream,
            vec![
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse().unwrap()
            ]
        );
        let ours = std::fs::read_to_string(&resolv.path).unwrap();
        assert_eq!(nameservers(&ours), vec![STUB]);
        assert!(
            ours.contains("search corp.example") && ours.contains("options edns0"),
            "{ours}"
        );
    }

    #[test]
    fn restore_puts_back_the_original_file_exactly() {
        let (_dir, resolv) = setup();
        std::fs::write(&resolv.path, ORIGINAL).unwrap();
        resolv.activate(&[STUB]).unwrap();
        assert!(resolv.restore().unwrap());
        assert_eq!(std::fs::read_to_string(&resolv.path).unwrap(), ORIGINAL);
        assert!(!resolv.restore().unwrap(), "nothing left to restore");
    }

    #[test]
    fn a_symlinked_resolv_conf_comes_back_as_the_same_symlink() {
        let (dir, resolv) = setup();
        let target = dir.path().join("stub-resolv.conf");
        std::fs::write(&target, "nameserver 127.0.0.53\n").unwrap();
        std::os::unix::fs::symlink(&target, &resolv.path).unwrap();

        let upstream = resolv.activate(&[STUB]).unwrap();
        assert_eq!(upstream, vec!["127.0.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            std::fs::read_link(&resolv.path).unwrap(),
            target,
            "written through, the link stays"
        );
        assert_eq!(
            nameservers(&std::fs::read_to_string(&resolv.path).unwrap()),
            vec![STUB]
        );
        resolv.restore().unwrap();
        assert_eq!(std::fs::read_link(&resolv.path).unwrap(), target);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 127.0.0.53\n",
            "the target's contents are back"
        );
    }

    #[test]
    fn after_a_crash_the_next_start_restores_and_never_backs_up_our_own_file() {
        let (dir, resolv) = setup();
        std::fs::write(&resolv.path, ORIGINAL).unwrap();
        resolv.activate(&[STUB]).unwrap();
        // The service died here; a new one starts with a fresh manager.
        let next = ResolvConf::new(resolv.path.clone(), &dir.path().join("state"));
        let upstream = next.activate(&[STUB]).unwrap();
        assert_eq!(
            upstream.len(),
            2,
            "upstream comes from the original, not from our file"
        );
        next.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&resolv.path).unwrap(), ORIGINAL);
    }

    #[test]
    fn a_corrupt_backup_is_an_error_not_a_guess() {
        let (dir, resolv) = setup();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state").join(BACKUP_FILE), "garbage").unwrap();
        assert!(resolv.restore().is_err());
    }

    /// Runs the test `inner` of this binary again in a mount namespace of its own (root only:
    /// the namespace gets read-only bind mounts like systemd's `ProtectSystem=strict`).
    fn run_in_own_mount_namespace(inner: &str) {
        if !nix::unistd::geteuid().is_root() {
            ember_testbed::skip("needs root for a mount namespace");
            return;
        }
        let path = module_path!();
        let path = path.split_once("::").map_or(path, |(_, rest)| rest);
        let status = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", &format!("{path}::{inner}"), "--nocapture"])
            .env(IN_NAMESPACE, "1")
            .status()
            .unwrap();
        assert!(status.success(), "{inner} failed in its mount namespace");
    }

    const IN_NAMESPACE: &str = "EMBER_TEST_IN_MOUNT_NAMESPACE";

    fn mount(args: &[&str]) {
        let status = std::process::Command::new("mount")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "mount {args:?}");
    }

    /// `dir` read-only from now on (in this mount namespace only).
    fn read_only(dir: &Path) {
        let dir = dir.to_str().unwrap();
        mount(&["--bind", dir, dir]);
        mount(&["-o", "remount,bind,ro", dir]);
    }

    /// `file` writable again inside a read-only folder (systemd's `ReadWritePaths=`).
    fn writable(file: &Path) {
        let file = file.to_str().unwrap();
        // A bind mount keeps the read-only flag of the mount it comes from: lift it.
        mount(&["--bind", file, file]);
        mount(&["-o", "remount,bind,rw", file]);
    }

    #[test]
    fn restore_works_with_a_symlinked_read_only_resolv_conf() {
        run_in_own_mount_namespace("symlinked_read_only_resolv_conf_inner");
    }

    #[test]
    fn restore_works_with_a_read_only_etc_around_a_plain_resolv_conf() {
        run_in_own_mount_namespace("plain_read_only_resolv_conf_inner");
    }

    #[test]
    fn symlinked_read_only_resolv_conf_inner() {
        if std::env::var_os(IN_NAMESPACE).is_none() {
            return;
        }
        // systemd-resolved's layout: /etc/resolv.conf → /run/systemd/resolve/stub-resolv.conf,
        // under ProtectSystem=strict with ReadWritePaths=-/etc/resolv.conf (which follows the
        // link: the target is the writable file).
        let (dir, resolv) = setup();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let target = run.join("stub-resolv.conf");
        std::fs::write(&target, "nameserver 127.0.0.53\nsearch corp.example\n").unwrap();
        std::os::unix::fs::symlink(&target, &resolv.path).unwrap();
        read_only(&dir.path().join("etc"));
        read_only(&run);
        writable(&target);
        assert!(
            std::fs::write(dir.path().join("etc/other"), "x").is_err(),
            "etc is read-only"
        );

        let upstream = resolv.activate(&[STUB]).unwrap();
        assert_eq!(upstream, vec!["127.0.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            nameservers(&std::fs::read_to_string(&resolv.path).unwrap()),
            vec![STUB]
        );
        assert!(resolv.restore().unwrap());
        assert_eq!(std::fs::read_link(&resolv.path).unwrap(), target);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 127.0.0.53\nsearch corp.example\n"
        );
        assert!(
            !resolv.backup.exists(),
            "no backup left to fail the next start"
        );
        // The next sign-in works again.
        resolv.activate(&[STUB]).unwrap();
        assert!(resolv.restore().unwrap());

        // A backup from a version that replaced the link cannot be put back on a read-only
        // /etc; it must not make every later start fail.
        std::fs::write(&resolv.backup, format!("symlink\n{}", target.display())).unwrap();
        assert!(resolv.restore().unwrap());
        assert!(!resolv.backup.exists());
        resolv.activate(&[STUB]).unwrap();
        assert!(resolv.restore().unwrap());
        unmount(&[&target, &run, &dir.path().join("etc")]);
    }

    #[test]
    fn plain_read_only_resolv_conf_inner() {
        if std::env::var_os(IN_NAMESPACE).is_none() {
            return;
        }
        let (dir, resolv) = setup();
        std::fs::write(&resolv.path, ORIGINAL).unwrap();
        read_only(&dir.path().join("etc"));
        writable(&resolv.path);
        resolv.activate(&[STUB]).unwrap();
        assert_eq!(
            nameservers(&std::fs::read_to_string(&resolv.path).unwrap()),
            vec![STUB]
        );
        assert!(resolv.restore().unwrap());
        assert_eq!(std::fs::read_to_string(&resolv.path).unwrap(), ORIGINAL);
        unmount(&[&resolv.path, &dir.path().join("etc")]);
    }

    /// Lifts the test's mounts so its temporary folder can be removed.
    fn unmount(paths: &[&Path]) {
        for path in paths {
            let _ = std::process::Command::new("umount").arg(path).status();
        }
    }
}
