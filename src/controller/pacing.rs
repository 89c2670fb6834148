//! When the leading controller runs its next reconcile pass: the leader loop's pacing, apart
//! from the loop so that it is tested with paused time.
//!
//! - A pass runs after something new (an event, a resync that finds a newer revision) or a
//!   timer (a retry, a requeue); a resync with nothing new since the last successful pass is
//!   skipped, so an idle controller does no work.
//! - A pass starts no sooner after the last than that one took to decide (its CPU): a
//!   controller busy with a large cluster leaves as much time to etcd and the agents as it
//!   takes. A retry or requeue that comes due meanwhile waits for that.
//! - A failed commit is retried with [`RETRY`]'s backoff, reset by a success.

use tokio::time::{Duration, Instant};

use crate::backoff::Backoff;

/// The retry backoff of a failed pass: 100 ms doubling to 5 s.
pub const RETRY: Backoff = Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// The leader loop's timers and what the last pass saw.
#[derive(Debug, Default)]
pub struct Pacing {
    /// A failed pass: when to try again, and how many tries failed in a row.
    retry: Option<(Instant, u32)>,
    /// When a pass must run even without news (a ban running out, statuses held back).
    requeue: Option<Instant>,
    /// The cache revision the last successful pass saw.
    passed_at: Option<i64>,
    /// No pass before this (the last one's cost after it).
    not_before: Option<Instant>,
}

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something may be new (an event, a resync).
    News,
    /// The hold after the last pass ran out.
    HoldOver,
    /// A retry or a requeue came due.
    Timer,
}

impl Pacing {
    /// When the hold after the last pass ends (none: no hold).
    pub fn hold_until(&self) -> Option<Instant> {
        self.not_before
    }

    /// When a retry or requeue is due, held until the hold ends.
    pub fn timer_at(&self) -> Option<Instant> {
        let due = match (self.retry.map(|(at, _)| at), self.requeue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        Some(self.not_before.map_or(due, |n| due.max(n)))
    }

    /// Whether to run a pass now, woken by `wake`, the cache at `revision`.
    pub fn should_pass(&mut self, wake: Wake, revision: i64, now: Instant) -> bool {
        if wake == Wake::HoldOver {
            self.not_before = None;
        }
        if wake != Wake::Timer && self.passed_at == Some(revision) {
            return false;
        }
        self.not_before.is_none_or(|at| now >= at)
    }

    /// A pass ran at `revision`, deciding in `cost`; it wants another at `requeue` (or at
    /// once, `again`); its writes were committed (`ok`) or not. Returns the wait before a
    /// retry when it failed.
    pub fn passed(
        &mut self,
        revision: i64,
        cost: Duration,
        requeue: Option<Instant>,
        again: bool,
        ok: bool,
        now: Instant,
    ) -> Option<Duration> {
        self.requeue = if again { Some(now) } else { requeue };
        self.not_before = Some(now + cost);
        if ok {
            self.retry = None;
            self.passed_at = Some(revision);
            None
        } else {
            let n = self.retry.map_or(0, |(_, n)| n + 1);
            let wait = RETRY.nth(n);
            self.retry = Some((now + wait, n));
            Some(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn nothing_new_no_pass_and_a_pass_waits_out_the_last_ones_cost() {
        let mut p = Pacing::default();
        let t0 = Instant::now();
        assert!(p.should_pass(Wake::News, 5, t0), "the first pass");
        assert_eq!(p.passed(5, 200 * MS, None, false, true, t0), None);
        assert_eq!(p.hold_until(), Some(t0 + 200 * MS));
        // A resync with nothing newer: skipped, held or not.
        tokio::time::advance(300 * MS).await;
        assert!(!p.should_pass(Wake::News, 5, Instant::now()));
        // News within the hold waits for it, then runs.
        let mut p = Pacing::default();
        let t1 = Instant::now();
        p.passed(5, 200 * MS, None, false, true, t1);
        tokio::time::advance(50 * MS).await;
        assert!(!p.should_pass(Wake::News, 6, Instant::now()));
        tokio::time::advance(150 * MS).await;
        assert!(p.should_pass(Wake::HoldOver, 6, Instant::now()));
        assert_eq!(p.hold_until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pass_is_retried_with_backoff_reset_by_a_success() {
        let mut p = Pacing::default();
        let t0 = Instant::now();
        assert_eq!(p.passed(5, MS, None, false, false, t0), Some(100 * MS));
        assert_eq!(p.timer_at(), Some(t0 + 100 * MS));
        tokio::time::advance(100 * MS).await;
        let t1 = Instant::now();
        // A timer runs a pass though the revision is the same.
        assert!(p.should_pass(Wake::Timer, 5, t1));
        assert_eq!(p.passed(5, MS, None, false, false, t1), Some(200 * MS));
        assert_eq!(p.passed(5, MS, None, false, false, t1), Some(400 * MS));
        assert_eq!(p.passed(5, MS, None, false, true, t1), None);
        assert_eq!(p.timer_at(), None, "a success clears the retry");
        assert_eq!(p.passed(6, MS, None, false, false, t1), Some(100 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_comes_due_no_sooner_than_the_hold() {
        let mut p = Pacing::default();
        let t0 = Instant::now();
        // Statuses held back: again at once, but not before the pass's cost has passed.
        p.passed(5, 300 * MS, None, true, true, t0);
        assert_eq!(p.timer_at(), Some(t0 + 300 * MS));
        // A ban running out in 10 s: that, the hold long over.
        p.passed(5, 300 * MS, Some(t0 + 10_000 * MS), false, true, t0);
        assert_eq!(p.timer_at(), Some(t0 + 10_000 * MS));
        // The earlier of a retry and a requeue.
        p.passed(5, MS, Some(t0 + 10_000 * MS), false, false, t0);
        assert_eq!(p.timer_at(), Some(t0 + 100 * MS));
    }
}
