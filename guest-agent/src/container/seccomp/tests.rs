use super::*;
use serde_json::json;

/// Runs a classic BPF program over a `seccomp_data` (only the instructions the
/// compiler emits), as the kernel would.
fn run(program: &Program, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, arg) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
    }
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let ins = program.filter[pc];
        pc += 1;
        let k = ins.k;
        let taken = match ins.code {
            LD_W_ABS => {
                let at = k as usize;
                a = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                continue;
            }
            ALU_AND_K => {
                a &= k;
                continue;
            }
            JMP_JA => {
                pc += k as usize;
                continue;
            }
            RET_K => return k,
            JMP_JEQ_K => a == k,
            JMP_JGT_K => a > k,
            JMP_JGE_K => a >= k,
            other => panic!("unexpected opcode {other:#x}"),
        };
        pc += usize::from(if taken { ins.jt } else { ins.jf });
    }
}

fn x86_64(program: &Program, name: &str, args: [u64; 6]) -> u32 {
    run(
        program,
        AUDIT_ARCH_X86_64,
        syscalls::number(name).unwrap(),
        args,
    )
}

#[test]
fn actions_errno_and_default() {
    let program = compile(&json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"}
        ]
    }))
    .unwrap();
    assert_eq!(program.unknown, ["not_a_syscall"]);
    assert_eq!(x86_64(&program, "read", [0; 6]), RET_ALLOW);
    assert_eq!(x86_64(&program, "write", [0; 6]), RET_ALLOW);
    assert_eq!(x86_64(&program, "mkdir", [0; 6]), RET_ERRNO | 1);
    assert_eq!(x86_64(&program, "reboot", [0; 6]), RET_KILL_PROCESS);
    assert_eq!(x86_64(&program, "getpid", [0; 6]), RET_LOG);
    assert_eq!(x86_64(&program, "open", [0; 6]), RET_ERRNO | 38);
    // i386 and x32 get the default action when it refuses.
    assert_eq!(run(&program, 0x4000_0003, 3, [0; 6]), RET_ERRNO | 38);
    assert_eq!(
        run(&program, AUDIT_ARCH_X86_64, 0x4000_0000, [0; 6]),
        RET_ERRNO | 38
    );
}

#[test]
fn a_deny_list_cannot_be_bypassed_through_other_abis() {
    let program = compile(&json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }))
    .unwrap();
    assert_eq!(
        x86_64(&program, "mkdir", [0; 6]),
        RET_ERRNO | libc::EPERM as u32
    );
    assert_eq!(x86_64(&program, "rmdir", [0; 6]), RET_ALLOW);
    assert_eq!(run(&program, 0x4000_0003, 39, [0; 6]), RET_KILL_PROCESS);
    assert_eq!(
        run(&program, AUDIT_ARCH_X86_64, 0x4000_0053, [0; 6]),
        RET_KILL_PROCESS
    );
}

#[test]
fn argument_comparisons_are_64_bit_and_unsigned() {
    let values = [
        0u64,
        1,
        5,
        6,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        u64::MAX,
    ];
    let probe = 0x1_0000_0005u64;
    for (op, holds) in [
        (
            "SCMP_CMP_EQ",
            (|v: u64| v == 0x1_0000_0005) as fn(u64) -> bool,
        ),
        ("SCMP_CMP_NE", |v| v != 0x1_0000_0005),
        ("SCMP_CMP_LT", |v| v < 0x1_0000_0005),
        ("SCMP_CMP_LE", |v| v <= 0x1_0000_0005),
        ("SCMP_CMP_GT", |v| v > 0x1_0000_0005),
        ("SCMP_CMP_GE", |v| v >= 0x1_0000_0005),
    ] {
        let program = compile(&json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 1, "value": probe, "op": op}]}]
        }))
        .unwrap();
        for v in values {
            let expected = if holds(v) { RET_ERRNO | 1 } else { RET_ALLOW };
            assert_eq!(
                x86_64(&program, "ioctl", [0, v, 0, 0, 0, 0]),
                expected,
                "{op} {v:#x}"
            );
        }
    }
    let program = compile(&json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 0x1_0000_00f0u64,
                                "valueTwo": 0x1_0000_0010u64, "op": "SCMP_CMP_MASKED_EQ"}]}]
    }))
    .unwrap();
    assert_eq!(
        x86_64(&program, "clone", [0x1_0000_0013, 0, 0, 0, 0, 0]),
        RET_ERRNO | 1
    );
    assert_eq!(
        x86_64(&program, "clone", [0x0_0000_0013, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        x86_64(&program, "clone", [0x1_0000_0023, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
}

#[test]
fn conditions_are_anded_unless_an_argument_repeats() {
    let anded = compile(&json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                               {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]
    }))
    .unwrap();
    assert_eq!(x86_64(&anded, "socket", [1, 2, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86_64(&anded, "socket", [1, 3, 0, 0, 0, 0]), RET_ERRNO | 1);
    let ored = compile(&json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
    }))
    .unwrap();
    assert_eq!(x86_64(&ored, "personality", [0; 6]), RET_ALLOW);
    assert_eq!(x86_64(&ored, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(
        x86_64(&ored, "personality", [9, 0, 0, 0, 0, 0]),
        RET_ERRNO | 1
    );
}

#[test]
fn long_blocks_use_a_long_jump() {
    let rules: Vec<_> = (0..80u64)
        .map(|v| {
            json!({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 1, "value": v, "op": "SCMP_CMP_EQ"}]})
        })
        .chain([json!({"names": ["read"], "action": "SCMP_ACT_ALLOW"})])
        .collect();
    let program = compile(&json!({"defaultAction": "SCMP_ACT_KILL", "syscalls": rules})).unwrap();
    assert!(program.len() > 300);
    assert_eq!(x86_64(&program, "ioctl", [0, 79, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(
        x86_64(&program, "ioctl", [0, 80, 0, 0, 0, 0]),
        RET_KILL_THREAD
    );
    assert_eq!(x86_64(&program, "read", [0; 6]), RET_ALLOW);
    assert_eq!(x86_64(&program, "write", [0; 6]), RET_KILL_THREAD);
}

#[test]
fn what_cannot_be_expressed_is_named() {
    for (profile, expected) in [
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
            "SCMP_ACT_NOTIFY",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x"}),
            "listenerPath",
        ),
        (json!({"defaultAction": "SCMP_ACT_BOGUS"}), "unknown action"),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}),
            "flags",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}),
            "unknown architecture",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}),
            "errnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
            "index 6",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_XX"}]}]}),
            "not a valid seccomp profile",
        ),
    ] {
        let err = compile(&profile).unwrap_err();
        assert!(err.message.contains(expected), "{}", err.message);
    }
}

/// podman's default profile (containers-common), where this host has it.
#[test]
fn the_containers_common_profile_compiles() {
    let path = "/usr/share/containers/seccomp.json";
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("{path} is missing: skipped");
        return;
    };
    let profile: serde_json::Value = serde_json::from_str(&text).unwrap();
    let program = compile(&profile).unwrap();
    assert!(program.len() > 300 && program.len() < MAX_INSTRUCTIONS);
    assert_eq!(x86_64(&program, "read", [0; 6]), RET_ALLOW);
    assert_eq!(x86_64(&program, "execve", [0; 6]), RET_ALLOW);
    // Refused by a rule, and not named at all (the default action, ENOSYS).
    assert_eq!(x86_64(&program, "kexec_load", [0; 6]), RET_ERRNO | 1);
    assert_eq!(x86_64(&program, "add_key", [0; 6]), RET_ERRNO | 38);
}

/// The kernel accepts the program and applies it: in a forked child, `mkdir` fails
/// with the profile's errno while other calls work.
#[test]
fn the_kernel_applies_a_compiled_program() {
    let program = compile(&json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target =
        std::ffi::CString::new(dir.path().join("d").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: the child makes system calls only, then `_exit`s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = (|| {
                super::super::security::no_new_privileges().ok()?;
                program.install().ok()?;
                // SAFETY: a NUL-terminated path; mkdir touches no other memory.
                let made = unsafe { libc::mkdir(target.as_ptr(), 0o755) };
                (made < 0 && Errno::last() == Errno::EACCES && nix::unistd::getpid().as_raw() > 0)
                    .then_some(0)
            })()
            .unwrap_or(1);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            assert!(!dir.path().join("d").exists());
        }
    }
}
