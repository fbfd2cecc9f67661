//! The OCI conformance suite (docs/conformance.md), in the spirit of runtime-tools'
//! validation and youki's contest: for each section of the runtime spec, a bundle
//! (busybox and `husk-checker`) is generated and run through the runtime under test
//! with runc's command line; the checker, inside the container, checks what it sees
//! against the bundle's config (`husk-checker validate SECTION`), and the runner
//! checks what is seen from the host (hooks, lifecycle). Each section gives a table.

mod hooks;
mod lifecycle;
mod runtime;
mod sections;

pub use runtime::Runtime;

use std::path::PathBuf;
use std::time::Duration;

/// What to run the suite against.
#[derive(Debug, Clone)]
pub struct Options {
    /// The runtime binary (runc's command line).
    pub runtime: PathBuf,
    /// Its state root (`--root`).
    pub root: PathBuf,
    /// The static `husk-checker` copied into every bundle.
    pub checker: PathBuf,
    /// A scratch directory for the bundles (created; left for inspection).
    pub work: PathBuf,
    /// Extra environment of the runtime's commands (`HUSK_CONFIG`, say).
    pub env: Vec<(String, String)>,
    /// The sections to run (empty: all of them).
    pub sections: Vec<String>,
    /// How long a container may take to be created, to run, to stop.
    pub timeout: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed.
    Ok,
    /// Failed, and why.
    Fail(String),
    /// Not applicable here, and why.
    Skip(String),
}

/// One check of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its name (`process.args`).
    pub name: String,
    /// Its outcome.
    pub verdict: Verdict,
}

impl Check {
    /// A passed check.
    pub fn ok(name: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Ok,
        }
    }

    /// A failed check.
    pub fn fail(name: impl Into<String>, why: impl std::fmt::Display) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Fail(why.to_string()),
        }
    }

    /// `ok` if `cond`, else a failure with `why`.
    pub fn expect(name: impl Into<String>, cond: bool, why: impl std::fmt::Display) -> Check {
        if cond {
            Check::ok(name)
        } else {
            Check::fail(name, why)
        }
    }
}

/// The checks of one section.
#[derive(Debug, Clone)]
pub struct Section {
    /// Its id (`process`, `process-user`, `hooks`...).
    pub id: &'static str,
    /// What it covers, for the table's heading.
    pub title: &'static str,
    /// Its checks in order.
    pub checks: Vec<Check>,
}

/// Every section: id, title.
pub const SECTIONS: &[(&str, &str)] = &[
    (
        "process",
        "process: args, env, cwd, user, umask, rlimits, capabilities, noNewPrivileges, oomScoreAdj",
    ),
    (
        "process-user",
        "process as uid 1000 with an ambient capability",
    ),
    (
        "mounts",
        "root and mounts: root.readonly, mounts and options, masked and readonly paths, devices",
    ),
    ("hostname", "hostname and domainname"),
    ("namespaces", "namespaces"),
    ("sysctl", "sysctl"),
    (
        "cgroups",
        "cgroup resources (v2): memory, cpu, cpuset, pids, io",
    ),
    ("seccomp", "seccomp"),
    ("hooks", "hooks, with the state on stdin"),
    (
        "lifecycle",
        "lifecycle: create, start, state, kill, delete, and their errors",
    ),
];

/// Runs the chosen sections one after the other.
pub fn run(opts: &Options) -> Vec<Section> {
    let rt = Runtime::new(opts);
    let _ = std::fs::create_dir_all(&opts.work);
    SECTIONS
        .iter()
        .filter(|(id, _)| opts.sections.is_empty() || opts.sections.iter().any(|s| s == id))
        .map(|&(id, title)| {
            let checks = match id {
                "hooks" => hooks::run(&rt, opts),
                "lifecycle" => lifecycle::run(&rt, opts),
                _ => sections::run(id, &rt, opts),
            };
            Section { id, title, checks }
        })
        .collect()
}

/// The failed checks, as `SECTION/CHECK`.
pub fn failures(sections: &[Section]) -> Vec<String> {
    sections
        .iter()
        .flat_map(|s| {
            s.checks
                .iter()
                .filter(|c| matches!(c.verdict, Verdict::Fail(_)))
                .map(move |c| format!("{}/{}", s.id, c.name))
        })
        .collect()
}

/// The checker's lines (`ok NAME`, `fail NAME: WHY`, `skip NAME: WHY`); other lines
/// are ignored.
pub fn parse_lines(text: &str) -> Vec<Check> {
    text.lines()
        .filter_map(|line| {
            let (word, rest) = line.split_once(' ')?;
            let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
            let verdict = match word {
                "ok" => Verdict::Ok,
                "fail" => Verdict::Fail(why.to_string()),
                "skip" => Verdict::Skip(why.to_string()),
                _ => return None,
            };
            Some(Check {
                name: name.to_string(),
                verdict,
            })
        })
        .collect()
}

/// The results as markdown: a summary line, then a table per section.
pub fn markdown(runtime: &str, sections: &[Section]) -> String {
    let count = |f: fn(&Verdict) -> bool| {
        sections
            .iter()
            .flat_map(|s| &s.checks)
            .filter(|c| f(&c.verdict))
            .count()
    };
    let mut out = format!(
        "Runtime: `{runtime}`. {} passed, {} failed, {} skipped.\n",
        count(|v| matches!(v, Verdict::Ok)),
        count(|v| matches!(v, Verdict::Fail(_))),
        count(|v| matches!(v, Verdict::Skip(_))),
    );
    for s in sections {
        out.push_str(&format!(
            "\n#### {} ({})\n\n| check | result |\n|---|---|\n",
            s.id, s.title
        ));
        for c in &s.checks {
            let result = match &c.verdict {
                Verdict::Ok => "ok".to_string(),
                Verdict::Fail(why) => format!("**fail**: {why}"),
                Verdict::Skip(why) => format!("skip: {why}"),
            };
            out.push_str(&format!(
                "| `{}` | {} |\n",
                c.name,
                result.replace('|', "\\|")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_lines_parse_and_tables_escape_bars() {
        let checks = parse_lines("ok a.b\nnoise\nfail c: want 1, got 2\nskip d: not here\n");
        assert_eq!(
            checks,
            vec![
                Check::ok("a.b"),
                Check::fail("c", "want 1, got 2"),
                Check {
                    name: "d".into(),
                    verdict: Verdict::Skip("not here".into())
                },
            ]
        );
        let sections = vec![Section {
            id: "x",
            title: "x things",
            checks: vec![Check::fail("x.y", "a|b")],
        }];
        assert_eq!(failures(&sections), vec!["x/x.y".to_string()]);
        let md = markdown("rt", &sections);
        assert!(md.contains("0 passed, 1 failed, 0 skipped"), "{md}");
        assert!(md.contains("| `x.y` | **fail**: a\\|b |"), "{md}");
    }
}
