//! Rolling a bundle's spec change out (pure): which spec each placed replica runs, so that a
//! change that replaces containers never takes more than `berth-max-unavailable` replicas
//! down at once (see [`crate::model::rollout`] for the strategy).
//!
//! What each replica runs now is what its assignment says (the assignment's spec, or the
//! older one it is pinned to). A replica whose container would be the same under the new
//! spec (a change to the replica count, meta attributes, add-host lists) takes it at once,
//! in place. The others are replaced one budget at a time, highest ordinal first and the
//! promoted ones last (after their promotion moved to a replaced replica, when promoted-max
//! leaves room); each next one once the replaced ones are ready. Replicas below the
//! partition keep what they run. A replaced replica that fails pauses the rollout (nothing
//! more is replaced) or, with failure action rollback, sends the replaced replicas back to
//! the previous spec, recorded in the status so that the rollout is not tried again until
//! the bundle changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::view::View;
use crate::model::Bundle;
use crate::model::cluster::{Phase, ReplicaState, ReplicaStatus, Role};
use crate::model::container;
use crate::model::rollout::{FailureAction, RolloutState, RolloutStatus, Strategy};
use crate::store::{Keys, Kv};

/// What the rollout decided for one bundle.
#[derive(Debug, Default)]
pub struct Decision {
    /// Placed replicas that run another spec than the bundle's: ordinal → that spec.
    pub pinned: BTreeMap<u32, Bundle>,
    /// Replicas whose promotion must move elsewhere before they are replaced: not to be
    /// chosen for promotion.
    pub demote: BTreeSet<u32>,
    pub status: RolloutStatus,
    /// When a replica's `berth-min-ready` runs out (seconds since the Unix epoch).
    pub requeue_at: Option<u64>,
}

/// Whether replica `i`'s container is the same under both specs, so that changing from one
/// to the other applies in place. The node agent decides by the same hash.
pub fn same_container(a: &Bundle, b: &Bundle, i: u32) -> bool {
    if a.spec == b.spec {
        return true;
    }
    // The paths are the agent's; the same on both sides, they do not change the answer.
    let hash = |x: &Bundle| {
        container::desired(x, i, Path::new("/"), Some(Path::new("/berth"))).map(|c| c.hash())
    };
    matches!((hash(a), hash(b)), (Ok(x), Ok(y)) if x == y)
}

/// How a replica stands, for the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Ready,
    /// Up, but not for `berth-min-ready` yet: ready at that time.
    Until(u64),
    Down,
}

/// The spec a bundle ran at `generation`: from a replica that runs it, else the history.
fn spec_at(
    keys: &Keys,
    name: &str,
    generation: i64,
    current: &BTreeMap<u32, &Bundle>,
    stored: &BTreeMap<String, Kv>,
) -> Option<Bundle> {
    if let Some(b) = current
        .values()
        .find(|b| b.metadata.generation == Some(generation))
    {
        return Some((*b).clone());
    }
    let kv = stored.get(&keys.spec_at(name, generation))?;
    serde_json::from_slice::<Bundle>(&kv.value)
        .ok()
        .filter(|b| b.name() == name && b.metadata.generation == Some(generation))
}

/// The newest generation before `generation` whose spec is known (run by a replica, or in
/// the history).
fn previous_generation(
    name: &str,
    generation: i64,
    current: &BTreeMap<u32, &Bundle>,
    view: &View,
) -> Option<i64> {
    current
        .values()
        .filter_map(|b| b.metadata.generation)
        .chain(
            view.spec_generations
                .get(name)
                .into_iter()
                .flatten()
                .copied(),
        )
        .filter(|g| *g < generation)
        .max()
}

/// Decides the rollout of bundle `b` (as the controller places it: `target` is what its
/// assignments carry) over its `placed` replicas.
pub fn decide(
    keys: &Keys,
    target: &Bundle,
    placed: &BTreeMap<u32, String>,
    view: &View,
    stored: &BTreeMap<String, Kv>,
    now: u64,
) -> Decision {
    let name = target.name();
    let strategy = Strategy::of(&target.spec);
    let generation = target.metadata.generation.unwrap_or(0);
    let n = target.spec.replicas();
    // What each placed replica runs now, as its node's assignment says (none yet: new).
    let assigned = view.by_bundle.get(name);
    let current: BTreeMap<u32, &Bundle> = placed
        .iter()
        .filter_map(|(i, node)| {
            let a = assigned?.get(node)?;
            a.replicas.contains(i).then(|| (*i, a.spec_of(*i)))
        })
        .collect();
    // The replicas' statuses from the nodes they are placed on (one range of the map).
    let statuses: BTreeMap<u32, &ReplicaStatus> = view
        .statuses_of(name)
        .filter(|(i, s)| placed.get(i) == Some(&s.node))
        .collect();
    let status_of = |i: u32| statuses.get(&i).copied();
    let readiness = |i: u32, runs: &Bundle| -> Readiness {
        let Some(st) = status_of(i) else {
            return Readiness::Down;
        };
        if !st.is_started(runs.spec.primitive.is_some())
            || st.generation != runs.metadata.generation.unwrap_or(0)
        {
            return Readiness::Down;
        }
        let at = st.started_at + strategy.min_ready.as_secs();
        if st.started_at > 0 && now < at {
            Readiness::Until(at)
        } else {
            Readiness::Ready
        }
    };
    // A replica failing at this generation (its agent reports the generation it works to).
    let failure_of = |i: u32| -> Option<String> {
        let st = status_of(i)
            .filter(|s| s.state == ReplicaState::Failed && s.generation == generation)?;
        let why = st
            .last_failure
            .as_ref()
            .map(|f| f.reason.as_str())
            .unwrap_or("failed");
        Some(format!("{}: {why}", target.replica_name(i)))
    };

    // A rollback recorded for this generation stands until the bundle changes.
    let last = view
        .bundle_statuses
        .get(name)
        .and_then(|s| s.rollout.as_ref())
        .filter(|r| r.generation == generation);
    let mut rolled_back = last
        .and_then(|r| Some((r.rolled_back_to?, r.reason.clone())))
        .and_then(|(g, why)| Some((spec_at(keys, name, g, &current, stored)?, why)));
    // A replica switched to this generation that fails: the rollout pauses, or goes back.
    // Once the rollout completed, a failure is a replica's own (restarts handle it), not
    // the rollout's.
    let completed = last.is_some_and(|r| r.state == RolloutState::Complete);
    let failed = if rolled_back.is_none() && !completed {
        current
            .iter()
            .filter(|(_, cur)| cur.metadata.generation == Some(generation))
            .find_map(|(i, _)| failure_of(*i))
    } else {
        None
    };
    // The newest earlier spec, read (from a replica, or decoded from the history) only when
    // a rollback or a new replica below the partition needs it, not on every pass.
    let previous = std::cell::OnceCell::new();
    let previous = || {
        previous
            .get_or_init(|| {
                previous_generation(name, generation, &current, view)
                    .and_then(|g| spec_at(keys, name, g, &current, stored))
            })
            .as_ref()
    };
    if let Some(why) = &failed
        && strategy.failure_action == FailureAction::Rollback
        && let Some(prev) = previous()
    {
        rolled_back = Some((prev.clone(), why.clone()));
    }
    let goal: &Bundle = rolled_back.as_ref().map_or(target, |(b, _)| b);
    let partition = if rolled_back.is_some() {
        0
    } else {
        strategy.partition
    };
    let paused = view.paused.contains(name);
    let stop = paused || (failed.is_some() && rolled_back.is_none());

    // Each placed replica's spec: the goal, or what it runs.
    let mut runs: BTreeMap<u32, &Bundle> = BTreeMap::new();
    let mut candidates: Vec<(u32, &Bundle)> = Vec::new();
    for &i in placed.keys() {
        match current.get(&i) {
            // New here: below the partition, the previous spec when there is one.
            None => {
                let keep = if i < partition { previous() } else { None };
                runs.insert(i, keep.unwrap_or(goal));
            }
            Some(cur) if same_container(cur, goal, i) => {
                runs.insert(i, goal);
            }
            Some(cur) if i < partition => {
                runs.insert(i, cur);
            }
            Some(cur) => candidates.push((i, cur)),
        }
    }
    let unavailable = (0..n)
        .filter(|i| {
            current
                .get(i)
                .is_none_or(|cur| readiness(*i, cur) != Readiness::Ready)
        })
        .count() as u32;
    let mut requeue_at: Option<u64> = None;
    for (i, cur) in &current {
        if let Readiness::Until(at) = readiness(*i, cur) {
            requeue_at = Some(requeue_at.map_or(at, |r| r.min(at)));
        }
    }

    // Promoted ones last, then from the highest ordinal down (as a StatefulSet rolls).
    let holds_promotion = |i: u32| {
        let asked = placed.get(&i).is_some_and(|node| {
            assigned
                .and_then(|on| on.get(node))
                .is_some_and(|a| a.promoted.contains(&i))
        });
        asked
            || status_of(i)
                .and_then(|s| s.primitive.as_ref())
                .is_some_and(|p| {
                    p.state != Phase::Stopped
                        && (p.role == Some(Role::Promoted) || p.wanted_role == Some(Role::Promoted))
                })
    };
    candidates.sort_by_key(|(i, _)| (holds_promotion(*i), std::cmp::Reverse(*i)));
    let promotable = target.spec.promoted_max();
    let promotion_can_move = promotable > 0 && promotable < n;
    let mut budget = strategy.max_unavailable.saturating_sub(unavailable);
    let mut demote = BTreeSet::new();
    let mut steps: Vec<String> = Vec::new();
    for (i, cur) in candidates {
        let replica = target.replica_name(i);
        if stop {
            runs.insert(i, cur);
            continue;
        }
        let ready = readiness(i, cur) == Readiness::Ready;
        // Moving the promotion off a replica costs no availability, so it does not wait for
        // the budget: a replica once kept out of the promotion choice stays out of it on
        // every pass until it is replaced (taken back in while the budget was spent, it was
        // promoted again after its demote, beside the replica promoted meanwhile).
        if ready && promotion_can_move {
            let promoted_elsewhere = placed
                .keys()
                .any(|&j| j != i && status_of(j).is_some_and(ReplicaStatus::is_promoted));
            if holds_promotion(i) || !promoted_elsewhere {
                demote.insert(i);
                runs.insert(i, cur);
                steps.push(format!(
                    "moving the promotion off {replica} before replacing it"
                ));
                budget = 0;
                continue;
            }
        }
        // A replica that is down costs no availability to replace.
        if ready && budget == 0 {
            runs.insert(i, cur);
            continue;
        }
        if ready {
            budget -= 1;
        }
        runs.insert(i, goal);
        steps.push(format!("replacing {replica}"));
    }

    // The status.
    let at_goal = |i: u32| runs.get(&i).is_some_and(|b| std::ptr::eq(*b, goal));
    // Assigned the goal already (its node has it) and ready at it.
    let ready_at_goal = |i: u32| {
        at_goal(i)
            && current.get(&i).is_some_and(|cur| {
                cur.metadata.generation == goal.metadata.generation
                    && readiness(i, cur) == Readiness::Ready
            })
    };
    let updated = (0..n).filter(|i| at_goal(*i)).count() as u32;
    let ready = (0..n).filter(|i| ready_at_goal(*i)).count() as u32;
    let done = (partition..n).all(ready_at_goal);
    if steps.is_empty() && !done {
        let waiting: Vec<String> = (partition..n)
            .filter(|i| at_goal(*i))
            .filter(|i| {
                current
                    .get(i)
                    .is_none_or(|cur| readiness(*i, cur) != Readiness::Ready)
            })
            .map(|i| target.replica_name(i))
            .collect();
        if !waiting.is_empty() {
            steps.push(format!("waiting for {} to be ready", waiting.join(", ")));
        }
    }
    let (state, reason) = match (&rolled_back, &failed) {
        (Some((_, why)), _) => (RolloutState::RolledBack, why.clone()),
        _ if done || completed => (RolloutState::Complete, String::new()),
        (None, Some(why)) => (RolloutState::Failed, why.clone()),
        _ if paused => (
            RolloutState::Paused,
            "paused by berth rollout pause".to_string(),
        ),
        _ => (RolloutState::Progressing, String::new()),
    };
    let old_generations: BTreeSet<i64> = runs
        .values()
        .filter_map(|b| b.metadata.generation)
        .filter(|g| Some(*g) != goal.metadata.generation)
        .collect();
    let pinned = runs
        .iter()
        .filter(|(_, b)| !std::ptr::eq(**b, target))
        .map(|(i, b)| (*i, (*b).clone()))
        .collect();
    Decision {
        pinned,
        demote,
        status: RolloutStatus {
            generation,
            old_generations: old_generations.into_iter().collect(),
            updated,
            ready,
            unavailable,
            max_unavailable: strategy.max_unavailable,
            partition,
            state,
            step: steps.join("; "),
            reason,
            rolled_back_to: rolled_back
                .as_ref()
                .and_then(|(b, _)| b.metadata.generation),
        },
        requeue_at,
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
