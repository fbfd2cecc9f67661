//! `husk-conformance`: the OCI conformance suite (docs/conformance.md) against a
//! runtime with runc's command line. Prints a markdown table per section (and writes
//! it with `--markdown FILE`); exits 1 if a check failed.

use clap::Parser;
use husk_tests::conformance::{self, Options, SECTIONS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Run the OCI conformance suite against a runtime")]
struct Cli {
    /// The runtime under test (runc, husk, ...).
    #[arg(long)]
    runtime: PathBuf,
    /// Its state root (`--root`); default: WORK/root.
    #[arg(long)]
    root: Option<PathBuf>,
    /// The static husk-checker; default: $HUSK_CHECKER.
    #[arg(long)]
    checker: Option<PathBuf>,
    /// Scratch directory for the bundles (left for inspection).
    #[arg(long, default_value = "/tmp/husk-conformance")]
    work: PathBuf,
    /// Also write the tables to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Run only this section (repeatable).
    #[arg(long = "section")]
    sections: Vec<String>,
    /// Seconds a container may take to be created, to start, to stop.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let known: Vec<&str> = SECTIONS.iter().map(|(id, _)| *id).collect();
    if let Some(bad) = cli.sections.iter().find(|s| !known.contains(&s.as_str())) {
        eprintln!("husk-conformance: no section {bad:?}; the sections: {known:?}");
        return ExitCode::from(2);
    }
    let Some(checker) = cli
        .checker
        .or_else(|| std::env::var_os("HUSK_CHECKER").map(PathBuf::from))
    else {
        eprintln!("husk-conformance: give --checker or set HUSK_CHECKER (guest-image/build.sh path checker)");
        return ExitCode::from(2);
    };
    let opts = Options {
        root: cli.root.clone().unwrap_or_else(|| cli.work.join("root")),
        runtime: cli.runtime.clone(),
        checker,
        work: cli.work,
        env: Vec::new(),
        sections: cli.sections,
        timeout: Duration::from_secs(cli.timeout),
    };
    let sections = conformance::run(&opts);
    let text = conformance::markdown(&cli.runtime.display().to_string(), &sections);
    print!("{text}");
    if let Some(path) = &cli.markdown {
        if let Err(e) = std::fs::write(path, &text) {
            eprintln!("husk-conformance: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if conformance::failures(&sections).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
