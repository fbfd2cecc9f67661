//! `husk`: the OCI runtime command line (runc-compatible). Exit status: 0 on
//! success, 1 on any error (or the container's status for `run`, the process's for
//! `exec`).

use clap::Parser;
use husk_runtime::cli::Cli;
use husk_runtime::commands;
use husk_runtime::logging::Logging;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The processes `husk` starts for itself: a container's sandbox process and a
    // detached exec's relay. Not part of the command line users see.
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = args
        .get(1)
        .and_then(|cmd| husk_runtime::sandbox::hidden_main(cmd, &args[2..]))
    {
        return ExitCode::from((code & 0xff) as u8);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; bad command lines exit 1, like runc.
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    let name = commands::name(&cli.command);
    let logging = match Logging::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("husk {name}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::debug!("husk {name}: {:?}", cli.command);
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            logging.report_error(name, &husk_protocol::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
