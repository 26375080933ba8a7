//! Linux: a routing table for Ember's routes and a rule per address family that sends
//! unmarked traffic to it first (`not fwmark` → table), like wg-quick does.

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

/// The table Ember's routes go into.
pub const ROUTE_TABLE: u8 = 177;
/// The rules' priority: before `main` (32766), after the local table (0).
const RULE_PRIORITY: &str = "5177";

/// Marks a socket so its packets skip Ember's table. Needs CAP_NET_ADMIN; without it the
/// socket still works but relies on no resource covering its peers.
pub fn mark_socket(socket: &impl AsFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Mark, &FWMARK)
        .map_err(io::Error::from)
}

/// Replaces any rules of an earlier run (a crash leaves them behind) with fresh ones.
pub async fn install_rules(namespace: &Namespace) -> io::Result<()> {
    remove_rules(namespace).await?;
    for family in ["-4", "-6"] {
        ip(
            namespace,
            &[
                family,
                "rule",
                "add",
                "not",
                "fwmark",
                &format!("{FWMARK:#x}"),
                "table",
                &ROUTE_TABLE.to_string(),
                "priority",
                RULE_PRIORITY,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Removes Ember's rules; absent rules are fine.
pub async fn remove_rules(namespace: &Namespace) -> io::Result<()> {
    for family in ["-4", "-6"] {
        // One `del` removes one rule; more than one can only be left by a bug elsewhere.
        for _ in 0..8 {
            if ip(
                namespace,
                &[family, "rule", "del", "priority", RULE_PRIORITY],
            )
            .await
            .is_err()
            {
                break;
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
            nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
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
