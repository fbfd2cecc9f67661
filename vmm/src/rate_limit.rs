//! Rate limiting for log lines the guest can trigger: a token bucket per call site, so
//! a guest hammering an unhandled port cannot flood the host's logs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `burst` lines at once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Bucket>,
    burst: u32,
    per_second: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    last_refill: Option<Instant>,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines were dropped since the last one logged.
    Log {
        /// Lines dropped before this one.
        suppressed: u64,
    },
    /// Drop it.
    Drop,
}

impl RateLimiter {
    /// A bucket of `burst` tokens refilled at `per_second` tokens a second.
    pub const fn new(burst: u32, per_second: u32) -> Self {
        RateLimiter {
            state: Mutex::new(Bucket {
                tokens: burst,
                last_refill: None,
                suppressed: 0,
            }),
            burst,
            per_second,
        }
    }

    /// Decides for one line at time `now`.
    pub fn check_at(&self, now: Instant) -> Verdict {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let last = *b.last_refill.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let refill = (elapsed.as_millis() as u64 * u64::from(self.per_second) / 1000) as u32;
        if refill > 0 {
            b.tokens = b.tokens.saturating_add(refill).min(self.burst);
            let used =
                Duration::from_millis(u64::from(refill) * 1000 / u64::from(self.per_second.max(1)));
            b.last_refill = Some(last + used);
        }
        if b.tokens == 0 {
            b.suppressed += 1;
            return Verdict::Drop;
        }
        b.tokens -= 1;
        Verdict::Log {
            suppressed: std::mem::take(&mut b.suppressed),
        }
    }

    /// Decides for one line now.
    pub fn check(&self) -> Verdict {
        self.check_at(Instant::now())
    }
}

/// `tracing::warn!` through a per-call-site [`RateLimiter`] (10 lines at once, then 1 a
/// second), with a count of what was dropped.
#[macro_export]
macro_rules! warn_guest {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::rate_limit::RateLimiter = $crate::rate_limit::RateLimiter::new(10, 1);
        if let $crate::rate_limit::Verdict::Log { suppressed } = LIMITER.check() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_and_suppressed_count() {
        let limiter = RateLimiter::new(2, 1);
        let t0 = Instant::now();
        assert_eq!(limiter.check_at(t0), Verdict::Log { suppressed: 0 });
        assert_eq!(limiter.check_at(t0), Verdict::Log { suppressed: 0 });
        assert_eq!(limiter.check_at(t0), Verdict::Drop);
        assert_eq!(
            limiter.check_at(t0 + Duration::from_millis(500)),
            Verdict::Drop
        );
        assert_eq!(
            limiter.check_at(t0 + Duration::from_millis(1000)),
            Verdict::Log { suppressed: 2 }
        );
        assert_eq!(
            limiter.check_at(t0 + Duration::from_millis(1100)),
            Verdict::Drop
        );
    }

    #[test]
    fn refill_never_exceeds_the_burst() {
        let limiter = RateLimiter::new(3, 100);
        let t0 = Instant::now();
        assert!(matches!(limiter.check_at(t0), Verdict::Log { .. }));
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(matches!(limiter.check_at(later), Verdict::Log { .. }));
        }
        assert_eq!(limiter.check_at(later), Verdict::Drop);
    }
}
