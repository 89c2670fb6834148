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
    let r = Replicas::read(target, placed, view, now);
    let g = goal(keys, &r, view, stored);
    let (mut runs, candidates) = specs(&r, &g);
    let unavailable = (0..r.n)
        .filter(|i| {
            r.current
                .get(i)
                .is_none_or(|cur| r.readiness(*i, cur) != Readiness::Ready)
        })
        .count() as u32;
    let requeue_at = r
        .current
        .iter()
        .filter_map(|(i, cur)| match r.readiness(*i, cur) {
            Readiness::Until(at) => Some(at),
            _ => None,
        })
        .min();
    let (demote, mut steps) = replace(&r, &g, candidates, unavailable, &mut runs);
    let status = rollout_status(&r, &g, &runs, unavailable, &mut steps);
    let pinned = runs
        .iter()
        .filter(|(_, b)| !std::ptr::eq(**b, target))
        .map(|(i, b)| (*i, (*b).clone()))
        .collect();
    Decision {
        pinned,
        demote,
        status,
        requeue_at,
    }
}

/// One bundle's replicas as its rollout reads them: where they are placed, what each runs
/// now (as its node's assignment says; none yet: new) and what each reports.
struct Replicas<'a> {
    target: &'a Bundle,
    placed: &'a BTreeMap<u32, String>,
    assigned: Option<&'a BTreeMap<String, std::sync::Arc<crate::model::cluster::Assignment>>>,
    current: BTreeMap<u32, &'a Bundle>,
    /// The statuses from the nodes they are placed on.
    statuses: BTreeMap<u32, &'a ReplicaStatus>,
    strategy: Strategy,
    generation: i64,
    n: u32,
    now: u64,
}

impl<'a> Replicas<'a> {
    fn read(
        target: &'a Bundle,
        placed: &'a BTreeMap<u32, String>,
        view: &'a View,
        now: u64,
    ) -> Replicas<'a> {
        let name = target.name();
        let assigned = view.by_bundle.get(name);
        let current = placed
            .iter()
            .filter_map(|(i, node)| {
                let a = assigned?.get(node)?;
                a.replicas.contains(i).then(|| (*i, a.spec_of(*i)))
            })
            .collect();
        let statuses = view
            .statuses_of(name)
            .filter(|(i, s)| placed.get(i) == Some(&s.node))
            .collect();
        Replicas {
            target,
            placed,
            assigned,
            current,
            statuses,
            strategy: Strategy::of(&target.spec),
            generation: target.metadata.generation.unwrap_or(0),
            n: target.spec.replicas(),
            now,
        }
    }

    fn status_of(&self, i: u32) -> Option<&'a ReplicaStatus> {
        self.statuses.get(&i).copied()
    }

    /// How replica `i`, running `runs`, stands: started at that spec's generation, and for
    /// `berth-min-ready`.
    fn readiness(&self, i: u32, runs: &Bundle) -> Readiness {
        let Some(st) = self.status_of(i) else {
            return Readiness::Down;
        };
        if !st.is_started(runs.spec.primitive.is_some())
            || st.generation != runs.metadata.generation.unwrap_or(0)
        {
            return Readiness::Down;
        }
        let at = st.started_at + self.strategy.min_ready.as_secs();
        if st.started_at > 0 && self.now < at {
            Readiness::Until(at)
        } else {
            Readiness::Ready
        }
    }

    /// Replica `i` failing at this generation (its agent reports the generation it works
    /// to): `<replica>: <why>`.
    fn failure_of(&self, i: u32) -> Option<String> {
        let st = self
            .status_of(i)
            .filter(|s| s.state == ReplicaState::Failed && s.generation == self.generation)?;
        let why = st
            .last_failure
            .as_ref()
            .map(|f| f.reason.as_str())
            .unwrap_or("failed");
        Some(format!("{}: {why}", self.target.replica_name(i)))
    }

    /// Whether replica `i` holds the promotion, or is asked to.
    fn holds_promotion(&self, i: u32) -> bool {
        let asked = self.placed.get(&i).is_some_and(|node| {
            self.assigned
                .and_then(|on| on.get(node))
                .is_some_and(|a| a.promoted.contains(&i))
        });
        asked
            || self
                .status_of(i)
                .and_then(|s| s.primitive.as_ref())
                .is_some_and(|p| {
                    p.state != Phase::Stopped
                        && (p.role == Some(Role::Promoted) || p.wanted_role == Some(Role::Promoted))
                })
    }
}

/// Where the rollout goes: the target, or the spec it rolled back to (and why); whether
/// it failed or stops; its partition; the newest earlier spec, when read.
struct Goal {
    rolled_back: Option<(Bundle, String)>,
    failed: Option<String>,
    completed: bool,
    paused: bool,
    /// Replace nothing more (paused, or failed without a rollback).
    stop: bool,
    partition: u32,
    /// The newest earlier spec, read (from a replica, or decoded from the history) only when
    /// a rollback or a new replica below the partition needs it, not on every pass.
    previous: Option<Bundle>,
}

impl Goal {
    fn spec<'g>(&'g self, target: &'g Bundle) -> &'g Bundle {
        self.rolled_back.as_ref().map_or(target, |(b, _)| b)
    }
}

fn goal(keys: &Keys, r: &Replicas, view: &View, stored: &BTreeMap<String, Kv>) -> Goal {
    let name = r.target.name();
    // A rollback recorded for this generation stands until the bundle changes.
    let last = view
        .bundle_statuses
        .get(name)
        .and_then(|s| s.rollout.as_ref())
        .filter(|s| s.generation == r.generation);
    let mut rolled_back = last
        .and_then(|l| Some((l.rolled_back_to?, l.reason.clone())))
        .and_then(|(g, why)| Some((spec_at(keys, name, g, &r.current, stored)?, why)));
    // A replica switched to this generation that fails: the rollout pauses, or goes back.
    // Once the rollout completed, a failure is a replica's own (restarts handle it), not
    // the rollout's.
    let completed = last.is_some_and(|l| l.state == RolloutState::Complete);
    let failed = if rolled_back.is_none() && !completed {
        r.current
            .iter()
            .filter(|(_, cur)| cur.metadata.generation == Some(r.generation))
            .find_map(|(i, _)| r.failure_of(*i))
    } else {
        None
    };
    let needs_previous = (failed.is_some() && r.strategy.failure_action == FailureAction::Rollback)
        || (rolled_back.is_none()
            && r.placed
                .keys()
                .any(|i| *i < r.strategy.partition && !r.current.contains_key(i)));
    let previous = needs_previous
        .then(|| {
            previous_generation(name, r.generation, &r.current, view)
                .and_then(|g| spec_at(keys, name, g, &r.current, stored))
        })
        .flatten();
    if let Some(why) = &failed
        && r.strategy.failure_action == FailureAction::Rollback
        && let Some(prev) = &previous
    {
        rolled_back = Some((prev.clone(), why.clone()));
    }
    let partition = if rolled_back.is_some() {
        0
    } else {
        r.strategy.partition
    };
    let paused = view.paused.contains(name);
    Goal {
        stop: paused || (failed.is_some() && rolled_back.is_none()),
        rolled_back,
        failed,
        completed,
        paused,
        partition,
        previous,
    }
}

/// Each placed replica's spec where it is settled (new ones, ones whose container the goal
/// leaves as it is, ones below the partition), and the candidates for replacement.
fn specs<'a>(r: &Replicas<'a>, g: &'a Goal) -> (BTreeMap<u32, &'a Bundle>, Vec<(u32, &'a Bundle)>) {
    let goal = g.spec(r.target);
    let mut runs: BTreeMap<u32, &Bundle> = BTreeMap::new();
    let mut candidates: Vec<(u32, &Bundle)> = Vec::new();
    for &i in r.placed.keys() {
        match r.current.get(&i) {
            // New here: below the partition, the previous spec when there is one.
            None => {
                let keep = if i < g.partition {
                    g.previous.as_ref()
                } else {
                    None
                };
                runs.insert(i, keep.unwrap_or(goal));
            }
            Some(cur) if same_container(cur, goal, i) => {
                runs.insert(i, goal);
            }
            Some(cur) if i < g.partition => {
                runs.insert(i, cur);
            }
            Some(cur) => candidates.push((i, cur)),
        }
    }
    (runs, candidates)
}

/// Which candidates are replaced this pass: promoted ones last, then from the highest
/// ordinal down (as a StatefulSet rolls), within `max-unavailable`. Returns the replicas
/// whose promotion must move first, and the steps taken.
fn replace<'a>(
    r: &Replicas<'a>,
    g: &'a Goal,
    mut candidates: Vec<(u32, &'a Bundle)>,
    unavailable: u32,
    runs: &mut BTreeMap<u32, &'a Bundle>,
) -> (BTreeSet<u32>, Vec<String>) {
    let goal = g.spec(r.target);
    candidates.sort_by_key(|(i, _)| (r.holds_promotion(*i), std::cmp::Reverse(*i)));
    let promotable = r.target.spec.promoted_max();
    let promotion_can_move = promotable > 0 && promotable < r.n;
    let mut budget = r.strategy.max_unavailable.saturating_sub(unavailable);
    let mut demote = BTreeSet::new();
    let mut steps: Vec<String> = Vec::new();
    for (i, cur) in candidates {
        let replica = r.target.replica_name(i);
        if g.stop {
            runs.insert(i, cur);
            continue;
        }
        let ready = r.readiness(i, cur) == Readiness::Ready;
        // Moving the promotion off a replica costs no availability, so it does not wait for
        // the budget: a replica once kept out of the promotion choice stays out of it on
        // every pass until it is replaced (taken back in while the budget was spent, it was
        // promoted again after its demote, beside the replica promoted meanwhile).
        if ready && promotion_can_move {
            let promoted_elsewhere = r
                .placed
                .keys()
                .any(|&j| j != i && r.status_of(j).is_some_and(ReplicaStatus::is_promoted));
            if r.holds_promotion(i) || !promoted_elsewhere {
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
    (demote, steps)
}

/// The rollout's status after this pass: replicas at the goal and ready there, the state
/// and its reason, the step under way.
fn rollout_status(
    r: &Replicas,
    g: &Goal,
    runs: &BTreeMap<u32, &Bundle>,
    unavailable: u32,
    steps: &mut Vec<String>,
) -> RolloutStatus {
    let goal = g.spec(r.target);
    let at_goal = |i: u32| runs.get(&i).is_some_and(|b| std::ptr::eq(*b, goal));
    // Assigned the goal already (its node has it) and ready at it.
    let ready_at_goal = |i: u32| {
        at_goal(i)
            && r.current.get(&i).is_some_and(|cur| {
                cur.metadata.generation == goal.metadata.generation
                    && r.readiness(i, cur) == Readiness::Ready
            })
    };
    let updated = (0..r.n).filter(|i| at_goal(*i)).count() as u32;
    let ready = (0..r.n).filter(|i| ready_at_goal(*i)).count() as u32;
    let done = (g.partition..r.n).all(ready_at_goal);
    if steps.is_empty() && !done {
        let waiting: Vec<String> = (g.partition..r.n)
            .filter(|i| at_goal(*i))
            .filter(|i| {
                r.current
                    .get(i)
                    .is_none_or(|cur| r.readiness(*i, cur) != Readiness::Ready)
            })
            .map(|i| r.target.replica_name(i))
            .collect();
        if !waiting.is_empty() {
            steps.push(format!("waiting for {} to be ready", waiting.join(", ")));
        }
    }
    let (state, reason) = match (&g.rolled_back, &g.failed) {
        (Some((_, why)), _) => (RolloutState::RolledBack, why.clone()),
        _ if done || g.completed => (RolloutState::Complete, String::new()),
        (None, Some(why)) => (RolloutState::Failed, why.clone()),
        _ if g.paused => (
            RolloutState::Paused,
            "paused by berth rollout pause".to_string(),
        ),
        _ => (RolloutState::Progressing, String::new()),
    };
    let old_generations: BTreeSet<i64> = runs
        .values()
        .filter_map(|b| b.metadata.generation)
        .filter(|old| Some(*old) != goal.metadata.generation)
        .collect();
    RolloutStatus {
        generation: r.generation,
        old_generations: old_generations.into_iter().collect(),
        updated,
        ready,
        unavailable,
        max_unavailable: r.strategy.max_unavailable,
        partition: g.partition,
        state,
        step: steps.join("; "),
        reason,
        rolled_back_to: g
            .rolled_back
            .as_ref()
            .and_then(|(b, _)| b.metadata.generation),
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
