//! The connection table: the unix listener, every unix stream, and the epoll set the
//! VMM's event loop watches for them (the device's backend descriptor).
//!
//! Tokens: [`TOKEN_LISTENER`], [`TOKEN_TIMER`] (a timerfd armed for the earliest
//! connection deadline), [`TOKEN_KICK`] (an eventfd the muxer writes to itself when it
//! stopped with work left), and one token per unix stream from [`FIRST_CONN_TOKEN`] on.
//! Streams and the listener are registered edge-triggered (no busy loop on a stream the
//! device does not want to read now); the timer and the eventfd level-triggered, and
//! both are cleared every time the muxer runs.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

use super::connection::{Connection, State, Verdict, DEFAULT_CONNECT_TIMEOUT};
use super::packet::{op, PacketHeader, TYPE_STREAM};
use super::{VsockStats, HOST_CID};

/// Most connections (in any state) at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most host connections not yet answered by the guest (CONNECT line pending, or the
/// REQUEST waiting for a RESPONSE); further ones are closed at once.
pub const MAX_PENDING: usize = 64;
/// Most control packets (RSTs) waiting for receive buffers; further ones are dropped.
pub const MAX_CONTROL: usize = MAX_CONNECTIONS + MAX_PENDING;
/// First host port of host-initiated connections; ports are handed out upwards from
/// here, wrapping back to it, skipping ports in use.
pub const EPHEMERAL_PORT_BASE: u32 = 1 << 30;

/// Epoll token of the listener.
pub const TOKEN_LISTENER: u64 = 0;
/// Epoll token of the deadline timer.
pub const TOKEN_TIMER: u64 = 1;
/// Epoll token of the self-kick eventfd.
pub const TOKEN_KICK: u64 = 2;
/// First epoll token of a unix stream.
pub const FIRST_CONN_TOKEN: u64 = 16;

/// Events a unix stream is registered for.
fn stream_events() -> EventSet {
    EventSet::IN
        | EventSet::OUT
        | EventSet::READ_HANG_UP
        | EventSet::HANG_UP
        | EventSet::ERROR
        | EventSet::EDGE_TRIGGERED
}

/// Connects a non-blocking unix stream to `path`; a listener with a full backlog is a
/// failure (`EAGAIN`), not a wait.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: plain system call with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor just created and owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `addr` is an initialized `sockaddr_un` that outlives the call and `len`
    // (at most its size, checked above) covers its family and the NUL-terminated path.
    let ret = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(sock))
}

/// The connection table of one device.
#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    epoll: Epoll,
    listener: UnixListener,
    timer: TimerFd,
    kick: EventFd,
    armed: Option<Instant>,
    timer_fired: bool,
    conns: HashMap<u64, Connection>,
    by_ports: HashMap<(u32, u32), u64>,
    next_token: u64,
    next_port: u32,
    control: VecDeque<PacketHeader>,
    rx_ready: VecDeque<u64>,
    /// Counters.
    pub stats: VsockStats,
    /// From `accept` to the guest's RESPONSE, at most.
    pub connect_timeout: Duration,
}

impl Muxer {
    /// Registers `listener` (already bound, non-blocking) in a new epoll set.
    pub fn new(guest_cid: u64, uds_path: PathBuf, listener: UnixListener) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let timer = TimerFd::new()?;
        let kick = EventFd::new(EFD_NONBLOCK)?;
        epoll.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, TOKEN_LISTENER),
        )?;
        epoll.ctl(
            ControlOperation::Add,
            timer.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_TIMER),
        )?;
        epoll.ctl(
            ControlOperation::Add,
            kick.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_KICK),
        )?;
        Ok(Muxer {
            guest_cid,
            uds_path,
            epoll,
            listener,
            timer,
            kick,
            armed: None,
            timer_fired: false,
            conns: HashMap::new(),
            by_ports: HashMap::new(),
            next_token: FIRST_CONN_TOKEN,
            next_port: EPHEMERAL_PORT_BASE,
            control: VecDeque::new(),
            rx_ready: VecDeque::new(),
            stats: VsockStats::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The epoll descriptor.
    pub fn epoll_fd(&self) -> i32 {
        self.epoll.as_raw_fd()
    }

    /// Connections in the table (any state).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Drops every connection (closing its stream) and every queued packet.
    pub fn reset(&mut self) {
        let tokens: Vec<u64> = self.conns.keys().copied().collect();
        for token in tokens {
            self.remove(token, false);
        }
        self.control.clear();
        self.rx_ready.clear();
        let _ = self.timer.clear();
        self.armed = None;
        let _ = self.kick.read();
    }

    /// Collects what epoll reports: accepts connections, records stream readiness.
    pub fn process_events(&mut self, now: Instant) {
        let mut events = [EpollEvent::default(); 64];
        let n = match self.epoll.wait(0, &mut events) {
            Ok(n) => n,
            Err(_) => return,
        };
        for event in &events[..n] {
            match event.data() {
                TOKEN_LISTENER => self.accept_all(now),
                // Cleared (re-armed) at the end of the run.
                TOKEN_TIMER => self.timer_fired = true,
                TOKEN_KICK => {
                    let _ = self.kick.read();
                }
                token => {
                    if let Some(conn) = self.conns.get_mut(&token) {
                        let set = event.event_set();
                        let hup = EventSet::HANG_UP | EventSet::ERROR;
                        if set.intersects(EventSet::IN | EventSet::READ_HANG_UP | hup) {
                            conn.readable = true;
                        }
                        if set.intersects(EventSet::OUT | hup) {
                            conn.writable = true;
                        }
                    }
                }
            }
        }
    }

    fn pending(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.state, State::AwaitConnect | State::Connecting { .. }))
            .count()
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stats.accept_errors += 1;
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS || self.pending() >= MAX_PENDING {
                self.stats.refused += 1;
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = self.insert(Connection::accepted(stream, now, self.connect_timeout));
        }
    }

    /// Adds a connection to the table and the epoll set.
    fn insert(&mut self, conn: Connection) -> Option<u64> {
        let token = self.next_token;
        self.next_token += 1;
        let fd = conn.stream.as_raw_fd();
        if self
            .epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(stream_events(), token),
            )
            .is_err()
        {
            return None;
        }
        if conn.state != State::AwaitConnect {
            self.by_ports
                .insert((conn.local_port, conn.peer_port), token);
        }
        self.conns.insert(token, conn);
        self.mark_rx(token);
        Some(token)
    }

    /// Drops a connection; the guest gets an RST if it knew of it and `rst`.
    fn remove(&mut self, token: u64, rst: bool) {
        let Some(conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.epoll.ctl(
            ControlOperation::Delete,
            conn.stream.as_raw_fd(),
            EpollEvent::default(),
        );
        if conn.state != State::AwaitConnect {
            self.by_ports.remove(&(conn.local_port, conn.peer_port));
        }
        tracing::debug!(
            local_port = conn.local_port,
            peer_port = conn.peer_port,
            state = ?conn.state,
            rst,
            had_deadline = conn.deadline.is_some(),
            local_eof = conn.local_eof,
            guest_shutdown = conn.guest_shutdown,
            "vsock: connection closed"
        );
        if conn.connect_timed_out {
            crate::warn_guest!(
                guest_port = conn.peer_port,
                timeout_ms = self.connect_timeout.as_millis() as u64,
                "vsock: the guest did not answer a host connection in time; closed"
            );
        }
        if rst && conn.guest_knows() {
            self.push_rst(conn.local_port, conn.peer_port);
        }
    }

    fn push_rst(&mut self, local_port: u32, peer_port: u32) {
        if self.control.len() >= MAX_CONTROL {
            self.stats.control_dropped += 1;
            return;
        }
        self.stats.rst_sent += 1;
        self.control.push_back(PacketHeader {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: local_port,
            dst_port: peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op: op::RST,
            flags: 0,
            buf_alloc: 0,
            fwd_cnt: 0,
        });
    }

    fn mark_rx(&mut self, token: u64) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if !conn.in_rx_ready && conn.has_rx() {
                conn.in_rx_ready = true;
                self.rx_ready.push_back(token);
            }
        }
    }

    fn apply(&mut self, token: u64, verdict: Verdict) {
        match verdict {
            Verdict::Keep => self.mark_rx(token),
            Verdict::Close => self.remove(token, false),
            Verdict::Reset => self.remove(token, true),
            Verdict::Connect(port) => self.host_connect(token, port),
        }
    }

    /// A host port no connection uses.
    fn alloc_port(&mut self) -> Option<u32> {
        for _ in 0..=MAX_CONNECTIONS {
            let port = self.next_port;
            self.next_port = port.checked_add(1).unwrap_or(EPHEMERAL_PORT_BASE);
            if !self.by_ports.keys().any(|&(local, _)| local == port) {
                return Some(port);
            }
        }
        None
    }

    fn host_connect(&mut self, token: u64, peer_port: u32) {
        let Some(local_port) = self.alloc_port() else {
            self.remove(token, false);
            return;
        };
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.start_connect(local_port, peer_port);
        self.by_ports.insert((local_port, peer_port), token);
        self.mark_rx(token);
    }

    /// Serves every connection's stream and deadline.
    pub fn sweep(&mut self, now: Instant) {
        let tokens: Vec<u64> = self.conns.keys().copied().collect();
        for token in tokens {
            if let Some(conn) = self.conns.get_mut(&token) {
                let verdict = conn.pump(now);
                self.apply(token, verdict);
            }
        }
    }

    /// Arms the timer for the earliest deadline (or disarms it).
    pub fn rearm_timer(&mut self, now: Instant) {
        let earliest = self.conns.values().filter_map(|c| c.deadline).min();
        if earliest == self.armed && !self.timer_fired {
            return;
        }
        self.armed = earliest;
        self.timer_fired = false;
        let _ = match earliest {
            // Never zero: that would disarm the timer.
            Some(at) => self.timer.reset(
                at.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
                None,
            ),
            None => self.timer.clear(),
        };
    }

    /// Makes the event loop call the device again.
    pub fn kick(&self) {
        let _ = self.kick.write(1);
    }

    fn path_for(&self, port: u32) -> PathBuf {
        let mut path = OsString::from(self.uds_path.as_os_str());
        path.push(format!("_{port}"));
        PathBuf::from(path)
    }

    fn rst_reply(&mut self, hdr: &PacketHeader) {
        self.push_rst(hdr.dst_port, hdr.src_port);
    }

    /// A guest packet that failed validation: if it names a connection, that one is
    /// reset.
    pub fn reject(&mut self, hdr: &PacketHeader) {
        if let Some(&token) = self.by_ports.get(&(hdr.dst_port, hdr.src_port)) {
            self.remove(token, true);
        }
    }

    /// A valid packet from the guest.
    pub fn handle_tx(&mut self, hdr: &PacketHeader, payload: &[u8], now: Instant) {
        let key = (hdr.dst_port, hdr.src_port);
        let Some(&token) = self.by_ports.get(&key) else {
            match hdr.op {
                op::REQUEST => self.guest_connect(hdr),
                op::RST => {}
                _ => self.rst_reply(hdr),
            }
            return;
        };
        if hdr.op == op::REQUEST {
            // A second REQUEST for a live connection: the guest lost track of it.
            self.remove(token, true);
            return;
        }
        if let Some(conn) = self.conns.get_mut(&token) {
            let verdict = conn.handle_guest(hdr, payload, now);
            self.apply(token, verdict);
        }
    }

    fn guest_connect(&mut self, hdr: &PacketHeader) {
        if self.conns.len() >= MAX_CONNECTIONS {
            self.stats.refused += 1;
            self.rst_reply(hdr);
            return;
        }
        let stream = match connect_nonblocking(&self.path_for(hdr.dst_port)) {
            Ok(stream) => stream,
            Err(_) => {
                self.stats.refused += 1;
                self.rst_reply(hdr);
                return;
            }
        };
        if self
            .insert(Connection::guest_initiated(stream, hdr))
            .is_none()
        {
            self.rst_reply(hdr);
        }
    }

    /// Whether a packet waits for a receive buffer.
    pub fn has_rx(&mut self) -> bool {
        if !self.control.is_empty() {
            return true;
        }
        while let Some(&token) = self.rx_ready.front() {
            match self.conns.get_mut(&token) {
                Some(conn) if conn.has_rx() => return true,
                Some(conn) => conn.in_rx_ready = false,
                None => {}
            }
            self.rx_ready.pop_front();
        }
        false
    }

    /// Hands the next packet for the guest (at most `max_payload` payload bytes) to
    /// `emit`, control packets first, then connections round robin. Returns whether
    /// there was one.
    pub fn produce_rx(
        &mut self,
        max_payload: usize,
        now: Instant,
        emit: &mut dyn FnMut(&PacketHeader, &[u8]),
    ) -> bool {
        if let Some(hdr) = self.control.pop_front() {
            emit(&hdr, &[]);
            return true;
        }
        if !self.has_rx() {
            return false;
        }
        let Some(token) = self.rx_ready.pop_front() else {
            return false;
        };
        let Some(conn) = self.conns.get_mut(&token) else {
            return false;
        };
        conn.in_rx_ready = false;
        let produced = conn.produce_rx(self.guest_cid, max_payload, now, emit);
        self.mark_rx(token);
        produced
    }
}
