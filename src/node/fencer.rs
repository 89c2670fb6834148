//! The node agent's fence task: a task of its own, so that the fence fires on time whatever
//! the agent's loop is waiting for (a Docker call can block for minutes, an etcd call for
//! as long as the network hangs). It counts from the *send* time of the last successful
//! renewal; two thirds of the TTL later it fences ([`Host::freeze`]), arms the
//! watchdog after every renewal, and after a fence decides between thawing (the same lease
//! was renewed: etcd was only out of reach) and killing (the lease was lost, or the freeze
//! lasted `freeze_for`). The loop hears the outcome as [`FenceEvent`]s. It closes the
//! node's [`Gate`] before it freezes anything, so nothing the loop has in flight can create or
//! start a container after the fence, and opens it again only when the same lease was renewed
//! (a new lease: the loop opens it once it has listed its assignments afresh).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fence::Scope;
use super::gate::Gate;
use super::host::Host;
use super::watchdog::{Link, Request};

/// What the fence task tells the agent's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceEvent {
    /// The node is frozen and its addresses dropped: change nothing until told otherwise.
    Fenced,
    /// The same lease was renewed after a fence: the containers run again (thawed, or, when
    /// they were killed, to be created again); reconcile.
    Resumed,
    /// Every container was killed: remove them through the engine and stay fenced.
    Killed,
    /// A new lease replaced the lost one: list the assignments afresh, then open the gate
    /// closed at this epoch ([`Gate::open`]).
    Relist { epoch: u64, lease: i64 },
}

/// The task's inputs.
pub struct Fencer<H> {
    pub scope: Option<Scope>,
    /// What freezes, thaws and kills the replicas and drops their addresses.
    pub host: H,
    pub watchdog: Option<Link>,
    /// Fence this long after the last renewal was sent (two thirds of the TTL).
    pub fence_after: Duration,
    /// How long a freeze may wait for the lease before it becomes a kill.
    pub freeze_for: Duration,
    /// The current lease, replaced by the registration task when it registers again.
    pub lease: Arc<AtomicI64>,
    pub renewed: watch::Receiver<Instant>,
    pub events: mpsc::UnboundedSender<FenceEvent>,
    /// Closed at every fence: what the agent may create, start or add.
    pub gate: Gate,
}

/// Where the task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    Frozen { at: Instant },
    Killed,
}

impl<H: Host> Fencer<H> {
    /// Runs until `shutdown`, or until the registration task ends.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut lease = self.lease.load(Ordering::SeqCst);
        let mut state = State::Live;
        // The epoch of this task's last closing of the gate, to open it again.
        let mut closed = self.gate.epoch();
        let first = *self.renewed.borrow_and_update();
        self.arm(first);
        loop {
            let deadline = *self.renewed.borrow() + self.fence_after;
            let kill_at = match state {
                State::Frozen { at } => Some(at + self.freeze_for),
                _ => None,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = self.renewed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let sent = *self.renewed.borrow_and_update();
                    self.arm(sent);
                    let now_lease = self.lease.load(Ordering::SeqCst);
                    if now_lease != lease {
                        // The lease was lost: the controller may have placed the replicas
                        // elsewhere already. Whatever runs here dies before anything else.
                        lease = now_lease;
                        let epoch = self.gate.close();
                        if state != State::Killed {
                            self.kill().await;
                        }
                        state = State::Live;
                        self.emit(FenceEvent::Relist { epoch, lease });
                    } else if state != State::Live {
                        if matches!(state, State::Frozen { .. }) {
                            tracing::warn!("lease renewed after a fence: thawing");
                            if let Some(s) = &self.scope
                                && let Err(e) = self.host.thaw(s)
                            {
                                tracing::error!("thaw: {e}");
                            }
                            if let Some(w) = &self.watchdog {
                                w.send(Request::Thaw);
                            }
                        }
                        state = State::Live;
                        self.gate.open(closed);
                        self.emit(FenceEvent::Resumed);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if state == State::Live => {
                    tracing::error!("lease not renewed in time: fencing (freezing every replica, dropping addresses)");
                    // First: whatever the loop has in flight starts nothing from here on.
                    closed = self.gate.close();
                    self.host.freeze(self.scope.as_ref(), self.fence_after / 4).await;
                    self.emit(FenceEvent::Fenced);
                    if self.freeze_for.is_zero() || self.scope.is_none() {
                        self.kill().await;
                        state = State::Killed;
                    } else {
                        state = State::Frozen { at: Instant::now() };
                    }
                }
                _ = crate::sleep_until(kill_at) => {
                    tracing::error!("frozen for {:?} without the lease coming back: killing", self.freeze_for);
                    self.kill().await;
                    state = State::Killed;
                }
            }
        }
    }

    fn emit(&self, e: FenceEvent) {
        let _ = self.events.send(e);
    }

    /// Tells the watchdog how long this renewal vouches for the node.
    fn arm(&self, sent: Instant) {
        if let Some(w) = &self.watchdog {
            let left = (sent + self.fence_after).saturating_duration_since(Instant::now());
            w.send(Request::Arm(left));
        }
    }

    async fn kill(&self) {
        if let Some(w) = &self.watchdog {
            w.send(Request::Kill);
        }
        self.host.kill(self.scope.as_ref()).await;
        self.emit(FenceEvent::Killed);
    }
}
