//! The i8042 keyboard controller, reduced to what a VM needs: the CPU reset line.
//!
//! Linux booted with `reboot=k` resets through command 0xfe on port 0x64; the device
//! signals an eventfd and the VMM ends the VM.

use crate::devices::bus::BusDevice;
use vmm_sys_util::eventfd::EventFd;

/// Offset of the command/status port (0x64) from the data port (0x60).
const COMMAND_OFFSET: u64 = 4;
/// "Pulse output line": resets the CPU.
const CMD_RESET_CPU: u8 = 0xfe;

/// The controller. It has no keyboard: reads return an empty, idle controller.
#[derive(Debug)]
pub struct I8042 {
    reset_evt: EventFd,
}

impl I8042 {
    /// A controller that signals `reset_evt` when the guest resets the CPU.
    pub fn new(reset_evt: EventFd) -> Self {
        I8042 { reset_evt }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status: output buffer empty, input buffer empty; data: nothing.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data == [CMD_RESET_CPU] {
            let _ = self.reset_evt.write(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_signals_and_nothing_else_does() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = I8042::new(evt.try_clone().unwrap());
        dev.write(0, &[CMD_RESET_CPU]);
        dev.write(COMMAND_OFFSET, &[0xfd]);
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU, 0]);
        assert!(evt.read().is_err(), "no reset yet");
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
        let mut status = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
