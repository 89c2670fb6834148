//! The controller's reconcile as a pure function: the cluster as the cache shows it (and
//! the stored values, to write only changes) in; the writes to make and when to come back
//! out. The shell ([`super`]) commits the writes, retries a failure with backoff, and
//! reconciles again at the time asked for.

use crate::model::ReplicaKey;
use std::collections::{BTreeMap, BTreeSet};

use super::placement::{Pending, managed, next_ban_end, place};
use super::rollout;
use super::status::{bundle_status, choose_promoted};
use super::view::View;
use crate::model::cluster::{Assignment, Pinned};
use crate::model::rollout::RolloutStatus;
use crate::model::{Bundle, BundleStatus, Condition};
use crate::store::{Expect, Keys, Kv, Write};

/// What one reconcile decided.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Assignments and statuses that changed, and keys of deleted bundles to drop.
    pub writes: Vec<Write>,
    /// When to reconcile again without an event (seconds since the Unix epoch): a
    /// replica's ban from a node runs out then.
    pub requeue_at: Option<u64>,
    /// What this pass changes, as events ([`crate::events`]): replicas scheduled and moved,
    /// replicas that newly cannot be placed, bundles newly invalid, nodes whose replicas
    /// are taken away because they went offline. Each is a change against what the view
    /// holds, so that a pass that changes nothing records nothing.
    pub events: Vec<Note>,
    /// Bundles whose status this pass held back (only when [`View::deferred`] is set): a
    /// bundle whose assignments this pass writes gets its status one pass later, from what
    /// its agents did with them by then, not a status the same commit makes stale (from
    /// empty, that was a "0 of 3 running" write for every bundle, followed at once by
    /// "3 of 3": a third of the status writes, and commit time on the way to the agents).
    /// A status is held back at most one pass in a row, and never one that records a
    /// rollback (the rollout reads that back).
    pub deferred: BTreeSet<String>,
}

/// An event the controller records: type, reason, object, message.
pub type Note = (crate::events::EventType, &'static str, String, String);

/// Places, and says which assignments and statuses to write (those whose stored values, as
/// the view decoded them, differ) and which keys of deleted bundles to delete. In named
/// passes: placement, [`desire`] (the assignments wanted), [`diff`] (the assignment writes),
/// [`statuses`], [`garbage`] (what deleted bundles leave) and [`spec_history`].
#[tracing::instrument(level = "debug", skip_all, fields(bundles = view.bundles.len()))]
pub fn reconcile(keys: &Keys, view: &View, stored: &BTreeMap<String, Kv>, now: u64) -> Outcome {
    let managed_bundles: Vec<&Bundle> = view
        .bundles
        .values()
        .map(|b| &**b)
        .filter(|b| managed(b))
        .collect();
    let t0 = std::time::Instant::now();
    let mut phases: Vec<(&str, std::time::Duration)> = Vec::new();
    let mut phase = |name: &'static str| phases.push((name, t0.elapsed()));
    let mut placement = place(
        &managed_bundles,
        &view.nodes,
        &view.current,
        &view.history,
        now,
    );
    hold_ordered(&mut placement, &managed_bundles, view);
    hold_orders(&mut placement, &managed_bundles, view);
    phase("placement");
    let mut wanted = desire(keys, view, stored, now, &placement, &managed_bundles);
    phase("rollouts");
    let mut writes = Vec::new();
    let moved = diff(keys, view, &wanted.assignments, &mut writes);
    phase("assignments");
    let (events, deferred) = statuses(
        keys,
        view,
        &placement,
        &wanted.assignments,
        &mut wanted.rollouts,
        &moved,
        &mut writes,
    );
    phase("statuses");
    garbage(keys, view, &mut writes);
    spec_history(keys, view, stored, &mut writes);
    phase("history");
    tracing::debug!("reconcile phases (cumulative): {phases:?}");
    Outcome {
        writes,
        requeue_at: wanted.requeue_at,
        events,
        deferred,
    }
}

/// The assignments a pass wants, each bundle's rollout, and when to come back.
struct Desire<'v> {
    /// (node, bundle) → assignment.
    assignments: BTreeMap<(String, String), Assignment>,
    rollouts: BTreeMap<&'v str, RolloutStatus>,
    requeue_at: Option<u64>,
}

/// The assignments wanted: placed replicas grouped per (node, bundle), each running the spec
/// its bundle's rollout says, with the promotions chosen; unmanaged bundles keep theirs,
/// marked unmanaged; then the stop orders and notification rounds hold some back.
#[tracing::instrument(level = "debug", skip_all)]
fn desire<'v>(
    keys: &Keys,
    view: &'v View,
    stored: &BTreeMap<String, Kv>,
    now: u64,
    placement: &super::placement::Placement,
    managed_bundles: &[&Bundle],
) -> Desire<'v> {
    let stop_after = stop_after(managed_bundles);
    let mut desired: BTreeMap<(String, String), Assignment> = BTreeMap::new();
    let mut rollouts: BTreeMap<&str, RolloutStatus> = BTreeMap::new();
    let mut requeue_at = next_ban_end(managed_bundles, &view.history, now);
    let mut sooner = |at: u64| requeue_at = Some(requeue_at.map_or(at, |r: u64| r.min(at)));
    for (bundle, replicas) in &placement.placed {
        let b = &view.bundles[bundle];
        let target = shared_target(view, bundle, b);
        let rollout = rollout::decide(keys, &target, replicas, view, stored, now);
        let promoted = choose_promoted(b, replicas, view, &rollout.demote);
        for (i, node) in replicas {
            let a = desired
                .entry((node.clone(), bundle.clone()))
                .or_insert_with(|| Assignment {
                    bundle: std::sync::Arc::clone(&target),
                    replicas: Vec::new(),
                    managed: true,
                    promoted: vec![],
                    pinned: vec![],
                    cleanup: view.cleanups.get(bundle.as_str()).copied().unwrap_or(0),
                    stop_after: stop_after.get(bundle.as_str()).cloned().unwrap_or_default(),
                    notify: None,
                });
            a.replicas.push(*i);
            if promoted.contains(i) {
                a.promoted.push(*i);
            }
            if let Some(spec) = rollout.pinned.get(i) {
                match a.pinned.iter_mut().find(|h| *h.bundle == *spec) {
                    Some(h) => h.replicas.push(*i),
                    None => a.pinned.push(Pinned {
                        bundle: std::sync::Arc::new(spec.clone()),
                        replicas: vec![*i],
                    }),
                }
            }
        }
        if let Some(at) = rollout.requeue_at {
            sooner(at);
        }
        rollouts.insert(b.name(), rollout.status);
    }
    // (Looked up only when some bundle is unmanaged: 30,000 lookups a pass otherwise.)
    let some_unmanaged = managed_bundles.len() < view.bundles.len();
    for ((node, bundle), a) in view.assignments.iter().filter(|_| some_unmanaged) {
        if let Some(b) = view.bundles.get(bundle)
            && !managed(b)
        {
            let mut kept = (**a).clone();
            kept.managed = false;
            desired.insert((node.clone(), bundle.clone()), kept);
        }
    }
    keep_until_dependents_stop(&mut desired, placement, view);
    stop_in_reverse_order(&mut desired, view);
    if let Some(at) = gate_notifications(&mut desired, view, now) {
        sooner(at);
    }
    Desire {
        assignments: desired,
        rollouts,
        requeue_at,
    }
}

/// The spec a bundle's new assignments carry: the copy they already carry when it is the
/// same (one copy per bundle lives on, not one more per pass). A spec as decoded has no
/// status: it is its own desired state, shared.
fn shared_target(view: &View, bundle: &str, b: &std::sync::Arc<Bundle>) -> std::sync::Arc<Bundle> {
    let target = match b.status {
        None => std::sync::Arc::clone(b),
        Some(_) => std::sync::Arc::new(b.desired_with_generation()),
    };
    match view.placed_specs.get(bundle) {
        Some(s) if std::sync::Arc::ptr_eq(s, &target) || **s == *target => std::sync::Arc::clone(s),
        _ => target,
    }
}

/// The assignment writes: those desired that differ from what is stored (as decoded; a
/// value that does not decode is rewritten), and deletes of those no longer desired. A
/// node no longer registered, with nothing left to run, loses its assignments in one prefix
/// delete (100 nodes lost at 30,000 replicas: 100 operations, not 3,000). Returns the
/// bundles whose assignments change.
#[tracing::instrument(level = "debug", skip_all)]
fn diff<'a>(
    keys: &Keys,
    view: &'a View,
    desired: &'a BTreeMap<(String, String), Assignment>,
    writes: &mut Vec<Write>,
) -> BTreeSet<&'a str> {
    let mut moved: BTreeSet<&str> = BTreeSet::new();
    // Both in (node, bundle) order: one walk of the two, not a lookup per assignment. Those
    // stored and no longer desired are `gone`.
    let mut stored_ones = view.assignments.iter().peekable();
    let mut gone: Vec<(&str, &str)> = Vec::new();
    for ((node, bundle), a) in desired {
        let here = (node.as_str(), bundle.as_str());
        while let Some(((n, b), _)) =
            stored_ones.next_if(|((n, b), _)| (n.as_str(), b.as_str()) < here)
        {
            gone.push((n, b));
        }
        let stored = stored_ones.next_if(|(k, _)| (k.0.as_str(), k.1.as_str()) == here);
        if stored.is_none_or(|(_, h)| **h != *a) {
            moved.insert(bundle);
            writes.push(Write::Put {
                key: keys.assignment(node, bundle),
                value: serde_json::to_vec(a).expect("an assignment serializes"),
                expect: Expect::Any,
            });
        }
    }
    let registered: BTreeSet<&str> = view.online();
    let running_on: BTreeSet<&str> = desired.keys().map(|(n, _)| n.as_str()).collect();
    let mut cleared: BTreeSet<&str> = BTreeSet::new();
    gone.extend(stored_ones.map(|((n, b), _)| (n.as_str(), b.as_str())));
    for (node, bundle) in gone {
        moved.insert(bundle);
        if !registered.contains(node) && !running_on.contains(node) {
            if cleared.insert(node) {
                writes.push(Write::DeletePrefix {
                    prefix: keys.assignments(node),
                });
            }
            continue;
        }
        writes.push(Write::Delete {
            key: keys.assignment(node, bundle),
            expect: Expect::Any,
        });
    }
    moved
}

/// Every bundle's status (one whose stored value cannot be used says why, with the rows of
/// its last good value when it has one), written when its bytes changed, and the events of
/// what changed; a bundle whose assignments this pass writes may have its status held back
/// one pass ([`Outcome::deferred`]). Returns the events and the bundles held back.
#[tracing::instrument(level = "debug", skip_all)]
fn statuses(
    keys: &Keys,
    view: &View,
    placement: &super::placement::Placement,
    desired: &BTreeMap<(String, String), Assignment>,
    rollouts: &mut BTreeMap<&str, RolloutStatus>,
    moved: &BTreeSet<&str>,
    writes: &mut Vec<Write>,
) -> (Vec<Note>, BTreeSet<String>) {
    // From what is written, not what placement wanted: a replica a notification round or a
    // stop order holds back is scheduled once, when its assignment is written.
    let mut assigned: BTreeMap<&str, BTreeMap<u32, &str>> = BTreeMap::new();
    for ((node, bundle), a) in desired {
        let of = assigned.entry(bundle.as_str()).or_default();
        of.extend(a.replicas.iter().map(|i| (*i, node.as_str())));
    }
    let mut events = placement_events(view, &assigned);
    // One bundle at a time: only the statuses that changed are kept, serialized (all of
    // them at once cost tens of MB at 10,000 bundles).
    let mut deferred = BTreeSet::new();
    let mut buf = Vec::new();
    let names: BTreeSet<&str> = view
        .bundles
        .keys()
        .chain(view.invalid.keys())
        .map(String::as_str)
        .collect();
    for name in names {
        let status = status_of(view, placement, rollouts, name);
        let stored = view.bundle_statuses.get(name);
        // (Serialized into one buffer, reused: copied out only when written.)
        buf.clear();
        serde_json::to_writer(&mut buf, &status).expect("a status serializes");
        let changed = view.status_digests.get(name) != Some(&super::view::status_digest(&buf));
        let rollback =
            |s: Option<&BundleStatus>| s.and_then(|s| s.rollout.as_ref()?.rolled_back_to);
        if changed
            && moved.contains(name)
            && view
                .deferred
                .as_ref()
                .is_some_and(|last| !last.contains(name))
            && rollback(stored.map(|h| &**h)) == rollback(Some(&status))
        {
            deferred.insert(name.to_string());
            continue;
        }
        let waits = placement.pending.get(name);
        status_events(name, stored.map(|h| &**h), &status, waits, &mut events);
        if changed {
            writes.push(Write::Put {
                key: keys.bundle_status(name),
                value: buf.clone(),
                expect: Expect::Any,
            });
        }
    }
    (events, deferred)
}

/// Bundle `name`'s status this pass: from its placement and rollout, and why its stored
/// value cannot be used, when it cannot.
fn status_of(
    view: &View,
    placement: &super::placement::Placement,
    rollouts: &mut BTreeMap<&str, RolloutStatus>,
    name: &str,
) -> BundleStatus {
    let mut status = match view.bundles.get(name) {
        Some(b) => {
            let mut st = bundle_status(b, placement, view);
            st.rollout = rollouts.remove(name);
            st
        }
        None => BundleStatus::default(),
    };
    if let Some(why) = view.invalid.get(name) {
        status.invalid = Some(why.clone());
        status.conditions.push(Condition {
            kind: "Valid".into(),
            status: crate::model::ConditionStatus::False,
            reason: "Invalid".into(),
            message: why.clone(),
        });
    }
    status
}

/// What deleted bundles leave: their assignments are gone ([`diff`]); replica keys of nodes
/// that are offline have no agent left to drop them, and once no replica key remains, the
/// status goes too; their cleanup time and bans go with them.
#[tracing::instrument(level = "debug", skip_all)]
fn garbage(keys: &Keys, view: &View, writes: &mut Vec<Write>) {
    let online: BTreeSet<&str> = view.online();
    let exists = |b: &str| view.bundles.contains_key(b) || view.invalid.contains_key(b);
    // (A bundle's replicas are next to each other: looked up once per bundle.)
    let mut last: Option<(&str, bool)> = None;
    for (ReplicaKey { bundle, index: i }, st) in &view.statuses {
        let there = match last {
            Some((b, e)) if b == bundle => e,
            _ => exists(bundle),
        };
        last = Some((bundle, there));
        if !there && !online.contains(st.node.as_str()) {
            writes.push(Write::Delete {
                key: keys.replica(bundle, *i),
                expect: Expect::Any,
            });
        }
    }
    for name in &view.status_keys {
        if exists(name) {
            continue;
        }
        // This bundle's replica keys only (a scan of every bundle's, for every bundle, cost
        // seconds a pass at 10,000 bundles).
        let replicas_left = view
            .statuses_of(name)
            .any(|(_, st)| online.contains(st.node.as_str()));
        if !replicas_left {
            writes.push(Write::Delete {
                key: keys.bundle_status(name),
                expect: Expect::Any,
            });
        }
    }
    let gone = |name: &&String| !exists(name);
    for name in view.cleanups.keys().filter(gone) {
        writes.push(Write::Delete {
            key: keys.cleanup(name),
            expect: Expect::Any,
        });
    }
    for name in view.banned.iter().filter(gone) {
        writes.push(Write::Delete {
            key: keys.bans(name),
            expect: Expect::Any,
        });
    }
}

/// Pacemaker's `ordered=true`: a bundle's instances start one after another. A replica
/// placed newly (not already assigned there) waits while a lower one is placed but not
/// started yet (running, and its primitive started); it is left pending with that reason.
/// A replica that cannot be placed at all does not hold the others up.
fn hold_ordered(placement: &mut super::placement::Placement, bundles: &[&Bundle], view: &View) {
    for b in bundles {
        let ordered = b.resolved().meta.ordered;
        let Some(placed) = ordered
            .then(|| placement.placed.get_mut(b.name()))
            .flatten()
        else {
            continue;
        };
        let name = b.name().to_string();
        let started = |i: u32, node: &str| {
            view.status_on(&name, i, node)
                .is_some_and(|s| started(Some(b), s))
        };
        let mut waiting_for: Option<u32> = None;
        let mut waiting = Vec::new();
        for (&i, node) in placed.iter() {
            let assigned = view.current.get(&ReplicaKey::new(name.clone(), i)) == Some(node);
            if let Some(w) = waiting_for
                && !assigned
            {
                waiting.push((i, b.replica_name(w)));
                continue;
            }
            if waiting_for.is_none() && !started(i, node) {
                waiting_for = Some(i);
            }
        }
        for (i, first) in waiting {
            placed.remove(&i);
            placement
                .pending
                .entry(name.clone())
                .or_default()
                .insert(i, Pending::Ordered { first });
        }
        if placement.placed.get(&name).is_some_and(|p| p.is_empty()) {
            placement.placed.remove(&name);
        }
    }
}

/// Pacemaker's `rsc_order` (this bundle `then`, another `first`): a replica placed newly
/// waits while `first` has replicas placed but not started (or, after its promote, none
/// promoted). With `interleave=true` it waits only for `first`'s replicas on its own node,
/// when `first` has one there. A Mandatory order with `first` placed nowhere (stopped,
/// unplaceable, or no such bundle) holds every replica, running ones too: they stop.
fn hold_orders(placement: &mut super::placement::Placement, bundles: &[&Bundle], view: &View) {
    let mut holds: Vec<(String, u32, Pending)> = Vec::new();
    for b in bundles {
        let Some(placed) = placement.placed.get(b.name()) else {
            continue;
        };
        for o in &b.spec.orders {
            let held = order_holds(b, o, placed, placement, view);
            holds.extend(
                held.into_iter()
                    .map(|(i, why)| (b.name().to_string(), i, why)),
            );
        }
    }
    for (bundle, i, why) in holds {
        let Some(placed) = placement.placed.get_mut(&bundle) else {
            continue;
        };
        if placed.remove(&i).is_some() {
            placement
                .pending
                .entry(bundle.clone())
                .or_default()
                .insert(i, why);
        }
        if placed.is_empty() {
            placement.placed.remove(&bundle);
        }
    }
}

/// The replicas of `b` (placed as `placed`) that order `o` holds back, and why.
fn order_holds(
    b: &Bundle,
    o: &crate::model::Order,
    placed: &BTreeMap<u32, String>,
    placement: &super::placement::Placement,
    view: &View,
) -> Vec<(u32, Pending)> {
    let first: Vec<(u32, &String)> = placement
        .placed
        .get(&o.first)
        .map(|p| p.iter().map(|(i, n)| (*i, n)).collect())
        .unwrap_or_default();
    let why = Pending::Order {
        first: o.first.clone(),
        promote: o.after_promote(),
        id: o.id.clone(),
    };
    if first.is_empty() {
        return if o.mandatory() {
            placed.keys().map(|i| (*i, why.clone())).collect()
        } else {
            Vec::new()
        };
    }
    let first_bundle = view.bundles.get(&o.first).map(|b| &**b);
    // Whether `first`'s replica i, placed on node, has done what this waits for.
    let done = |i: u32, node: &str| {
        view.status_on(&o.first, i, node).is_some_and(|s| {
            if o.after_promote() {
                s.is_promoted()
            } else {
                started(first_bundle, s)
            }
        })
    };
    // Waiting for a promote: one promoted replica will do; for a start, all.
    let ready = |scope: &[&(u32, &String)]| {
        if o.after_promote() {
            scope.iter().any(|(i, n)| done(*i, n))
        } else {
            scope.iter().all(|(i, n)| done(*i, n))
        }
    };
    let everywhere: Vec<&(u32, &String)> = first.iter().collect();
    let all_ready = ready(&everywhere);
    let interleave = b.resolved().meta.interleave;
    let mut out = Vec::new();
    for (i, node) in placed {
        let assigned = view.current.get(&ReplicaKey::new(b.name(), *i)) == Some(node);
        if assigned {
            continue;
        }
        let local: Vec<&(u32, &String)> = first.iter().filter(|(_, n)| *n == node).collect();
        let ok = if interleave && !local.is_empty() {
            ready(&local)
        } else {
            all_ready
        };
        if !ok {
            out.push((*i, why.clone()));
        }
    }
    out
}

/// Is this replica started: running, and its primitive started (when the bundle has one)?
fn started(b: Option<&Bundle>, s: &crate::model::cluster::ReplicaStatus) -> bool {
    s.is_started(b.is_some_and(|b| b.spec.primitive.is_some()))
}

/// Per bundle, the bundles with a symmetrical order after it (their replicas stop first).
fn stop_after(bundles: &[&Bundle]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in bundles {
        for o in b.spec.orders.iter().filter(|o| o.symmetrical()) {
            let thens = out.entry(o.first.clone()).or_default();
            if !thens.iter().any(|t| t == b.name()) {
                thens.push(b.name().to_string());
            }
        }
    }
    out
}

/// A symmetrical order's stop half: an assignment this pass would take away or shrink is
/// kept as it stands while a bundle it names in `stop_after` has replicas stopping (their
/// status still on an online node where they are no longer placed).
fn keep_until_dependents_stop(
    desired: &mut BTreeMap<(String, String), Assignment>,
    placement: &super::placement::Placement,
    view: &View,
) {
    let online: BTreeSet<&str> = view.online();
    // Not placed where it reports from: this pass, or an earlier one, takes it away.
    let stopping = |then: &str| {
        still_stopping(view, &online, then, |i, node| {
            placement
                .placed
                .get(then)
                .and_then(|p| p.get(&i))
                .map(String::as_str)
                == Some(node)
        })
    };
    let mut kept = Vec::new();
    for (key, stored) in &view.assignments {
        if stored.stop_after.is_empty() || !stored.managed {
            continue;
        }
        let shrinks = desired
            .get(key)
            .is_none_or(|a| stored.replicas.iter().any(|i| !a.replicas.contains(i)));
        if shrinks
            && online.contains(key.0.as_str())
            && stored.stop_after.iter().any(|t| stopping(t))
        {
            kept.push((key.clone(), (**stored).clone()));
        }
    }
    for ((node, bundle), a) in kept {
        keep_in_place(desired, &node, &bundle, &a, &a.replicas);
    }
}

/// Whether a replica of `bundle` is still stopping: its status, not stopped, is on an online
/// node where `kept(ordinal, node)` says it no longer belongs.
fn still_stopping(
    view: &View,
    online: &BTreeSet<&str>,
    bundle: &str,
    kept: impl Fn(u32, &str) -> bool,
) -> bool {
    view.statuses_of(bundle).any(|(i, st)| {
        online.contains(st.node.as_str())
            && st.state != crate::model::cluster::ReplicaState::Stopped
            && !kept(i, &st.node)
    })
}

/// Keeps ordinals `keep` of the stored assignment `stored` (of `bundle` on `node`) where they are this
/// pass, and takes them out of the bundle's assignments on other nodes: never two copies.
fn keep_in_place(
    desired: &mut BTreeMap<(String, String), Assignment>,
    node: &str,
    bundle: &str,
    stored: &Assignment,
    keep: &[u32],
) {
    desired.retain(|(n, b), other| {
        if b == bundle && n != node {
            other.replicas.retain(|i| !keep.contains(i));
            other.promoted.retain(|i| !keep.contains(i));
            !other.replicas.is_empty()
        } else {
            true
        }
    });
    let a = desired
        .entry((node.to_string(), bundle.to_string()))
        .or_insert_with(|| Assignment {
            replicas: vec![],
            promoted: vec![],
            ..stored.clone()
        });
    for i in keep {
        if !a.replicas.contains(i) {
            a.replicas.push(*i);
            if stored.promoted.contains(i) {
                a.promoted.push(*i);
            }
        }
    }
    a.replicas.sort_unstable();
    a.promoted.sort_unstable();
}

/// Pacemaker's `ordered=true` for stops: a bundle's replicas stop one after another, the
/// highest first. Of the replicas this pass takes off their (online) nodes, only the highest
/// goes, and none while another of the bundle's is still stopping (its status still on an
/// online node that no longer has it assigned); the rest stay where they are this pass. The
/// bundle's spec comes from the assignment, so that a deleted bundle stops in order too.
fn stop_in_reverse_order(desired: &mut BTreeMap<(String, String), Assignment>, view: &View) {
    let online: BTreeSet<&str> = view.online();
    let mut leaving: BTreeMap<&str, Vec<(u32, &str, &Assignment)>> = BTreeMap::new();
    for ((node, bundle), stored) in &view.assignments {
        if !stored.managed
            || !stored.bundle.resolved().meta.ordered
            || !online.contains(node.as_str())
        {
            continue;
        }
        let now = desired.get(&(node.clone(), bundle.clone()));
        for i in &stored.replicas {
            if !now.is_some_and(|a| a.replicas.contains(i)) {
                leaving
                    .entry(bundle.as_str())
                    .or_default()
                    .push((*i, node.as_str(), stored));
            }
        }
    }
    for (bundle, mut out) in leaving {
        // No longer assigned where it reports from: an earlier pass let it go.
        let stopping = still_stopping(view, &online, bundle, |i, node| {
            view.assignments
                .get(&(node.to_string(), bundle.to_string()))
                .is_some_and(|a| a.replicas.contains(&i))
        });
        out.sort_by_key(|(i, _, _)| std::cmp::Reverse(*i));
        for (i, node, stored) in out.into_iter().skip(usize::from(!stopping)) {
            keep_in_place(desired, node, bundle, stored, &[i]);
        }
    }
}

/// Bundles with `notify=true` change one operation at a time between notifications
/// ([`super::notify::gate`]): their desired assignments are replaced by what the gate lets
/// through this pass.
fn gate_notifications(
    desired: &mut BTreeMap<(String, String), Assignment>,
    view: &View,
    now: u64,
) -> Option<u64> {
    use super::notify::{PerNode, gate, wanted};
    let notifying: BTreeSet<&str> = view
        .bundles
        .values()
        .filter(|b| managed(b) && wanted(b))
        .map(|b| b.name())
        .collect();
    if notifying.is_empty() {
        return None;
    }
    let mut wake: Option<u64> = None;
    let mut want: BTreeMap<String, PerNode> = BTreeMap::new();
    desired.retain(|(node, bundle), a| {
        if notifying.contains(bundle.as_str()) {
            want.entry(bundle.clone())
                .or_default()
                .insert(node.clone(), a.clone());
            false
        } else {
            true
        }
    });
    let mut have: BTreeMap<&str, PerNode> = BTreeMap::new();
    for ((node, bundle), a) in &view.assignments {
        if notifying.contains(bundle.as_str()) {
            have.entry(bundle.as_str())
                .or_default()
                .insert(node.clone(), (**a).clone());
        }
    }
    for name in notifying {
        let b = &view.bundles[name];
        let (gated, at) = gate(
            b,
            want.remove(name).unwrap_or_default(),
            have.remove(name).unwrap_or_default(),
            view,
            now,
        );
        for (node, a) in gated {
            desired.insert((node, name.to_string()), a);
        }
        if let Some(at) = at {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
    }
    wake
}

/// Replicas placed where the view does not have them yet: Scheduled, or Rescheduled from
/// the node they were on (NodeLost for a node that is gone, once per node).
fn placement_events(view: &View, placed: &BTreeMap<&str, BTreeMap<u32, &str>>) -> Vec<Note> {
    use crate::events::EventType::{Normal, Warning};
    let online: BTreeSet<&str> = view.online();
    let mut out = Vec::new();
    let mut lost: BTreeMap<&str, usize> = BTreeMap::new();
    for (bundle, replicas) in placed {
        // Where the bundle's replicas are now (one range of the map, not a lookup each).
        let now: Vec<(u32, &str)> = view.current_of(bundle).collect();
        for (i, node) in replicas {
            let object = || format!("replica/{bundle}-{i}");
            match now.iter().find(|(at, _)| at == i).map(|(_, n)| *n) {
                None => out.push((Normal, "Scheduled", object(), format!("assigned to {node}"))),
                Some(was) if was != *node => {
                    let why = if online.contains(was) {
                        String::new()
                    } else {
                        *lost.entry(was).or_default() += 1;
                        " (offline)".to_string()
                    };
                    out.push((
                        Normal,
                        "Rescheduled",
                        object(),
                        format!("moved from {was}{why} to {node}"),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    for (node, n) in lost {
        out.push((
            Warning,
            "NodeLost",
            format!("node/{node}"),
            format!("offline: {n} replica(s) moved elsewhere"),
        ));
    }
    out
}

/// Changes of a bundle's status worth an event: newly invalid, a replica that newly
/// cannot be placed (or for a new reason; one held back by an order, `pending`, is waiting,
/// not failing).
fn status_events(
    name: &str,
    stored: Option<&BundleStatus>,
    new: &BundleStatus,
    pending: Option<&BTreeMap<u32, Pending>>,
    out: &mut Vec<Note>,
) {
    use crate::events::EventType::Warning;
    if let Some(why) = &new.invalid
        && stored.and_then(|h| h.invalid.as_ref()) != Some(why)
    {
        out.push((Warning, "Invalid", format!("bundle/{name}"), why.clone()));
    }
    for row in &new.replica_rows {
        if row.state != crate::model::cluster::ReplicaState::Pending
            || row.reason.is_empty()
            || pending
                .and_then(|p| p.get(&row.index))
                .is_some_and(Pending::is_wait)
        {
            continue;
        }
        let before = stored.and_then(|h| h.replica_rows.iter().find(|r| r.index == row.index));
        if before.is_none_or(|b| b.state != row.state || b.reason != row.reason) {
            out.push((
                Warning,
                "FailedScheduling",
                format!("replica/{}", row.name),
                row.reason.clone(),
            ));
        }
    }
}

/// The specs of a bundle's earlier generations, for `berth rollout undo` and a rollback:
/// when an assignment still carries a generation older than the bundle's (a change is being
/// rolled out), that spec is written, at most [`HISTORY`] kept (the oldest deleted). A
/// bundle never changed has none (its spec is its key). A deleted bundle's history goes
/// with it, and so does its rollout pause.
#[tracing::instrument(level = "debug", skip_all)]
fn spec_history(keys: &Keys, view: &View, stored: &BTreeMap<String, Kv>, writes: &mut Vec<Write>) {
    let delete = |key: String| Write::Delete {
        key,
        expect: Expect::Any,
    };
    let mut older: BTreeMap<&str, BTreeMap<i64, &Bundle>> = BTreeMap::new();
    for ((_, name), a) in &view.assignments {
        let Some(now) = view.bundles.get(name).and_then(|b| b.metadata.generation) else {
            continue;
        };
        for spec in std::iter::once(&a.bundle).chain(a.pinned.iter().map(|h| &h.bundle)) {
            if let Some(g) = spec.metadata.generation.filter(|g| *g < now) {
                older.entry(name.as_str()).or_default().insert(g, spec);
            }
        }
    }
    for (name, specs) in older {
        let kept = view.spec_generations.get(name);
        let all: BTreeSet<i64> = kept
            .into_iter()
            .flatten()
            .copied()
            .chain(specs.keys().copied())
            .collect();
        // The oldest beyond HISTORY go (one not kept yet is not written at all: a pass
        // writes each key once).
        let surplus: BTreeSet<i64> = all
            .iter()
            .copied()
            .take(all.len().saturating_sub(HISTORY))
            .collect();
        for (g, spec) in &specs {
            if !kept.is_some_and(|k| k.contains(g)) && !surplus.contains(g) {
                let value = serde_json::to_vec(spec).expect("a bundle serializes");
                writes.push(Write::Put {
                    key: keys.spec_at(name, *g),
                    value,
                    expect: Expect::Any,
                });
            }
        }
        for old in surplus {
            if kept.is_some_and(|k| k.contains(&old)) {
                writes.push(delete(keys.spec_at(name, old)));
            }
        }
    }
    let exists = |b: &str| view.bundles.contains_key(b) || view.invalid.contains_key(b);
    for (name, gens) in &view.spec_generations {
        if !exists(name) {
            writes.extend(gens.iter().map(|g| delete(keys.spec_at(name, *g))));
        }
    }
    for name in &view.paused {
        if !exists(name) && stored.contains_key(&keys.rollout(name)) {
            writes.push(delete(keys.rollout(name)));
        }
    }
}

/// How many earlier generations of a bundle's spec the history keeps.
pub const HISTORY: usize = 10;

impl Bundle {
    /// The bundle as an assignment carries it: desired state and its generation.
    pub(crate) fn desired_with_generation(&self) -> Bundle {
        let mut b = self.desired();
        b.metadata.generation = self.metadata.generation;
        b
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
