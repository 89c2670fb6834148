//! Exponential backoff, one helper for every retry: the node agent's restart holds and the
//! controller's reconcile retries.

use std::time::Duration;

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
}
