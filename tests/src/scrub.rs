//! Clean-up after a failed end-to-end test: a second run of the test (`tests/e2e.sh`
//! reruns a failed test in a new process) must not find the first run's microVMs,
//! tasks or mounts still there.

/// A test world that can remove whatever a test left in it.
pub trait Scrub {
    /// Removes what a failed test left, saying what it found.
    fn scrub(&self);
}

/// A test world that is scrubbed when the test using it panics.
#[derive(Debug)]
pub struct ScrubOnFailure<'a, T: Scrub>(pub &'a T);

impl<T: Scrub> std::ops::Deref for ScrubOnFailure<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
    }
}

impl<T: Scrub> Drop for ScrubOnFailure<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.scrub();
        }
    }
}
