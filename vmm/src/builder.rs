//! Building a microVM from a [`VmConfig`] and running it to its end.
//!
//! Order of events: guest memory (memfd) → VM (irqchip, PIT, memory slots) → devices on
//! the buses with their irqfds and ioeventfds → kernel, initramfs, command line, zero
//! page, MP table, boot page tables → vCPUs (CPUID, MSRs, registers) → vCPU threads →
//! the event loop on this thread until the VM stops → vCPUs kicked and joined.

use crate::arch::x86_64::cpuid::{self, CpuidTopology};
use crate::arch::x86_64::layout::{
    COM1_IRQ, COM1_PORT, FIRST_VIRTIO_IRQ, I8042_PORT, LAST_IRQ, VIRTIO_MMIO_SIZE,
    VIRTIO_MMIO_START,
};
use crate::arch::x86_64::{boot, mptable, regs};
use crate::devices::bus::{Bus, BusError};
use crate::devices::legacy::i8042::I8042;
use crate::devices::legacy::serial::{ConsoleOut, SerialDevice};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::{VirtioDevice, VirtioInterrupt};
use crate::event_loop::{EventLoop, EventLoopError};
use crate::vstate::memory::{create_guest_ram, GuestRam, MemoryError};
use crate::vstate::vcpu::{Vcpu, VmControl, VmExit};
use crate::vstate::vm::{Vm, VmError};
use kvm_ioctls::IoEventAddress;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// Largest number of vCPUs: what the MP table describes in its 1 KiB slot.
pub const MAX_VCPUS: u8 = mptable::MAX_SUPPORTED_CPUS;
/// Offset of the virtio-mmio QueueNotify register.
const QUEUE_NOTIFY_OFFSET: u64 = 0x50;

/// What to boot, and how big.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// ELF `vmlinux` or bzImage.
    pub kernel: PathBuf,
    /// Initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Kernel command line; the VMM appends its `virtio_mmio.device=` words.
    pub cmdline: String,
}

/// Why a VM could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// Bad vCPU count.
    #[error("{0} vCPUs requested: between 1 and {MAX_VCPUS} are supported")]
    VcpuCount(u8),
    /// Guest memory.
    #[error("guest memory")]
    Memory(#[from] MemoryError),
    /// The KVM VM.
    #[error("VM set-up")]
    Vm(#[from] VmError),
    /// Loading the guest.
    #[error("guest loading")]
    Boot(#[from] boot::BootError),
    /// The MP table.
    #[error("MP table")]
    Mptable(#[from] mptable::MptableError),
    /// A vCPU's registers.
    #[error("vCPU set-up")]
    Regs(#[from] regs::RegsError),
    /// CPUID.
    #[error("CPUID set-up")]
    Cpuid(#[from] cpuid::CpuidError),
    /// A KVM call while wiring devices or vCPUs.
    #[error("KVM refused {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// An eventfd, thread or similar OS resource.
    #[error("cannot create {0}")]
    Os(&'static str, #[source] std::io::Error),
    /// A device's address range.
    #[error("device placement")]
    Bus(#[from] BusError),
    /// Too many devices for the IRQ lines.
    #[error("no IRQ line left for another virtio device")]
    NoIrq,
    /// The event loop.
    #[error("event loop")]
    EventLoop(#[from] EventLoopError),
}

/// A built microVM, ready to [`Vmm::run`].
#[derive(Debug)]
pub struct Vmm {
    vcpus: Vec<Vcpu>,
    control: Arc<VmControl>,
    event_loop: EventLoop,
    // Dropped last: the VM's memory slots point into it.
    _vm: Vm,
    _ram: GuestRam,
}

/// Devices attached before boot, and the command-line words that announce them.
struct DeviceSet {
    pio: Bus,
    mmio: Bus,
    cmdline: Vec<String>,
    serial: Arc<Mutex<SerialDevice>>,
    reset_evt: EventFd,
    virtio: Vec<Arc<Mutex<MmioTransport>>>,
}

fn eventfd(what: &'static str) -> Result<EventFd, VmmError> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(|e| VmmError::Os(what, e))
}

impl DeviceSet {
    fn new(vm: &Vm, console: ConsoleOut) -> Result<Self, VmmError> {
        let serial_irq = eventfd("the serial IRQ eventfd")?;
        vm.fd
            .register_irqfd(&serial_irq, COM1_IRQ)
            .map_err(|e| VmmError::Kvm("the serial irqfd", e))?;
        let serial = Arc::new(Mutex::new(SerialDevice::new(serial_irq, console)));
        let reset_evt = eventfd("the reset eventfd")?;
        let reset = reset_evt
            .try_clone()
            .map_err(|e| VmmError::Os("the reset eventfd", e))?;
        let mut pio = Bus::new();
        pio.insert(serial.clone(), u64::from(COM1_PORT), 8)?;
        pio.insert(
            Arc::new(Mutex::new(I8042::new(reset))),
            u64::from(I8042_PORT),
            5,
        )?;
        Ok(DeviceSet {
            pio,
            mmio: Bus::new(),
            cmdline: Vec::new(),
            serial,
            reset_evt,
            virtio: Vec::new(),
        })
    }

    /// Puts a virtio device on the next MMIO window and IRQ line.
    fn add_virtio(
        &mut self,
        vm: &Vm,
        ram: &GuestRam,
        device: Box<dyn VirtioDevice>,
    ) -> Result<(), VmmError> {
        let index = self.virtio.len() as u64;
        let irq = FIRST_VIRTIO_IRQ + index as u32;
        if irq > LAST_IRQ {
            return Err(VmmError::NoIrq);
        }
        let base = VIRTIO_MMIO_START + index * VIRTIO_MMIO_SIZE;
        let irq_evt = eventfd("a virtio IRQ eventfd")?;
        vm.fd
            .register_irqfd(&irq_evt, irq)
            .map_err(|e| VmmError::Kvm("a virtio irqfd", e))?;
        let interrupt = Arc::new(VirtioInterrupt::new(irq_evt));
        let transport = MmioTransport::new(ram.memory.clone(), device, interrupt)
            .map_err(|e| VmmError::Os("a virtio queue eventfd", e))?;
        for (queue, evt) in transport.queue_evts().iter().enumerate() {
            let addr = IoEventAddress::Mmio(base + QUEUE_NOTIFY_OFFSET);
            vm.fd
                .register_ioevent(evt, &addr, queue as u32)
                .map_err(|e| VmmError::Kvm("a virtio ioeventfd", e))?;
        }
        let transport = Arc::new(Mutex::new(transport));
        self.mmio
            .insert(transport.clone(), base, VIRTIO_MMIO_SIZE)?;
        self.cmdline.push(format!(
            "virtio_mmio.device={}K@{base:#x}:{irq}",
            VIRTIO_MMIO_SIZE >> 10
        ));
        self.virtio.push(transport);
        Ok(())
    }
}

impl Vmm {
    /// Builds the VM: memory, devices, the loaded guest and configured vCPUs. The
    /// guest console goes to `console`; `virtio` devices are attached in order.
    pub fn build(
        config: &VmConfig,
        console: ConsoleOut,
        virtio: Vec<Box<dyn VirtioDevice>>,
    ) -> Result<Vmm, VmmError> {
        if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
            return Err(VmmError::VcpuCount(config.vcpus));
        }
        let ram = create_guest_ram(config.mem_mib)?;
        let vm = Vm::new(&ram.memory, usize::from(config.vcpus))?;
        let mut devices = DeviceSet::new(&vm, console)?;
        for device in virtio {
            devices.add_virtio(&vm, &ram, device)?;
        }

        let mem = &ram.memory;
        let kernel = boot::load_kernel(mem, &config.kernel)?;
        let low_end = boot::low_ram_end(mem);
        let initrd = match &config.initrd {
            Some(path) => Some(boot::load_initrd(mem, path, kernel.reserved_end, low_end)?),
            None => None,
        };
        let words = config
            .cmdline
            .split_ascii_whitespace()
            .chain(devices.cmdline.iter().map(String::as_str));
        let cmdline = boot::build_cmdline(words)?;
        boot::write_boot_params(mem, &kernel, &cmdline, initrd, &ram.ranges)?;
        mptable::setup_mptable(mem, config.vcpus)?;
        regs::write_boot_tables(mem)?;

        let control = Arc::new(VmControl::new().map_err(|e| VmmError::Os("the exit eventfd", e))?);
        let pio = Arc::new(devices.pio);
        let mmio = Arc::new(devices.mmio);
        let mut supported = vm
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| VmmError::Kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        if vm.kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
            cpuid::enable_tsc_deadline(&mut supported);
        }
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for index in 0..config.vcpus {
            let fd = vm
                .fd
                .create_vcpu(u64::from(index))
                .map_err(|e| VmmError::Kvm("KVM_CREATE_VCPU", e))?;
            let mut cpuid = supported.clone();
            cpuid::normalize(
                &mut cpuid,
                CpuidTopology {
                    cpu_index: index,
                    cpu_count: config.vcpus,
                },
            )?;
            fd.set_cpuid2(&cpuid)
                .map_err(|e| VmmError::Kvm("KVM_SET_CPUID2", e))?;
            regs::setup_boot_vcpu(&fd, kernel.entry.0)?;
            vcpus.push(Vcpu::new(
                index,
                fd,
                pio.clone(),
                mmio.clone(),
                control.clone(),
            ));
        }

        let event_loop = EventLoop::new(
            control.clone(),
            devices.serial,
            devices.reset_evt,
            devices.virtio,
        )?;
        Ok(Vmm {
            vcpus,
            control,
            event_loop,
            _vm: vm,
            _ram: ram,
        })
    }

    /// The control block: [`VmControl::request_exit`] stops the VM from any thread.
    pub fn control(&self) -> Arc<VmControl> {
        self.control.clone()
    }

    /// Feeds `input` (a console, usually stdin) to the guest's serial port.
    pub fn set_console_input(&mut self, input: std::fs::File) -> Result<(), VmmError> {
        Ok(self.event_loop.set_console_input(input)?)
    }

    /// Runs the VM until it stops, and says why.
    pub fn run(mut self) -> Result<VmExit, VmmError> {
        let mut handles = Vec::with_capacity(self.vcpus.len());
        let mut start_error = None;
        for vcpu in self.vcpus.drain(..) {
            match vcpu.start() {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    start_error = Some(VmmError::Os("a vCPU thread", e));
                    self.control
                        .request_exit(VmExit::Error("a vCPU thread did not start".into()));
                    break;
                }
            }
        }
        let loop_result = if start_error.is_none() {
            self.event_loop.run()
        } else {
            Ok(())
        };
        if let Err(e) = &loop_result {
            self.control
                .request_exit(VmExit::Error(format!("event loop: {e}")));
        }
        for handle in &handles {
            handle.kick();
        }
        for handle in handles {
            handle.join();
        }
        if let Some(e) = start_error {
            return Err(e);
        }
        loop_result?;
        Ok(self.control.reason().unwrap_or(VmExit::Stopped))
    }
}
