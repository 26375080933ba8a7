//! The local endpoint, one facade over the per-OS implementations.

#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;
#[cfg(any(windows, test))]
mod windows_checks;

#[cfg(unix)]
pub use unix::{Listener, ServerStream, Stream, connect, peer_identity};
#[cfg(windows)]
pub use windows::{Listener, ServerStream, Stream, connect, peer_identity};
#[cfg(any(windows, test))]
pub use windows_checks::ServerRefusal;

use std::path::PathBuf;

/// Where the service listens: a socket path on Unix, a pipe name on Windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(pub PathBuf);

impl Endpoint {
    /// The endpoint an installed service uses.
    pub fn system_default() -> Self {
        #[cfg(unix)]
        let path = ember_protocol::ipc::SOCKET_PATH;
        #[cfg(windows)]
        let path = ember_protocol::ipc::PIPE_NAME;
        Self(PathBuf::from(path))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

/// Who is on the other end of an accepted connection, as the OS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    Unix {
        uid: u32,
        pid: Option<i32>,
        /// Primary and supplementary groups of the peer process.
        groups: Vec<u32>,
    },
    /// Windows admits peers through the pipe's DACL; the process id is for the log, the token
    /// decides who may change settings.
    Windows {
        pid: u32,
        token: crate::windows_security::ClientToken,
    },
}

/// Whom the service admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// The uid the service runs as (its own user always may connect).
    pub service_uid: u32,
    /// The gid of the `ember` group, if that group exists.
    pub allowed_gid: Option<u32>,
}

impl AccessPolicy {
    /// Whether `peer` may change the machine-wide settings (the portal URL every user signs in
    /// to, the log filter). Group members may use the service but not redirect other users'
    /// sign-ins: on Unix only root and the service's own user may.
    ///
    /// On Windows LocalSystem and elevated administrators may (read from the client process's
    /// token when it connects).
    pub fn may_change_settings(&self, peer: &PeerIdentity) -> bool {
        match peer {
            PeerIdentity::Windows { token, .. } => token.may_change_settings(),
            PeerIdentity::Unix { uid, .. } => *uid == 0 || *uid == self.service_uid,
        }
    }

    /// Who [`Self::may_change_settings`] admits, in words for the user.
    pub fn settings_admin(&self) -> String {
        if cfg!(windows) {
            "an administrator (run as administrator) or LocalSystem".to_owned()
        } else if self.service_uid == 0 {
            "an administrator (root)".to_owned()
        } else {
            format!("root or the service's user (uid {})", self.service_uid)
        }
    }

    /// Root, the service's own user and members of the `ember` group are admitted.
    pub fn check(&self, peer: &PeerIdentity) -> Result<(), String> {
        match peer {
            PeerIdentity::Windows { .. } => Ok(()),
            PeerIdentity::Unix { uid, groups, .. } => {
                if *uid == 0 || *uid == self.service_uid {
                    return Ok(());
                }
                if let Some(gid) = self.allowed_gid
                    && groups.contains(&gid)
                {
                    return Ok(());
                }
                Err(format!(
                    "uid {uid} is neither root nor a member of the group `{}`; add the user to \
                     that group and log in again",
                    ember_protocol::ipc::SERVICE_GROUP
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, groups: &[u32]) -> PeerIdentity {
        PeerIdentity::Unix {
            uid,
            pid: Some(42),
            groups: groups.to_vec(),
        }
    }

    const POLICY: AccessPolicy = AccessPolicy {
        service_uid: 0,
        allowed_gid: Some(990),
    };

    #[test]
    fn root_is_admitted() {
        assert!(POLICY.check(&peer(0, &[])).is_ok());
    }

    #[test]
    fn member_of_the_service_group_is_admitted() {
        assert!(POLICY.check(&peer(1000, &[1000, 990])).is_ok());
    }

    #[test]
    fn other_users_are_refused_with_a_hint() {
        let reason = POLICY.check(&peer(1000, &[1000, 27])).unwrap_err();
        assert!(reason.contains("uid 1000"), "{reason}");
        assert!(reason.contains("`ember`"), "{reason}");
    }

    #[test]
    fn only_root_and_the_service_user_may_change_settings() {
        let policy = AccessPolicy {
            service_uid: 999,
            allowed_gid: Some(990),
        };
        assert!(policy.may_change_settings(&peer(0, &[])));
        assert!(policy.may_change_settings(&peer(999, &[])));
        assert!(!policy.may_change_settings(&peer(1000, &[1000, 990])));
        assert!(!policy.may_change_settings(&PeerIdentity::Windows {
            pid: 7,
            token: Default::default()
        }));
    }

    #[test]
    fn on_windows_only_local_system_and_elevated_administrators_may_change_settings() {
        use crate::windows_security::ClientToken;
        let policy = AccessPolicy {
            service_uid: 0,
            allowed_gid: None,
        };
        let windows = |local_system, administrator| PeerIdentity::Windows {
            pid: 7,
            token: ClientToken {
                local_system,
                administrator,
            },
        };
        // A standard user, or an administrator's app that was not elevated (UAC).
        assert!(!policy.may_change_settings(&windows(false, false)));
        assert!(policy.may_change_settings(&windows(false, true)));
        assert!(policy.may_change_settings(&windows(true, false)));
        // Connecting stays the pipe DACL's decision, whoever the client is.
        assert!(policy.check(&windows(false, false)).is_ok());
    }

    #[test]
    fn without_the_group_only_root_and_the_service_user_are_admitted() {
        let policy = AccessPolicy {
            service_uid: 1000,
            allowed_gid: None,
        };
        assert!(policy.check(&peer(1000, &[])).is_ok());
        assert!(policy.check(&peer(0, &[])).is_ok());
        assert!(policy.check(&peer(1001, &[990])).is_err());
    }
}
