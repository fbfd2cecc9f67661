//! A token bucket that bounds how many lines the agent logs.

use std::time::{Duration, Instant};

/// Allows `capacity` events at once and one more per `refill` interval after that.
///
/// The clock is passed in (`now`), so the logic is testable without waiting.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: u32,
    refill: Duration,
    tokens: u32,
    last_refill: Instant,
    suppressed: u64,
}

/// The bucket's decision about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `suppressed` events were refused since the last admitted one.
    Admit {
        /// Events refused since the previous admission.
        suppressed: u64,
    },
    /// Drop the event (it is counted).
    Suppress,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens that regains one every `refill`.
    pub fn new(capacity: u32, refill: Duration, now: Instant) -> Self {
        TokenBucket {
            capacity,
            refill: refill.max(Duration::from_nanos(1)),
            tokens: capacity,
            last_refill: now,
            suppressed: 0,
        }
    }

    /// The agent's console budget: 10 lines at once, then 10 per second.
    pub fn console(now: Instant) -> Self {
        Self::new(10, Duration::from_millis(100), now)
    }

    /// Decides about one event at time `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.last_refill);
        let earned = elapsed.as_nanos() / self.refill.as_nanos();
        if earned > 0 {
            let room = u128::from(self.capacity - self.tokens);
            if earned >= room {
                self.tokens = self.capacity;
                self.last_refill = now;
            } else {
                self.tokens += earned as u32;
                // Keep the fraction of an interval already elapsed.
                self.last_refill += self.refill * earned as u32;
            }
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return Admission::Suppress;
        }
        self.tokens -= 1;
        Admission::Admit {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn burst_then_suppression_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 100 * MS, t0);
        for _ in 0..3 {
            assert_eq!(b.admit(t0), Admission::Admit { suppressed: 0 });
        }
        assert_eq!(b.admit(t0), Admission::Suppress);
        assert_eq!(b.admit(t0 + 50 * MS), Admission::Suppress);
        // One interval later: one token, and the two refused events are reported.
        assert_eq!(b.admit(t0 + 100 * MS), Admission::Admit { suppressed: 2 });
        assert_eq!(b.admit(t0 + 150 * MS), Admission::Suppress);
        assert_eq!(b.admit(t0 + 200 * MS), Admission::Admit { suppressed: 1 });
    }

    #[test]
    fn refill_is_capped_at_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, 100 * MS, t0);
        assert!(matches!(b.admit(t0), Admission::Admit { .. }));
        assert!(matches!(b.admit(t0), Admission::Admit { .. }));
        let later = t0 + Duration::from_secs(60);
        assert!(matches!(b.admit(later), Admission::Admit { .. }));
        assert!(matches!(b.admit(later), Admission::Admit { .. }));
        assert_eq!(b.admit(later), Admission::Suppress);
    }

    #[test]
    fn partial_intervals_accumulate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 100 * MS, t0);
        assert!(matches!(b.admit(t0), Admission::Admit { .. }));
        assert_eq!(b.admit(t0 + 60 * MS), Admission::Suppress);
        assert_eq!(b.admit(t0 + 99 * MS), Admission::Suppress);
        assert_eq!(b.admit(t0 + 100 * MS), Admission::Admit { suppressed: 2 });
    }
}
