//! "What must change on this host": a pure function of the desired replicas, the containers
//! the engine has, and the restart holds, returning the actions to take. The agent's loop
//! reads, calls this, and executes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::engine::Observed;
use crate::model::container::{DesiredContainer, LABEL_BUNDLE, LABEL_HASH, LABEL_REPLICA};

pub use crate::model::ReplicaKey;

/// One step for the agent to take, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop and remove a container this node owns but must not run as it is: unassigned,
    /// outdated, or a duplicate. The stop timeout is the spec's, or (None) the one the
    /// container was created with.
    Remove {
        id: String,
        name: String,
        /// The replica it was (from its labels), for the event.
        replica: Option<ReplicaKey>,
        stop_timeout: Option<Duration>,
        why: &'static str,
    },
    /// Create and start a replica's container.
    Create(ReplicaKey),
    /// Start a replica's existing, stopped container (a restart after it died).
    Start { key: ReplicaKey, id: String },
}

/// The actions, and when to look again (a restart hold that has not run out yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Option<Instant>,
}

/// The replica an owned container belongs to, read from its labels.
pub fn key_of(o: &Observed) -> Option<ReplicaKey> {
    Some(ReplicaKey {
        bundle: o.labels.get(LABEL_BUNDLE)?.clone(),
        index: o.labels.get(LABEL_REPLICA)?.parse().ok()?,
    })
}

/// Decides. `desired` holds each assigned replica's container, or why it cannot run (then
/// nothing of it may run). `holds` delays restarts (backoff) until the given instant.
pub fn plan(
    desired: &BTreeMap<ReplicaKey, Result<DesiredContainer, crate::node::core::Unrunnable>>,
    observed: &[Observed],
    holds: &BTreeMap<ReplicaKey, Instant>,
    now: Instant,
) -> Plan {
    let mut p = Plan::default();
    let mut covered: BTreeSet<&ReplicaKey> = BTreeSet::new();
    // Keep at most one conforming container per replica, preferring a running one.
    let mut ordered: Vec<&Observed> = observed.iter().collect();
    ordered.sort_by_key(|o| !o.running);
    for o in ordered {
        let key = key_of(o);
        let want = key.as_ref().and_then(|k| desired.get_key_value(k));
        let remove = |why, stop: Option<i64>| Action::Remove {
            id: o.id.clone(),
            name: o.name.clone(),
            replica: key.clone(),
            stop_timeout: stop.map(|s| Duration::from_secs(s.max(0) as u64)),
            why,
        };
        match want {
            None => p.actions.push(remove("not assigned to this node", None)),
            // A spec that cannot run (unusable, or its files cannot be prepared safely)
            // starts nothing, and leaves a container it had as it is: an unusable value is
            // never taken as a removal.
            Some((k, Err(_))) => {
                covered.insert(k);
            }
            Some((k, Ok(d))) => {
                if o.labels.get(LABEL_HASH) != Some(&d.hash()) {
                    p.actions
                        .push(remove("its spec changed", Some(d.stop_timeout_secs)));
                } else if covered.contains(k) {
                    p.actions.push(remove(
                        "a duplicate of the replica",
                        Some(d.stop_timeout_secs),
                    ));
                } else {
                    covered.insert(k);
                    if !o.running {
                        match holds.get(k) {
                            Some(t) if *t > now => {
                                p.wake_at = Some(p.wake_at.map_or(*t, |w| w.min(*t)))
                            }
                            _ => p.actions.push(Action::Start {
                                key: k.clone(),
                                id: o.id.clone(),
                            }),
                        }
                    }
                }
            }
        }
    }
    for (k, d) in desired {
        if d.is_err() || covered.contains(k) {
            continue;
        }
        match holds.get(k) {
            Some(t) if *t > now => p.wake_at = Some(p.wake_at.map_or(*t, |w| w.min(*t))),
            _ => p.actions.push(Action::Create(k.clone())),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::container::{LABEL_BUNDLE, desired as desired_of};
    use crate::model::fixtures::seed;
    use crate::node::core::Unrunnable;

    fn key(i: u32) -> ReplicaKey {
        ReplicaKey {
            bundle: "httpd-bundle".into(),
            index: i,
        }
    }

    fn want(n: u32) -> BTreeMap<ReplicaKey, Result<DesiredContainer, Unrunnable>> {
        let b = seed();
        (0..n)
            .map(|i| {
                (
                    key(i),
                    Ok(desired_of(&b, i, Path::new("/s"), None).unwrap()),
                )
            })
            .collect()
    }

    fn running(d: &DesiredContainer, id: &str, up: bool) -> Observed {
        Observed {
            id: id.into(),
            name: d.name.clone(),
            labels: d.labels("n1"),
            running: up,
        }
    }

    #[test]
    fn empty_host_creates_every_replica() {
        let p = plan(&want(3), &[], &BTreeMap::new(), Instant::now());
        assert_eq!(
            p.actions,
            vec![
                Action::Create(key(0)),
                Action::Create(key(1)),
                Action::Create(key(2))
            ]
        );
    }

    #[test]
    fn conforming_running_containers_are_adopted_untouched() {
        let w = want(2);
        let obs: Vec<_> = (0..2)
            .map(|i| running(w[&key(i)].as_ref().unwrap(), &format!("c{i}"), true))
            .collect();
        assert_eq!(
            plan(&w, &obs, &BTreeMap::new(), Instant::now()),
            Plan::default()
        );
    }

    #[test]
    fn changed_spec_replaces_and_unassigned_is_removed() {
        let w = want(1);
        let mut old = running(w[&key(0)].as_ref().unwrap(), "old", true);
        old.labels.insert(LABEL_HASH.into(), "stale".into());
        let mut gone = running(w[&key(0)].as_ref().unwrap(), "gone", true);
        gone.labels.insert(LABEL_REPLICA.into(), "7".into());
        let p = plan(&w, &[old, gone], &BTreeMap::new(), Instant::now());
        assert!(
            matches!(&p.actions[0], Action::Remove { id, why: "its spec changed", .. } if id == "old")
        );
        assert!(
            matches!(&p.actions[1], Action::Remove { id, why: "not assigned to this node", .. } if id == "gone")
        );
        assert_eq!(p.actions[2], Action::Create(key(0)));
    }

    #[test]
    fn dead_container_restarts_after_its_hold() {
        let w = want(1);
        let dead = running(w[&key(0)].as_ref().unwrap(), "c0", false);
        let now = Instant::now();
        let later = now + Duration::from_millis(400);
        let holds = BTreeMap::from([(key(0), later)]);
        let p = plan(&w, std::slice::from_ref(&dead), &holds, now);
        assert_eq!(
            p,
            Plan {
                actions: vec![],
                wake_at: Some(later)
            }
        );
        let p = plan(&w, &[dead], &holds, later);
        assert_eq!(
            p.actions,
            vec![Action::Start {
                key: key(0),
                id: "c0".into()
            }]
        );
    }

    #[test]
    fn unrunnable_spec_starts_nothing_and_leaves_its_container() {
        let mut w = want(1);
        let old = running(w[&key(0)].as_ref().unwrap(), "c0", true);
        w.insert(
            key(0),
            Err(Unrunnable::Refused("bogus: not permitted here".into())),
        );
        let p = plan(&w, &[old], &BTreeMap::new(), Instant::now());
        assert_eq!(p.actions, vec![]);
    }

    #[test]
    fn labels_of_another_bundle_are_not_this_replica() {
        let w = want(1);
        let mut other = running(w[&key(0)].as_ref().unwrap(), "x", true);
        other.labels.insert(LABEL_BUNDLE.into(), "other".into());
        let p = plan(&w, &[other], &BTreeMap::new(), Instant::now());
        assert_eq!(p.actions.len(), 2, "{p:?}");
    }
}
