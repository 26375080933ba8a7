//! Unix domain socket endpoint (Linux, macOS).

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nix::unistd::Gid;
use tokio::net::{UnixListener, UnixStream};

use super::{Endpoint, PeerIdentity};

pub type Stream = UnixStream;
pub type ServerStream = UnixStream;

/// The service's listening socket. Dropping it removes the socket file.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds the socket; mode 0660 owned by `group` when given, otherwise 0600.
    ///
    /// A leftover socket file from a crashed run is replaced; a socket some other process still
    /// answers on is an error, so two services never fight over one path.
    pub async fn bind(endpoint: &Endpoint, group: Option<u32>) -> io::Result<Self> {
        let path = endpoint.0.clone();
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another tunnel service is listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        let inner = UnixListener::bind(&path)?;
        let listener = Self { inner, path };
        listener.restrict_access(group)?;
        Ok(listener)
    }

    fn restrict_access(&self, group: Option<u32>) -> io::Result<()> {
        let mode = match group {
            Some(gid) => {
                nix::unistd::chown(&self.path, None, Some(Gid::from_raw(gid)))
                    .map_err(io::Error::from)?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the next connection together with the identity of the process behind it.
    pub async fn accept(&mut self) -> io::Result<(ServerStream, io::Result<PeerIdentity>)> {
        let (stream, _) = self.inner.accept().await?;
        let peer = peer_identity(&stream);
        Ok((stream, peer))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), "Could not remove socket: {e}");
        }
    }
}

pub async fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
    UnixStream::connect(&endpoint.0).await
}

/// The peer's credentials as the kernel recorded them when it connected (SO_PEERCRED on
/// Linux, getpeereid on macOS), plus the groups the peer process holds.
pub fn peer_identity(stream: &Stream) -> io::Result<PeerIdentity> {
    let cred = stream.peer_cred()?;
    let mut groups = vec![cred.gid()];
    groups.extend(supplementary_groups(cred.uid(), cred.pid()));
    groups.sort_unstable();
    groups.dedup();
    Ok(PeerIdentity::Unix {
        uid: cred.uid(),
        pid: cred.pid(),
        groups,
    })
}

/// The groups the peer process really has. On Linux that is `/proc/PID/status`, which, unlike
/// the group database, tells apart a user added to a group who has not logged in again.
#[cfg(target_os = "linux")]
fn supplementary_groups(_uid: u32, pid: Option<i32>) -> Vec<u32> {
    let Some(pid) = pid else {
        return Vec::new();
    };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    parse_proc_groups(&status)
}

#[cfg(not(target_os = "linux"))]
fn supplementary_groups(uid: u32, _pid: Option<i32>) -> Vec<u32> {
    use nix::unistd::{Group, Uid, User};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    match Group::from_name(ember_protocol::ipc::SERVICE_GROUP) {
        Ok(Some(group)) if group.mem.contains(&user.name) => vec![group.gid.as_raw()],
        _ => Vec::new(),
    }
}

#[cfg(any(target_os = "linux", test))]
fn parse_proc_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_supplementary_groups_from_proc_status() {
        let status =
            "Name:\tember\nUid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 990 \nVmPeak:\t1 kB\n";
        assert_eq!(parse_proc_groups(status), vec![24, 27, 990]);
        assert!(parse_proc_groups("Name:\tx\n").is_empty());
    }

    #[tokio::test]
    async fn socket_without_group_is_private_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint(dir.path().join("t.sock"));
        let mut listener = Listener::bind(&endpoint, None).await.unwrap();
        let mode = std::fs::metadata(&endpoint.0).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let client = connect(&endpoint).await.unwrap();
        let (_server_side, peer) = listener.accept().await.unwrap();
        let PeerIdentity::Unix { uid, .. } = peer.unwrap() else {
            panic!("expected a Unix peer");
        };
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        drop(client);

        drop(listener);
        assert!(!endpoint.0.exists());
    }

    #[tokio::test]
    async fn refuses_to_take_over_a_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint(dir.path().join("t.sock"));
        let _first = Listener::bind(&endpoint, None).await.unwrap();
        let err = Listener::bind(&endpoint, None).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn replaces_a_socket_file_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint(dir.path().join("t.sock"));
        // A std listener does not remove its file when dropped, like a process that crashed.
        drop(std::os::unix::net::UnixListener::bind(&endpoint.0).unwrap());
        assert!(endpoint.0.exists());
        let _listener = Listener::bind(&endpoint, None).await.unwrap();
        connect(&endpoint).await.unwrap();
    }
}
