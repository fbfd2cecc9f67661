//! The 16550 UART (COM1) that carries the guest console, on `vm-superio`.

use crate::devices::bus::BusDevice;
use std::io::Write;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises the UART's interrupt through an eventfd registered as an irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Where the guest console goes.
pub type ConsoleOut = Box<dyn Write + Send>;

/// COM1: output to a writer, input queued from the host.
pub struct SerialDevice {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, ConsoleOut>,
}

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice").finish_non_exhaustive()
    }
}

impl SerialDevice {
    /// A UART writing the guest's output to `out` and interrupting through `irq`.
    pub fn new(irq: EventFd, out: ConsoleOut) -> Self {
        SerialDevice {
            uart: Serial::new(IrqTrigger(irq), out),
        }
    }

    /// Queues host input for the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.uart.fifo_capacity().min(bytes.len());
        self.uart
            .enqueue_raw_bytes(&bytes[..room])
            .unwrap_or_default()
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (u8::try_from(offset), data) {
            (Ok(offset), [byte]) if offset < 8 => *byte = self.uart.read(offset),
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            if offset < 8 {
                // Output errors (a closed console) are the host's problem, not the
                // guest's: the byte is dropped.
                let _ = self.uart.write(offset, *byte);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn guest_output_reaches_the_console_and_input_the_guest() {
        let out = Shared::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(irq.try_clone().unwrap(), Box::new(out.clone()));
        for b in b"hi\n" {
            dev.write(0, &[*b]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi\n");

        dev.write(1, &[0x01]); // IER: interrupt when data is available
        assert_eq!(dev.enqueue_input(b"x"), 1);
        assert!(irq.read().unwrap() >= 1, "input raised the interrupt");
        let mut byte = [0u8];
        dev.read(0, &mut byte);
        assert_eq!(byte, [b'x']);
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(irq, Box::new(std::io::sink()));
        let mut wide = [0u8; 4];
        dev.read(0, &mut wide);
        assert_eq!(wide, [0xff; 4]);
        dev.read(9, &mut wide[..1]);
        dev.write(0, &[1, 2]);
        dev.write(u64::MAX, &[1]);
    }
}
