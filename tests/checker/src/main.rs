//! `husk-checker`: run inside a container (statically linked, it needs nothing from
//! the root filesystem), it performs one file-system operation or measurement and
//! prints the result on stdout as `key=value` words, for the end-to-end suites to
//! compare with what the host sees. `validate SECTION` checks what the container
//! sees against its `config.json` (the conformance suite, docs/conformance.md).

mod fsops;
mod validate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(about = "Look at a container's file system from inside")]
struct Cli {
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, Subcommand)]
enum Op {
    /// Mode, owner, group and size of each path: `mode=0o100644 uid=0 gid=0 size=12`.
    Stat { paths: Vec<PathBuf> },
    /// SHA-256 of a file's contents: `sha256=<hex> bytes=<n>`.
    Sha256 { path: PathBuf },
    /// Entries of a directory (without `.` and `..`): `entries=<n>`.
    Count { dir: PathBuf },
    /// Prints an extended attribute's value: `value=<text>`.
    GetXattr { path: PathBuf, name: String },
    /// Sets an extended attribute.
    SetXattr {
        path: PathBuf,
        name: String,
        value: String,
    },
    /// Writes `text` to a new file with `mode` (octal), owned by `uid`:`gid`.
    Create {
        path: PathBuf,
        text: String,
        #[arg(long, default_value = "644")]
        mode: String,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Prints a file's contents: `text=<contents>`.
    Read { path: PathBuf },
    /// Renames `from` to `to`.
    Rename { from: PathBuf, to: PathBuf },
    /// Removes a file.
    Unlink { path: PathBuf },
    /// Whether a path exists: `exists=yes|no`.
    Exists { path: PathBuf },
    /// Creates `count` files named 0..count in `dir` (created if missing).
    MakeFiles { dir: PathBuf, count: u32 },
    /// Benchmark: writes `mib` MiB sequentially and fsyncs: `bytes=<n> secs=<s>`.
    WriteSeq { path: PathBuf, mib: u64 },
    /// Benchmark: reads a file sequentially: `bytes=<n> secs=<s>`.
    ReadSeq { path: PathBuf },
    /// Benchmark: creates `count` small files in `dir`: `files=<n> secs=<s>`.
    CreateRate { dir: PathBuf, count: u32 },
    /// Conformance: checks one section of the runtime spec against `--config`,
    /// printing `ok NAME`, `fail NAME: WHY` or `skip NAME: WHY` per check.
    Validate {
        /// process, mounts, hostname, namespaces, sysctl, cgroups or seccomp.
        section: String,
        /// The bundle's config.json as the container sees it.
        #[arg(long, default_value = "/conformance/config.json")]
        config: PathBuf,
        /// The host's namespaces, `TYPE=INODE` (namespaces section).
        #[arg(long = "host-ns")]
        host_ns: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Op::Validate {
        section,
        config,
        host_ns,
    } = &cli.op
    {
        return validate::main(section, config, host_ns);
    }
    match fsops::run(cli.op) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("husk-checker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
