//! Clone notifications (`notify=true`), pure: a bundle's changes of membership and role go
//! one operation at a time, in Pacemaker's order (demote, stop, start, promote), each
//! between a `pre` notification to the replicas active before it and a `post` one to those
//! active after it. The round under way lives in the bundle's assignments
//! ([`Assignment::notify`]), so that the controller that comes next knows where it was; the
//! node agents deliver it to each target and the remote agents report the last id they ran
//! (`primitive.notified`) in the replica status.
//!
//! Each pass, [`gate`] takes what placement wants (`desired`) and the assignments as they
//! stand, and returns what to write:
//! - no round, or a `post` round that every target has run: the first operation with
//!   changes gets a `pre` round (to the replicas active now), or, with none, `desired`;
//! - a `pre` round not run by every target yet: as they stand;
//! - a `pre` round run: the operation's changes (only those) are written; once they are
//!   done (started or failed, gone, promoted, demoted), a `post` round to the replicas
//!   active then.
//!
//! A target that is no longer active (its container died, its node went offline) is not
//! waited for.

use std::collections::{BTreeMap, BTreeSet};

use super::view::View;
use crate::model::Bundle;
use crate::model::cluster::{
    Assignment, Notification, NotifyKind, NotifyOp, Phase, ReplicaState, Role,
};

/// Node → the bundle's assignment there.
pub type PerNode = BTreeMap<String, Assignment>;

/// Does the bundle ask for notifications (`notify=true` on it or on its primitive)?
pub fn wanted(b: &Bundle) -> bool {
    b.resolved().meta.notify
}

/// What `desired` changes against `current`, per operation: the (replica, node) pairs.
fn changes(current: &PerNode, desired: &PerNode) -> BTreeMap<NotifyOp, Vec<(u32, String)>> {
    let pairs = |m: &PerNode| -> BTreeSet<(u32, String)> {
        m.iter()
            .flat_map(|(n, a)| a.replicas.iter().map(move |i| (*i, n.clone())))
            .collect()
    };
    let promoted = |m: &PerNode| -> BTreeSet<(u32, String)> {
        m.iter()
            .flat_map(|(n, a)| a.promoted.iter().map(move |i| (*i, n.clone())))
            .collect()
    };
    let (pc, pd) = (pairs(current), pairs(desired));
    let (rc, rd) = (promoted(current), promoted(desired));
    let mut out = BTreeMap::new();
    out.insert(NotifyOp::Demote, rc.difference(&rd).cloned().collect());
    out.insert(NotifyOp::Stop, pc.difference(&pd).cloned().collect());
    out.insert(NotifyOp::Start, pd.difference(&pc).cloned().collect());
    out.insert(NotifyOp::Promote, rd.difference(&rc).cloned().collect());
    out
}

/// `current` with one operation's changes made, the other fields as `desired` has them.
fn apply(current: &PerNode, desired: &PerNode, op: NotifyOp, acts_on: &[(u32, String)]) -> PerNode {
    let mut out = current.clone();
    for (node, a) in out.iter_mut() {
        if let Some(d) = desired.get(node) {
            a.bundle = d.bundle.clone();
            a.pinned = d.pinned.clone();
            a.managed = d.managed;
            a.cleanup = d.cleanup;
            a.stop_after = d.stop_after.clone();
        }
    }
    for (i, node) in acts_on {
        match op {
            NotifyOp::Demote => {
                if let Some(a) = out.get_mut(node) {
                    a.promoted.retain(|p| p != i);
                }
            }
            NotifyOp::Stop => {
                if let Some(a) = out.get_mut(node) {
                    a.replicas.retain(|r| r != i);
                    a.promoted.retain(|p| p != i);
                }
            }
            NotifyOp::Start => {
                let a = out.entry(node.clone()).or_insert_with(|| {
                    let mut a = desired[node].clone();
                    a.replicas.clear();
                    a.promoted.clear();
                    a
                });
                if !a.replicas.contains(i) {
                    a.replicas.push(*i);
                    a.replicas.sort_unstable();
                }
            }
            NotifyOp::Promote => {
                if let Some(a) = out.get_mut(node)
                    && a.replicas.contains(i)
                    && !a.promoted.contains(i)
                {
                    a.promoted.push(*i);
                    a.promoted.sort_unstable();
                }
            }
        }
    }
    out.retain(|_, a| !a.replicas.is_empty());
    out
}

/// The replicas of the bundle active in `m` (running where it places them, their primitive
/// started, on an online node).
fn active(b: &Bundle, m: &PerNode, view: &View, online: &BTreeSet<&str>) -> BTreeSet<u32> {
    m.iter()
        .filter(|(n, _)| online.contains(n.as_str()))
        .flat_map(|(n, a)| a.replicas.iter().map(move |i| (*i, n)))
        .filter(|(i, n)| {
            view.status_on(b.name(), *i, n)
                .is_some_and(|s| s.is_started(true))
        })
        .map(|(i, _)| i)
        .collect()
}

/// How long a round waits for targets that do not report having run it (an agent that
/// hangs past its notify timeout, a remote agent too old to know the verb): then it goes on
/// without them, as Pacemaker goes on after a failed notify.
pub const DEADLINE: u64 = 60;

/// Has every target that is still active run the round (or has its deadline passed)?
fn ran(b: &Bundle, r: &Notification, active: &BTreeSet<u32>, view: &View, now: u64) -> bool {
    if r.at > 0 && now >= r.at.saturating_add(DEADLINE) {
        return true;
    }
    r.targets.iter().filter(|i| active.contains(i)).all(|i| {
        view.status_of(b.name(), *i)
            .and_then(|s| s.primitive.as_ref())
            .is_some_and(|p| p.notified >= r.id)
    })
}

/// Is the round's operation done on every replica it acts on?
fn done(b: &Bundle, r: &Notification, view: &View, online: &BTreeSet<&str>) -> bool {
    r.acts_on.iter().all(|(i, node)| {
        if !online.contains(node.as_str()) {
            return true;
        }
        let st = view.status_on(b.name(), *i, node);
        let prim = st.and_then(|s| s.primitive.as_ref());
        let failed = st.is_some_and(|s| s.state == ReplicaState::Failed)
            || prim.is_some_and(|p| matches!(p.state, Phase::Failed | Phase::Blocked));
        match r.operation {
            NotifyOp::Stop => st
                .is_none_or(|s| !matches!(s.state, ReplicaState::Running | ReplicaState::Starting)),
            NotifyOp::Start => failed || prim.is_some_and(|p| p.state == Phase::Started),
            NotifyOp::Promote => failed || prim.is_some_and(|p| p.role == Some(Role::Promoted)),
            NotifyOp::Demote => failed || prim.is_none_or(|p| p.role != Some(Role::Promoted)),
        }
    })
}

/// Pacemaker's variables for a round: the instances active, inactive, promoted and
/// unpromoted now, and those each operation of the transition acts on; a resource is
/// `<primitive>:<i>`, its uname the replica `<bundle>-<i>`. An empty list is " ".
/// `all_hosts` lists, word for word beside `all_uname`, the node each replica runs on
/// (after the transition, else now; `NA` for one placed nowhere), as Pacemaker gives a
/// bundle's instances their physical hosts: what `ocf_attribute_target` maps through.
fn vars(
    b: &Bundle,
    active: &BTreeSet<u32>,
    promoted: &BTreeSet<u32>,
    changes: &BTreeMap<NotifyOp, Vec<(u32, String)>>,
    placed: [&PerNode; 2],
) -> BTreeMap<String, String> {
    let prim = b.spec.primitive.as_ref().map_or("", |p| p.id.as_str());
    let list = |is: &mut dyn Iterator<Item = u32>, uname: bool| {
        let words: Vec<String> = is
            .map(|i| {
                if uname {
                    b.replica_name(i)
                } else {
                    format!("{prim}:{i}")
                }
            })
            .collect();
        if words.is_empty() {
            " ".to_string()
        } else {
            words.join(" ")
        }
    };
    let mut out = BTreeMap::new();
    let mut both = |name: &str, set: &BTreeSet<u32>| {
        out.insert(
            format!("{name}_resource"),
            list(&mut set.iter().copied(), false),
        );
        out.insert(
            format!("{name}_uname"),
            list(&mut set.iter().copied(), true),
        );
    };
    let all: BTreeSet<u32> = (0..b.spec.replicas()).collect();
    let unpromoted: BTreeSet<u32> = active.difference(promoted).copied().collect();
    let promoted_active: BTreeSet<u32> = active.intersection(promoted).copied().collect();
    both("active", active);
    both("inactive", &all.difference(active).copied().collect());
    both("promoted", &promoted_active);
    both("master", &promoted_active);
    both("unpromoted", &unpromoted);
    both("slave", &unpromoted);
    for op in NotifyOp::ALL {
        let set: BTreeSet<u32> = changes[&op].iter().map(|(i, _)| *i).collect();
        both(op.as_str(), &set);
    }
    out.remove("inactive_uname");
    let everyone = list(&mut all.iter().copied(), true);
    out.insert("all_uname".into(), everyone.clone());
    out.insert("available_uname".into(), everyone);
    let host = |i: u32| {
        placed
            .iter()
            .find_map(|m| m.iter().find(|(_, a)| a.replicas.contains(&i)))
            .map_or("NA", |(node, _)| node.as_str())
    };
    let hosts: Vec<&str> = all.iter().map(|&i| host(i)).collect();
    out.insert("all_hosts".into(), hosts.join(" "));
    out
}

/// With `notify` set on every assignment of the map.
fn with_round(mut m: PerNode, r: &Notification) -> PerNode {
    for a in m.values_mut() {
        a.notify = Some(Box::new(r.clone()));
    }
    m
}

/// What to write for a bundle with notifications (see the module's description), and when
/// to come back if a round is waiting for its targets (its deadline).
pub fn gate(
    b: &Bundle,
    desired: PerNode,
    current: PerNode,
    view: &View,
    now: u64,
) -> (PerNode, Option<u64>) {
    let online: BTreeSet<&str> = view.online();
    let out = gate_at(b, desired, current, view, &online, now);
    let waiting = round_of(&out)
        .filter(|r| r.at > 0 && !ran(b, r, &active(b, &out, view, &online), view, now))
        .map(|r| r.at + DEADLINE);
    (out, waiting)
}

/// The round the assignments carry (the newest, should they differ).
fn round_of(m: &PerNode) -> Option<Notification> {
    m.values()
        .filter_map(|a| a.notify.as_deref())
        .max_by_key(|n| n.id)
        .cloned()
}

fn gate_at(
    b: &Bundle,
    desired: PerNode,
    current: PerNode,
    view: &View,
    online: &BTreeSet<&str>,
    now: u64,
) -> PerNode {
    let round = round_of(&current);
    let now_active = active(b, &current, view, online);
    if let Some(r) = round.as_ref().filter(|r| r.kind == NotifyKind::Pre) {
        if !ran(b, r, &now_active, view, now) {
            return current;
        }
        let applied = with_round(apply(&current, &desired, r.operation, &r.acts_on), r);
        if applied != current {
            return applied;
        }
        if !done(b, r, view, online) {
            return current;
        }
        let post = Notification {
            id: r.id + 1,
            kind: NotifyKind::Post,
            at: now,
            targets: now_active.into_iter().collect(),
            ..r.clone()
        };
        return with_round(current, &post);
    }
    if let Some(r) = &round
        && !ran(b, r, &now_active, view, now)
    {
        return current;
    }
    let changes = changes(&current, &desired);
    let Some(op) = NotifyOp::ALL.into_iter().find(|op| !changes[op].is_empty()) else {
        return match &round {
            Some(r) => with_round(desired, r),
            None => desired,
        };
    };
    let promoted: BTreeSet<u32> = current.values().flat_map(|a| a.promoted.clone()).collect();
    let pre = Notification {
        id: round.as_ref().map_or(1, |r| r.id + 1),
        kind: NotifyKind::Pre,
        operation: op,
        targets: now_active.iter().copied().collect(),
        vars: vars(b, &now_active, &promoted, &changes, [&desired, &current]),
        acts_on: changes[&op].clone(),
        at: now,
    };
    if pre.targets.is_empty() {
        // Nobody to tell: the operation goes ahead in this pass.
        return with_round(apply(&current, &desired, op, &pre.acts_on), &pre);
    }
    with_round(current, &pre)
}
