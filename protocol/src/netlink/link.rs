//! Interfaces, addresses and routes: read them (the host, in a container's network
//! namespace) and set them (the agent, in the guest).

use super::{Netlink, NetlinkError};
use crate::network::{IpNet, RouteConfig};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// An interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Hardware address, when it is an Ethernet one.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// The loopback interface.
    pub loopback: bool,
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination (`None`: default route).
    pub destination: Option<IpNet>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Outgoing interface index.
    pub oif: Option<u32>,
    /// Metric.
    pub metric: Option<u32>,
    /// Added by the kernel for an address (a connected route).
    pub kernel: bool,
}

fn family(addr: &IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn link_of(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        loopback: msg.header.flags.contains(LinkFlags::Loopback),
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Address(addr) => link.mac = addr.try_into().ok(),
            _ => {}
        }
    }
    link
}

impl Netlink {
    /// Every interface of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let answers = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), || {
            "listing interfaces".into()
        })?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(msg) => Some(link_of(msg)),
                _ => None,
            })
            .collect())
    }

    /// The addresses of interface `index` (IPv6 link-local ones left out: each side
    /// makes its own).
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        let answers = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            || "listing addresses".into(),
        )?;
        let mut out = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewAddress(msg) = answer else {
                continue;
            };
            if msg.header.index != index || msg.header.scope == AddressScope::Link {
                continue;
            }
            let addr = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(addr) = addr {
                out.push(IpNet {
                    addr,
                    prefix: msg.header.prefix_len,
                });
            }
        }
        Ok(out)
    }

    /// The routes of the main table, IPv4 and IPv6 unicast.
    pub fn routes(&mut self) -> Result<Vec<Route>, NetlinkError> {
        let answers = self.dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            || "listing routes".into(),
        )?;
        let mut out = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(msg) = answer else {
                continue;
            };
            let h = &msg.header;
            if h.table != RouteHeader::RT_TABLE_MAIN || h.kind != RouteType::Unicast {
                continue;
            }
            let mut route = Route {
                destination: None,
                gateway: None,
                oif: None,
                metric: None,
                kernel: h.protocol == RouteProtocol::Kernel,
            };
            let prefix = h.destination_prefix_length;
            for attr in &msg.attributes {
                match attr {
                    RouteAttribute::Destination(a) => {
                        route.destination = route_ip(a).map(|addr| IpNet { addr, prefix });
                    }
                    RouteAttribute::Gateway(a) => route.gateway = route_ip(a),
                    RouteAttribute::Oif(i) => route.oif = Some(*i),
                    RouteAttribute::Priority(p) => route.metric = Some(*p),
                    _ => {}
                }
            }
            out.push(route);
        }
        Ok(out)
    }

    /// Renames interface `index`, sets its MTU and brings it up (or down).
    pub fn set_link(
        &mut self,
        index: u32,
        name: Option<&str>,
        mtu: Option<u32>,
        up: bool,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        if let Some(name) = name {
            msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        }
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.change(RouteNetlinkMessage::SetLink(msg), 0, || {
            format!("setting interface {index} (name {name:?}, MTU {mtu:?}, up {up})")
        })
    }

    /// Moves interface `index` into the network namespace `ns` (it goes down and
    /// loses its addresses and routes; name, MTU and MAC stay).
    pub fn move_link(&mut self, index: u32, ns: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        self.change(RouteNetlinkMessage::SetLink(msg), 0, || {
            format!("moving interface {index} to another network namespace")
        })
    }

    /// Adds `net` to interface `index`.
    pub fn add_address(&mut self, index: u32, net: IpNet) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(&net.addr);
        msg.header.prefix_len = net.prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(net.addr));
        msg.attributes.push(AddressAttribute::Address(net.addr));
        self.change(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("adding address {net} to interface {index}"),
        )
    }

    /// Adds a route through interface `index`.
    pub fn add_route(&mut self, index: u32, route: &RouteConfig) -> Result<(), NetlinkError> {
        let mut msg = RouteMessage::default();
        let any = route
            .destination
            .map(|d| d.addr)
            .or(route.gateway)
            .unwrap_or(IpAddr::from([0u8; 4]));
        msg.header.address_family = family(&any);
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if route.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if let Some(dest) = route.destination {
            msg.header.destination_prefix_length = dest.prefix;
            msg.attributes
                .push(RouteAttribute::Destination(dest.addr.into()));
        }
        if let Some(gw) = route.gateway {
            msg.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        if let Some(metric) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        self.change(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            || {
                let dest = route
                    .destination
                    .map_or("default".to_owned(), |d| d.to_string());
                format!(
                    "adding route {dest} via {:?} on interface {index}",
                    route.gateway
                )
            },
        )
    }
}
