//! A container's own network namespace in the guest (`linux.namespaces` entry
//! `network` without a path).
//!
//! The agent makes it on a short-lived thread (`unshare(CLONE_NEWNET)` changes only
//! that thread), brings `lo` up there, and moves in the interfaces that
//! `configure_network` set up in the guest's root namespace: a move brings an
//! interface down and drops its addresses and routes (name, MTU and MAC stay), so
//! the same configuration is applied again inside. When the handle is dropped (the
//! container is gone, or its creation failed) the interfaces go back to the root
//! namespace and are configured there again.

use super::{apply, configured};
use husk_protocol::mac::parse_mac;
use husk_protocol::netlink::{Netlink, NetlinkError};
use husk_protocol::network::NetworkConfig;
use husk_protocol::{AgentError, ErrorCode};
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A container's network namespace, holding the guest's interfaces while it lives.
#[derive(Debug)]
pub struct ContainerNetwork {
    ns: OwnedFd,
    root: OwnedFd,
    /// The configuration of the interfaces moved in.
    moved: Option<NetworkConfig>,
}

fn internal(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::new(
        ErrorCode::Internal,
        format!("the container's network namespace: {what}: {e}"),
    )
}

fn netlink_failed(e: NetlinkError) -> AgentError {
    internal("netlink", husk_protocol::error_chain(&e))
}

/// Runs `f` on a thread of its own, which `enter` first puts in a namespace.
fn on_thread<T: Send>(
    enter: impl FnOnce() -> nix::Result<()> + Send,
    f: impl FnOnce() -> Result<T, AgentError> + Send,
) -> Result<T, AgentError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("agent-netns".into())
            .spawn_scoped(scope, || {
                enter().map_err(|e| internal("entering it", e.desc()))?;
                f()
            })
            .map_err(|e| internal("a thread", e))?
            .join()
            .unwrap_or_else(|_| Err(internal("a thread", "it panicked")))
    })
}

/// Runs `f` in the network namespace `ns`.
fn in_namespace<T: Send>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce() -> Result<T, AgentError> + Send,
) -> Result<T, AgentError> {
    on_thread(|| setns(ns, CloneFlags::CLONE_NEWNET), f)
}

/// Moves the interfaces of `config` (found by MAC) from the calling thread's
/// namespace into `to`. With `all_there`, one that is missing is an error.
fn move_interfaces(
    config: &NetworkConfig,
    to: BorrowedFd<'_>,
    all_there: bool,
) -> Result<(), AgentError> {
    let mut nl = Netlink::open().map_err(netlink_failed)?;
    let links = nl.links().map_err(netlink_failed)?;
    for iface in &config.interfaces {
        let mac = parse_mac(&iface.mac);
        match links.iter().find(|l| l.mac.is_some() && l.mac == mac) {
            Some(link) => nl.move_link(link.index, to).map_err(netlink_failed)?,
            None if all_there => {
                return Err(AgentError::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "the guest's root network namespace has no interface with MAC {} \
                         (another container's network namespace holds it: join that one \
                         by path instead)",
                        iface.mac
                    ),
                ))
            }
            None => {}
        }
    }
    Ok(())
}

impl ContainerNetwork {
    /// Makes the namespace, with `lo` up and the configured interfaces in it.
    pub fn new() -> Result<ContainerNetwork, AgentError> {
        let here = |path: &str| {
            open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| internal(path, e.desc()))
        };
        let root = here("/proc/thread-self/ns/net")?;
        let ns = on_thread(
            || unshare(CloneFlags::CLONE_NEWNET),
            || {
                let ns = here("/proc/thread-self/ns/net")?;
                super::loopback_up().map_err(netlink_failed)?;
                Ok(ns)
            },
        )?;
        let mut network = ContainerNetwork {
            ns,
            root,
            moved: None,
        };
        if let Some(config) = configured() {
            // Recorded first: a move that fails half-way is undone on drop.
            network.moved = Some(config.clone());
            move_interfaces(&config, network.ns.as_fd(), true)?;
            in_namespace(network.ns.as_fd(), || apply(&config))?;
        }
        Ok(network)
    }

    /// The namespace, for the container's processes to enter.
    pub fn namespace(&self) -> Result<OwnedFd, AgentError> {
        self.ns.try_clone().map_err(|e| internal("dup", e))
    }
}

impl Drop for ContainerNetwork {
    fn drop(&mut self) {
        let Some(config) = self.moved.take() else {
            return;
        };
        let root = self.root.as_fd();
        let back = in_namespace(self.ns.as_fd(), || move_interfaces(&config, root, false))
            .and_then(|()| apply(&config));
        if let Err(e) = back {
            // Once per container at most, and not triggered by the guest's programs.
            eprintln!(
                "husk-agent: moving the interfaces back to the root network namespace: {}",
                e.message
            );
        }
    }
}
