//! A small synchronous rtnetlink client, on `netlink-packet-route` and `netlink-sys`.
//!
//! Used on both sides of a sandbox: the host runtime reads the container's network
//! namespace and wires a tap to its veth ([`tc`]), the agent configures the guest's
//! interface ([`link`]). One request at a time, each acknowledged or answered with a
//! dump; every kernel error names the request that failed.

pub mod link;
pub mod tc;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;

/// Largest answer datagram read at once (the kernel sizes dump parts to the buffer).
const RECV_BUF: usize = 64 * 1024;

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened or used.
    #[error("netlink socket")]
    Socket(#[source] io::Error),
    /// The kernel refused a request.
    #[error("{what}")]
    Kernel {
        /// The request.
        what: String,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// An answer could not be decoded.
    #[error("cannot decode the kernel's answer to {what}: {reason}")]
    Decode {
        /// The request.
        what: String,
        /// The decoder's message.
        reason: String,
    },
}

impl NetlinkError {
    /// The errno of a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// An rtnetlink socket in the calling thread's network namespace.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket (in the network namespace of the calling thread).
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends a request that changes something and waits for its acknowledgement.
    pub fn change(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: impl Fn() -> String,
    ) -> Result<(), NetlinkError> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_ACK | flags, &what)
            .map(drop)
    }

    /// Sends a dump request and gathers the answers.
    pub fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        what: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_DUMP, &what)
    }

    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
        request.finalize();
        let mut out = vec![0u8; request.buffer_len()];
        request.serialize(&mut out);
        self.socket.send(&out, 0).map_err(NetlinkError::Socket)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            let len = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(NetlinkError::Socket)?;
            let mut offset = 0;
            while offset < len {
                let bytes = &self.buf[offset..len];
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                        NetlinkError::Decode {
                            what: what(),
                            reason: e.to_string(),
                        }
                    })?;
                let size = reply.header.length as usize;
                if size == 0 {
                    return Err(NetlinkError::Decode {
                        what: what(),
                        reason: "a message of length 0".into(),
                    });
                }
                offset += (size + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(answers),
                        Some(code) => {
                            return Err(NetlinkError::Kernel {
                                what: what(),
                                source: io::Error::from_raw_os_error(-code.get()),
                            })
                        }
                    },
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        if !dump {
                            // An echo of a change request; its ack follows.
                            continue;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
