//! The fence gate: whether this node may create or start anything, or add an address.
//!
//! The fence task ([`super::fencer`]) closes the gate *before* it freezes the node, whatever
//! the agent's loop is doing: the loop may be inside an engine call that blocks for minutes
//! (a `docker stop` of a container that ignores SIGTERM), and that call returns once the
//! fence has killed the container. Every create, start and address add asks the gate first
//! ([`Gate::pass`]), and a start that was already in flight when the gate closed is undone
//! when it returns ([`Gate::holds`]): a fenced node starts nothing.
//!
//! The gate opens again only when the node may vouch for its replicas once more: the fence
//! task opens it when the *same* lease was renewed (it never expired, so no replica can have
//! been placed elsewhere), and the agent's loop opens it when, under a new lease, it has
//! listed its assignments afresh. Each closing has its own number (an epoch), so an opening
//! meant for one fence never opens a later one.

use std::sync::{Arc, Mutex};

/// The gate, shared by the fence task and the agent's loop (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    /// How many times the gate has been closed.
    epoch: u64,
    closed: bool,
}

/// Leave to act, taken while the gate was open; it holds while the gate has not closed
/// since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass(u64);

impl Gate {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The lock guards two integers; a panic while holding it cannot leave them torn.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the gate (again, if it was closed); the closing's epoch, for [`Gate::open`].
    pub fn close(&self) -> u64 {
        let mut s = self.state();
        s.epoch += 1;
        s.closed = true;
        s.epoch
    }

    /// Opens the gate closed at `epoch`, unless it was closed again since. Whether it is
    /// open now.
    pub fn open(&self, epoch: u64) -> bool {
        let mut s = self.state();
        if s.epoch == epoch {
            s.closed = false;
        }
        !s.closed
    }

    /// The current epoch (the last closing's), for an opening decided later.
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        !self.state().closed
    }

    /// Leave to create, start or add an address: `None` while the gate is closed.
    pub fn pass(&self) -> Option<Pass> {
        let s = self.state();
        (!s.closed).then_some(Pass(s.epoch))
    }

    /// Whether the gate has stayed open since `pass` was taken: what a call made with it
    /// started may stay.
    pub fn holds(&self, pass: Pass) -> bool {
        let s = self.state();
        !s.closed && s.epoch == pass.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_taken_before_a_fence_does_not_hold_after_it_even_when_reopened() {
        let g = Gate::default();
        let p = g.pass().expect("a new gate is open");
        assert!(g.holds(p));
        let e = g.close();
        assert!(g.pass().is_none());
        assert!(!g.holds(p));
        assert!(g.open(e));
        // Open again, but the start made with the old pass was in flight across a fence.
        assert!(!g.holds(p));
        assert!(g.holds(g.pass().unwrap()));
    }

    #[test]
    fn an_opening_meant_for_an_earlier_fence_does_not_open_a_later_one() {
        let g = Gate::default();
        let first = g.close();
        let second = g.close();
        assert!(!g.open(first));
        assert!(!g.is_open());
        assert!(g.open(second));
        assert!(g.is_open());
    }
}
