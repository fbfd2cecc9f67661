//! OCI `linux.seccomp`, compiled to a classic BPF program for `seccomp(2)`.
//!
//! The program is built before `fork` and installed by the child with one system
//! call. Its shape: a check of the architecture (only the x86_64 ABI has rules;
//! i386 and x32 system calls get the default action if it refuses them, else they
//! kill the process, so that a deny-list cannot be bypassed through them), then for
//! each system call number named by the profile a block of its rules, tried in
//! profile order (the first whose conditions all hold gives its action; none: the
//! default action), then the default action.
//!
//! As in runc, the conditions of one rule are ANDed, unless two of them test the
//! same argument: then each condition is a rule of its own (ORed). Names of system
//! calls unknown on x86_64 are skipped (as runc does with names libseccomp does not
//! know), and `includes`/`excludes` (Docker's profile-generation fields) are ignored.

use super::syscalls;
use husk_protocol::{AgentError, ErrorCode};
use nix::errno::Errno;
use nix::libc;
use serde::Deserialize;
use std::collections::BTreeMap;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Set in the numbers of x32 system calls.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel's limit on a program's length (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Classic BPF opcodes (linux/bpf_common.h): class | size/op | mode/source.
/// `BPF_LD | BPF_W | BPF_ABS` (`BPF_LD` and `BPF_W` are 0).
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x04 | 0x50;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGT_K: u16 = 0x05 | 0x20;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

/// OCI `linux.seccomp`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    flags: Vec<String>,
    listener_path: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    syscalls: Vec<SyscallRule>,
}

/// One entry of `linux.seccomp.syscalls`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallRule {
    names: Vec<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    args: Vec<ArgCondition>,
}

/// One entry of a rule's `args`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgCondition {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: Op,
}

/// `SCMP_CMP_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

/// A compiled filter, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Debug)]
pub struct Program {
    filter: Vec<libc::sock_filter>,
    flags: u32,
    /// Names the profile gives that are no x86_64 system call (skipped).
    pub unknown: Vec<String>,
}

impl Program {
    /// The number of instructions.
    pub fn len(&self) -> usize {
        self.filter.len()
    }

    /// Whether the program is empty (never: it always ends in the default action).
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// Installs the filter on the calling thread. Makes one system call and does not
    /// allocate: safe after `fork`. Needs `PR_SET_NO_NEW_PRIVS` or `CAP_SYS_ADMIN`.
    pub fn install(&self) -> Result<(), Errno> {
        let fprog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `fprog` points at `len` initialised instructions that live for the
        // whole call; the kernel copies them.
        let done = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &fprog as *const libc::sock_fprog,
            )
        };
        if done < 0 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }
}

/// Compiles `linux.seccomp`.
pub fn compile(profile: &serde_json::Value) -> Result<Program, AgentError> {
    let profile = Profile::deserialize(profile)
        .map_err(|e| invalid(format!("linux.seccomp is not a valid seccomp profile: {e}")))?;
    if profile
        .listener_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(unsupported(
            "linux.seccomp.listenerPath: seccomp user notification is not supported",
        ));
    }
    let default = action(
        &profile.default_action,
        profile.default_errno_ret,
        "linux.seccomp.defaultAction",
    )?;
    for arch in &profile.architectures {
        if !KNOWN_ARCHES.contains(&arch.as_str()) {
            return Err(invalid(format!(
                "linux.seccomp.architectures: unknown architecture {arch:?}"
            )));
        }
    }
    let mut flags = 0;
    for flag in &profile.flags {
        flags |= match flag.as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
            "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            other => {
                return Err(unsupported(format!(
                    "linux.seccomp.flags: {other:?} is not supported"
                )))
            }
        } as u32;
    }
    let mut unknown = Vec::new();
    let mut by_number: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for (i, entry) in profile.syscalls.iter().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let ret = action(&entry.action, entry.errno_ret, &format!("{field}.action"))?;
        for arg in &entry.args {
            if arg.index > 5 {
                return Err(invalid(format!(
                    "{field}.args: index {} is not a system call argument (0 to 5)",
                    arg.index
                )));
            }
        }
        let rules = rules(&entry.args, ret);
        for name in &entry.names {
            match syscalls::number(name) {
                Some(nr) => by_number
                    .entry(nr)
                    .or_default()
                    .extend(rules.iter().cloned()),
                None if !unknown.contains(name) => unknown.push(name.clone()),
                None => {}
            }
        }
    }
    let foreign = if matches!(default, RET_ALLOW | RET_LOG) {
        RET_KILL_PROCESS
    } else {
        default
    };
    let mut filter = vec![
        stmt(LD_W_ABS, DATA_ARCH),
        jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, foreign),
        stmt(LD_W_ABS, DATA_NR),
        jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, foreign),
    ];
    for (nr, rules) in &by_number {
        let body = block(rules, default);
        if body.len() <= usize::from(u8::MAX) {
            filter.push(jump(JMP_JEQ_K, *nr, 0, body.len() as u8));
        } else {
            filter.push(jump(JMP_JEQ_K, *nr, 1, 0));
            filter.push(stmt(JMP_JA, body.len() as u32));
        }
        filter.extend(body);
    }
    filter.push(stmt(RET_K, default));
    if filter.len() > MAX_INSTRUCTIONS {
        return Err(invalid(format!(
            "linux.seccomp compiles to {} BPF instructions, over the kernel's limit of \
             {MAX_INSTRUCTIONS}",
            filter.len()
        )));
    }
    Ok(Program {
        filter,
        flags,
        unknown,
    })
}

/// The architectures a profile may list. Only x86_64 gets rules (see the module
/// documentation); the others never occur in an x86_64 guest or are refused whole.
const KNOWN_ARCHES: &[&str] = &[
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

/// The `SECCOMP_RET_*` value of an OCI action.
fn action(name: &str, errno_ret: Option<u32>, field: &str) -> Result<u32, AgentError> {
    let errno = match errno_ret {
        Some(errno) if errno > 4095 => {
            return Err(invalid(format!(
                "{field}: errnoRet {errno} is not an errno (0 to 4095)"
            )))
        }
        Some(errno) => errno,
        None => libc::EPERM as u32,
    };
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => RET_TRAP,
        "SCMP_ACT_ERRNO" => RET_ERRNO | errno,
        "SCMP_ACT_TRACE" => RET_TRACE | errno,
        "SCMP_ACT_LOG" => RET_LOG,
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_NOTIFY" => {
            return Err(unsupported(format!(
                "{field}: SCMP_ACT_NOTIFY (seccomp user notification) is not supported"
            )))
        }
        other => return Err(invalid(format!("{field}: unknown action {other:?}"))),
    })
}

/// A rule of one system call: all conditions hold, then `ret`.
#[derive(Debug, Clone)]
struct Rule {
    conditions: Vec<ArgCondition>,
    ret: u32,
}

/// The rules of one profile entry (runc's splitting of repeated arguments).
fn rules(args: &[ArgCondition], ret: u32) -> Vec<Rule> {
    let repeats = args
        .iter()
        .enumerate()
        .any(|(i, a)| args[..i].iter().any(|b| b.index == a.index));
    if repeats {
        args.iter()
            .map(|a| Rule {
                conditions: vec![*a],
                ret,
            })
            .collect()
    } else {
        vec![Rule {
            conditions: args.to_vec(),
            ret,
        }]
    }
}

/// A jump target inside one rule: skip `n` instructions, or go to the next rule.
#[derive(Debug, Clone, Copy)]
enum Target {
    Skip(u8),
    Fail,
}
use Target::{Fail, Skip};

/// The block of one system call: its rules in order, then the default action. It
/// is entered with the number in the accumulator and ends in a return on every path.
fn block(rules: &[Rule], default: u32) -> Vec<libc::sock_filter> {
    let mut out = Vec::new();
    for rule in rules {
        let mut code: Vec<(u16, u32, Target, Target)> = Vec::new();
        for c in &rule.conditions {
            condition(c, &mut code);
        }
        let end = code.len() + 1;
        for (i, (op, k, jt, jf)) in code.into_iter().enumerate() {
            let resolve = |t: Target| match t {
                Skip(n) => n,
                // At most 6 conditions of at most 6 instructions: fits a u8.
                Fail => (end - i - 1) as u8,
            };
            out.push(jump(op, k, resolve(jt), resolve(jf)));
        }
        out.push(stmt(RET_K, rule.ret));
        if rule.conditions.is_empty() {
            // Always matches: later rules are unreachable.
            return out;
        }
    }
    out.push(stmt(RET_K, default));
    out
}

/// Appends the test of one 64-bit argument condition, made of two 32-bit halves;
/// falls through when it holds.
fn condition(c: &ArgCondition, code: &mut Vec<(u16, u32, Target, Target)>) {
    let high = DATA_ARGS + 8 * c.index + 4;
    let low = DATA_ARGS + 8 * c.index;
    let (v_hi, v_lo) = ((c.value >> 32) as u32, c.value as u32);
    let ld = |at: u32| (LD_W_ABS, at, Skip(0), Skip(0));
    match c.op {
        Op::Eq => code.extend([
            ld(high),
            (JMP_JEQ_K, v_hi, Skip(0), Fail),
            ld(low),
            (JMP_JEQ_K, v_lo, Skip(0), Fail),
        ]),
        Op::Ne => code.extend([
            ld(high),
            (JMP_JEQ_K, v_hi, Skip(0), Skip(2)),
            ld(low),
            (JMP_JEQ_K, v_lo, Fail, Skip(0)),
        ]),
        Op::Gt | Op::Ge => {
            let last = if c.op == Op::Gt { JMP_JGT_K } else { JMP_JGE_K };
            code.extend([
                ld(high),
                (JMP_JGT_K, v_hi, Skip(3), Skip(0)),
                (JMP_JEQ_K, v_hi, Skip(0), Fail),
                ld(low),
                (last, v_lo, Skip(0), Fail),
            ])
        }
        Op::Lt | Op::Le => {
            // Not (>=) and not (>).
            let last = if c.op == Op::Lt { JMP_JGE_K } else { JMP_JGT_K };
            code.extend([
                ld(high),
                (JMP_JGT_K, v_hi, Fail, Skip(0)),
                (JMP_JEQ_K, v_hi, Skip(0), Skip(2)),
                ld(low),
                (last, v_lo, Fail, Skip(0)),
            ])
        }
        Op::MaskedEq => {
            let (m_hi, m_lo) = ((c.value >> 32) as u32, c.value as u32);
            let (w_hi, w_lo) = ((c.value_two >> 32) as u32, c.value_two as u32);
            code.extend([
                ld(high),
                (ALU_AND_K, m_hi, Skip(0), Skip(0)),
                (JMP_JEQ_K, w_hi, Skip(0), Fail),
                ld(low),
                (ALU_AND_K, m_lo, Skip(0), Skip(0)),
                (JMP_JEQ_K, w_lo, Skip(0), Fail),
            ])
        }
    }
}

/// Deserializes `null` (Go's nil slice) as an empty list.
pub fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorCode::InvalidArgument, message)
}

fn unsupported(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorCode::Unsupported, message)
}

#[cfg(test)]
mod tests;
