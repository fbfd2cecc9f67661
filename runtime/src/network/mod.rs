//! The container's network carried into its microVM (Kata's "tcfilter" model).
//!
//! Engines hand the runtime a network namespace already wired up: a veth with
//! addresses and routes. At create, when the spec names such a namespace by path,
//! husk enters it (on a thread of its own), reads the interface, its addresses,
//! routes and MTU, creates a tap there and joins tap and veth with tc: an ingress
//! qdisc on each and a catch-all filter that redirects what arrives on one to the
//! other. The tap becomes the VM's virtio-net device; the guest interface gets the
//! veth's MAC, addresses, routes and MTU from the agent.
//!
//! What husk creates goes away with it: the tap is not persistent, so it vanishes
//! when the sandbox process closes it (even if it is killed), and with it the tap's
//! qdisc and filter; the veth's ingress qdisc is removed at teardown and again by
//! `delete` (recorded in `network.json` in the state directory).

use husk_protocol::mac::format_mac;
use husk_protocol::netlink::{Netlink, NetlinkError};
use husk_protocol::network::{InterfaceConfig, NetworkConfig, RouteConfig};
use husk_vmm::devices::virtio::net::tap::{Tap, TapError};
use husk_vmm::devices::virtio::net::MacAddr;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The tap's name inside the container's namespace.
pub const TAP_NAME: &str = "husk_tap0";
/// The record of what husk set up, in the container's state directory.
const RECORD: &str = "network.json";

/// Why the network could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The namespace could not be entered.
    #[error("cannot enter network namespace {}", .0.display())]
    Enter(PathBuf, #[source] std::io::Error),
    /// A netlink request failed.
    #[error("network namespace {}", .0.display())]
    Netlink(PathBuf, #[source] NetlinkError),
    /// The tap could not be created.
    #[error("network namespace {}", .0.display())]
    Tap(PathBuf, #[source] TapError),
    /// Something husk does not support (yet).
    #[error("network namespace {}: {}", .0.display(), .1)]
    Unsupported(PathBuf, String),
}

/// Where the container's network comes from, per its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// No network namespace, or a new (empty) one: the guest has loopback only.
    LoopbackOnly,
    /// The engine's namespace at this path.
    Join(PathBuf),
}

impl NetworkMode {
    /// Reads `linux.namespaces` of a spec.
    pub fn from_spec(spec: &serde_json::Value) -> NetworkMode {
        let namespaces = spec
            .pointer("/linux/namespaces")
            .and_then(|n| n.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        namespaces
            .iter()
            .find(|ns| ns.get("type").and_then(|t| t.as_str()) == Some("network"))
            .and_then(|ns| ns.get("path").and_then(|p| p.as_str()))
            .filter(|p| !p.is_empty())
            .map_or(NetworkMode::LoopbackOnly, |p| {
                NetworkMode::Join(PathBuf::from(p))
            })
    }
}

/// A network attached: the tap (for the VM's virtio-net device), the MAC the guest
/// must use, and what the agent configures.
#[derive(Debug)]
pub struct Attached {
    /// The tap, in the container's namespace.
    pub tap: Tap,
    /// The veth's MAC.
    pub mac: MacAddr,
    /// The guest's interfaces and routes.
    pub config: NetworkConfig,
}

/// What `delete` needs to undo the set-up.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    netns: PathBuf,
    veth: String,
}

/// Runs `f` on a thread that joined the network namespace at `path`.
fn in_netns<T: Send>(
    path: &Path,
    f: impl FnOnce() -> Result<T, NetworkError> + Send,
) -> Result<T, NetworkError> {
    let file = std::fs::File::open(path).map_err(|e| NetworkError::Enter(path.into(), e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetworkError::Enter(path.into(), e.into()))?;
                f()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetworkError::Unsupported(
                    path.into(),
                    "the network set-up thread panicked".into(),
                ))
            })
    })
}

/// Sets up the network of `netns` for a VM, recording it in `state_dir`. `None`: the
/// namespace has only loopback.
pub fn attach(netns: &Path, state_dir: &Path) -> Result<Option<Attached>, NetworkError> {
    let nl_err = |e| NetworkError::Netlink(netns.into(), e);
    in_netns(netns, || {
        let mut nl = Netlink::open().map_err(nl_err)?;
        let links = nl.links().map_err(nl_err)?;
        let candidates: Vec<_> = links
            .iter()
            .filter(|l| !l.loopback && l.mac.is_some() && l.name != TAP_NAME)
            .collect();
        let veth = match candidates.as_slice() {
            [] => return Ok(None),
            [one] => (*one).clone(),
            more => {
                let names: Vec<&str> = more.iter().map(|l| l.name.as_str()).collect();
                return Err(NetworkError::Unsupported(
                    netns.into(),
                    format!(
                        "{} interfaces ({}): husk supports one network interface per sandbox yet",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
        };
        let Some(mac) = veth.mac else {
            return Ok(None);
        };
        let addresses = nl.addresses(veth.index).map_err(nl_err)?;
        let mut routes: Vec<RouteConfig> = nl
            .routes()
            .map_err(nl_err)?
            .into_iter()
            .filter(|r| r.oif == Some(veth.index) && !r.kernel)
            .map(|r| RouteConfig {
                destination: r.destination,
                gateway: r.gateway,
                interface: veth.name.clone(),
                metric: r.metric,
            })
            .collect();
        // Connected routes before the routes through gateways they make reachable.
        routes.sort_by_key(|r| r.gateway.is_some());

        let tap = Tap::open(TAP_NAME).map_err(|e| NetworkError::Tap(netns.into(), e))?;
        let record = Record {
            netns: netns.to_owned(),
            veth: veth.name.clone(),
        };
        // Written before the veth is touched, so that `delete` undoes a half set-up.
        let _ = std::fs::write(
            state_dir.join(RECORD),
            serde_json::to_vec(&record).unwrap_or_default(),
        );
        let wired = (|| {
            let tap_index = nl
                .links()?
                .into_iter()
                .find(|l| l.name == TAP_NAME)
                .map(|l| l.index)
                .ok_or_else(|| NetlinkError::Kernel {
                    what: format!("finding {TAP_NAME}"),
                    source: std::io::Error::from_raw_os_error(libc::ENODEV),
                })?;
            nl.set_link(tap_index, None, Some(veth.mtu), true)?;
            nl.add_ingress_qdisc(veth.index)?;
            nl.redirect_ingress(veth.index, tap_index)?;
            nl.add_ingress_qdisc(tap_index)?;
            nl.redirect_ingress(tap_index, veth.index)
        })();
        if let Err(e) = wired {
            let _ = nl.del_ingress_qdisc(veth.index);
            let _ = std::fs::remove_file(state_dir.join(RECORD));
            return Err(nl_err(e));
        }
        Ok(Some(Attached {
            tap,
            mac: MacAddr(mac),
            config: NetworkConfig {
                interfaces: vec![InterfaceConfig {
                    name: veth.name.clone(),
                    mac: format_mac(&mac),
                    mtu: veth.mtu,
                    addresses,
                }],
                routes,
            },
        }))
    })
}

/// Undoes [`attach`] as recorded in `state_dir`: removes the veth's ingress qdisc
/// (the tap and its own go when the sandbox process closes the tap). Nothing to do
/// when nothing was recorded or the namespace is gone.
pub fn detach(state_dir: &Path) -> Result<(), NetworkError> {
    let path = state_dir.join(RECORD);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    };
    if !record.netns.exists() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    let netns = record.netns.clone();
    in_netns(&netns, || {
        let nl_err = |e| NetworkError::Netlink(netns.clone(), e);
        let mut nl = Netlink::open().map_err(nl_err)?;
        let links = nl.links().map_err(nl_err)?;
        if let Some(veth) = links.iter().find(|l| l.name == record.veth) {
            nl.del_ingress_qdisc(veth.index).map_err(nl_err)?;
        }
        Ok(())
    })?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[cfg(test)]
mod tests;
