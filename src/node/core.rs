//! The node agent's core: what it remembers about each replica between reconciles, and
//! every decision it takes from that memory, with no I/O. It is driven the way raft-rs
//! drives its `RawNode`: the shell ([`super::agent`]) [`Core::step`]s in what happened
//! (engine events, primitive reports, what this node must run, container lists, stored
//! statuses), asks [`Core::ready`] for what to do now ([`Effects`]: statuses to read back,
//! a list to take, engine actions, statuses to write and delete, roles to ask for,
//! notifications to deliver), does it, and hands back what came of it with
//! [`Core::advance`]. When to come back is [`Core::wake_at`].
//!
//! A reconcile pass goes through its stages in order ([`Stage`]): read back the statuses
//! of replicas seen for the first time, list the engine, plan and act, list again, write
//! what changed; a primitive's report between passes only writes and signals.
//!
//! Time is an argument ([`At`]: `now`, and `unix` for timestamps in statuses), so every
//! decision is a table test away.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assigned::Wanted;
use super::engine::{EngineAction, EngineEvent, Observed};
use super::plan::{Action, Plan, ReplicaKey, key_of, plan};
use crate::model::cluster::{
    Failure, Notification, Phase, PrimitiveState, ReplicaState, ReplicaStatus, Role,
};
use crate::model::container::{DesiredContainer, LABEL_HASH};

/// Each assigned replica's container, or why it cannot run here.
pub type Desired = BTreeMap<ReplicaKey, Result<DesiredContainer, Unrunnable>>;

/// Why a replica cannot run here: its container cannot be made as specified, or this
/// host's policy refuses what it asks (the policy's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrunnable {
    #[error(transparent)]
    Shape(#[from] crate::model::container::ShapeError),
    #[error("{0}")]
    Refused(String),
    /// Its files could not be prepared safely (a link where a directory must be), and why.
    #[error("preparing the replica's files: {0}")]
    Files(String),
    /// Its address cannot be added here (the host's own, a network or broadcast address,
    /// one not recorded as the agent's), and why.
    #[error("{0}")]
    Address(String),
}

/// Restart timing: the first failure restarts at once; further failures in a row wait
/// `backoff`, doubling up to `max_backoff`; a container that ran `stable_after` starts
/// afresh.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub stable_after: Duration,
}

/// What the core remembers about one replica.
#[derive(Debug, Default, Clone)]
struct Runtime {
    restart_count: u32,
    /// Failures in a row (reset when the container ran `stable_after`).
    consecutive: u32,
    fail_counts: BTreeMap<String, u32>,
    last_failure: Option<Failure>,
    started_at: Option<Instant>,
    /// When this agent last started the container (Unix seconds; 0: never, adopted).
    started_unix: u64,
    /// The hash of the container spec last planned for: a new spec starts afresh, with no
    /// restart hold or error carried over from the old one (a rollout away from a broken
    /// image must not wait out the broken one's backoff).
    spec_hash: Option<String>,
    hold_until: Option<Instant>,
    /// Why creating or starting failed last time, cleared by a success.
    error: Option<String>,
    /// Creates refused in a row because the name was taken: the retry waits longer each
    /// time (a name held by a container berth does not own stays taken).
    conflicts: u32,
    /// The primitive as its remote agent last reported it.
    primitive: Option<PrimitiveState>,
}

/// The result of a create-and-start or a start, as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Running now, as this container.
    Ok(String),
    /// The name is held by another container: usually one being removed (retried soon);
    /// one this node does not own (another berth cluster's on the same engine, the user's)
    /// keeps it, so each retry in a row waits twice as long, up to the longest backoff. Not a
    /// failure of the replica's.
    NameConflict(String),
    /// Failed: counted, and the restart held for the backoff.
    Failed(String),
}

/// Status writes of one pass: new bytes per replica, and replicas that left this node
/// (their keys are deleted only while they still hold the bytes this node wrote).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatusWrites {
    pub puts: Vec<(ReplicaKey, Vec<u8>)>,
    pub gone: Vec<(ReplicaKey, Vec<u8>)>,
}

/// The moment an input or a decision is taken at: the monotonic clock for holds and
/// backoffs, Unix seconds for what statuses record.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub now: Instant,
    pub unix: u64,
}

impl At {
    /// Now, by both clocks.
    pub fn now() -> At {
        At {
            now: Instant::now(),
            unix: crate::unix_now(),
        }
    }
}

/// What happened, as the shell steps it into the core.
#[derive(Debug)]
pub enum Input {
    /// Registered under this lease (at start, and anew after a fence): every status
    /// carries it, so each is written again once under a new registration, and a status
    /// from before it is told apart (`View::reported_now`).
    Registered(i64),
    /// Fenced: nothing is due until the registration is back.
    Fenced,
    /// An engine event, with the primitive state its remote agent left behind for a `die`
    /// the core counts as a failure ([`Core::failure_of`] says which).
    Event {
        event: EngineEvent,
        left: Option<PrimitiveState>,
    },
    /// A remote agent's report of its primitive.
    Primitive(ReplicaKey, PrimitiveState),
    /// Containers the shell stops itself outside a pass (a fence, a drain): their `die` is
    /// no failure.
    Stopping(Vec<String>),
    /// Begin a reconcile pass to run what this node must run: its assignments decoded and
    /// the host's files and addresses prepared (`host_refused`: the host refused some of
    /// them for a condition of its own, which can change without any event, so the core
    /// looks again soon).
    Reconcile {
        wanted: Arc<Wanted>,
        host_refused: bool,
    },
    /// Only a primitive changed: write what changed of the statuses against the containers
    /// as last listed, and ask for roles and notify, without a pass.
    Report(Arc<Wanted>),
    /// The stored statuses [`Effects::read`] asked for (None: nothing stored).
    Stored(Vec<(ReplicaKey, Option<Vec<u8>>)>),
    /// This node's containers as the engine lists them (less unmanaged bundles'), as
    /// [`Effects::list`] asked.
    Listed(Vec<Observed>),
    /// The list [`Effects::list`] asked for could not be taken.
    ListFailed,
}

/// What the shell is to do now, in this order. One stage of a pass at a time: a part left
/// empty has nothing to do.
#[derive(Debug, Default)]
pub struct Effects {
    /// Read back these replicas' stored statuses: answered with [`Input::Stored`].
    pub read: Vec<ReplicaKey>,
    /// List the engine's containers, to plan or after acting: answered with
    /// [`Input::Listed`] or [`Input::ListFailed`].
    pub list: Option<Listing>,
    /// Engine actions (removals already counted as this agent's own stops): what came of
    /// each create and start goes back with [`Core::advance`].
    pub engine: Vec<Action>,
    /// Statuses to write (their success goes back with [`Core::advance`]), and to delete
    /// while they hold these bytes (replicas that left this node).
    pub puts: Vec<(ReplicaKey, Vec<u8>)>,
    pub deletes: Vec<(ReplicaKey, Vec<u8>)>,
    /// The role to ask each replica's remote agent for.
    pub roles: Vec<(ReplicaKey, Role)>,
    /// The clone notifications to deliver.
    pub notify: Vec<(ReplicaKey, Notification)>,
    /// The pass is over after these: the shell's own ending (links, metrics) follows.
    pub done: bool,
}

/// Why the engine is to be listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// To plan from.
    ToPlan,
    /// After acting: what the statuses report (the addresses of containers just started
    /// are announced first).
    AfterActing,
}

/// What came of the shell's [`Effects`].
#[derive(Debug, Default)]
pub struct Results {
    /// Each create (`restart` false) or start (true) tried, and its outcome.
    pub started: Vec<(ReplicaKey, Started, bool)>,
    /// The statuses of [`Effects::puts`] were stored.
    pub wrote: bool,
}

/// Where a pass stands: what [`Core::ready`] asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Between passes: nothing to do.
    Idle,
    /// Read back the stored statuses of replicas seen for the first time.
    Seed,
    /// List the engine, to plan.
    Look,
    /// Plan and act.
    Act,
    /// List the engine again, after acting.
    Relook,
    /// Write the statuses that changed (`statuses` false: the list failed, only roles and
    /// notifications), ask for roles and notify.
    Report { statuses: bool },
}

/// The node agent's memory and decisions.
#[derive(Debug)]
pub struct Core {
    node: String,
    /// The lease of this node's registration, written into every status (see
    /// [`Input::Registered`]).
    lease: i64,
    timing: Timing,
    runtime: BTreeMap<ReplicaKey, Runtime>,
    /// Replicas whose history was read back from their status keys (after an agent restart,
    /// or when a replica arrives from another node).
    seeded: BTreeSet<ReplicaKey>,
    /// Containers this agent is stopping itself: their `die` is not a failure.
    expected_stops: HashSet<String>,
    /// Running or not, per container, as the last `start`/`die` event said. Docker emits
    /// `die` before its container list reflects it, so a list right after the event may
    /// still show the container running; the event wins.
    event_state: BTreeMap<String, bool>,
    /// The status last written per replica: its bytes (a replica that leaves has its key
    /// deleted only while it holds them) and its quiet form ([`quiet`]), to write only
    /// changes that matter.
    written: BTreeMap<ReplicaKey, Written>,
    /// When to reconcile again without an event (a restart hold running out).
    wake_at: Option<Instant>,
    /// What this node must run, as the last pass or report was given it.
    wanted: Arc<Wanted>,
    /// The host refused some replicas for a condition of its own in this pass.
    host_refused: bool,
    /// This node's containers as last listed, running state corrected by newer events.
    observed: Vec<Observed>,
    /// Where the pass stands.
    stage: Stage,
    /// The statuses handed out to write, not yet confirmed written.
    writing: Vec<(ReplicaKey, Vec<u8>)>,
}

impl Core {
    pub fn new(node: impl Into<String>, timing: Timing) -> Core {
        Core {
            node: node.into(),
            lease: 0,
            timing,
            runtime: BTreeMap::new(),
            seeded: BTreeSet::new(),
            expected_stops: HashSet::new(),
            event_state: BTreeMap::new(),
            written: BTreeMap::new(),
            wake_at: None,
            wanted: Arc::default(),
            host_refused: false,
            observed: Vec::new(),
            stage: Stage::Idle,
            writing: Vec::new(),
        }
    }

    /// Takes in what happened.
    pub fn step(&mut self, input: Input, at: At) {
        match input {
            Input::Registered(lease) => self.lease = lease,
            Input::Fenced => self.wake_at = None,
            Input::Event { event, left } => self.engine_event(&event, left, at.now, at.unix),
            Input::Primitive(k, st) => self.primitive(&k, st),
            Input::Stopping(ids) => ids.iter().for_each(|id| self.stopping(id)),
            Input::Reconcile {
                wanted,
                host_refused,
            } => {
                self.wanted = wanted;
                self.host_refused = host_refused;
                self.stage = Stage::Seed;
            }
            Input::Report(wanted) => {
                self.wanted = wanted;
                self.stage = Stage::Report { statuses: true };
            }
            Input::Stored(stored) => {
                for (k, bytes) in stored {
                    self.seed(&k, bytes.as_deref());
                }
            }
            Input::Listed(listed) => {
                self.observed = self.observe(listed);
                self.stage = match self.stage {
                    Stage::Look => Stage::Act,
                    _ => Stage::Report { statuses: true },
                };
            }
            Input::ListFailed => match self.stage {
                // Nothing to plan from: the pass ends, and another comes soon.
                Stage::Look => {
                    self.requeue(at.now + Duration::from_secs(1));
                    self.stage = Stage::Idle;
                }
                _ => self.stage = Stage::Report { statuses: false },
            },
        }
    }

    /// What to do now: the next stage of the pass under way (nothing between passes).
    pub fn ready(&mut self, at: At) -> Effects {
        /// How soon a replica refused for a condition of this host is tried again.
        const LOCAL_RETRY: Duration = Duration::from_secs(2);
        let mut fx = Effects::default();
        match self.stage {
            Stage::Idle => fx.done = true,
            Stage::Seed => {
                // Asked once a pass: a read that fails is tried again at the next.
                self.stage = Stage::Look;
                fx.read = self.unseeded(&self.wanted.containers);
                fx.list = fx.read.is_empty().then_some(Listing::ToPlan);
            }
            Stage::Look => fx.list = Some(Listing::ToPlan),
            Stage::Relook => fx.list = Some(Listing::AfterActing),
            Stage::Act => {
                let wanted = Arc::clone(&self.wanted);
                // After the read-back: a cleanup forgets failures read back as well.
                self.cleanup(&wanted.cleanups, at.now);
                let observed = std::mem::take(&mut self.observed);
                let p = self.plan(&wanted.containers, &observed, at.now);
                self.observed = observed;
                if self.host_refused {
                    self.requeue(at.now + LOCAL_RETRY);
                }
                for a in &p.actions {
                    if let Action::Remove { id, .. } = a {
                        self.stopping(id);
                    }
                }
                fx.engine = p.actions;
                self.stage = Stage::Relook;
            }
            Stage::Report { statuses } => {
                let wanted = Arc::clone(&self.wanted);
                if statuses {
                    let observed = std::mem::take(&mut self.observed);
                    let w = self.statuses(
                        &wanted.containers,
                        &wanted.addrs,
                        &observed,
                        at.now,
                        at.unix,
                    );
                    self.observed = observed;
                    self.writing.clone_from(&w.puts);
                    (fx.puts, fx.deletes) = (w.puts, w.gone);
                }
                fx.roles = self.roles_to_ask(&wanted.roles);
                fx.notify = self
                    .notifies_to_send(&wanted.notifies)
                    .into_iter()
                    .map(|(k, n)| (k, n.clone()))
                    .collect();
                fx.done = true;
                self.stage = Stage::Idle;
            }
        }
        fx
    }

    /// What came of the last [`Effects`].
    pub fn advance(&mut self, results: Results, at: At) {
        for (k, started, restart) in results.started {
            self.started(&k, started, restart, at.now, at.unix);
        }
        let writing = std::mem::take(&mut self.writing);
        if results.wrote {
            self.wrote(writing);
        }
    }

    /// How many of this node's containers run, as last listed and corrected by newer events.
    pub fn running(&self) -> usize {
        self.observed.iter().filter(|o| o.running).count()
    }

    /// When the shell must reconcile again even without an event.
    pub fn wake_at(&self) -> Option<Instant> {
        self.wake_at
    }

    /// Asks for a reconcile at `at` (or sooner, if one is due already).
    fn requeue(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// The replicas of `desired` whose stored status has not been read back yet.
    fn unseeded(&self, desired: &Desired) -> Vec<ReplicaKey> {
        desired
            .keys()
            .filter(|k| !self.seeded.contains(*k))
            .cloned()
            .collect()
    }

    /// A replica's stored status, read back once: its failures (on every node, for
    /// migration-threshold) and, when this node wrote it, its restart count.
    fn seed(&mut self, k: &ReplicaKey, stored: Option<&[u8]>) {
        self.seeded.insert(k.clone());
        let Some(bytes) = stored else { return };
        let Ok(st) = serde_json::from_slice::<ReplicaStatus>(bytes) else {
            return;
        };
        let rt = self.runtime.entry(k.clone()).or_default();
        rt.fail_counts = st.fail_counts;
        rt.last_failure = st.last_failure;
        if st.node == self.node {
            rt.restart_count = st.restart_count;
            rt.started_unix = st.started_at;
            self.written.insert(k.clone(), Written::new(bytes.to_vec()));
        }
    }

    /// The replica a not-expected `die` event is about: the shell reads what its remote
    /// agent left behind for it before passing the event on.
    pub fn failure_of(&self, ev: &EngineEvent) -> Option<ReplicaKey> {
        if ev.action != EngineAction::Die || self.expected_stops.contains(&ev.id) {
            return None;
        }
        key_of_event(ev)
    }

    /// An engine event. `left` is the primitive state the replica's remote agent left in
    /// its state file, for a `die` the core counts as a failure ([`Core::failure_of`]).
    fn engine_event(
        &mut self,
        ev: &EngineEvent,
        left: Option<PrimitiveState>,
        now: Instant,
        unix: u64,
    ) {
        let key = key_of_event(ev);
        match ev.action {
            EngineAction::Start => {
                self.event_state.insert(ev.id.clone(), true);
                if let Some(k) = key {
                    self.runtime.entry(k).or_default().started_at = Some(now);
                }
            }
            EngineAction::Die => {
                self.event_state.insert(ev.id.clone(), false);
                if self.expected_stops.contains(&ev.id) {
                    // Stopped on purpose: its primitive no longer runs either, and holds no
                    // role (a replica created here again must not show its promotion).
                    if let Some(rt) = key.and_then(|k| self.runtime.get_mut(&k)) {
                        rt.primitive = rt.primitive.take().map(dead);
                    }
                    return;
                }
                let Some(k) = key else { return };
                let code = ev.attributes.get("exitCode").cloned().unwrap_or_default();
                let mut reason = format!("container {} exited with code {code}", short(&ev.id));
                let left = left
                    .map(PrimitiveState::bounded)
                    .or_else(|| self.runtime.get(&k).and_then(|rt| rt.primitive.clone()));
                if let Some(st) = left {
                    let st = dead(st);
                    reason.push_str(&failed_op(&st));
                    self.runtime.entry(k.clone()).or_default().primitive = Some(st);
                }
                tracing::info!(replica = %k, "{reason}");
                self.failed(&k, reason, now, unix);
            }
            EngineAction::Destroy => {
                self.event_state.remove(&ev.id);
                self.expected_stops.remove(&ev.id);
            }
            EngineAction::Other(_) => {}
        }
    }

    /// A remote agent's report of its primitive.
    fn primitive(&mut self, k: &ReplicaKey, st: PrimitiveState) {
        if let Some(rt) = self.runtime.get_mut(k) {
            rt.primitive = Some(st);
        }
    }

    /// A container the shell stops itself (a plan's removal, fencing): its `die` is no
    /// failure.
    fn stopping(&mut self, id: &str) {
        self.expected_stops.insert(id.to_string());
    }

    /// Name conflicts in a row for replica `k` (the shell logs the first of a streak only).
    pub fn conflicts(&self, k: &ReplicaKey) -> u32 {
        self.runtime.get(k).map_or(0, |rt| rt.conflicts)
    }

    /// A container list, with running state corrected by newer events; forgets the events
    /// of containers no longer listed.
    fn observe(&mut self, mut observed: Vec<Observed>) -> Vec<Observed> {
        let listed: HashSet<&str> = observed.iter().map(|o| o.id.as_str()).collect();
        self.event_state
            .retain(|id, _| listed.contains(id.as_str()));
        for o in &mut observed {
            if let Some(up) = self.event_state.get(&o.id) {
                o.running = *up;
            }
        }
        observed
    }

    /// What must change on this host ([`plan`] with this core's restart holds); sets when
    /// to come back.
    fn plan(&mut self, desired: &Desired, observed: &[Observed], now: Instant) -> Plan {
        for (k, d) in desired {
            let Ok(d) = d else { continue };
            let hash = d.hash();
            let rt = self.runtime.entry(k.clone()).or_default();
            if rt.spec_hash.as_ref() != Some(&hash) {
                if rt.spec_hash.is_some() {
                    rt.hold_until = None;
                    rt.error = None;
                    rt.consecutive = 0;
                }
                rt.spec_hash = Some(hash);
            }
        }
        let holds: BTreeMap<ReplicaKey, Instant> = self
            .runtime
            .iter()
            .filter_map(|(k, rt)| rt.hold_until.map(|t| (k.clone(), t)))
            .collect();
        let p = plan(desired, observed, &holds, now);
        self.wake_at = p.wake_at;
        p
    }

    /// The outcome of creating and starting (`restart` false) or starting again (`restart`
    /// true) a replica's container.
    fn started(&mut self, k: &ReplicaKey, result: Started, restart: bool, now: Instant, unix: u64) {
        let reason = match result {
            Started::Ok(id) => {
                // Running now, whatever a list taken before the `start` event would say.
                self.event_state.insert(id, true);
                let rt = self.runtime.entry(k.clone()).or_default();
                rt.error = None;
                rt.hold_until = None;
                rt.conflicts = 0;
                rt.started_unix = unix;
                if restart {
                    rt.restart_count += 1;
                }
                return;
            }
            Started::NameConflict(reason) => {
                let rt = self.runtime.entry(k.clone()).or_default();
                let b = crate::backoff::Backoff {
                    first: self.timing.backoff * 2,
                    max: self.timing.max_backoff.max(self.timing.backoff * 2),
                };
                rt.hold_until = Some(now + b.nth(rt.conflicts));
                rt.conflicts += 1;
                let reason = format!(
                    "{reason} (held by another container: one being removed, or one this node does not own, such as another berth cluster's on this engine; retried with backoff)"
                );
                // Past the first retries it is not a copy on its way out: the status says
                // why (once: the same reason is not recorded again), counting no failure.
                if rt.conflicts >= 3 && rt.last_failure.as_ref().map(|f| &f.reason) != Some(&reason)
                {
                    rt.last_failure = Some(Failure {
                        reason: reason.clone(),
                        time: unix,
                    });
                }
                reason
            }
            Started::Failed(reason) => {
                self.failed(k, reason.clone(), now, unix);
                reason
            }
        };
        let rt = self.runtime.entry(k.clone()).or_default();
        rt.error = Some(reason);
        if let Some(hold) = rt.hold_until {
            self.requeue(hold);
        }
    }

    /// `berth cleanup` (crm_resource --cleanup): forgets the failures that happened up to
    /// the cleanup's time (Unix seconds) — fail counts, last failure, backoff and restart
    /// hold — so the replica is tried again at once. Failures after it stay (an agent
    /// restarted later sees the same cleanup again and keeps them).
    fn cleanup(&mut self, cleanups: &BTreeMap<ReplicaKey, u64>, now: Instant) {
        for (k, &at) in cleanups {
            let Some(rt) = self.runtime.get_mut(k) else {
                continue;
            };
            let Some(f) = &rt.last_failure else { continue };
            if f.time > at {
                continue;
            }
            rt.fail_counts.clear();
            rt.last_failure = None;
            rt.consecutive = 0;
            rt.error = None;
            if rt.hold_until.is_some() {
                rt.hold_until = None;
                self.requeue(now);
            }
        }
    }

    /// Counts a failure of a replica and holds its restart for the backoff.
    fn failed(&mut self, k: &ReplicaKey, reason: String, now: Instant, unix: u64) {
        let t = self.timing;
        let rt = self.runtime.entry(k.clone()).or_default();
        let stable = rt
            .started_at
            .is_some_and(|s| now.duration_since(s) >= t.stable_after);
        rt.consecutive = if stable { 1 } else { rt.consecutive + 1 };
        *rt.fail_counts.entry(self.node.clone()).or_default() += 1;
        rt.last_failure = Some(Failure { reason, time: unix });
        rt.started_at = None;
        rt.hold_until = Some(now + restart_delay(t, rt.consecutive));
    }

    /// Each replica's status as it is now, and what to write: only statuses whose bytes
    /// changed, and the replicas that left this node. A replica that cannot run records why
    /// as its last failure.
    fn statuses(
        &mut self,
        desired: &Desired,
        addrs: &BTreeMap<ReplicaKey, Option<Ipv4Addr>>,
        observed: &[Observed],
        now: Instant,
        unix: u64,
    ) -> StatusWrites {
        let mut out = StatusWrites::default();
        for (k, d) in desired {
            let rt = self.runtime.entry(k.clone()).or_default();
            if let Err(why) = d
                && let reason = why.to_string()
                && rt.last_failure.as_ref().map(|f| &f.reason) != Some(&reason)
            {
                rt.last_failure = Some(Failure { reason, time: unix });
            }
            let status = status_of((&self.node, self.lease), k, d, addrs, observed, rt, now);
            if self.written.get(k).map(|w| &w.quiet) != Some(&quiet(&status)) {
                let bytes = serde_json::to_vec(&status).expect("status serializes");
                out.puts.push((k.clone(), bytes));
            }
        }
        // Replicas that left this node: forgotten, and their status deleted unless another
        // node has written it since (it then holds other bytes and is left alone).
        let gone: Vec<ReplicaKey> = self
            .written
            .keys()
            .filter(|k| !desired.contains_key(k))
            .cloned()
            .collect();
        for k in gone {
            let bytes = self.written.remove(&k).map(|w| w.bytes).unwrap_or_default();
            self.runtime.remove(&k);
            self.seeded.remove(&k);
            out.gone.push((k, bytes));
        }
        out
    }

    /// The statuses the shell has written.
    fn wrote(&mut self, puts: Vec<(ReplicaKey, Vec<u8>)>) {
        self.written
            .extend(puts.into_iter().map(|(k, b)| (k, Written::new(b))));
    }

    /// The clone notifications to deliver: each to a target whose primitive is started and
    /// has not reported it run.
    fn notifies_to_send<'n>(
        &self,
        notifies: &'n BTreeMap<ReplicaKey, crate::model::cluster::Notification>,
    ) -> Vec<(ReplicaKey, &'n crate::model::cluster::Notification)> {
        notifies
            .iter()
            .filter(|(k, n)| {
                self.runtime
                    .get(*k)
                    .and_then(|rt| rt.primitive.as_ref())
                    .is_some_and(|p| p.state == Phase::Started && p.notified < n.id)
            })
            .map(|(k, n)| (k.clone(), n))
            .collect()
    }

    /// The role to ask each promotable replica's remote agent for: one started in a role
    /// that is neither the one it must run in nor asked for already.
    fn roles_to_ask(&self, roles: &BTreeMap<ReplicaKey, Role>) -> Vec<(ReplicaKey, Role)> {
        roles
            .iter()
            .filter(|(k, role)| {
                self.runtime
                    .get(*k)
                    .and_then(|rt| rt.primitive.as_ref())
                    .is_some_and(|p| {
                        let target = p.wanted_role.or(p.role);
                        p.state == Phase::Started && p.role.is_some() && target != Some(**role)
                    })
            })
            .map(|(k, r)| (k.clone(), *r))
            .collect()
    }
}

/// A status as written: its bytes, and its quiet form.
#[derive(Debug)]
struct Written {
    bytes: Vec<u8>,
    quiet: Vec<u8>,
}

impl Written {
    fn new(bytes: Vec<u8>) -> Written {
        let quiet = serde_json::from_slice::<ReplicaStatus>(&bytes)
            .map(|st| quiet(&st))
            .unwrap_or_default();
        Written { bytes, quiet }
    }
}

/// A status without what changes while nothing happens: the primitive report's version and
/// its operations that succeeded (what they did shows in the state, role and restarts; a
/// recurring monitor that succeeds is the absence of news, and a success falling out of the
/// bounded history is none either). A status is written only when this changes, so a
/// healthy, idle cluster writes nothing; the records go along with the next write that
/// matters.
fn quiet(st: &ReplicaStatus) -> Vec<u8> {
    let mut st = st.clone();
    if let Some(p) = &mut st.primitive {
        p.version = 0;
        p.last.retain(|op| !op.succeeded());
    }
    serde_json::to_vec(&st).expect("status serializes")
}

/// The delay before restarting after `consecutive` failures in a row.
fn restart_delay(t: Timing, consecutive: u32) -> Duration {
    if consecutive <= 1 {
        return Duration::ZERO;
    }
    let b = crate::backoff::Backoff {
        first: t.backoff,
        max: t.max_backoff,
    };
    b.nth(consecutive - 2)
}

/// A replica's status from its container (the conforming one, running preferred).
fn status_of(
    (node, lease): (&str, i64),
    k: &ReplicaKey,
    d: &Result<DesiredContainer, Unrunnable>,
    addrs: &BTreeMap<ReplicaKey, Option<Ipv4Addr>>,
    observed: &[Observed],
    rt: &Runtime,
    now: Instant,
) -> ReplicaStatus {
    let conforming = d.as_ref().ok().and_then(|d| {
        let hash = d.hash();
        let mut mine: Vec<&Observed> = observed
            .iter()
            .filter(|o| key_of(o).as_ref() == Some(k) && o.labels.get(LABEL_HASH) == Some(&hash))
            .collect();
        mine.sort_by_key(|o| !o.running);
        mine.first().copied()
    });
    let backing_off = rt.hold_until.is_some_and(|t| t > now);
    let state = match (d, conforming) {
        (Err(_), _) => ReplicaState::Failed,
        (Ok(_), Some(o)) if o.running => ReplicaState::Running,
        (Ok(_), _) if rt.error.is_some() || backing_off => ReplicaState::Failed,
        (Ok(_), Some(_)) => ReplicaState::Starting,
        (Ok(_), None) => ReplicaState::Pending,
    };
    ReplicaStatus {
        bundle: k.bundle.clone(),
        index: k.index,
        node: node.to_string(),
        container_id: conforming.map(|o| o.id.clone()).unwrap_or_default(),
        container_name: d.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
        state,
        address: addrs.get(k).copied().flatten().map(|a| a.to_string()),
        ports: d
            .as_ref()
            .map(|d| d.ports.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        restart_count: rt.restart_count,
        fail_counts: rt.fail_counts.clone(),
        last_failure: rt.last_failure.clone(),
        // The generation the agent works to: its container's, or the one it is failing to
        // create (so that a failure names the spec that failed).
        generation: d.as_ref().map(|d| d.generation).unwrap_or(0),
        primitive: rt.primitive.clone(),
        started_at: rt.started_unix,
        lease,
    }
}

/// The replica an engine event is about, from the labels it carries.
fn key_of_event(ev: &EngineEvent) -> Option<ReplicaKey> {
    key_of(&Observed {
        id: ev.id.clone(),
        name: String::new(),
        labels: ev.attributes.clone(),
        running: false,
    })
}

/// A primitive whose container died: nothing runs in a dead container, so it is stopped
/// (or failed) and holds no role, whatever its last report said.
fn dead(mut st: PrimitiveState) -> PrimitiveState {
    if st.state != Phase::Failed {
        st.state = Phase::Stopped;
    }
    st.role = None;
    st.wanted_role = None;
    st
}

/// `: <action> <rc name> (<rc>): <first output line>` for the last failed operation.
fn failed_op(st: &PrimitiveState) -> String {
    let Some(op) = st.last.iter().rev().find(|o| o.rc != 0) else {
        return String::new();
    };
    let out = op.output.lines().next().unwrap_or_default();
    let out = if out.is_empty() {
        String::new()
    } else {
        format!(": {out}")
    };
    format!(": {} {} ({}){out}", op.action, op.rc_name, op.rc)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
