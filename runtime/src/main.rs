//! `husk`: the OCI runtime command line.
//!
//! The OCI commands (`create`, `start`, `state`, `kill`, `delete`, ...) arrive with the
//! OCI CLI work; until then the binary says so plainly instead of pretending.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "OCI container runtime that runs each container in a KVM microVM"
)]
struct Cli {
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.first() {
        None => anyhow::bail!("no command given (see husk --help)"),
        Some(cmd) => anyhow::bail!(
            "husk {cmd}: not implemented yet: this build has the guest image, the testbed \
             and the KVM probe only (see README, Status)"
        ),
    }
}
