//! Each bundle's status, and which replicas of a promotable bundle run promoted: both from
//! the placement and the replicas' own reports (pure).

use crate::model::ReplicaKey;
use std::collections::{BTreeMap, BTreeSet};

use super::placement::{Placement, wanted_running};
use super::view::View;
use crate::model::cluster::{Phase, PrimitiveState, ReplicaState, Role};
use crate::model::{Bundle, BundleStatus, Condition, ReplicaRow};

/// For a promotable bundle, the replicas to run promoted: at most promoted-max, among those
/// whose primitive has started on the node they are placed on; the ones promoted now keep
/// it (no flapping), then the lowest ordinals. (The agents report no promotion scores yet.)
/// Replicas in `demote` are not chosen (a rollout moves their promotion elsewhere before
/// it replaces them).
pub fn choose_promoted(
    b: &Bundle,
    placed: &BTreeMap<u32, String>,
    view: &View,
    demote: &BTreeSet<u32>,
) -> BTreeSet<u32> {
    if b.spec.promoted_max() == 0 {
        return BTreeSet::new();
    }
    let running: Vec<Candidate> = placed
        .iter()
        .filter_map(|(i, node)| {
            let st = view.status_of(b.name(), *i)?;
            let asked = view
                .by_bundle
                .get(b.name())
                .and_then(|on| on.get(node))
                .is_some_and(|a| a.promoted.contains(i));
            // A status from before its node registered anew (its host died or was fenced
            // and came back) says nothing of what runs now: a promotion it reports is gone.
            let primitive = st.primitive.as_ref()?;
            (st.node == *node && view.reported_now(st)).then_some(Candidate {
                ordinal: *i,
                primitive,
                score: stored_score(b, *i, node, view).or(primitive.score),
                asked,
                eligible: !demote.contains(i) && may_be_promoted_on(b, node, view),
            })
        })
        .collect();
    let chosen = pick_promoted(b.spec.promoted_max() as usize, &running);
    if tracing::enabled!(tracing::Level::TRACE) {
        let weighed: Vec<String> = running
            .iter()
            .map(|c| {
                format!(
                    "{}: {:?} {:?} score {:?} holds {} eligible {}",
                    c.ordinal,
                    c.primitive.state,
                    c.primitive.role,
                    c.score,
                    c.holds_promotion(),
                    c.eligible
                )
            })
            .collect();
        tracing::trace!(bundle = b.name(), ?weighed, ?chosen, "promotion");
    }
    chosen
}

/// Replica `i`'s promotion score as stored in the cluster's attributes: `master-<primitive>`
/// of its node (the replica, or with `container-attribute-target=host` the host it runs
/// on), as the agents keep it.
fn stored_score(b: &Bundle, i: u32, host: &str, view: &View) -> Option<i64> {
    let p = b.spec.primitive.as_ref()?;
    let owner = if b.resolved().meta.attributes_on_host {
        host.to_string()
    } else {
        b.replica_name(i)
    };
    let name = crate::remote::attrs::promotion_name(&p.id);
    view.promotion_scores.get(&(owner, name)).copied()
}

/// Whether the bundle's colocations for its promoted replica (`role: Promoted`) let it be
/// promoted on this node: with INFINITY only where the other bundle has a replica (in the
/// role asked), with -INFINITY never there.
fn may_be_promoted_on(b: &Bundle, node: &str, view: &View) -> bool {
    b.spec
        .colocations
        .iter()
        .zip(&b.resolved().colocation_scores)
        .filter(|(c, _)| c.for_promoted())
        .all(|(c, score)| {
            let on_node = view.current_of(&c.with).any(|(_, n)| n == node);
            let promoted_here = view
                .nodes
                .iter()
                .any(|n| n.name == node && n.promoted.contains(&c.with));
            let present = on_node
                && match c.with_role() {
                    None => true,
                    Some(Role::Promoted) => promoted_here,
                    Some(Role::Unpromoted) => !promoted_here,
                };
            present == (*score > 0)
        })
}

/// A placed replica of a promotable bundle, as [`pick_promoted`] weighs it.
pub struct Candidate<'a> {
    pub ordinal: u32,
    /// What its remote agent reports.
    pub primitive: &'a PrimitiveState,
    /// Its promotion score: as stored in the cluster's attributes, else as its remote agent
    /// reports it.
    pub score: Option<i64>,
    /// The controller's assignment already asks for it to be promoted.
    pub asked: bool,
    /// False for a replica whose promotion a rollout moves elsewhere: it is not chosen,
    /// but counts as holding its promotion until it gives it up.
    pub eligible: bool,
}

impl Candidate<'_> {
    /// Promoted, or on its way there: reported promoted, a promotion requested of its
    /// remote agent, or one asked for in its assignment. Such a replica counts against
    /// promoted-max until it reports itself unpromoted with no promotion requested.
    pub fn holds_promotion(&self) -> bool {
        let p = self.primitive;
        let promoted = Some(Role::Promoted);
        p.state != Phase::Stopped && (p.role == promoted || p.wanted_role == promoted || self.asked)
    }
}

/// Which of a bundle's replicas to promote: at most `max` of those started. When the agents
/// report promotion scores (`crm_master`), the highest scores win, and a replica with a
/// negative score or none is never promoted, as in Pacemaker. When no replica reports one,
/// every started replica may be promoted (berth's rule, for agents that do not use scores).
/// Ties go to a replica that holds its promotion already, so that a promotion does not move
/// for nothing, then to the lowest ordinal.
///
/// Demotions come first: while a replica that is to lose its promotion still holds it (see
/// [`Candidate::holds_promotion`]), no other is newly promoted, so there are never more than
/// `max` promoted at once.
pub fn pick_promoted(max: usize, replicas: &[Candidate]) -> BTreeSet<u32> {
    let started: Vec<&Candidate> = replicas
        .iter()
        .filter(|c| c.primitive.state == Phase::Started && c.eligible)
        .collect();
    let scored = started.iter().any(|c| c.score.is_some());
    let mut ranked: Vec<(std::cmp::Reverse<i64>, bool, u32)> = started
        .iter()
        .filter_map(|c| {
            let score = match c.score {
                Some(s) if s >= 0 => s,
                Some(_) => return None,
                None if scored => return None,
                None => 0,
            };
            Some((std::cmp::Reverse(score), !c.holds_promotion(), c.ordinal))
        })
        .collect();
    ranked.sort();
    let mut chosen: BTreeSet<u32> = ranked.into_iter().take(max).map(|(_, _, i)| i).collect();
    let holding: BTreeSet<u32> = replicas
        .iter()
        .filter(|c| c.holds_promotion())
        .map(|c| c.ordinal)
        .collect();
    if !holding.is_subset(&chosen) {
        chosen.retain(|i| holding.contains(i));
    }
    chosen
}

/// A bundle's status from the placement and the replicas' own reports.
pub fn bundle_status(b: &Bundle, placement: &Placement, view: &View) -> BundleStatus {
    let generation = b.metadata.generation.unwrap_or(0);
    let desired = if wanted_running(b) {
        b.spec.replicas()
    } else {
        0
    };
    let mut counts = Counts::default();
    let rows = (0..b.spec.replicas())
        .map(|i| replica_row(b, i, placement, view, &mut counts))
        .collect();
    BundleStatus {
        observed_generation: generation,
        replicas: desired,
        ready_replicas: counts.ready,
        conditions: conditions(&counts, desired, generation),
        replica_rows: rows,
        invalid: None,
        rollout: None,
    }
}

/// A bundle's replicas counted by what its conditions say.
#[derive(Debug, Default)]
struct Counts {
    /// Running at the bundle's generation (with a primitive: the primitive started).
    ready: u32,
    failed: u32,
    /// Pending: placement found no node.
    unplaced: u32,
}

/// Replica `i`'s row: where placement put it and what its node reports, counted.
fn replica_row(
    b: &Bundle,
    i: u32,
    placement: &Placement,
    view: &View,
    counts: &mut Counts,
) -> ReplicaRow {
    let generation = b.metadata.generation.unwrap_or(0);
    let key = ReplicaKey::new(b.name(), i);
    let placed = placement.placed.get(b.name());
    let pending = placement.pending.get(b.name()).and_then(|p| p.get(&i));
    let node = placed.and_then(|p| p.get(&i)).cloned().unwrap_or_default();
    let st = view
        .statuses
        .get(&key)
        .filter(|s| !node.is_empty() && s.node == node);
    // Written before its node registered anew: not what runs now.
    let stale = st.is_some_and(|s| !view.reported_now(s));
    let st = st.filter(|_| !stale);
    let (state, reason) = match (wanted_running(b), st, pending) {
        (false, _, _) => (ReplicaState::Stopped, "target-role is Stopped".to_string()),
        (_, _, Some(why)) => {
            counts.unplaced += 1;
            (ReplicaState::Pending, why.to_string())
        }
        (_, None, _) if stale => (
            ReplicaState::Pending,
            format!("waiting for node {node} to report since it registered"),
        ),
        (_, None, _) => (ReplicaState::Pending, String::new()),
        (_, Some(s), _) => {
            if s.is_started(b.spec.primitive.is_some()) && s.generation == generation {
                counts.ready += 1;
            }
            if s.state == ReplicaState::Failed {
                counts.failed += 1;
            }
            let why = s
                .last_failure
                .as_ref()
                .filter(|_| s.state == ReplicaState::Failed);
            (s.state, why.map(|f| f.reason.clone()).unwrap_or_default())
        }
    };
    let hist = view.history.get(&key);
    ReplicaRow {
        index: i,
        name: b.replica_name(i),
        node,
        address: b
            .spec
            .replica_address(i)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        state,
        reason,
        primitive: st
            .and_then(|s| s.primitive.as_ref())
            .map(|p| match p.role {
                None => p.state.to_string(),
                Some(r) => format!("{} ({r})", p.state),
            })
            .unwrap_or_default(),
        fail_counts: hist.map(|h| h.fail_counts.clone()).unwrap_or_default(),
        last_failure: hist.and_then(|h| h.last_failure),
    }
}

/// Available, Progressing and Degraded, as a Deployment's conditions read.
fn conditions(c: &Counts, desired: u32, generation: i64) -> Vec<Condition> {
    let cond = |kind: &str, on: bool, reason: &str, message: String| Condition {
        kind: kind.into(),
        status: on.into(),
        reason: reason.into(),
        message,
    };
    let Counts {
        ready,
        failed,
        unplaced,
    } = *c;
    vec![
        cond(
            "Available",
            ready >= desired,
            if ready >= desired {
                "AllReplicasReady"
            } else {
                "ReplicasNotReady"
            },
            format!("{ready}/{desired} replicas ready"),
        ),
        cond(
            "Progressing",
            ready < desired && failed == 0 && unplaced == 0,
            if ready < desired {
                "ReplicasStarting"
            } else {
                "Converged"
            },
            format!("generation {generation}"),
        ),
        cond(
            "Degraded",
            failed > 0 || unplaced > 0,
            if unplaced > 0 {
                "ReplicasUnplaceable"
            } else if failed > 0 {
                "ReplicasFailed"
            } else {
                "Healthy"
            },
            format!("{failed} failed, {unplaced} cannot be placed"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prim(state: &str, role: &str, score: Option<i64>) -> PrimitiveState {
        PrimitiveState {
            state: serde_json::from_value(serde_json::json!(state)).unwrap(),
            role: Role::parse(role),
            score,
            ..Default::default()
        }
    }

    fn pick(max: usize, rs: &[PrimitiveState]) -> Vec<u32> {
        let rs: Vec<Candidate> = rs
            .iter()
            .enumerate()
            .map(|(i, p)| Candidate {
                ordinal: i as u32,
                primitive: p,
                score: p.score,
                asked: false,
                eligible: true,
            })
            .collect();
        pick_promoted(max, &rs).into_iter().collect()
    }

    #[test]
    fn the_highest_reported_promotion_scores_are_promoted() {
        let rs = [
            prim("started", "promoted", Some(5)),
            prim("started", "unpromoted", Some(50)),
            prim("started", "unpromoted", Some(10)),
        ];
        // 1 outscores the promoted 0, but is promoted only once 0 reports its demotion.
        assert_eq!(pick(1, &rs), Vec::<u32>::new());
        assert_eq!(pick(2, &rs), Vec::<u32>::new());
        let rs = [
            prim("started", "unpromoted", Some(5)),
            prim("started", "unpromoted", Some(50)),
            prim("started", "unpromoted", Some(10)),
        ];
        assert_eq!(pick(1, &rs), [1]);
        assert_eq!(pick(2, &rs), [1, 2]);
        assert_eq!(pick(0, &rs), Vec::<u32>::new());
    }

    #[test]
    fn a_promoted_replica_keeps_its_promotion_while_another_is_demoted() {
        let rs = [
            prim("started", "promoted", Some(20)),
            prim("started", "promoted", Some(5)),
            prim("started", "unpromoted", Some(10)),
        ];
        // max 2: 0 and 2 win; 1 is demoted first, and 0 stays promoted meanwhile.
        assert_eq!(pick(2, &rs), [0]);
    }

    #[test]
    fn negative_or_missing_scores_are_never_promoted_once_agents_report_scores() {
        let rs = [
            prim("started", "unpromoted", None),
            prim("started", "unpromoted", Some(-1)),
            prim("started", "unpromoted", Some(0)),
            prim("failed", "unpromoted", Some(100)),
        ];
        assert_eq!(pick(3, &rs), [2]);
    }

    #[test]
    fn without_scores_the_promoted_replica_stays_then_the_lowest_ordinal_wins() {
        let rs = [
            prim("started", "unpromoted", None),
            prim("started", "promoted", None),
            prim("starting", "", None),
        ];
        assert_eq!(pick(1, &rs), [1]);
        assert_eq!(pick(2, &rs), [0, 1]);
        let rs = [
            prim("started", "unpromoted", Some(7)),
            prim("started", "promoted", Some(7)),
        ];
        assert_eq!(pick(1, &rs), [1], "a tie keeps the promoted replica");
    }

    #[test]
    fn a_promotion_under_way_holds_until_it_is_dropped_and_reported_undone() {
        // 1 was asked to promote (its remote agent has the request): a tie stays with it.
        let mut asked = prim("started", "unpromoted", Some(5));
        asked.wanted_role = Some(Role::Promoted);
        let rs = [prim("started", "unpromoted", Some(5)), asked.clone()];
        assert_eq!(pick(1, &rs), [1]);
        // 0 now outscores it: 1 must first report the request gone before 0 is promoted.
        let rs = [prim("started", "unpromoted", Some(9)), asked];
        assert_eq!(pick(1, &rs), Vec::<u32>::new());
        // Asked in the controller's own assignment, not yet of the agent: the same.
        let rs = [
            prim("started", "unpromoted", Some(9)),
            prim("started", "unpromoted", Some(5)),
        ];
        let cs = [
            Candidate {
                ordinal: 0,
                primitive: &rs[0],
                score: rs[0].score,
                asked: false,
                eligible: true,
            },
            Candidate {
                ordinal: 1,
                primitive: &rs[1],
                score: rs[1].score,
                asked: true,
                eligible: true,
            },
        ];
        assert_eq!(pick_promoted(1, &cs), BTreeSet::new());
    }
}
