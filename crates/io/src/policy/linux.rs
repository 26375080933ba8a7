//! Linux: routing tables for Ember's routes and rules per address family that send unmarked
//! traffic to them (`not fwmark` → table), like wg-quick does. In order of priority:
//!
//! 1. `not fwmark` → table 177: the resources' prefixes, which win over any other route;
//! 2. the main table without its default route (`suppress_prefixlength 0`): the LAN and
//!    every other specific route of the system stay reachable;
//! 3. `not fwmark` → table 178: the default routes of the internet resource, when it is on.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::process::Command;

use super::FWMARK;

/// The network namespace the rules belong in: the one of the thread that made the routes'
/// netlink socket. `ip` runs in a thread of its own that enters it, so the rules land next to
/// the routes even when the caller has moved on (tests build devices inside other namespaces).
#[derive(Debug)]
pub struct Namespace(File);

impl Namespace {
    pub fn current() -> io::Result<Self> {
        File::open("/proc/thread-self/ns/net").map(Self)
    }
}

/// Whether default routes into the tunnel (the internet resource) leave the tunnel's own
/// sockets outside it: here the mark does.
pub const OWN_SOCKETS_SKIP_DEFAULT_ROUTES: bool = true;

/// The table Ember's resource routes go into.
pub const ROUTE_TABLE: u8 = 177;
/// The table of the internet resource's default routes.
pub const INTERNET_TABLE: u8 = 178;
/// The rules' priorities: before `main` (32766), after the local table (0).
const RESOURCES_PRIORITY: &str = "5177";
const MAIN_SPECIFIC_PRIORITY: &str = "5178";
const INTERNET_PRIORITY: &str = "5179";

/// Marks a socket so its packets skip Ember's table. Needs CAP_NET_ADMIN; without it the
/// socket still works but relies on no resource covering its peers.
pub fn mark_socket(socket: &impl AsFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Mark, &FWMARK)
        .map_err(io::Error::from)
}

/// Replaces any rules of an earlier run (a crash leaves them behind) with fresh ones.
pub async fn install_rules(namespace: &Namespace) -> io::Result<()> {
    remove_rules(namespace).await?;
    let mark = format!("{FWMARK:#x}");
    let resources = ROUTE_TABLE.to_string();
    let internet = INTERNET_TABLE.to_string();
    for family in ["-4", "-6"] {
        let rules: [&[&str]; 3] = [
            &[
                "not",
                "fwmark",
                &mark,
                "table",
                &resources,
                "priority",
                RESOURCES_PRIORITY,
            ],
            &[
                "table",
                "main",
                "suppress_prefixlength",
                "0",
                "priority",
                MAIN_SPECIFIC_PRIORITY,
            ],
            &[
                "not",
                "fwmark",
                &mark,
                "table",
                &internet,
                "priority",
                INTERNET_PRIORITY,
            ],
        ];
        for rule in rules {
            let args: Vec<&str> = [family, "rule", "add"]
                .iter()
                .chain(rule)
                .copied()
                .collect();
            ip(namespace, &args).await?;
        }
    }
    Ok(())
}

/// Removes Ember's rules; absent rules are fine.
pub async fn remove_rules(namespace: &Namespace) -> io::Result<()> {
    for family in ["-4", "-6"] {
        for priority in [
            RESOURCES_PRIORITY,
            MAIN_SPECIFIC_PRIORITY,
            INTERNET_PRIORITY,
        ] {
            // One `del` removes one rule; more than one can only be left by a bug elsewhere.
            for _ in 0..8 {
                if ip(namespace, &[family, "rule", "del", "priority", priority])
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn ip(namespace: &Namespace, args: &[&str]) -> io::Result<()> {
    let namespace = namespace.0.try_clone()?;
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (done, result) = tokio::sync::oneshot::channel();
    // A thread of its own: entering a namespace changes the thread for good, so it must not
    // be one that goes back to a pool.
    std::thread::spawn(move || {
        let run = || -> io::Result<std::process::Output> {
            // Entering a namespace needs CAP_SYS_ADMIN, which the hardened service lacks;
            // only enter it when this thread is elsewhere (tests).
            if !is_current(&namespace)? {
                nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
            }
            Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot run `ip`: {e}")))
        };
        let output = run().and_then(|output| {
            if output.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "`ip {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                )))
            }
        });
        let _ = done.send(output);
    });
    result
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the `ip` thread ended without an answer")))
}

/// Whether `namespace` is the network namespace of the calling thread.
fn is_current(namespace: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let target = namespace.metadata()?;
    let current = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok(target.dev() == current.dev() && target.ino() == current.ino())
}
