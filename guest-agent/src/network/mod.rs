//! The guest's network: loopback at boot, then the interfaces and routes the host
//! found in the container's network namespace (request `configure_network`).
//!
//! The guest interface to configure is found by its MAC address (the host gave the
//! virtio-net device the veth's), renamed to the veth's name, given its MTU and
//! addresses, brought up; then the routes are added in order.

use husk_protocol::mac::parse_mac;
use husk_protocol::netlink::{Netlink, NetlinkError};
use husk_protocol::network::{IpNet, NetworkConfig};
use husk_protocol::{AgentError, ErrorCode};
use std::sync::Mutex;

pub mod namespace;

/// The last configuration applied by `configure`, for a container's own network
/// namespace, which the interfaces move into.
static CONFIGURED: Mutex<Option<NetworkConfig>> = Mutex::new(None);

/// What `configure` applied last, if anything.
pub fn configured() -> Option<NetworkConfig> {
    CONFIGURED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Most interfaces, addresses per interface and routes accepted in one request.
pub const MAX_INTERFACES: usize = 8;
/// See [`MAX_INTERFACES`].
pub const MAX_ADDRESSES: usize = 64;
/// See [`MAX_INTERFACES`].
pub const MAX_ROUTES: usize = 256;

/// Brings the loopback interface up (index 1 in every namespace).
pub fn loopback_up() -> Result<(), NetlinkError> {
    let mut nl = Netlink::open()?;
    let lo = nl.links()?.into_iter().find(|l| l.loopback);
    match lo {
        Some(lo) if !lo.up => nl.set_link(lo.index, None, None, true),
        _ => Ok(()),
    }
}

fn invalid(message: String) -> AgentError {
    AgentError::new(ErrorCode::InvalidArgument, message)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// Checks a request before anything is changed.
pub fn validate(config: &NetworkConfig) -> Result<(), AgentError> {
    if config.interfaces.len() > MAX_INTERFACES || config.routes.len() > MAX_ROUTES {
        return Err(invalid(format!(
            "too many interfaces ({}, at most {MAX_INTERFACES}) or routes ({}, at most {MAX_ROUTES})",
            config.interfaces.len(),
            config.routes.len()
        )));
    }
    let bad_net = |net: &IpNet| !net.is_valid();
    for iface in &config.interfaces {
        if !valid_name(&iface.name) {
            return Err(invalid(format!("invalid interface name {:?}", iface.name)));
        }
        if parse_mac(&iface.mac).is_none() {
            return Err(invalid(format!("invalid MAC address {:?}", iface.mac)));
        }
        if !(68..=65_535).contains(&iface.mtu) {
            return Err(invalid(format!(
                "MTU {} of {} is out of range",
                iface.mtu, iface.name
            )));
        }
        if iface.addresses.len() > MAX_ADDRESSES {
            return Err(invalid(format!("too many addresses on {}", iface.name)));
        }
        if let Some(net) = iface.addresses.iter().find(|n| bad_net(n)) {
            return Err(invalid(format!("invalid address {net}")));
        }
    }
    for route in &config.routes {
        if !config.interfaces.iter().any(|i| i.name == route.interface) {
            return Err(invalid(format!(
                "route through unknown interface {:?}",
                route.interface
            )));
        }
        if route.destination.as_ref().is_some_and(bad_net) {
            return Err(invalid(format!(
                "invalid route destination {:?}",
                route.destination
            )));
        }
    }
    Ok(())
}

/// Applies `config` to the guest, and remembers it for the containers that get a
/// network namespace of their own.
pub fn configure(config: &NetworkConfig) -> Result<(), AgentError> {
    apply(config)?;
    *CONFIGURED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(config.clone());
    Ok(())
}

/// Applies `config` in the calling thread's network namespace.
fn apply(config: &NetworkConfig) -> Result<(), AgentError> {
    validate(config)?;
    let failed =
        |e: NetlinkError| AgentError::new(ErrorCode::Internal, husk_protocol::error_chain(&e));
    let mut nl = Netlink::open().map_err(failed)?;
    let links = nl.links().map_err(failed)?;
    let mut indexes = Vec::new();
    for iface in &config.interfaces {
        let mac = parse_mac(&iface.mac);
        let Some(link) = links.iter().find(|l| l.mac.is_some() && l.mac == mac) else {
            return Err(AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("the guest has no interface with MAC {}", iface.mac),
            ));
        };
        // A link is renamed while down.
        nl.set_link(link.index, None, None, false).map_err(failed)?;
        nl.set_link(link.index, Some(&iface.name), Some(iface.mtu), true)
            .map_err(failed)?;
        for net in &iface.addresses {
            nl.add_address(link.index, *net).map_err(failed)?;
        }
        indexes.push((iface.name.as_str(), link.index));
    }
    for route in &config.routes {
        let index = indexes
            .iter()
            .find(|(name, _)| *name == route.interface)
            .map(|(_, index)| *index)
            .unwrap_or_default();
        nl.add_route(index, route).map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_protocol::network::{InterfaceConfig, RouteConfig};

    fn config() -> NetworkConfig {
        NetworkConfig {
            interfaces: vec![InterfaceConfig {
                name: "eth0".into(),
                mac: "02:42:0a:58:00:05".into(),
                mtu: 1500,
                addresses: vec![IpNet {
                    addr: "10.88.0.5".parse().unwrap(),
                    prefix: 16,
                }],
            }],
            routes: vec![RouteConfig {
                destination: None,
                gateway: Some("10.88.0.1".parse().unwrap()),
                interface: "eth0".into(),
                metric: None,
            }],
        }
    }

    /// A change that spoils a request, and a word the error must contain.
    type Case = (fn(&mut NetworkConfig), &'static str);

    #[test]
    fn a_good_request_passes_and_bad_ones_are_named() {
        validate(&config()).unwrap();
        let cases: Vec<Case> = vec![
            (|c| c.interfaces[0].name = "a/b".into(), "interface name"),
            (
                |c| c.interfaces[0].name = "0123456789abcdef".into(),
                "interface name",
            ),
            (|c| c.interfaces[0].mac = "02:42:0a:58:00".into(), "MAC"),
            (|c| c.interfaces[0].mtu = 20, "MTU"),
            (|c| c.interfaces[0].addresses[0].prefix = 33, "address"),
            (
                |c| c.routes[0].interface = "eth9".into(),
                "unknown interface",
            ),
            (
                |c| c.routes = vec![c.routes[0].clone(); MAX_ROUTES + 1],
                "too many",
            ),
        ];
        for (spoil, want) in cases {
            let mut c = config();
            spoil(&mut c);
            let err = validate(&c).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument);
            assert!(err.message.contains(want), "{want}: {}", err.message);
        }
    }

    #[test]
    fn the_request_round_trips_as_json() {
        let text = serde_json::to_string(&config()).unwrap();
        assert!(text.contains("\"10.88.0.5\""), "{text}");
        let back: NetworkConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config());
    }
}
