//! Rate limiting for log lines the guest can trigger: a token bucket per call site, so
//! a guest hammering an unhandled port cannot flood the host's logs.

use husk_protocol::ratelimit::{Admission, TokenBucket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket (shared with the agent through `husk_protocol`) that can live in a
/// `static`: `burst` lines at once, refilled at `per_second`. The bucket starts full at
/// the first line.
#[derive(Debug)]
pub struct RateLimiter {
    bucket: Mutex<Option<TokenBucket>>,
    burst: u32,
    per_second: u32,
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
            bucket: Mutex::new(None),
            burst,
            per_second,
        }
    }

    /// Decides for one line at time `now`.
    pub fn check_at(&self, now: Instant) -> Verdict {
        let mut bucket = crate::devices::bus::lock(&self.bucket);
        let refill = Duration::from_secs(1) / self.per_second.max(1);
        let bucket = bucket.get_or_insert_with(|| TokenBucket::new(self.burst, refill, now));
        match bucket.admit(now) {
            Admission::Admit { suppressed } => Verdict::Log { suppressed },
            Admission::Suppress => Verdict::Drop,
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
