//! Traffic control: the ingress qdisc and the catch-all redirect that join a tap and a
//! veth (Kata's "tcfilter" model): what arrives on one leaves by the other.

use super::{Netlink, NetlinkError};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirror, TcActionMirrorOption,
    TcActionOption, TcActionType, TcAttribute, TcFilterU32, TcFilterU32Option, TcHandle, TcMessage,
    TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

/// `ETH_P_ALL`, in network byte order as the filter's protocol wants it.
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();
/// The filter's priority.
const PRIORITY: u16 = 1;

fn ingress_qdisc(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle::INGRESS;
    msg.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    msg.attributes.push(TcAttribute::Kind("ingress".into()));
    msg
}

impl Netlink {
    /// Adds an ingress qdisc to interface `index`.
    pub fn add_ingress_qdisc(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.change(
            RouteNetlinkMessage::NewQueueDiscipline(ingress_qdisc(index)),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("adding an ingress qdisc to interface {index}"),
        )
    }

    /// Removes the ingress qdisc of interface `index` (and its filters with it).
    /// Returns `false` if there was none.
    pub fn del_ingress_qdisc(&mut self, index: u32) -> Result<bool, NetlinkError> {
        let mut msg = ingress_qdisc(index);
        msg.attributes.clear();
        match self.change(RouteNetlinkMessage::DelQueueDiscipline(msg), 0, || {
            format!("removing the ingress qdisc of interface {index}")
        }) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Redirects everything arriving on interface `from` (its ingress qdisc) to the
    /// egress of interface `to`: a u32 filter matching all, with a mirred action.
    pub fn redirect_ingress(&mut self, from: u32, to: u32) -> Result<(), NetlinkError> {
        let mut msg = TcMessage::with_index(from as i32);
        msg.header.parent = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        msg.header.info = u32::from(PRIORITY) << 16 | u32::from(ETH_P_ALL_BE);
        let mut selector = TcU32Selector::default();
        selector.flags = TcU32SelectorFlags::Terminal;
        selector.nkeys = 1;
        // One key with mask 0: it matches every packet.
        selector.keys = vec![TcU32Key::default()];
        let mut mirror = TcMirror::default();
        mirror.generic = TcActionGeneric::default();
        mirror.generic.action = TcActionType::Stolen;
        mirror.eaction = TcMirrorActionType::EgressRedir;
        mirror.ifindex = to;
        let mut action = TcAction::default();
        action.attributes = vec![
            TcActionAttribute::Kind(TcActionMirror::KIND.to_owned()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirror,
            ))]),
        ];
        msg.attributes
            .push(TcAttribute::Kind(TcFilterU32::KIND.to_owned()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]));
        self.change(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("redirecting the ingress of interface {from} to interface {to}"),
        )
    }
}
