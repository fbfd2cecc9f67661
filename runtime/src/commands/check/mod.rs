//! `husk check`: can this host run husk microVMs, and if not, why?
//!
//! Every check reads from paths in [`CheckPaths`], so tests point them at files
//! they make; the KVM probe (a tiny guest) is passed in as a function.

use crate::config::HuskConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;
/// CAP_SYS_ADMIN's bit.
const CAP_SYS_ADMIN: u32 = 21;

/// Where the checks look.
#[derive(Debug, Clone)]
pub struct CheckPaths {
    /// The KVM device.
    pub dev_kvm: PathBuf,
    /// Present when KVM is PVM (paravirtual; only PVM guests run).
    pub kvm_pvm_module: PathBuf,
    /// CPU flags (`vmx`/`svm`).
    pub cpuinfo: PathBuf,
    /// The process's status (`Uid:`, `CapEff:`).
    pub proc_status: PathBuf,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initramfs: PathBuf,
    /// virtiofsd, if one was found or configured.
    pub virtiofsd: Option<PathBuf>,
}

impl CheckPaths {
    /// The real paths, with the guest image and virtiofsd from `config`.
    pub fn system(config: &HuskConfig) -> Self {
        CheckPaths {
            dev_kvm: "/dev/kvm".into(),
            kvm_pvm_module: "/sys/module/kvm_pvm".into(),
            cpuinfo: "/proc/cpuinfo".into(),
            proc_status: "/proc/self/status".into(),
            kernel: config.kernel_path(),
            initramfs: config.initramfs_path(),
            virtiofsd: config.virtiofsd_path(),
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed, or what was found.
    pub detail: String,
}

fn result(name: &str, outcome: Result<String, String>) -> CheckResult {
    let ok = outcome.is_ok();
    let detail = outcome.unwrap_or_else(|e| e);
    CheckResult {
        name: name.into(),
        ok,
        detail,
    }
}

/// Runs every check. `probe` runs a tiny guest on the KVM device; it is called only
/// when the device opens.
pub fn run_checks(paths: &CheckPaths, probe: &dyn Fn() -> Result<(), String>) -> Vec<CheckResult> {
    let kvm = paths.dev_kvm.display().to_string();
    let mut out = vec![result(
        &format!("{kvm} exists"),
        if paths.dev_kvm.exists() {
            Ok(String::new())
        } else {
            Err("no KVM: load kvm_intel or kvm_amd, or enable (nested) virtualization".into())
        },
    )];
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&paths.dev_kvm);
    let opens = opened.is_ok();
    out.push(result(
        &format!("{kvm} opens read-write"),
        opened
            .map(|_| String::new())
            .map_err(|e| format!("{e} (run as root or join the kvm group)")),
    ));
    out.push(result(
        "KVM runs unmodified guests (hardware virtualization)",
        hardware_virt(paths),
    ));
    out.push(result(
        "a tiny guest runs on KVM",
        if opens {
            probe().map(|()| String::new())
        } else {
            Err(format!("skipped: {kvm} does not open"))
        },
    ));
    out.push(result("guest kernel present", readable_file(&paths.kernel)));
    out.push(result(
        "guest initramfs present",
        readable_file(&paths.initramfs),
    ));
    out.push(result(
        "virtiofsd present and executable",
        match &paths.virtiofsd {
            Some(p) => executable(p),
            None => Err("not found on PATH nor at /usr/libexec/virtiofsd; install it or set virtiofsd in the config".into()),
        },
    ));
    let status = std::fs::read_to_string(&paths.proc_status).unwrap_or_default();
    out.push(result(
        "running as root",
        match status_field(&status, "Uid:")
            .and_then(|v| v.split_whitespace().nth(1).map(String::from))
        {
            Some(uid) if uid == "0" => Ok(String::new()),
            Some(uid) => Err(format!("effective uid {uid}: husk runs as root")),
            None => Err(format!(
                "cannot read Uid from {}",
                paths.proc_status.display()
            )),
        },
    ));
    let cap_eff =
        status_field(&status, "CapEff:").and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    for (name, bit) in [
        ("CAP_SYS_ADMIN", CAP_SYS_ADMIN),
        ("CAP_NET_ADMIN", CAP_NET_ADMIN),
    ] {
        out.push(result(
            &format!("capability {name}"),
            match cap_eff {
                Some(caps) if caps & (1 << bit) != 0 => Ok(String::new()),
                Some(_) => Err(format!("{name} is not in the effective set")),
                None => Err(format!(
                    "cannot read CapEff from {}",
                    paths.proc_status.display()
                )),
            },
        ));
    }
    out
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}

/// PVM (`kvm_pvm` loaded), or no `vmx`/`svm` CPU flag, means KVM cannot run an
/// unmodified Linux guest.
fn hardware_virt(paths: &CheckPaths) -> Result<String, String> {
    if paths.kvm_pvm_module.exists() {
        return Err(format!(
            "{} exists: this KVM is PVM (paravirtual), which runs only PVM guests; \
             use a host with VT-x/AMD-V (bare metal or nested virtualization)",
            paths.kvm_pvm_module.display()
        ));
    }
    let cpuinfo = std::fs::read_to_string(&paths.cpuinfo)
        .map_err(|e| format!("cannot read {}: {e}", paths.cpuinfo.display()))?;
    let has_flag = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|f| f == "vmx" || f == "svm");
    if has_flag {
        Ok(String::new())
    } else {
        Err(format!(
            "no vmx or svm flag in {}: no hardware virtualization for KVM \
             (enable VT-x/AMD-V, or nested virtualization in the VM)",
            paths.cpuinfo.display()
        ))
    }
}

fn readable_file(path: &Path) -> Result<String, String> {
    match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => Ok(path.display().to_string()),
        Ok(_) => Err(format!("{} is not a file", path.display())),
        Err(e) => Err(format!(
            "{}: {e} (tests/setup.sh installs it; or set it in the config)",
            path.display()
        )),
    }
}

fn executable(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
            Ok(path.display().to_string())
        }
        Ok(_) => Err(format!("{} is not an executable file", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Renders the results, one line each, then the verdict.
pub fn report(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for r in results {
        let mark = if r.ok { "ok  " } else { "FAIL" };
        let detail = if r.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", r.detail)
        };
        out.push_str(&format!("{mark}  {}{detail}\n", r.name));
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    if failed == 0 {
        out.push_str("husk check: this host can run husk microVMs\n");
    } else {
        out.push_str(&format!(
            "husk check: {failed} of {} checks failed: this host cannot run husk microVMs\n",
            results.len()
        ));
    }
    out
}

/// `husk check`: prints the report (unless `quiet`); 0 if every check passed, else 1.
pub fn check(quiet: bool) -> i32 {
    let config = match HuskConfig::load() {
        Ok(c) => c,
        Err(e) => {
            if !quiet {
                println!("FAIL  configuration: {e}");
            }
            return 1;
        }
    };
    let probe = || {
        husk_vmm::probe::run_probe(Duration::from_secs(10))
            .map(|_| ())
            .map_err(|e| husk_protocol::error_chain(&e))
    };
    let results = run_checks(&CheckPaths::system(&config), &probe);
    if !quiet {
        print!("{}", report(&results));
    }
    i32::from(results.iter().any(|r| !r.ok))
}

#[cfg(test)]
mod tests;
