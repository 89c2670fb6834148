//! The rollout through the whole reconcile, pass after pass, with the node agents played by
//! a few lines here (pure: no etcd, no engine): a replaced replica is down for a pass, then
//! running (or failed, for a broken image); an unchanged container takes a new generation in
//! place. Each test records how many replicas were ready after every pass.

use std::collections::BTreeMap;

use crate::controller::reconcile::reconcile;
use crate::controller::view::View;
use crate::model::cluster::{
    Assignment, Failure, Phase, PrimitiveState, ReplicaState, ReplicaStatus, Role,
};
use crate::model::rollout::{RolloutState, RolloutStatus};
use crate::model::{Bundle, BundleStatus};
use crate::store::watch::Cache;
use crate::store::{Keys, Kv, Write};

use super::same_container;

fn keys() -> Keys {
    Keys::new("/t/")
}

/// A cluster of `nodes` nodes, its etcd as a cache, and the agents' memory: what each
/// replica's container runs.
struct Sim {
    cache: Cache,
    rev: i64,
    now: u64,
    /// ReplicaKey → (the spec its container runs, its node).
    running: BTreeMap<u32, (Bundle, String)>,
    /// Ready replicas after each pass.
    ready_after: Vec<usize>,
    /// Images that cannot start.
    broken: Vec<String>,
}

fn bundle_json(image: &str, replicas: u32, meta: &[(&str, &str)]) -> serde_json::Value {
    let meta: Vec<serde_json::Value> = meta
        .iter()
        .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
        .collect();
    serde_json::json!({
        "apiVersion": crate::model::API_VERSION,
        "kind": crate::model::KIND,
        "metadata": {"name": "web"},
        "spec": {
            "docker": {"image": image, "replicas": replicas, "replicasPerHost": replicas},
            "metaAttributes": meta,
        },
    })
}

impl Sim {
    fn new(nodes: usize) -> Sim {
        let mut s = Sim {
            cache: Cache::default(),
            rev: 0,
            now: 1_000,
            running: BTreeMap::new(),
            ready_after: Vec::new(),
            broken: Vec::new(),
        };
        for n in 0..nodes {
            let info = crate::model::cluster::NodeInfo {
                name: format!("n{n}"),
                ..Default::default()
            };
            s.put(&keys().node(&info.name), serde_json::to_vec(&info).unwrap());
        }
        s
    }

    fn put(&mut self, key: &str, value: Vec<u8>) {
        self.rev += 1;
        let version = self.cache.items.get(key).map_or(1, |kv| kv.version + 1);
        let create = self
            .cache
            .items
            .get(key)
            .map_or(self.rev, |kv| kv.create_revision);
        self.cache.items.insert(
            key.to_string(),
            Kv {
                key: key.to_string(),
                value,
                create_revision: create,
                mod_revision: self.rev,
                version,
                lease: 0,
            },
        );
        self.cache.revision = self.rev;
    }

    /// The user applies the bundle (each apply is a new generation).
    fn apply(&mut self, b: serde_json::Value) {
        self.put(&keys().bundle("web"), serde_json::to_vec(&b).unwrap());
    }

    /// One controller pass, then every agent's.
    fn pass(&mut self) {
        let view = View::read(&keys(), &self.cache);
        let out = reconcile(&keys(), &view, &self.cache.items, self.now);
        for w in out.writes {
            match w {
                Write::Put { key, value, .. } => self.put(&key, value),
                Write::Delete { key, .. } => {
                    self.cache.items.remove(&key);
                }
                Write::DeletePrefix { prefix } => {
                    self.cache.items.retain(|k, _| !k.starts_with(&prefix))
                }
            }
        }
        self.agents();
        self.now += 1;
        let ready = self
            .statuses()
            .values()
            .filter(|s| s.state == ReplicaState::Running)
            .count();
        self.ready_after.push(ready);
    }

    fn assignments(&self) -> Vec<(String, Assignment)> {
        let prefix = format!("{}assignments/", keys().root());
        self.cache
            .items
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, kv)| {
                let node = k[prefix.len()..].split('/').next().unwrap().to_string();
                (node, serde_json::from_slice(&kv.value).unwrap())
            })
            .collect()
    }

    fn statuses(&self) -> BTreeMap<u32, ReplicaStatus> {
        let prefix = keys().replicas("web");
        self.cache
            .items
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, kv)| {
                let st: ReplicaStatus = serde_json::from_slice(&kv.value).unwrap();
                (st.index, st)
            })
            .collect()
    }

    /// What the agents do with their assignments: a container whose spec changed is
    /// replaced (down this pass), one being started runs (or fails) the next.
    fn agents(&mut self) {
        let statuses = self.statuses();
        for (node, a) in self.assignments() {
            for &i in &a.replicas {
                let spec = a.spec_of(i).clone();
                let generation = spec.metadata.generation.unwrap_or(0);
                let old = statuses.get(&i).filter(|s| s.node == node);
                let same = self
                    .running
                    .get(&i)
                    .is_some_and(|(r, n)| *n == node && same_container(r, &spec, i));
                let state = match old {
                    Some(s) if same && s.state == ReplicaState::Starting => {
                        if self.broken.contains(&spec.spec.container().1.image) {
                            ReplicaState::Failed
                        } else {
                            ReplicaState::Running
                        }
                    }
                    Some(s) if same => s.state,
                    _ => ReplicaState::Starting,
                };
                let promoted = a.promoted.contains(&i);
                let st = ReplicaStatus {
                    bundle: "web".into(),
                    index: i,
                    node: node.clone(),
                    state,
                    generation,
                    last_failure: (state == ReplicaState::Failed).then(|| Failure {
                        reason: "No such image".into(),
                        time: self.now,
                    }),
                    primitive: (spec.spec.promoted_max() > 0).then(|| PrimitiveState {
                        state: Phase::Started,
                        role: Some(if promoted {
                            Role::Promoted
                        } else {
                            Role::Unpromoted
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                self.running.insert(i, (spec, node.clone()));
                if old != Some(&st) {
                    self.put(&keys().replica("web", i), serde_json::to_vec(&st).unwrap());
                }
            }
        }
    }

    /// Passes until the rollout settles (at most `max`).
    fn settle(&mut self, max: usize) {
        for _ in 0..max {
            let before = self.rev;
            self.pass();
            if self.rev == before {
                return;
            }
        }
    }

    fn rollout(&self) -> RolloutStatus {
        let kv = &self.cache.items[&keys().bundle_status("web")];
        let st: BundleStatus = serde_json::from_slice(&kv.value).unwrap();
        st.rollout.expect("a rollout status")
    }

    /// The image each replica's container runs.
    fn images(&self) -> Vec<String> {
        self.running
            .values()
            .map(|(b, _)| b.spec.container().1.image.clone())
            .collect()
    }
}

#[test]
fn a_new_image_replaces_one_replica_at_a_time() {
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &[]));
    s.settle(10);
    assert_eq!(s.rollout().state, RolloutState::Complete);
    s.ready_after.clear();
    s.apply(bundle_json("img:2", 3, &[]));
    s.settle(30);
    assert_eq!(s.images(), vec!["img:2"; 3]);
    assert_eq!(s.rollout().state, RolloutState::Complete);
    assert_eq!(s.rollout().updated, 3);
    assert!(
        s.ready_after.iter().all(|r| *r >= 2),
        "never fewer than replicas - maxUnavailable ready: {:?}",
        s.ready_after
    );
    assert!(s.ready_after.contains(&2), "replicas were replaced");
}

#[test]
fn the_highest_ordinal_goes_first() {
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &[]));
    s.settle(10);
    s.apply(bundle_json("img:2", 3, &[]));
    s.pass();
    assert_eq!(s.images(), vec!["img:1", "img:1", "img:2"]);
    assert_eq!(s.rollout().step, "replacing web-2");
    assert_eq!(s.rollout().state, RolloutState::Progressing);
}

#[test]
fn max_unavailable_replaces_that_many_at_once() {
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 4, &[("berth-max-unavailable", "2")]));
    s.settle(10);
    s.ready_after.clear();
    s.apply(bundle_json("img:2", 4, &[("berth-max-unavailable", "2")]));
    s.pass();
    assert_eq!(s.images(), vec!["img:1", "img:1", "img:2", "img:2"]);
    s.settle(30);
    assert_eq!(s.images(), vec!["img:2"; 4]);
    assert_eq!(
        *s.ready_after.iter().min().unwrap(),
        2,
        "{:?}",
        s.ready_after
    );
}

#[test]
fn a_replica_that_cannot_be_placed_uses_up_the_budget() {
    // Two replicas, one per node, one node: the second is pending, so one is unavailable
    // already and replacing the running one would leave none.
    let mut s = Sim::new(1);
    let mut b = bundle_json("img:1", 2, &[]);
    b["spec"]["docker"]["replicasPerHost"] = serde_json::json!(1);
    s.apply(b.clone());
    s.settle(10);
    b["spec"]["docker"]["image"] = serde_json::json!("img:2");
    s.apply(b);
    s.settle(10);
    assert_eq!(s.images(), vec!["img:1"]);
    let r = s.rollout();
    assert_eq!(
        (r.state, r.unavailable, r.updated),
        (RolloutState::Progressing, 1, 0)
    );
}

#[test]
fn a_partition_keeps_the_lower_ordinals_on_the_old_spec() {
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &[]));
    s.settle(10);
    s.apply(bundle_json("img:2", 3, &[("berth-partition", "2")]));
    s.settle(30);
    assert_eq!(s.images(), vec!["img:1", "img:1", "img:2"]);
    let r = s.rollout();
    assert_eq!(r.state, RolloutState::Complete, "{r:?}");
    assert_eq!((r.updated, r.partition), (1, 2));
    assert_eq!(r.old_generations, vec![1]);
}

#[test]
fn an_in_place_change_replaces_nothing() {
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &[]));
    s.settle(10);
    s.ready_after.clear();
    // resource-stickiness does not shape the container.
    s.apply(bundle_json("img:1", 3, &[("resource-stickiness", "100")]));
    s.settle(10);
    assert!(s.ready_after.iter().all(|r| *r == 3), "{:?}", s.ready_after);
    assert_eq!(s.rollout().state, RolloutState::Complete);
    assert_eq!(s.rollout().generation, 2);
}

#[test]
fn a_broken_image_pauses_the_rollout_and_leaves_the_rest_running() {
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &[]));
    s.settle(10);
    s.broken.push("img:nope".into());
    s.apply(bundle_json("img:nope", 3, &[]));
    s.settle(30);
    assert_eq!(s.images(), vec!["img:1", "img:1", "img:nope"]);
    let r = s.rollout();
    assert_eq!(r.state, RolloutState::Failed, "{r:?}");
    assert_eq!(r.reason, "web-2: No such image");
    // Undo: the old spec applied again replaces the failed replica, in place elsewhere.
    s.ready_after.clear();
    s.apply(bundle_json("img:1", 3, &[]));
    s.settle(30);
    assert_eq!(s.images(), vec!["img:1"; 3]);
    assert_eq!(s.rollout().state, RolloutState::Complete);
    assert!(s.ready_after.iter().all(|r| *r >= 2), "{:?}", s.ready_after);
}

#[test]
fn failure_action_rollback_sends_the_replaced_replicas_back() {
    let meta = [("berth-failure-action", "rollback")];
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &meta));
    s.settle(10);
    s.broken.push("img:nope".into());
    s.apply(bundle_json("img:nope", 3, &meta));
    s.settle(40);
    assert_eq!(s.images(), vec!["img:1"; 3]);
    let r = s.rollout();
    assert_eq!(r.state, RolloutState::RolledBack, "{r:?}");
    assert_eq!(r.rolled_back_to, Some(1));
    assert_eq!(r.reason, "web-2: No such image");
    // And it stays there: the failed generation is not tried again.
    s.settle(10);
    assert_eq!(s.images(), vec!["img:1"; 3]);
}

#[test]
fn a_paused_rollout_replaces_nothing_more_until_resumed() {
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &[]));
    s.settle(10);
    let pause = serde_json::to_vec(&crate::model::rollout::RolloutControl {
        paused: true,
        since: 1,
    })
    .unwrap();
    s.put(&keys().rollout("web"), pause);
    s.apply(bundle_json("img:2", 3, &[]));
    s.settle(10);
    assert_eq!(s.images(), vec!["img:1"; 3]);
    assert_eq!(s.rollout().state, RolloutState::Paused);
    s.cache.items.remove(&keys().rollout("web"));
    s.settle(30);
    assert_eq!(s.images(), vec!["img:2"; 3]);
}

#[test]
fn min_ready_waits_before_the_next_replacement() {
    let meta = [("berth-min-ready", "5s")];
    let mut s = Sim::new(1);
    s.apply(bundle_json("img:1", 3, &meta));
    s.settle(10);
    // The agents here do not record a start time; give the statuses one.
    s.apply(bundle_json("img:2", 3, &meta));
    s.pass();
    s.pass();
    let mut st = s.statuses()[&2].clone();
    assert_eq!(st.state, ReplicaState::Running);
    st.started_at = s.now;
    s.put(&keys().replica("web", 2), serde_json::to_vec(&st).unwrap());
    s.pass();
    assert_eq!(s.images(), vec!["img:1", "img:1", "img:2"], "waits 5 s");
    s.now += 5;
    s.pass();
    assert_eq!(s.images(), vec!["img:1", "img:2", "img:2"]);
}

#[test]
fn the_promoted_replica_is_replaced_last_after_its_promotion_moved() {
    let mut s = Sim::new(1);
    let mut b = bundle_json("img:1", 3, &[]);
    b["spec"]["docker"]["promotedMax"] = serde_json::json!(1);
    s.apply(b.clone());
    s.settle(10);
    let promoted_before: Vec<u32> = s
        .assignments()
        .iter()
        .flat_map(|(_, a)| a.promoted.clone())
        .collect();
    assert_eq!(promoted_before, vec![0]);
    b["spec"]["docker"]["image"] = serde_json::json!("img:2");
    s.apply(b);
    let mut replaced = Vec::new();
    for _ in 0..40 {
        let before: Vec<String> = s.images();
        s.pass();
        for (i, (was, now)) in before.iter().zip(s.images()).enumerate() {
            if *was != now {
                replaced.push(i);
            }
        }
        // Never two promoted at once.
        let promoted = s
            .statuses()
            .values()
            .filter(|st| {
                st.primitive
                    .as_ref()
                    .is_some_and(|p| p.role == Some(Role::Promoted))
            })
            .count();
        assert!(promoted <= 1);
    }
    assert_eq!(replaced, vec![2, 1, 0], "the promoted replica (0) last");
    assert_eq!(s.images(), vec!["img:2"; 3]);
    let promoted_after: Vec<u32> = s
        .assignments()
        .iter()
        .flat_map(|(_, a)| a.promoted.clone())
        .collect();
    assert_eq!(promoted_after.len(), 1);
    assert_eq!(s.rollout().state, RolloutState::Complete);
}
