//! vCPUs: one thread each, an explicit run state, exits dispatched to the buses, and a
//! kick that gets a vCPU out of `KVM_RUN` without races.
//!
//! Kicking: the stopping thread sends [`kick_signal`] to the vCPU thread, whose handler
//! sets `immediate_exit` in that vCPU's `kvm_run`. A vCPU inside `KVM_RUN` returns
//! with `EINTR`; one about to enter it returns at once; one handling an exit sees the
//! flag on its next entry. The loop then reads the stop flag.
//!
//! Register reports: [`VmControl::request_register_report`] (husk-vmm does it on
//! `SIGUSR1`) kicks every vCPU the same way; each logs its instruction pointer, stack
//! pointer, flags and page-table root once and goes back into the guest; the latest
//! report of each vCPU is kept ([`VmControl::register_reports`]), so one asked for
//! just before a stop is there once the VM has stopped. A look at a guest that spins:
//! map `rip` to a symbol with the guest kernel's `vmlinux`.

use crate::devices::bus::{lock, Bus};
use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::cell::Cell;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use vmm_sys_util::eventfd::EventFd;

/// Why a VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine (triple fault, i8042 reset line, reboot). husk
    /// guests end this way: it is their "power off".
    Reset,
    /// The guest powered off (KVM system event).
    Shutdown,
    /// The host asked the VM to stop.
    Stopped,
    /// The VM could not go on.
    Error(String),
}

impl std::fmt::Display for VmExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmExit::Reset => write!(f, "guest reset"),
            VmExit::Shutdown => write!(f, "guest powered off"),
            VmExit::Stopped => write!(f, "stopped by the host"),
            VmExit::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Where one vCPU was when it answered a register report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterReport {
    /// The vCPU's index.
    pub vcpu: u8,
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Flags.
    pub rflags: u64,
    /// Page-table root.
    pub cr3: u64,
    /// Privilege level (0: the guest kernel, 3: user space).
    pub cpl: u16,
}

/// The registers (not the vCPU's index): `rip=… rsp=… rflags=… cr3=… cpl=…`.
impl std::fmt::Display for RegisterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rip={:#x} rsp={:#x} rflags={:#x} cr3={:#x} cpl={}",
            self.rip, self.rsp, self.rflags, self.cr3, self.cpl
        )
    }
}

/// Shared between the vCPUs, the devices and the event loop: who stops the VM, why.
#[derive(Debug)]
pub struct VmControl {
    stop: AtomicBool,
    reason: Mutex<Option<VmExit>>,
    exit_evt: EventFd,
    /// Register reports asked for so far.
    reports: AtomicU64,
    /// The threads of the vCPUs in their run loop, to kick for a report. A thread
    /// leaves the list (under the lock) before it ends, so every one listed can be
    /// signalled.
    running: Mutex<Vec<libc::pthread_t>>,
    /// The latest register report of each vCPU that made one.
    register_reports: Mutex<Vec<RegisterReport>>,
}

impl VmControl {
    /// A running VM's control block.
    pub fn new() -> std::io::Result<Self> {
        Ok(VmControl {
            stop: AtomicBool::new(false),
            reason: Mutex::new(None),
            exit_evt: EventFd::new(libc::EFD_NONBLOCK)?,
            reports: AtomicU64::new(0),
            running: Mutex::new(Vec::new()),
            register_reports: Mutex::new(Vec::new()),
        })
    }

    /// Asks every running vCPU to report its registers once (see the module
    /// documentation). Returns how many vCPUs were asked.
    pub fn request_register_report(&self) -> usize {
        self.reports.fetch_add(1, Ordering::SeqCst);
        let running = lock(&self.running);
        for &thread in running.iter() {
            // SAFETY: a listed thread is in its run loop and leaves the list under this
            // lock before it ends, so `thread` is valid; the kick signal's handler was
            // installed before any vCPU thread started.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
        running.len()
    }

    /// Register reports asked for so far.
    fn reports_requested(&self) -> u64 {
        self.reports.load(Ordering::SeqCst)
    }

    /// The latest register report of each vCPU that made one, by vCPU index. A vCPU
    /// that was asked before the VM was asked to stop has answered once the VM's run
    /// has returned.
    pub fn register_reports(&self) -> Vec<RegisterReport> {
        let mut reports = lock(&self.register_reports).clone();
        reports.sort_by_key(|r| r.vcpu);
        reports
    }

    fn keep_register_report(&self, report: RegisterReport) {
        let mut reports = lock(&self.register_reports);
        reports.retain(|r| r.vcpu != report.vcpu);
        reports.push(report);
    }

    /// Asks the VM to stop; the first reason given is the one reported.
    pub fn request_exit(&self, reason: VmExit) {
        let mut slot = lock(&self.reason);
        slot.get_or_insert(reason);
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.exit_evt.write(1);
    }

    /// Whether a stop was requested.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The reason of the first stop request.
    pub fn reason(&self) -> Option<VmExit> {
        lock(&self.reason).clone()
    }

    /// Becomes readable when a stop is requested.
    pub fn exit_evt(&self) -> &EventFd {
        &self.exit_evt
    }
}

/// The run state of one vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuState {
    /// Created and configured, thread not started.
    Created,
    /// In its run loop.
    Running,
    /// Left its run loop; the VM's exit reason says why.
    Exited,
}

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal that kicks vCPUs out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's own vCPU `kvm_run` mapping, published
        // by the run loop and cleared before the vCPU is dropped; a byte store is
        // async-signal-safe.
        unsafe { (*run).immediate_exit = 1 };
    }
}

fn install_kick_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), handle_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

/// One vCPU, ready to run.
#[derive(Debug)]
pub struct Vcpu {
    index: u8,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    control: Arc<VmControl>,
    state: VcpuState,
    /// Register reports this vCPU made (compared with those asked for).
    reports: u64,
}

/// A running vCPU thread.
#[derive(Debug)]
pub struct VcpuHandle {
    index: u8,
    thread: JoinHandle<VcpuState>,
}

impl Vcpu {
    /// Wraps a configured KVM vCPU with the buses its exits go to.
    pub fn new(
        index: u8,
        fd: VcpuFd,
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
        control: Arc<VmControl>,
    ) -> Vcpu {
        Vcpu {
            index,
            fd,
            pio,
            mmio,
            control,
            state: VcpuState::Created,
            reports: 0,
        }
    }

    /// The vCPU's run state.
    pub fn state(&self) -> &VcpuState {
        &self.state
    }

    /// Starts the vCPU thread.
    pub fn start(mut self) -> std::io::Result<VcpuHandle> {
        install_kick_handler()?;
        let index = self.index;
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || {
                self.run();
                self.state
            })?;
        Ok(VcpuHandle { index, thread })
    }

    /// Runs until the VM stops; every way out records a reason in the control block.
    pub fn run(&mut self) {
        self.state = VcpuState::Running;
        let run_ptr: *mut kvm_run = self.fd.get_kvm_run();
        KVM_RUN.with(|c| c.set(run_ptr));
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        lock(&self.control.running).push(me);
        self.reports = self.control.reports_requested();
        while !self.control.stopping() {
            if let Some(exit) = self.run_once() {
                self.control.request_exit(exit);
            }
            self.answer_register_report();
        }
        lock(&self.control.running).retain(|&t| t != me);
        // A report asked for just before the stop, seen here only after the loop's
        // check, is still answered.
        self.answer_register_report();
        KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
        self.state = VcpuState::Exited;
    }

    /// Reports the registers if a report was asked for since the last one.
    fn answer_register_report(&mut self) {
        let asked = self.control.reports_requested();
        if self.reports != asked {
            self.reports = asked;
            self.report_registers();
        }
    }

    /// Logs and keeps where the guest is: the registers a look at a stuck guest
    /// starts from.
    fn report_registers(&self) {
        match (self.fd.get_regs(), self.fd.get_sregs()) {
            (Ok(regs), Ok(sregs)) => {
                let report = RegisterReport {
                    vcpu: self.index,
                    rip: regs.rip,
                    rsp: regs.rsp,
                    rflags: regs.rflags,
                    cr3: sregs.cr3,
                    cpl: sregs.cs.selector & 3,
                };
                tracing::warn!("vCPU {}: registers on request: {report}", self.index);
                self.control.keep_register_report(report);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("vCPU {}: cannot read its registers: {e}", self.index)
            }
        }
    }

    /// One `KVM_RUN`: `Some(reason)` if the VM must stop.
    fn run_once(&mut self) -> Option<VmExit> {
        let Vcpu {
            fd,
            pio,
            mmio,
            index,
            ..
        } = self;
        match fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if !pio.read(u64::from(port), data) {
                    data.fill(0xff); // nothing there: a floating ISA bus reads all-ones
                }
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                // Writes to absent ports (POST codes on 0x80, probes) are dropped.
                pio.write(u64::from(port), data);
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !mmio.read(addr, data) {
                    crate::warn_guest!(vcpu = *index, addr, len = data.len(), "guest read unmapped MMIO");
                    data.fill(0);
                }
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if !mmio.write(addr, data) {
                    crate::warn_guest!(vcpu = *index, addr, len = data.len(), "guest wrote unmapped MMIO");
                }
                None
            }
            Ok(VcpuExit::Shutdown) => Some(VmExit::Reset),
            Ok(VcpuExit::Hlt) => Some(VmExit::Shutdown),
            Ok(VcpuExit::SystemEvent(kind, _)) => Some(match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::Shutdown,
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
                other => VmExit::Error(format!("vCPU {index}: unknown system event {other}")),
            }),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(VmExit::Error(format!(
                "vCPU {index}: KVM could not enter the guest (hardware reason {reason:#x}, host cpu {cpu})"
            ))),
            Ok(VcpuExit::InternalError) => {
                Some(VmExit::Error(format!("vCPU {index}: KVM internal error")))
            }
            Ok(other) => Some(VmExit::Error(format!("vCPU {index}: unexpected exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                fd.set_kvm_immediate_exit(0);
                None
            }
            Err(e) => Some(VmExit::Error(format!("vCPU {index}: KVM_RUN failed: {e}"))),
        }
    }
}

impl VcpuHandle {
    /// The vCPU's index.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Gets the vCPU out of `KVM_RUN` (see the module documentation).
    pub fn kick(&self) {
        let pthread = self.thread.as_pthread_t();
        // SAFETY: the handle owns the (not yet joined) thread, so `pthread` is valid;
        // the kick signal has a handler installed before any vCPU thread starts.
        unsafe { libc::pthread_kill(pthread, kick_signal()) };
    }

    /// Waits for the thread; its final state, or `Exited` if it panicked.
    pub fn join(self) -> VcpuState {
        self.thread.join().unwrap_or(VcpuState::Exited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_exit_reason_wins_and_wakes_the_loop() {
        let control = VmControl::new().unwrap();
        assert!(!control.stopping());
        control.request_exit(VmExit::Reset);
        control.request_exit(VmExit::Error("later".into()));
        assert!(control.stopping());
        assert_eq!(control.reason(), Some(VmExit::Reset));
        assert_eq!(control.exit_evt().read().unwrap(), 2);
    }

    #[test]
    fn a_register_report_is_counted_and_reaches_no_thread_when_none_runs() {
        let control = VmControl::new().unwrap();
        assert_eq!(control.reports_requested(), 0);
        assert_eq!(control.request_register_report(), 0);
        assert_eq!(control.reports_requested(), 1);
        assert!(!control.stopping(), "a report does not stop the VM");
    }
}
