//! The guest console's log: the guest controls what it prints, so the file is
//! bounded; past the bound one line says so and the rest is dropped. The log also
//! watches for the agent's readiness line and hands on the rest of that line (bounded).
//! [`log_tail`] reads the end of such a log (or of the sandbox log) for an error
//! message.

use husk_protocol::console::READY_PREFIX;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Called once, when the console shows the agent's readiness line, with the rest of
/// that line (guest text, at most [`READY_REST_MAX`] bytes, lossily decoded).
pub type OnReady = Box<dyn FnOnce(&str) + Send>;

/// Most bytes of the readiness line kept after its prefix.
pub const READY_REST_MAX: usize = 160;

/// A writer that keeps the first `max` bytes, and calls `ready` once the console
/// shows the agent's readiness line.
pub struct BoundedLog {
    file: File,
    left: u64,
    noted: bool,
    /// What the log is, for the line that says it is full.
    what: &'static str,
    /// The last bytes seen, as long as the readiness prefix (the UART writes a byte
    /// at a time).
    window: Vec<u8>,
    /// The rest of the readiness line, once its prefix was seen.
    rest: Option<Vec<u8>>,
    ready: Option<OnReady>,
}

impl std::fmt::Debug for BoundedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedLog")
            .field("left", &self.left)
            .field("waiting_for_ready", &self.ready.is_some())
            .finish_non_exhaustive()
    }
}

impl BoundedLog {
    /// Creates (truncates) `path`, the guest console's log.
    pub fn create(path: &Path, max: u64, ready: OnReady) -> std::io::Result<BoundedLog> {
        Ok(BoundedLog {
            file: File::create(path)?,
            left: max,
            noted: false,
            what: "console log",
            window: Vec::with_capacity(READY_PREFIX.len()),
            rest: None,
            ready: Some(ready),
        })
    }

    /// Opens `path` (`what`: the sandbox log, say) to append at most `max` bytes more,
    /// without a readiness watch: a log whose lines the guest can cause.
    pub fn append(path: &Path, max: u64, what: &'static str) -> std::io::Result<BoundedLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let left = max.saturating_sub(file.metadata()?.len());
        Ok(BoundedLog {
            file,
            left,
            noted: false,
            what,
            window: Vec::new(),
            rest: None,
            ready: None,
        })
    }

    fn watch(&mut self, buf: &[u8]) {
        if self.ready.is_none() {
            return;
        }
        for &b in buf {
            if let Some(rest) = &mut self.rest {
                if b == b'\n' || rest.len() >= READY_REST_MAX {
                    let rest = String::from_utf8_lossy(rest).into_owned();
                    if let Some(ready) = self.ready.take() {
                        ready(&rest);
                    }
                    return;
                }
                rest.push(b);
                continue;
            }
            if self.window.len() == READY_PREFIX.len() {
                self.window.remove(0);
            }
            self.window.push(b);
            if self.window == READY_PREFIX.as_bytes() {
                self.rest = Some(Vec::with_capacity(READY_REST_MAX));
            }
        }
    }
}

impl Write for BoundedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.watch(buf);
        let keep = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if keep > 0 {
            self.file.write_all(&buf[..keep])?;
            self.left -= keep as u64;
        } else if !self.noted && !buf.is_empty() {
            self.noted = true;
            let note = format!(
                "\n[husk: {} limit reached; the rest is dropped]\n",
                self.what
            );
            self.file.write_all(note.as_bytes())?;
        }
        // Everything counts as written: the guest must never block on its console.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The last lines of the log at `path` (at most 8 and 1 KiB, printable ASCII only:
/// the guest may have written them), as a suffix for an error message naming the log
/// `what`; empty if there are none.
pub fn log_tail(path: &Path, what: &str) -> String {
    const MAX_LINES: usize = 8;
    const MAX_BYTES: usize = 1024;
    // Only the end is read: the sandbox log has no size bound of its own.
    let read_end = || -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES as u64 * 4)))?;
        let mut bytes = Vec::with_capacity(MAX_BYTES * 4);
        file.take(MAX_BYTES as u64 * 4).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let Ok(bytes) = read_end() else {
        return String::new();
    };
    // A serial console ends its lines with "\r\n": the carriage return is no text.
    let text: String = bytes
        .iter()
        .filter(|&&b| b != b'\r')
        .map(|&b| match b {
            b'\n' => '\n',
            0x20..=0x7e => b as char,
            _ => '?',
        })
        .collect();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let mut tail = lines[lines.len().saturating_sub(MAX_LINES)..].join(" | ");
    if tail.len() > MAX_BYTES {
        tail = tail[tail.len() - MAX_BYTES..].to_owned();
    }
    if tail.is_empty() {
        String::new()
    } else {
        format!("; {what}, last lines: {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_bound_is_dropped_with_one_note() {
        let path = std::env::temp_dir().join(format!("husk-console-{}", std::process::id()));
        let mut log = BoundedLog::create(&path, 10, Box::new(|_| {})).unwrap();
        assert_eq!(log.write(b"0123456").unwrap(), 7);
        assert_eq!(log.write(b"789abc").unwrap(), 6);
        assert_eq!(log.write(b"more").unwrap(), 4);
        assert_eq!(log.write(b"and more").unwrap(), 8);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "0123456789\n[husk: console log limit reached; the rest is dropped]\n"
        );
        let _ = std::fs::remove_file(path);
    }

    /// The sandbox log keeps what earlier sandbox processes wrote and counts it
    /// against its bound: a guest that makes the VMM log without end fills it once.
    #[test]
    fn an_appended_log_counts_what_it_holds_already() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut log = BoundedLog::append(&path, 12, "sandbox log").unwrap();
        for _ in 0..1000 {
            assert_eq!(log.write(b"flood\n").unwrap(), 6);
        }
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "earlier\nfloo\n[husk: sandbox log limit reached; the rest is dropped]\n"
        );
        let mut full = BoundedLog::append(&path, 12, "sandbox log").unwrap();
        full.write_all(b"later").unwrap();
        drop(full);
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(!after.contains("later"), "{after:?}");
        assert!(after.len() < text.len() * 2, "{after:?}");
    }

    #[test]
    fn the_readiness_line_is_seen_byte_by_byte() {
        let path = std::env::temp_dir().join(format!("husk-console-r-{}", std::process::id()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut log = BoundedLog::create(
            &path,
            1 << 20,
            Box::new(move |rest| tx.send(rest.to_owned()).unwrap()),
        )
        .unwrap();
        for b in b"boot...\nhusk-agent: read" {
            log.write_all(&[*b]).unwrap();
        }
        assert!(rx.try_recv().is_err());
        log.write_all(b"y (version 1").unwrap();
        assert!(rx.try_recv().is_err(), "not before the line ends");
        log.write_all(b")\nmore\n").unwrap();
        assert_eq!(rx.try_recv().unwrap(), " (version 1)");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn an_endless_readiness_line_is_cut_at_its_bound() {
        let path = std::env::temp_dir().join(format!("husk-console-e-{}", std::process::id()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut log = BoundedLog::create(
            &path,
            1 << 20,
            Box::new(move |rest| tx.send(rest.len()).unwrap()),
        )
        .unwrap();
        log.write_all(READY_PREFIX.as_bytes()).unwrap();
        log.write_all(&[b'x'; 4096]).unwrap();
        assert_eq!(rx.try_recv().unwrap(), READY_REST_MAX);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_console_tail_is_short_and_printable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        assert_eq!(log_tail(&path, "guest console"), "");
        let mut text = String::new();
        for i in 0..20 {
            text.push_str(&format!("line {i}\n"));
        }
        // The serial console's "\r\n" ends a line like "\n".
        text.push_str("Kernel panic - not syncing: \x1b[1mAttempted to kill init!\r\n\r\n");
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path, "guest console");
        assert!(
            tail.starts_with("; guest console, last lines: line 13 | "),
            "{tail}"
        );
        assert!(tail.ends_with("?[1mAttempted to kill init!"), "{tail}");
        std::fs::write(&path, "x".repeat(10_000)).unwrap();
        assert!(log_tail(&path, "guest console").len() < 1100);
        // A long log: its end is read.
        let long = format!("{}last words\n", "some line\n".repeat(100_000));
        std::fs::write(&path, long).unwrap();
        let tail = log_tail(&path, "sandbox log");
        assert!(tail.ends_with("some line | last words"), "{tail}");
        assert!(
            tail.starts_with("; sandbox log, last lines: some line"),
            "{tail}"
        );
    }
}
