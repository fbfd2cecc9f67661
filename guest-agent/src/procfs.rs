//! Reading the guest's state out of `/proc`.
//!
//! The parsers take the files' text so that they can be tested anywhere; the readers
//! take the `/proc` root so that tests can point them at a fake tree.

use std::io;
use std::path::Path;

/// Milliseconds from the first field of `/proc/uptime` (`"12.34 5.67\n"`).
pub fn parse_uptime_ms(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64)
}

/// The three load averages from `/proc/loadavg` (`"0.10 0.20 0.30 1/80 123\n"`).
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// A `kB` value of `/proc/meminfo`, e.g. `key = "MemAvailable"`.
pub fn parse_meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Reads `<proc_root>/<file>` and parses it, naming the file on failure.
pub fn read_parsed<T>(
    proc_root: &Path,
    file: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> io::Result<T> {
    let path = proc_root.join(file);
    let text = std::fs::read_to_string(&path)?;
    parse(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse {}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(parse_uptime_ms("12.345 40.00\n"), Some(12_345));
        assert_eq!(parse_uptime_ms(""), None);
        assert_eq!(
            parse_loadavg("0.10 0.20 1.50 1/80 123\n"),
            Some([0.10, 0.20, 1.50])
        );
        assert_eq!(parse_loadavg("0.10 0.20"), None);
        let meminfo = "MemTotal:        2000 kB\nMemFree:  10 kB\nMemAvailable:    1500 kB\n";
        assert_eq!(parse_meminfo_kib(meminfo, "MemTotal"), Some(2000));
        assert_eq!(parse_meminfo_kib(meminfo, "MemAvailable"), Some(1500));
        assert_eq!(parse_meminfo_kib(meminfo, "Mem"), None);
    }
}
