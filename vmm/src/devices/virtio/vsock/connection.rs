//! One vsock connection between a guest socket and a host unix stream: its state
//! machine, its buffers and its credit accounting (virtio 1.2, 5.10.6.3).
//!
//! Guest to host: RW payloads go straight to the unix stream; what it cannot take now
//! waits in `tx_buf`, never more than [`BUF_ALLOC`] bytes (the credit the device
//! advertises; a guest that sends beyond it is reset). Host to guest: bytes are read
//! from the unix stream into a staging buffer of at most [`RX_STAGE`] bytes, only
//! within the guest's credit, and only when the previous batch has been delivered; the
//! staging buffer drains into receive-queue buffers.
//!
//! The unix stream is registered edge-triggered: `readable` / `writable` remember
//! readiness until a read or write says `EAGAIN`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::packet::{
    op, PacketHeader, MAX_PAYLOAD, SHUTDOWN_BOTH, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use super::HOST_CID;

/// The receive buffer the device advertises for each connection (`buf_alloc`): the
/// most guest data it holds for a unix stream that does not read.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// A CREDIT_UPDATE goes out once `fwd_cnt` moved this far since the guest last heard.
pub const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 2;
/// Host bytes read ahead per connection, waiting for receive buffers.
pub const RX_STAGE: usize = 64 * 1024;
/// Longest `CONNECT <port>\n` line, newline included.
pub const MAX_CONNECT_LINE: usize = 32;
/// A host-initiated connection must be answered (CONNECT line read, guest RESPONSE)
/// within this time from `accept`, unless the device was given another limit
/// ([`super::Vsock::set_connect_timeout`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a shutdown, the peer gets this long to finish (RST, or the last data written
/// out) before the connection is reset.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Credit accounting of one connection, all counters wrapping `u32`s as on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credit {
    /// Payload bytes sent to the guest.
    pub tx_cnt: u32,
    /// The guest's receive buffer size, from its last packet.
    pub peer_buf_alloc: u32,
    /// Bytes the guest consumed, from its last packet.
    pub peer_fwd_cnt: u32,
    /// Guest bytes written out to the unix stream.
    pub fwd_cnt: u32,
    /// `fwd_cnt` as of the last packet sent to the guest.
    pub last_fwd_cnt_sent: u32,
}

impl Credit {
    /// Bytes the guest can take now: `peer_buf_alloc - (tx_cnt - peer_fwd_cnt)`, zero if
    /// the guest's numbers are inconsistent.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Takes the guest's credit fields from one of its packets.
    pub fn update_peer(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
    }

    /// `n` payload bytes went to the guest.
    pub fn sent(&mut self, n: u32) {
        self.tx_cnt = self.tx_cnt.wrapping_add(n);
    }

    /// `n` guest bytes were written out to the unix stream.
    pub fn forwarded(&mut self, n: u32) {
        self.fwd_cnt = self.fwd_cnt.wrapping_add(n);
    }

    /// A packet carrying our `fwd_cnt` went to the guest.
    pub fn advertised(&mut self) {
        self.last_fwd_cnt_sent = self.fwd_cnt;
    }

    /// Whether the guest should hear about `fwd_cnt` without waiting for other traffic.
    pub fn needs_update(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) > CREDIT_UPDATE_THRESHOLD
    }

    /// Whether `len` more guest bytes fit when `buffered` are waiting for the unix
    /// stream: the guest never has more than [`BUF_ALLOC`] bytes in flight.
    pub fn fits(buffered: usize, len: usize) -> bool {
        buffered
            .checked_add(len)
            .is_some_and(|total| total <= BUF_ALLOC as usize)
    }
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated, accepted: reading the `CONNECT <port>\n` line.
    AwaitConnect,
    /// Host-initiated: REQUEST queued (or sent), waiting for the guest's RESPONSE.
    Connecting {
        /// Whether the REQUEST reached the receive queue.
        request_sent: bool,
    },
    /// Data flows (possibly half closed).
    Established,
}

/// What the muxer does with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Keep,
    /// Drop it without telling the guest (it never heard of it, or it reset it).
    Close,
    /// Drop it and send the guest an RST.
    Reset,
    /// A host CONNECT line named this guest port.
    Connect(u32),
}

/// What a connection hands the receive queue next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxKind {
    /// A control packet with this op and flags, no payload.
    Control(u16, u32),
    /// `n` staged data bytes.
    Data(usize),
}

/// Sends with `MSG_NOSIGNAL` (a vanished peer is an error, not a SIGPIPE).
fn send(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live buffer of `buf.len()` bytes the kernel only reads, and the
    // descriptor belongs to `stream`, which outlives the call.
    let ret = unsafe {
        libc::send(
            stream.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Parses `CONNECT <port>` (newline stripped): exactly that, a decimal `u32`.
pub fn parse_connect_line(line: &[u8]) -> Option<u32> {
    let digits = line.strip_prefix(b"CONNECT ")?;
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One connection.
#[derive(Debug)]
pub struct Connection {
    /// The host end.
    pub stream: UnixStream,
    /// Where the connection is.
    pub state: State,
    /// (host port, guest port); meaningless in [`State::AwaitConnect`].
    pub local_port: u32,
    /// The guest's port.
    pub peer_port: u32,
    /// When the connection is reset if it has not moved on.
    pub deadline: Option<Instant>,
    /// The stream may have bytes (or EOF) to read.
    pub readable: bool,
    /// The stream may take bytes.
    pub writable: bool,
    /// Credit accounting.
    pub credit: Credit,
    /// Whether it is queued in the muxer's receive round robin.
    pub in_rx_ready: bool,
    /// The guest did not answer the host's REQUEST before the deadline.
    pub connect_timed_out: bool,
    line: Vec<u8>,
    rx_buf: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    tx_buf: VecDeque<u8>,
    pub(super) local_eof: bool,
    pub(super) guest_shutdown: u32,
    write_shut: bool,
    send_response: bool,
    send_credit_update: bool,
    shutdown_sent: bool,
}

impl Connection {
    fn new(stream: UnixStream, state: State, local_port: u32, peer_port: u32) -> Self {
        Connection {
            stream,
            state,
            local_port,
            peer_port,
            deadline: None,
            readable: true,
            writable: true,
            credit: Credit::default(),
            in_rx_ready: false,
            connect_timed_out: false,
            line: Vec::new(),
            rx_buf: Vec::new(),
            rx_start: 0,
            rx_end: 0,
            tx_buf: VecDeque::new(),
            local_eof: false,
            guest_shutdown: 0,
            write_shut: false,
            send_response: false,
            send_credit_update: false,
            shutdown_sent: false,
        }
    }

    /// A host process connected; it has until `now + timeout` to get through.
    pub fn accepted(stream: UnixStream, now: Instant, timeout: Duration) -> Self {
        let mut conn = Connection::new(stream, State::AwaitConnect, 0, 0);
        conn.deadline = Some(now + timeout);
        conn
    }

    /// The CONNECT line named `peer_port`; the device calls the guest from `local_port`.
    pub fn start_connect(&mut self, local_port: u32, peer_port: u32) {
        self.local_port = local_port;
        self.peer_port = peer_port;
        self.state = State::Connecting {
            request_sent: false,
        };
    }

    /// The guest's REQUEST from `hdr` was connected to `stream`: RESPONSE pending.
    pub fn guest_initiated(stream: UnixStream, hdr: &PacketHeader) -> Self {
        let mut conn = Connection::new(stream, State::Established, hdr.dst_port, hdr.src_port);
        conn.credit.update_peer(hdr.buf_alloc, hdr.fwd_cnt);
        conn.send_response = true;
        conn
    }

    /// Whether the guest knows of this connection (it must get an RST when it goes).
    pub fn guest_knows(&self) -> bool {
        match self.state {
            State::AwaitConnect => false,
            State::Connecting { request_sent } => request_sent,
            State::Established => true,
        }
    }

    /// Bytes read from the unix stream, not yet delivered to the guest.
    pub fn staged(&self) -> usize {
        self.rx_end - self.rx_start
    }

    /// Guest bytes waiting for the unix stream.
    pub fn buffered(&self) -> usize {
        self.tx_buf.len()
    }

    /// Reads the CONNECT line, a byte at a time so that nothing after it is consumed.
    fn read_connect_line(&mut self) -> Verdict {
        while self.readable {
            if self.line.len() >= MAX_CONNECT_LINE {
                return Verdict::Close;
            }
            let mut byte = [0u8; 1];
            match (&self.stream).read(&mut byte) {
                Ok(0) => return Verdict::Close,
                Ok(_) if byte[0] == b'\n' => {
                    return match parse_connect_line(&self.line) {
                        Some(port) => Verdict::Connect(port),
                        None => Verdict::Close,
                    };
                }
                Ok(_) => self.line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Verdict::Close,
            }
        }
        Verdict::Keep
    }

    /// Writes buffered guest data out while the stream takes it.
    fn flush(&mut self) -> Verdict {
        while self.writable && !self.tx_buf.is_empty() {
            let (front, _) = self.tx_buf.as_slices();
            match send(&self.stream, front) {
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    self.credit.forwarded(u32::try_from(n).unwrap_or(0));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Verdict::Reset,
            }
        }
        Verdict::Keep
    }

    fn may_read(&self) -> bool {
        self.state == State::Established
            && !self.local_eof
            && self.guest_shutdown & SHUTDOWN_RCV == 0
            && self.staged() == 0
            && self.credit.peer_credit() > 0
    }

    /// Reads one batch from the stream into the (empty) staging buffer, within credit.
    fn fill_stage(&mut self) -> Verdict {
        if !self.readable || !self.may_read() {
            return Verdict::Keep;
        }
        let want = RX_STAGE.min(self.credit.peer_credit() as usize);
        if self.rx_buf.len() < RX_STAGE {
            self.rx_buf.resize(RX_STAGE, 0);
        }
        self.rx_start = 0;
        self.rx_end = 0;
        match (&self.stream).read(&mut self.rx_buf[..want]) {
            Ok(0) => self.local_eof = true,
            Ok(n) => self.rx_end = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Verdict::Reset,
        }
        Verdict::Keep
    }

    /// Serves the unix stream and the timers; the muxer calls it after every event.
    pub fn pump(&mut self, now: Instant) -> Verdict {
        if self.deadline.is_some_and(|d| now >= d) {
            self.connect_timed_out = matches!(self.state, State::Connecting { .. });
            return if self.guest_knows() {
                Verdict::Reset
            } else {
                Verdict::Close
            };
        }
        match self.state {
            State::AwaitConnect => return self.read_connect_line(),
            // Nothing is read before the guest answers: the host waits for "OK".
            State::Connecting { .. } => return Verdict::Keep,
            State::Established => {}
        }
        if self.flush() == Verdict::Reset {
            return Verdict::Reset;
        }
        if self.tx_buf.is_empty() && self.guest_shutdown & SHUTDOWN_SEND != 0 {
            if self.guest_shutdown & SHUTDOWN_BOTH == SHUTDOWN_BOTH {
                // Both directions done: the clean close ends with our RST.
                return Verdict::Reset;
            }
            if !self.write_shut {
                let _ = self.stream.shutdown(std::net::Shutdown::Write);
                self.write_shut = true;
            }
        }
        if self.credit.needs_update() {
            self.send_credit_update = true;
        }
        self.fill_stage()
    }

    /// Handles a valid packet from the guest addressed to this connection.
    pub fn handle_guest(&mut self, hdr: &PacketHeader, payload: &[u8], now: Instant) -> Verdict {
        self.credit.update_peer(hdr.buf_alloc, hdr.fwd_cnt);
        match (self.state, hdr.op) {
            (State::AwaitConnect, _) => Verdict::Close,
            (State::Connecting { .. }, op::RESPONSE) => {
                let ok = format!("OK {}\n", self.local_port);
                // A fresh stream has room for a few bytes; anything else means the host
                // end is gone or misbehaving.
                if !matches!(send(&self.stream, ok.as_bytes()), Ok(n) if n == ok.len()) {
                    return Verdict::Reset;
                }
                self.state = State::Established;
                self.deadline = None;
                Verdict::Keep
            }
            (_, op::RST) => {
                tracing::debug!(
                    local_port = self.local_port,
                    peer_port = self.peer_port,
                    "vsock: guest reset the connection"
                );
                Verdict::Close
            }
            (State::Connecting { .. }, _) => Verdict::Reset,
            (State::Established, op::RW) => {
                if self.guest_shutdown & SHUTDOWN_SEND != 0
                    || !Credit::fits(self.tx_buf.len(), payload.len())
                {
                    return Verdict::Reset;
                }
                self.tx_buf.extend(payload);
                self.flush()
            }
            (State::Established, op::CREDIT_UPDATE) => Verdict::Keep,
            (State::Established, op::CREDIT_REQUEST) => {
                self.send_credit_update = true;
                Verdict::Keep
            }
            (State::Established, op::SHUTDOWN) => {
                let flags = hdr.flags & SHUTDOWN_BOTH;
                tracing::debug!(
                    local_port = self.local_port,
                    peer_port = self.peer_port,
                    flags,
                    staged = self.staged(),
                    unflushed = self.tx_buf.len(),
                    "vsock: guest shut the connection down"
                );
                self.guest_shutdown |= flags;
                if flags & SHUTDOWN_RCV != 0 {
                    // The guest takes no more data: drop what is staged.
                    self.rx_start = self.rx_end;
                }
                if self.guest_shutdown == SHUTDOWN_BOTH && self.deadline.is_none() {
                    self.deadline = Some(now + CLOSE_TIMEOUT);
                }
                Verdict::Keep
            }
            // REQUEST or RESPONSE on an established connection, unknown ops.
            (State::Established, _) => Verdict::Reset,
        }
    }

    fn shutdown_due(&self) -> bool {
        self.local_eof && self.staged() == 0 && !self.shutdown_sent
    }

    fn data_ready(&self) -> bool {
        self.staged() > 0 && self.credit.peer_credit() > 0
    }

    /// Whether the connection has a packet for the receive queue.
    pub fn has_rx(&self) -> bool {
        match self.state {
            State::AwaitConnect => false,
            State::Connecting { request_sent } => !request_sent,
            State::Established => {
                self.send_response
                    || self.data_ready()
                    || self.shutdown_due()
                    || self.send_credit_update
            }
        }
    }

    /// A host-to-guest header for this connection, with our credit fields.
    fn header(&self, guest_cid: u64, op: u16, flags: u32) -> PacketHeader {
        PacketHeader {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.credit.fwd_cnt,
        }
    }

    /// Hands the next packet (at most `max_payload` payload bytes) to `emit`; returns
    /// whether there was one.
    pub fn produce_rx(
        &mut self,
        guest_cid: u64,
        max_payload: usize,
        now: Instant,
        emit: &mut dyn FnMut(&PacketHeader, &[u8]),
    ) -> bool {
        let kind = match self.state {
            State::AwaitConnect => return false,
            State::Connecting { request_sent: true } => return false,
            State::Connecting {
                request_sent: false,
            } => {
                self.state = State::Connecting { request_sent: true };
                RxKind::Control(op::REQUEST, 0)
            }
            State::Established if self.send_response => {
                self.send_response = false;
                RxKind::Control(op::RESPONSE, 0)
            }
            State::Established if self.data_ready() => {
                let n = self
                    .staged()
                    .min(max_payload)
                    .min(self.credit.peer_credit() as usize)
                    .min(MAX_PAYLOAD as usize);
                if n == 0 {
                    return false;
                }
                RxKind::Data(n)
            }
            State::Established if self.shutdown_due() => {
                self.shutdown_sent = true;
                self.deadline = Some(now + CLOSE_TIMEOUT);
                RxKind::Control(op::SHUTDOWN, SHUTDOWN_BOTH)
            }
            State::Established if self.send_credit_update => RxKind::Control(op::CREDIT_UPDATE, 0),
            State::Established => return false,
        };
        match kind {
            RxKind::Control(op, flags) => emit(&self.header(guest_cid, op, flags), &[]),
            RxKind::Data(n) => {
                let hdr = self.header(guest_cid, op::RW, 0);
                let start = self.rx_start;
                emit(&hdr, &self.rx_buf[start..start + n]);
                self.rx_start += n;
                self.credit.sent(u32::try_from(n).unwrap_or(0));
            }
        }
        // Every packet tells the guest our fwd_cnt.
        self.credit.advertised();
        self.send_credit_update = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_credit_follows_the_guest() {
        let mut c = Credit::default();
        assert_eq!(c.peer_credit(), 0, "nothing before the guest says");
        c.update_peer(1000, 0);
        assert_eq!(c.peer_credit(), 1000);
        c.sent(600);
        assert_eq!(c.peer_credit(), 400);
        c.update_peer(1000, 500);
        assert_eq!(c.peer_credit(), 900);
        // Counters wrap.
        c.tx_cnt = u32::MAX - 9;
        c.update_peer(100, u32::MAX - 49);
        c.sent(20);
        assert_eq!(c.tx_cnt, 10);
        assert_eq!(c.peer_credit(), 100 - 60);
        // A guest whose fwd_cnt runs ahead of what it got gets nothing, not u32::MAX.
        c.update_peer(100, 500);
        assert_eq!(c.peer_credit(), 0);
    }

    #[test]
    fn credit_updates_follow_the_threshold() {
        let mut c = Credit::default();
        c.forwarded(CREDIT_UPDATE_THRESHOLD);
        assert!(!c.needs_update(), "exactly the threshold is not past it");
        c.forwarded(1);
        assert!(c.needs_update());
        c.advertised();
        assert!(!c.needs_update());
        assert_eq!(c.last_fwd_cnt_sent, CREDIT_UPDATE_THRESHOLD + 1);
        c.fwd_cnt = u32::MAX;
        c.last_fwd_cnt_sent = u32::MAX;
        c.forwarded(CREDIT_UPDATE_THRESHOLD + 1);
        assert!(c.needs_update(), "across the wrap");
    }

    #[test]
    fn over_credit_sends_do_not_fit() {
        let all = BUF_ALLOC as usize;
        assert!(Credit::fits(0, all));
        assert!(Credit::fits(all - 10, 10));
        assert!(!Credit::fits(all - 10, 11));
        assert!(!Credit::fits(usize::MAX, 1));
    }

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect_line(b"CONNECT 1234"), Some(1234));
        assert_eq!(parse_connect_line(b"CONNECT 0"), Some(0));
        assert_eq!(parse_connect_line(b"CONNECT 4294967295"), Some(u32::MAX));
        for bad in [
            &b"CONNECT 4294967296"[..],
            b"CONNECT ",
            b"CONNECT +5",
            b"CONNECT -5",
            b"CONNECT 12 ",
            b"CONNECT  12",
            b"connect 12",
            b"CONNECT12",
            b"CONNECT 0x10",
            b"CONNECT 00000000001",
            b"",
        ] {
            assert_eq!(
                parse_connect_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn established() -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let hdr = PacketHeader {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1000,
            dst_port: 5000,
            type_: TYPE_STREAM,
            op: op::REQUEST,
            buf_alloc: 4096,
            ..PacketHeader::default()
        };
        (Connection::guest_initiated(ours, &hdr), theirs)
    }

    fn rw(len: usize) -> (PacketHeader, Vec<u8>) {
        let hdr = PacketHeader {
            op: op::RW,
            len: len as u32,
            buf_alloc: 4096,
            ..PacketHeader::default()
        };
        (hdr, vec![0x5a; len])
    }

    #[test]
    fn a_guest_sending_past_credit_is_reset() {
        let (mut conn, theirs) = established();
        let now = Instant::now();
        // The host end does not read: the socket buffer fills, then tx_buf.
        let (hdr, data) = rw(MAX_PAYLOAD as usize);
        let mut sent = 0usize;
        let verdict = loop {
            let v = conn.handle_guest(&hdr, &data, now);
            if v != Verdict::Keep {
                break v;
            }
            sent += data.len();
            assert!(conn.buffered() <= BUF_ALLOC as usize);
            assert!(sent < 64 * 1024 * 1024, "never reset");
        };
        assert_eq!(verdict, Verdict::Reset);
        // What went out plus what waits: exactly as much as the guest sent.
        assert_eq!(conn.credit.fwd_cnt as usize + conn.buffered(), sent);
        drop(theirs);
    }

    #[test]
    fn forwarded_bytes_raise_a_credit_update() {
        let (mut conn, theirs) = established();
        let now = Instant::now();
        let mut emitted = Vec::new();
        let mut emit = |h: &PacketHeader, p: &[u8]| emitted.push((*h, p.len()));
        assert!(conn.produce_rx(3, 4096, now, &mut emit));
        assert_eq!(emitted[0].0.op, op::RESPONSE);
        let (hdr, data) = rw(MAX_PAYLOAD as usize);
        // Two payloads are at most the threshold: no update. The host end reads them.
        theirs.set_nonblocking(true).unwrap();
        let mut sink = vec![0u8; 1 << 20];
        let mut drain = || while (&theirs).read(&mut sink).is_ok() {};
        for _ in 0..2 {
            assert_eq!(conn.handle_guest(&hdr, &data, now), Verdict::Keep);
            drain();
        }
        assert_eq!(conn.pump(now), Verdict::Keep);
        assert!(!conn.has_rx());
        assert_eq!(conn.handle_guest(&hdr, &data, now), Verdict::Keep);
        drain();
        assert_eq!(conn.pump(now), Verdict::Keep);
        assert!(conn.has_rx(), "past half of buf_alloc");
        let mut emitted = Vec::new();
        let mut emit = |h: &PacketHeader, p: &[u8]| emitted.push((*h, p.len()));
        assert!(conn.produce_rx(3, 4096, now, &mut emit));
        assert_eq!(emitted[0].0.op, op::CREDIT_UPDATE);
        assert_eq!(emitted[0].0.fwd_cnt, 3 * MAX_PAYLOAD);
        assert_eq!(emitted[0].0.buf_alloc, BUF_ALLOC);
        assert!(!conn.has_rx());
        // A CREDIT_REQUEST is answered whatever the threshold.
        let req = PacketHeader {
            op: op::CREDIT_REQUEST,
            buf_alloc: 4096,
            ..PacketHeader::default()
        };
        assert_eq!(conn.handle_guest(&req, &[], now), Verdict::Keep);
        assert!(conn.has_rx());
    }
}
