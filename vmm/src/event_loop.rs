//! The device event loop: one epoll set on the VMM's main thread for the stop and
//! reset eventfds, console input, and the virtio queue notifications (ioeventfds).

use crate::devices::bus::lock;
use crate::devices::legacy::serial::SerialDevice;
use crate::devices::virtio::mmio::MmioTransport;
use crate::vstate::vcpu::{VmControl, VmExit};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

const TOKEN_EXIT: u64 = 0;
const TOKEN_RESET: u64 = 1;
const TOKEN_CONSOLE: u64 = 2;
/// Queue notifications: `TOKEN_QUEUE | device << 16 | queue`.
const TOKEN_QUEUE: u64 = 1 << 32;
/// Device backends: `TOKEN_BACKEND | device`.
const TOKEN_BACKEND: u64 = 1 << 33;
/// Console bytes read per wake-up: the UART's FIFO is 64 bytes deep.
const CONSOLE_CHUNK: usize = 64;

/// Why the event loop failed.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    /// epoll could not be created, or a descriptor added to it.
    #[error("epoll")]
    Epoll(#[source] std::io::Error),
    /// Waiting failed.
    #[error("epoll_wait")]
    Wait(#[source] std::io::Error),
}

/// The event loop of one VM.
pub struct EventLoop {
    epoll: Epoll,
    control: Arc<VmControl>,
    serial: Arc<Mutex<SerialDevice>>,
    reset_evt: EventFd,
    console: Option<File>,
    virtio: Vec<Arc<Mutex<MmioTransport>>>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("virtio_devices", &self.virtio.len())
            .field("console_input", &self.console.is_some())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Registers the VM's event sources.
    pub fn new(
        control: Arc<VmControl>,
        serial: Arc<Mutex<SerialDevice>>,
        reset_evt: EventFd,
        virtio: Vec<Arc<Mutex<MmioTransport>>>,
    ) -> Result<Self, EventLoopError> {
        let epoll = Epoll::new().map_err(EventLoopError::Epoll)?;
        let add = |fd: i32, token| {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(EventLoopError::Epoll)
        };
        add(control.exit_evt().as_raw_fd(), TOKEN_EXIT)?;
        add(reset_evt.as_raw_fd(), TOKEN_RESET)?;
        for (device, transport) in virtio.iter().enumerate() {
            let transport = lock(transport);
            for (queue, evt) in transport.polled_queue_evts().iter().enumerate() {
                add(
                    evt.as_raw_fd(),
                    TOKEN_QUEUE | (device as u64) << 16 | queue as u64,
                )?;
            }
            if let Some(fd) = transport.backend_fd() {
                add(fd, TOKEN_BACKEND | device as u64)?;
            }
        }
        Ok(EventLoop {
            epoll,
            control,
            serial,
            reset_evt,
            console: None,
            virtio,
        })
    }

    /// Sends what arrives on `input` to the guest's serial port. Inputs epoll cannot
    /// watch (regular files, `/dev/null`) are refused.
    pub fn set_console_input(&mut self, input: File) -> Result<(), EventLoopError> {
        self.epoll
            .ctl(
                ControlOperation::Add,
                input.as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_CONSOLE),
            )
            .map_err(EventLoopError::Epoll)?;
        self.console = Some(input);
        Ok(())
    }

    /// Serves events until a stop is requested.
    pub fn run(&mut self) -> Result<(), EventLoopError> {
        let mut events = vec![EpollEvent::default(); 16];
        while !self.control.stopping() {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(EventLoopError::Wait(e)),
            };
            for event in &events[..n] {
                self.dispatch(event.data());
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, token: u64) {
        match token {
            TOKEN_EXIT => {
                let _ = self.control.exit_evt().read();
            }
            TOKEN_RESET => {
                let _ = self.reset_evt.read();
                self.control.request_exit(VmExit::Reset);
            }
            TOKEN_CONSOLE => self.console_input(),
            _ if token & TOKEN_BACKEND != 0 => {
                if let Some(transport) = self.virtio.get((token & 0xffff) as usize) {
                    let mut transport = lock(transport);
                    transport.process_backend();
                    if let Some(reason) = transport.backend_failure() {
                        self.control.request_exit(VmExit::Error(reason));
                    }
                }
            }
            _ if token & TOKEN_QUEUE != 0 => {
                let device = ((token >> 16) & 0xffff) as usize;
                let queue = (token & 0xffff) as usize;
                if let Some(transport) = self.virtio.get(device) {
                    // The transport reads the (level-triggered) eventfd itself.
                    lock(transport).process_queue(queue);
                }
            }
            _ => {}
        }
    }

    fn console_input(&mut self) {
        let Some(console) = self.console.as_mut() else {
            return;
        };
        let mut buf = [0u8; CONSOLE_CHUNK];
        match console.read(&mut buf) {
            Ok(0) | Err(_) => {
                // End of input (or a broken one): stop watching it.
                let _ = self.epoll.ctl(
                    ControlOperation::Delete,
                    console.as_raw_fd(),
                    EpollEvent::default(),
                );
                self.console = None;
            }
            Ok(n) => {
                // Bytes beyond the UART's free FIFO space are dropped, as a real
                // UART overruns.
                lock(&self.serial).enqueue_input(&buf[..n]);
            }
        }
    }
}
