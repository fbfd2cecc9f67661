//! The server's console log, rate-limited so that a misbehaving host cannot flood the
//! serial console.

use husk_protocol::ratelimit::{Admission, TokenBucket};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Writes `husk-agent: ...` lines, at most as many as its [`TokenBucket`] allows; when
/// lines were dropped, the next admitted line is preceded by
/// `husk-agent: N log messages suppressed`.
pub struct ConsoleLog {
    inner: Mutex<(TokenBucket, Box<dyn Write + Send>)>,
}

impl std::fmt::Debug for ConsoleLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleLog").finish_non_exhaustive()
    }
}

impl ConsoleLog {
    /// A log to `out` limited by `bucket`.
    pub fn new(out: Box<dyn Write + Send>, bucket: TokenBucket) -> Self {
        ConsoleLog {
            inner: Mutex::new((bucket, out)),
        }
    }

    /// The agent's console log: standard output, [`TokenBucket::console`].
    pub fn stdout() -> Self {
        Self::new(
            Box::new(std::io::stdout()),
            TokenBucket::console(Instant::now()),
        )
    }

    /// Logs one line now.
    pub fn log(&self, message: &str) {
        self.log_at(Instant::now(), message);
    }

    /// Logs one line as if the time were `now`.
    pub fn log_at(&self, now: Instant, message: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (bucket, out) = &mut *guard;
        if let Admission::Admit { suppressed } = bucket.admit(now) {
            // Console write failures cannot be reported anywhere else.
            if suppressed > 0 {
                let _ = writeln!(out, "husk-agent: {suppressed} log messages suppressed");
            }
            let _ = writeln!(out, "husk-agent: {message}");
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn floods_are_cut_and_counted() {
        let t0 = Instant::now();
        let out = Shared::default();
        let log = ConsoleLog::new(
            Box::new(out.clone()),
            TokenBucket::new(2, Duration::from_secs(1), t0),
        );
        for i in 0..5 {
            log.log_at(t0, &format!("line {i}"));
        }
        log.log_at(t0 + Duration::from_secs(1), "after");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "husk-agent: line 0\nhusk-agent: line 1\n\
             husk-agent: 3 log messages suppressed\nhusk-agent: after\n"
        );
    }
}
