//! The network a sandbox's guest gets: the interfaces, addresses and routes the host
//! found in the container's network namespace (request `configure_network`).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// An address with its prefix length (`10.88.0.5/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpNet {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix: u8,
}

impl IpNet {
    /// Whether the prefix length fits the address family.
    pub fn is_valid(&self) -> bool {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        self.prefix <= max
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One network interface of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceConfig {
    /// The name it gets in the guest (the host interface's, e.g. `eth0`).
    pub name: String,
    /// Its MAC address (`xx:xx:xx:xx:xx:xx`): the guest interface with this address is
    /// the one configured.
    pub mac: String,
    /// Its MTU.
    pub mtu: u32,
    /// Its addresses.
    pub addresses: Vec<IpNet>,
}

/// One route of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    /// The destination; `None` for the default route.
    pub destination: Option<IpNet>,
    /// The next hop; `None` for a directly connected destination.
    pub gateway: Option<IpAddr>,
    /// The interface (by its name in [`InterfaceConfig::name`]).
    pub interface: String,
    /// The route's metric, if it has one.
    pub metric: Option<u32>,
}

/// The guest's network: interfaces first, then routes (connected routes first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Interfaces besides loopback.
    pub interfaces: Vec<InterfaceConfig>,
    /// Routes besides those the kernel adds for the addresses themselves.
    pub routes: Vec<RouteConfig>,
}
