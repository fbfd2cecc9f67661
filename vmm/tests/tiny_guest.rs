//! The VMM end to end on the local `/dev/kvm`, with tiny hand-made guests: a 64-bit
//! ELF that the VMM loads and enters like a kernel. Skipped where there is no KVM.

use husk_vmm::builder::{VmConfig, Vmm, VmmError};
use husk_vmm::vstate::vcpu::VmExit;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the tiny guest is loaded and entered.
const ENTRY: u64 = 0x10_0000;

/// Writes "OK" to COM1, then resets the machine through the i8042.
const SAY_OK_THEN_RESET: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'O', // mov al, 'O'
    0xee, // out dx, al
    0xb0, b'K', // mov al, 'K'
    0xee, // out dx, al
    0xb0, 0xfe, // mov al, 0xfe
    0xe6, 0x64, // out 0x64, al
    0xf4, // hlt
];

/// Writes "R" to COM1, then spins forever.
const SAY_R_THEN_SPIN: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'R', // mov al, 'R'
    0xee, // out dx, al
    0xeb, 0xfe, // jmp $
];

/// A minimal ELF64 executable with one PT_LOAD segment holding `code` at ENTRY.
fn tiny_elf(code: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&ENTRY.to_le_bytes()); // e_entry
    elf.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    let offset = (EHDR + PHDR) as u64;
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type: LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R+X
    elf.extend_from_slice(&offset.to_le_bytes()); // p_offset
    elf.extend_from_slice(&ENTRY.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&ENTRY.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&(code.len() as u64).to_le_bytes()); // p_filesz
    elf.extend_from_slice(&(code.len() as u64).to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(code);
    elf
}

fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("husk-tiny-guest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn have_kvm() -> bool {
    let ok = Path::new("/dev/kvm").exists();
    if !ok {
        eprintln!("skipped: no /dev/kvm on this host");
    }
    ok
}

#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn config(kernel: PathBuf, vcpus: u8) -> VmConfig {
    VmConfig {
        kernel,
        initrd: None,
        mem_mib: 64,
        vcpus,
        cmdline: "console=ttyS0".into(),
    }
}

#[test]
fn tiny_guest_prints_on_com1_and_resets_through_the_i8042() {
    if !have_kvm() {
        return;
    }
    let kernel = write_temp("say-ok.elf", &tiny_elf(SAY_OK_THEN_RESET));
    let console = Console::default();
    let vmm = Vmm::build(&config(kernel, 1), Box::new(console.clone()), vec![]).unwrap();
    assert_eq!(vmm.run().unwrap(), VmExit::Reset);
    assert_eq!(console.0.lock().unwrap().as_slice(), b"OK");
}

#[test]
fn reset_also_stops_an_application_processor_waiting_in_kvm_run() {
    if !have_kvm() {
        return;
    }
    // vCPU 1 waits for a startup IPI inside KVM_RUN and must be kicked out.
    let kernel = write_temp("say-ok-smp.elf", &tiny_elf(SAY_OK_THEN_RESET));
    let console = Console::default();
    let vmm = Vmm::build(&config(kernel, 2), Box::new(console.clone()), vec![]).unwrap();
    assert_eq!(vmm.run().unwrap(), VmExit::Reset);
    assert_eq!(console.0.lock().unwrap().as_slice(), b"OK");
}

#[test]
fn host_stop_request_ends_a_spinning_guest() {
    if !have_kvm() {
        return;
    }
    let kernel = write_temp("spin.elf", &tiny_elf(SAY_R_THEN_SPIN));
    let console = Console::default();
    let vmm = Vmm::build(&config(kernel, 1), Box::new(console.clone()), vec![]).unwrap();
    let control = vmm.control();
    let stopper = std::thread::spawn(move || {
        // Once the guest has printed, its vCPU is spinning in guest mode: stop it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while console.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "guest never printed");
            std::thread::yield_now();
        }
        control.request_exit(VmExit::Stopped);
    });
    assert_eq!(vmm.run().unwrap(), VmExit::Stopped);
    stopper.join().unwrap();
}

#[test]
fn a_register_report_shows_where_a_spinning_guest_is() {
    if !have_kvm() {
        return;
    }
    // The vCPU thread logs the report: capture every thread's log.
    let logs = Console::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let kernel = write_temp("spin-report.elf", &tiny_elf(SAY_R_THEN_SPIN));
    let console = Console::default();
    let vmm = Vmm::build(&config(kernel, 1), Box::new(console.clone()), vec![]).unwrap();
    let control = vmm.control();
    let asker = control.clone();
    let asking = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while console.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "guest never printed");
            std::thread::yield_now();
        }
        // The guest printed from its vCPU's run loop: that vCPU is listed. A stop
        // right after the request still gets the report made.
        assert_eq!(asker.request_register_report(), 1);
        asker.request_exit(VmExit::Stopped);
    });
    assert_eq!(vmm.run().unwrap(), VmExit::Stopped);
    asking.join().unwrap();
    // `jmp $` is the 8th byte of the code: the guest is there, in ring 0.
    let spin = ENTRY + 7;
    let reports = control.register_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(
        (reports[0].vcpu, reports[0].rip, reports[0].cpl),
        (0, spin, 0)
    );
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let line = format!("vCPU 0: registers on request: {}", reports[0]);
    assert!(line.contains(&format!("rip={spin:#x} ")), "{line}");
    assert!(text.contains(&line), "{text}");
}

#[test]
fn bad_inputs_are_named() {
    if !have_kvm() {
        return;
    }
    let sink = || Box::new(std::io::sink());
    let err = Vmm::build(&config("/nonexistent/vmlinux".into(), 1), sink(), vec![]).unwrap_err();
    assert_eq!(
        format!("{:#}", anyhow::Error::from(err)),
        "guest loading: cannot read /nonexistent/vmlinux: No such file or directory (os error 2)"
    );

    let garbage = write_temp("garbage", &[0x90; 4096]);
    let err = Vmm::build(&config(garbage, 1), sink(), vec![]).unwrap_err();
    assert!(err.to_string().contains("guest loading"), "{err}");
    assert!(
        format!("{:#}", anyhow::Error::from(err)).contains("neither an ELF vmlinux nor a bzImage")
    );

    let kernel = write_temp("ok.elf", &tiny_elf(SAY_OK_THEN_RESET));
    let mut small = config(kernel.clone(), 1);
    small.mem_mib = 8;
    let err = Vmm::build(&small, sink(), vec![]).unwrap_err();
    assert!(matches!(err, VmmError::Memory(_)), "{err:?}");

    let err = Vmm::build(&config(kernel.clone(), 0), sink(), vec![]).unwrap_err();
    assert!(matches!(err, VmmError::VcpuCount(0)), "{err:?}");

    let mut long = config(kernel, 1);
    long.cmdline = "x".repeat(4096);
    let err = Vmm::build(&long, sink(), vec![]).unwrap_err();
    assert!(matches!(err, VmmError::Boot(_)), "{err:?}");
}
