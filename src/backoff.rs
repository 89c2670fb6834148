//! Exponential backoff, one helper for every retry: the node agent's restart holds and the
//! controller's reconcile retries; and the one write budget ([`Bucket`]): events' writes,
//! replicas' attribute writes.

use std::time::{Duration, Instant};

/// A token bucket: `burst` writes at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct Bucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: u32, per_second: u32) -> Bucket {
        Bucket {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            tokens: f64::from(burst),
            refilled: Instant::now(),
        }
    }

    /// The whole writes the budget allows now.
    pub fn available(&mut self) -> usize {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.refilled).as_secs_f64() * self.per_second)
            .min(self.burst);
        self.refilled = now;
        self.tokens as usize
    }

    /// Spends `n` writes of the budget.
    pub fn spend(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// One write, if the budget allows it now.
    pub fn take(&mut self) -> bool {
        let ok = self.available() >= 1;
        if ok {
            self.spend(1);
        }
        ok
    }
}

/// Delays that start at `first` and double up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry `n` (0 is the first retry): `first * 2^n`, at most `max`.
    pub fn nth(&self, n: u32) -> Duration {
        let factor = 1u32 << n.min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_never_overflows() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        let got: Vec<u128> = (0..8).map(|n| b.nth(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.nth(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills() {
        let mut b = Bucket::new(3, 1000);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        std::thread::sleep(Duration::from_millis(5));
        assert!(b.take(), "refilled at 1000 a second");
        assert!(Bucket::new(2, 0).available() == 2);
    }
}
