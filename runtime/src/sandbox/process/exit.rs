//! How the container's process ended, as the guest reports it, turned into what the
//! host does: an exit status for the engine, and for the sandbox process the same
//! death by signal. The guest is untrusted and picks these numbers: an exit code
//! outside 0..=255 or a signal outside 1..=64 reads as a lost VM, arithmetic on them
//! cannot overflow, and the sandbox process raises on itself only a signal whose
//! default action ends a process (never one that stops it, which would leave the
//! engine waiting for an exit that never comes).

use husk_protocol::ExitStatus;
use nix::sys::signal::{SigSet, Signal};

/// The exit status the sandbox reports when the VM ended before the container did,
/// or when the guest reported an impossible status.
pub const VM_LOST_STATUS: i32 = 255;

/// The highest signal number Linux has (`SIGRTMAX`).
const MAX_SIGNAL: i32 = 64;

/// The shell convention for a status the guest reported: the code, or 128 + the
/// signal; [`VM_LOST_STATUS`] for anything a process cannot have ended with.
pub fn exit_code(status: ExitStatus) -> i32 {
    match status {
        ExitStatus {
            exit_code: Some(code),
            signal: None,
        } if (0..=255).contains(&code) => code,
        ExitStatus {
            exit_code: None,
            signal: Some(sig),
        } if (1..=MAX_SIGNAL).contains(&sig) => 128 + sig,
        other => {
            tracing::warn!("the guest reported an impossible exit status {other:?}");
            VM_LOST_STATUS
        }
    }
}

/// The signal the sandbox process raises on itself for `status`, if any: one that
/// ends a process by default (not a stop, continue or ignored signal, and one that
/// `nix` knows, so not a real-time signal).
pub fn fatal_signal(status: &ExitStatus) -> Option<Signal> {
    if status.exit_code.is_some() {
        return None;
    }
    let signal = Signal::try_from(status.signal?).ok()?;
    let harmless = matches!(
        signal,
        Signal::SIGSTOP
            | Signal::SIGTSTP
            | Signal::SIGTTIN
            | Signal::SIGTTOU
            | Signal::SIGCONT
            | Signal::SIGCHLD
            | Signal::SIGURG
            | Signal::SIGWINCH
    );
    (!harmless).then_some(signal)
}

/// Ends this process as the container's process ended: by the same signal where
/// [`fatal_signal`] allows it, else by giving back [`exit_code`] for the caller to
/// exit with.
pub fn end_like(status: ExitStatus) -> i32 {
    if let Some(signal) = fatal_signal(&status) {
        let mut set = SigSet::empty();
        set.add(signal);
        // The container's crash is not the VMM's: no core dump of this process (and
        // of the guest's memory) on the host.
        let _ = nix::sys::prctl::set_dumpable(false);
        // SAFETY: restoring the default disposition of one signal; no handler runs.
        let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
        let _ = set.thread_unblock();
        let _ = nix::sys::signal::raise(signal);
    }
    exit_code(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signalled(sig: i32) -> ExitStatus {
        ExitStatus {
            exit_code: None,
            signal: Some(sig),
        }
    }

    fn exited(code: i32) -> ExitStatus {
        ExitStatus {
            exit_code: Some(code),
            signal: None,
        }
    }

    #[test]
    fn real_statuses_keep_the_shell_convention() {
        assert_eq!(exit_code(exited(0)), 0);
        assert_eq!(exit_code(exited(3)), 3);
        assert_eq!(exit_code(exited(255)), 255);
        assert_eq!(exit_code(signalled(9)), 137);
        assert_eq!(exit_code(signalled(15)), 143);
        assert_eq!(exit_code(signalled(64)), 192);
    }

    /// A hostile guest's numbers: no overflow, no negative or out-of-range status.
    #[test]
    fn impossible_statuses_read_as_a_lost_vm() {
        for status in [
            exited(-1),
            exited(256),
            exited(i32::MIN),
            exited(i32::MAX),
            signalled(0),
            signalled(-9),
            signalled(65),
            signalled(i32::MAX),
            ExitStatus {
                exit_code: None,
                signal: None,
            },
            ExitStatus {
                exit_code: Some(0),
                signal: Some(9),
            },
        ] {
            assert_eq!(exit_code(status), VM_LOST_STATUS, "{status:?}");
        }
    }

    /// The sandbox process never stops itself (the engine would wait forever) nor
    /// raises what it would ignore; it dies by the signals that kill.
    #[test]
    fn only_signals_that_end_a_process_are_raised() {
        for sig in [
            Signal::SIGSTOP,
            Signal::SIGTSTP,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
            Signal::SIGCONT,
            Signal::SIGCHLD,
            Signal::SIGURG,
            Signal::SIGWINCH,
        ] {
            assert_eq!(fatal_signal(&signalled(sig as i32)), None, "{sig}");
        }
        for sig in [
            Signal::SIGKILL,
            Signal::SIGTERM,
            Signal::SIGSEGV,
            Signal::SIGABRT,
        ] {
            assert_eq!(fatal_signal(&signalled(sig as i32)), Some(sig));
        }
        for bogus in [0, -1, 34, 65, i32::MAX] {
            assert_eq!(fatal_signal(&signalled(bogus)), None, "{bogus}");
        }
        assert_eq!(fatal_signal(&exited(9)), None);
    }

    /// Stop signals end the sandbox process with 128 + N instead of stopping it:
    /// run here in a child, which must exit rather than stop.
    #[test]
    fn a_reported_stop_signal_does_not_stop_the_sandbox_process() {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        use nix::unistd::{fork, ForkResult};
        // SAFETY: the child only calls `end_like` (signal-disposition and prctl
        // system calls, a log call that has no subscriber here) and `_exit`.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = end_like(signalled(Signal::SIGSTOP as i32));
                // SAFETY: ends the forked child without running the parent's atexit
                // handlers or destructors.
                unsafe { nix::libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let status = waitpid(child, Some(WaitPidFlag::WUNTRACED)).unwrap();
                if let WaitStatus::Stopped(..) = status {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    panic!("the sandbox process stopped itself");
                }
                assert_eq!(
                    status,
                    WaitStatus::Exited(child, 128 + Signal::SIGSTOP as i32)
                );
            }
        }
    }
}
