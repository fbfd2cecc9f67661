//! `containerd-shim-husk-v2`: containerd's shim v2 for husk.
//!
//! The Task API arrives with the containerd work; until then the binary refuses to run
//! rather than let containerd believe a task started.

fn main() -> std::process::ExitCode {
    eprintln!(
        "containerd-shim-husk-v2 {}: not implemented yet (see README, Status)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
