//! Table tests of the controller's reconcile: each row one situation, named for what it
//! proves. The cluster is a cache of stored values, as the watch would hold it.

use super::*;
use crate::model::ReplicaKey;
use crate::model::cluster::{Failure, NodeInfo, ReplicaStatus};
use crate::store::watch::Cache;

fn keys() -> Keys {
    Keys::new("/t/")
}

/// A cluster as stored: (key, JSON value).
struct Cluster(Vec<(String, serde_json::Value)>);

impl Cluster {
    fn new() -> Cluster {
        Cluster(Vec::new())
    }

    fn bundle(mut self, name: &str, meta: serde_json::Value) -> Cluster {
        self.0.push((
            keys().bundle(name),
            serde_json::json!({
                "apiVersion": crate::model::API_VERSION,
                "kind": crate::model::KIND,
                "metadata": {"name": name},
                "spec": {"docker": {"image": "busybox", "replicas": 1}, "metaAttributes": meta},
            }),
        ));
        self
    }

    fn raw(mut self, key: String, value: serde_json::Value) -> Cluster {
        self.0.push((key, value));
        self
    }

    fn node(self, name: &str) -> Cluster {
        let info = NodeInfo {
            name: name.into(),
            ..Default::default()
        };
        self.raw(keys().node(name), serde_json::to_value(info).unwrap())
    }

    fn replica(self, bundle: &str, node: &str, fails: u32, at: u64) -> Cluster {
        let st = ReplicaStatus {
            bundle: bundle.into(),
            index: 0,
            node: node.into(),
            fail_counts: BTreeMap::from([(node.to_string(), fails)]),
            last_failure: (fails > 0).then(|| Failure {
                reason: "died".into(),
                time: at,
            }),
            ..Default::default()
        };
        self.raw(keys().replica(bundle, 0), serde_json::to_value(st).unwrap())
    }

    fn cache(&self) -> Cache {
        let mut c = Cache::default();
        for (rev, (key, value)) in self.0.iter().enumerate() {
            let value = if value.is_string() {
                value.as_str().unwrap().as_bytes().to_vec()
            } else {
                serde_json::to_vec(value).unwrap()
            };
            c.items.insert(
                key.clone(),
                Kv::first_write(key.clone(), value, rev as i64 + 1),
            );
        }
        c
    }

    fn reconcile(&self, now: u64) -> (Cache, Outcome) {
        let cache = self.cache();
        let view = View::read(&keys(), &cache);
        let out = reconcile(&keys(), &view, &cache.items, now);
        (cache, out)
    }
}

fn puts(out: &Outcome) -> BTreeMap<String, serde_json::Value> {
    out.writes
        .iter()
        .filter_map(|w| match w {
            Write::Put { key, value, .. } => {
                Some((key.clone(), serde_json::from_slice(value).unwrap()))
            }
            _ => None,
        })
        .collect()
}

fn deletes(out: &Outcome) -> Vec<String> {
    out.writes
        .iter()
        .filter_map(|w| match w {
            Write::Delete { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// Applies an outcome's writes to a cache, as etcd would.
fn apply(cache: &mut Cache, out: &Outcome) {
    for w in &out.writes {
        match w {
            Write::Put { key, value, .. } => {
                let kv = Kv::first_write(key.clone(), value.clone(), 100);
                cache.items.insert(key.clone(), kv);
            }
            Write::Delete { key, .. } => {
                cache.items.remove(key);
            }
            Write::DeletePrefix { prefix } => cache.items.retain(|k, _| !k.starts_with(prefix)),
        }
    }
}

/// Nodes n1 and n2, bundle web (1 replica) placed, the pass's writes stored.
fn web_placed_on_one_of_two() -> Cache {
    let cluster = Cluster::new()
        .node("n1")
        .node("n2")
        .bundle("web", serde_json::json!([]));
    let (mut cache, out) = cluster.reconcile(1000);
    apply(&mut cache, &out);
    cache
}

#[test]
fn a_placed_replica_gets_its_assignment_and_the_bundle_its_status() {
    let (_, out) = Cluster::new()
        .node("n1")
        .bundle("web", serde_json::json!([]))
        .reconcile(1000);
    let p = puts(&out);
    let a = &p[&keys().assignment("n1", "web")];
    assert_eq!(a["replicas"], serde_json::json!([0]));
    assert_eq!(p[&keys().bundle_status("web")]["replicas"], 1);
    assert_eq!(out.requeue_at, None, "nothing is due without an event");
}

#[test]
fn a_second_pass_over_its_own_writes_writes_nothing() {
    let cluster = Cluster::new()
        .node("n1")
        .bundle("web", serde_json::json!([]));
    let (mut cache, out) = cluster.reconcile(1000);
    apply(&mut cache, &out);
    let view = View::read(&keys(), &cache);
    let again = reconcile(&keys(), &view, &cache.items, 1000);
    assert!(again.writes.is_empty(), "{:?}", again.writes);
}

#[test]
fn the_controller_writes_a_moving_bundles_status_one_pass_after_its_assignments() {
    let cluster = Cluster::new()
        .node("n1")
        .bundle("web", serde_json::json!([]));
    let mut cache = cluster.cache();
    let status = keys().bundle_status("web");
    let pass = |cache: &Cache, last: BTreeSet<String>| {
        let mut view = View::read(&keys(), cache);
        view.deferred = Some(last);
        reconcile(&keys(), &view, &cache.items, 1000)
    };
    // The pass that places: the assignment, not yet the status.
    let first = pass(&cache, BTreeSet::new());
    assert!(puts(&first).contains_key(&keys().assignment("n1", "web")));
    assert!(!puts(&first).contains_key(&status), "{:?}", first.writes);
    assert_eq!(first.deferred, BTreeSet::from(["web".to_string()]));
    apply(&mut cache, &first);
    // The next pass writes it, from what the agent reported by then (nothing yet: pending).
    let second = pass(&cache, first.deferred.clone());
    assert_eq!(
        puts(&second)[&status]["readyReplicas"],
        0,
        "{:?}",
        second.writes
    );
    assert!(second.deferred.is_empty());
    // Or, reported running by then, ready at once.
    let mut reported = cache.clone();
    let kv = running("web", 0, "n1", None);
    reported.items.insert(kv.key.clone(), kv);
    let ready = pass(&reported, first.deferred.clone());
    assert_eq!(
        puts(&ready)[&status]["readyReplicas"],
        1,
        "{:?}",
        ready.writes
    );
    // Held back once, a status is written even while its assignments change again.
    let moved = Cluster::new()
        .node("n2")
        .bundle("web", serde_json::json!([]))
        .cache();
    let out = pass(&moved, first.deferred);
    assert!(puts(&out).contains_key(&keys().assignment("n2", "web")));
    assert!(puts(&out).contains_key(&status), "{:?}", out.writes);
    assert!(out.deferred.is_empty());
    // A one-off pass (no deferral set) writes assignment and status at once.
    let (_, once) = cluster.reconcile(1000);
    assert!(puts(&once).contains_key(&status));
    assert!(once.deferred.is_empty());
}

#[test]
fn a_node_gone_loses_its_assignments_in_one_prefix_delete() {
    let cluster = Cluster::new()
        .node("n1")
        .node("n10")
        .bundle("web", serde_json::json!([]))
        .bundle("db", serde_json::json!([]))
        .bundle("app", serde_json::json!([]));
    let (mut cache, out) = cluster.reconcile(1000);
    apply(&mut cache, &out);
    // Everything goes to n10 in the end; n1 runs something now (3 bundles on 2 nodes).
    let on_n1: Vec<String> = View::read(&keys(), &cache)
        .assignments
        .keys()
        .filter(|(n, _)| n == "n1")
        .map(|(_, b)| b.clone())
        .collect();
    assert!(!on_n1.is_empty());
    cache.items.remove(&keys().node("n1"));
    let moved = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    let prefix = keys().assignments("n1");
    let gone: Vec<&Write> = moved
        .writes
        .iter()
        .filter(|w| w.key().starts_with(&prefix))
        .collect();
    assert_eq!(
        gone,
        [&Write::DeletePrefix {
            prefix: prefix.clone()
        }],
        "one operation for the node, whatever it ran"
    );
    apply(&mut cache, &moved);
    let view = View::read(&keys(), &cache);
    assert!(view.assignments.keys().all(|(n, _)| n == "n10"));
    assert_eq!(view.assignments.len(), 3, "n10's own are kept");
}

#[test]
fn the_controllers_slim_view_keeps_what_a_pass_reads_and_rewrites_nothing() {
    let mut cache = web_placed_on_one_of_two();
    let node = View::read(&keys(), &cache).current[&ReplicaKey::new("web", 0)].clone();
    // A replica status with all a node agent reports; the bundle status as written.
    let mut kv = running("web", 0, &node, None);
    let mut st: ReplicaStatus = serde_json::from_slice(&kv.value).unwrap();
    st.container_id = "f".repeat(64);
    st.container_name = "berth-web-0".into();
    kv.value = serde_json::to_vec(&st).unwrap();
    cache.items.insert(kv.key.clone(), kv);
    // What the CLI reads (a full view) has it all.
    let shown = View::read(&keys(), &cache);
    assert_eq!(
        shown.statuses[&ReplicaKey::new("web", 0)]
            .container_id
            .len(),
        64
    );
    let mut cache = tracking(&cache);
    let mut slim = crate::controller::Live::slim();
    let first = slim.update(&keys(), &mut cache);
    let out = reconcile(&keys(), first, &cache.items, 1000);
    assert!(
        !out.writes.is_empty(),
        "the replica's report changes the status"
    );
    // Stored as etcd would: at a new revision.
    cache.wrote(out.writes, 400);
    // Read back slim: the decisions' fields are there, the rest is not kept.
    let view = slim.update(&keys(), &mut cache);
    let kept = &view.statuses[&ReplicaKey::new("web", 0)];
    assert_eq!((kept.node.as_str(), kept.state), (node.as_str(), st.state));
    assert!(kept.container_id.is_empty() && kept.container_name.is_empty());
    let status = &view.bundle_statuses["web"];
    assert!(status.conditions.is_empty(), "conditions are not kept");
    assert_eq!(status.replica_rows.len(), 1);
    assert!(status.rollout.is_some(), "the rollout is kept");
    // A pass over that slim view writes nothing: statuses are told apart by their bytes.
    let again = reconcile(&keys(), view, &cache.items, 1000);
    assert!(again.writes.is_empty(), "{:?}", again.writes);
}

/// A cache holding what `from` holds, as listed at its revision, that keeps its changes
/// (the controller's).
fn tracking(from: &Cache) -> Cache {
    let mut c = Cache::tracking();
    c.apply(&crate::store::watch::WatchEvent::Listed {
        revision: from
            .items
            .values()
            .map(|kv| kv.mod_revision)
            .max()
            .unwrap_or(0),
        items: from.items.values().cloned().collect(),
    });
    c
}

#[test]
fn a_live_view_that_dropped_the_bytes_it_decoded_reads_the_same() {
    use crate::store::watch::WatchEvent;
    let mut cache = tracking(&web_placed_on_one_of_two());
    let mut live = crate::controller::Live::slim();
    let first = live.update(&keys(), &mut cache);
    let (first_assignments, first_statuses) =
        (first.assignments.clone(), first.bundle_statuses.clone());
    let node = first.current[&ReplicaKey::new("web", 0)].clone();
    let placed = (node.clone(), "web".to_string());
    let assignment = keys().assignment(&node, "web");
    let (status, spec) = (keys().bundle_status("web"), keys().bundle("web"));
    assert!(
        cache.items[&assignment].value.is_empty(),
        "assignment bytes kept"
    );
    assert!(cache.items[&status].value.is_empty(), "status bytes kept");
    assert!(
        !cache.items[&spec].value.is_empty(),
        "a spec keeps its bytes"
    );
    // The watch brings back a key as it holds it (same revision): nothing to read again.
    let echo = Kv::first_write(assignment.clone(), b"{}".to_vec(), 100);
    cache.apply(&WatchEvent::Put(echo));
    assert!(cache.items[&assignment].value.is_empty(), "echo applied");
    // The next pass sees the same, and so writes nothing.
    let view = live.update(&keys(), &mut cache);
    assert_eq!(view.assignments, first_assignments);
    assert_eq!(view.bundle_statuses, first_statuses);
    let again = reconcile(&keys(), view, &cache.items, 1000);
    assert!(again.writes.is_empty(), "{:?}", again.writes);
    // A key gone from the cache is gone from the view too.
    cache.apply(&WatchEvent::Deleted {
        key: assignment.clone(),
        revision: 300,
    });
    let view = live.update(&keys(), &mut cache);
    assert!(view.assignments.is_empty(), "{:?}", view.assignments);
    assert!(view.current.is_empty(), "{:?}", view.current);
    // A key written anew is decoded anew.
    let mut written = first_assignments[&placed].as_ref().clone();
    written.cleanup = 7;
    cache.apply(&WatchEvent::Put(Kv::first_write(
        assignment.clone(),
        serde_json::to_vec(&written).unwrap(),
        400,
    )));
    let view = live.update(&keys(), &mut cache);
    assert_eq!(view.assignments[&placed].cleanup, 7);
    assert_eq!(view.current[&ReplicaKey::new("web", 0)], node);
}

#[test]
fn outcomes() {
    let unmanaged = serde_json::json!([{"name": "is-managed", "value": "false"}]);
    let stopped = serde_json::json!([{"name": "target-role", "value": "Stopped"}]);
    let assigned = |node: &str| {
        serde_json::json!({
            "bundle": {
                "apiVersion": crate::model::API_VERSION, "kind": crate::model::KIND,
                "metadata": {"name": "web"},
                "spec": {"docker": {"image": "busybox", "replicas": 1}},
            },
            "replicas": [0],
        })
        .as_object()
        .map(|o| {
            (
                keys().assignment(node, "web"),
                serde_json::Value::Object(o.clone()),
            )
        })
        .unwrap()
    };
    let (k1, a1) = assigned("n1");
    // (name, cluster, key expected written, every key expected deleted)
    type Row = (&'static str, Cluster, Option<String>, Vec<String>);
    let rows: Vec<Row> = vec![
        (
            "a stopped bundle's assignment is deleted",
            Cluster::new()
                .node("n1")
                .bundle("web", stopped)
                .raw(k1.clone(), a1.clone()),
            None,
            vec![k1.clone()],
        ),
        (
            "an unmanaged bundle keeps its assignment, marked unmanaged",
            Cluster::new()
                .node("n1")
                .bundle("web", unmanaged)
                .raw(k1.clone(), a1.clone()),
            Some(k1.clone()),
            vec![],
        ),
        (
            "a deleted bundle's assignment goes, and its replica key on an offline node",
            Cluster::new()
                .node("n1")
                .raw(k1.clone(), a1.clone())
                .replica("web", "gone", 0, 0),
            None,
            vec![k1.clone(), keys().replica("web", 0)],
        ),
        (
            "an unreadable bundle is not a delete: its last good value stays placed",
            Cluster::new()
                .node("n1")
                .raw(keys().bundle("web"), serde_json::json!("{not json"))
                .raw(k1.clone(), a1.clone()),
            Some(keys().bundle_status("web")),
            vec![],
        ),
    ];
    for (name, cluster, written, deleted) in rows {
        let (_, out) = cluster.reconcile(1000);
        let (p, d) = (puts(&out), deletes(&out));
        if let Some(k) = &written {
            assert!(p.contains_key(k), "{name}: {k} not written: {p:?}");
        }
        assert_eq!(d, deleted, "{name}");
        if name.starts_with("an unmanaged") {
            assert_eq!(p[&k1]["managed"], false, "{name}");
        }
        if name.starts_with("an unreadable") {
            let st = &p[&keys().bundle_status("web")];
            assert!(st["invalid"].is_string(), "{name}: {st}");
        }
    }
}

#[test]
fn a_ban_that_runs_out_is_when_to_come_back() {
    let meta = serde_json::json!([
        {"name": "migration-threshold", "value": "1"},
        {"name": "failure-timeout", "value": "60s"},
    ]);
    // (name, seconds since the failure, come back at)
    let rows = [
        ("banned: back when the ban ends", 10, Some(1060)),
        ("the ban has run out: nothing due", 61, None),
    ];
    for (name, since, expect) in rows {
        let now = 1000 + since;
        let (_, out) = Cluster::new()
            .node("n1")
            .node("n2")
            .bundle("web", meta.clone())
            .replica("web", "n1", 1, 1000)
            .reconcile(now);
        assert_eq!(out.requeue_at, expect, "{name}");
    }
    let forever = serde_json::json!([{"name": "migration-threshold", "value": "1"}]);
    let (_, out) = Cluster::new()
        .node("n1")
        .bundle("web", forever)
        .replica("web", "n1", 1, 1000)
        .reconcile(2000);
    assert_eq!(
        out.requeue_at, None,
        "a ban without failure-timeout never runs out"
    );
}

fn reasons(out: &Outcome) -> Vec<(&'static str, String, String)> {
    out.events
        .iter()
        .map(|(_, r, o, m)| (*r, o.clone(), m.clone()))
        .collect()
}

#[test]
fn events_say_what_a_pass_changed_and_a_pass_without_changes_says_nothing() {
    let cluster = Cluster::new()
        .node("n1")
        .bundle("web", serde_json::json!([]));
    let (mut cache, out) = cluster.reconcile(1000);
    assert_eq!(
        reasons(&out),
        [("Scheduled", "replica/web-0".into(), "assigned to n1".into())]
    );
    apply(&mut cache, &out);
    let again = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(again.events.is_empty(), "{:?}", again.events);

    // n1 goes, n2 comes: the replica moves, and the lost node is named once.
    cache.items.remove(&keys().node("n1"));
    let info = NodeInfo {
        name: "n2".into(),
        ..Default::default()
    };
    let kv = Kv::first_write(keys().node("n2"), serde_json::to_vec(&info).unwrap(), 101);
    cache.items.insert(kv.key.clone(), kv);
    let moved = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert_eq!(
        reasons(&moved),
        [
            (
                "Rescheduled",
                "replica/web-0".into(),
                "moved from n1 (offline) to n2".into()
            ),
            (
                "NodeLost",
                "node/n1".into(),
                "offline: 1 replica(s) moved elsewhere".into()
            ),
        ]
    );

    // No node at all: the replica cannot be placed, said once.
    cache.items.remove(&keys().node("n2"));
    apply(&mut cache, &moved);
    let pending = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    let r = reasons(&pending);
    assert!(
        r.iter()
            .any(|(reason, o, _)| *reason == "FailedScheduling" && o == "replica/web-0"),
        "{r:?}"
    );
    apply(&mut cache, &pending);
    let again = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(
        !reasons(&again)
            .iter()
            .any(|(r, _, _)| *r == "FailedScheduling"),
        "{:?}",
        again.events
    );
}

#[test]
fn ordered_instances_start_one_after_another() {
    let bundle = serde_json::json!({
        "apiVersion": crate::model::API_VERSION,
        "kind": crate::model::KIND,
        "metadata": {"name": "db"},
        "spec": {
            "docker": {"image": "busybox", "replicas": 3, "replicasPerHost": 3},
            "metaAttributes": [{"name": "ordered", "value": "true"}],
        },
    });
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .raw(keys().bundle("db"), bundle)
        .reconcile(1000);
    let assigned = |out: &Outcome| puts(out)[&keys().assignment("n1", "db")]["replicas"].clone();
    assert_eq!(assigned(&out), serde_json::json!([0]));
    let rows = &puts(&out)[&keys().bundle_status("db")]["replicaRows"];
    assert_eq!(rows[1]["reason"], "waiting for db-0 to start (ordered)");
    assert!(
        !out.events
            .iter()
            .any(|(_, r, _, _)| *r == "FailedScheduling"),
        "waiting is not a scheduling failure: {:?}",
        out.events
    );
    apply(&mut cache, &out);
    // Still starting: nothing more.
    let again = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(
        !puts(&again).contains_key(&keys().assignment("n1", "db")),
        "{:?}",
        puts(&again)
    );
    // Replica 0 runs: replica 1 is assigned, 2 waits for it.
    let running = |i: u32| {
        let st = ReplicaStatus {
            bundle: "db".into(),
            index: i,
            node: "n1".into(),
            state: crate::model::cluster::ReplicaState::Running,
            generation: 1,
            ..Default::default()
        };
        Kv::first_write(
            keys().replica("db", i),
            serde_json::to_vec(&st).unwrap(),
            200 + i as i64,
        )
    };
    let kv = running(0);
    cache.items.insert(kv.key.clone(), kv);
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert_eq!(assigned(&next), serde_json::json!([0, 1]));
    let rows = &puts(&next)[&keys().bundle_status("db")]["replicaRows"];
    assert_eq!(rows[2]["reason"], "waiting for db-1 to start (ordered)");
    apply(&mut cache, &next);
    let kv = running(1);
    cache.items.insert(kv.key.clone(), kv);
    let last = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert_eq!(assigned(&last), serde_json::json!([0, 1, 2]));
}

#[test]
fn a_node_in_standby_runs_nothing_and_its_replicas_move() {
    let cluster = Cluster::new()
        .node("n1")
        .bundle("web", serde_json::json!([]));
    let (mut cache, out) = cluster.reconcile(1000);
    apply(&mut cache, &out);
    let info = NodeInfo {
        name: "n2".into(),
        ..Default::default()
    };
    for (key, value, rev) in [
        (keys().node("n2"), serde_json::to_vec(&info).unwrap(), 101),
        (keys().standby("n1"), b"{}".to_vec(), 102),
    ] {
        let kv = Kv::first_write(key.clone(), value, rev);
        cache.items.insert(key, kv);
    }
    let moved = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    let p = puts(&moved);
    assert_eq!(
        p[&keys().assignment("n2", "web")]["replicas"],
        serde_json::json!([0])
    );
    assert!(deletes(&moved).contains(&keys().assignment("n1", "web")));
    // With every node in standby, nothing runs, and the reason says so.
    cache.items.remove(&keys().node("n2"));
    let none = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    let rows = &puts(&none)[&keys().bundle_status("web")]["replicaRows"];
    assert!(
        rows[0]["reason"].as_str().unwrap().contains("1 in standby"),
        "{rows}"
    );
}

#[test]
fn a_cleanup_lifts_bans_from_failures_before_it() {
    let meta = serde_json::json!([{"name": "migration-threshold", "value": "1"}]);
    let banned = Cluster::new()
        .node("n1")
        .bundle("web", meta.clone())
        .replica("web", "n1", 3, 500);
    let (_, out) = banned.reconcile(1000);
    let rows = &puts(&out)[&keys().bundle_status("web")]["replicaRows"];
    assert!(
        rows[0]["reason"]
            .as_str()
            .unwrap()
            .contains("over migration-threshold"),
        "{rows}"
    );
    let cleaned = Cluster::new()
        .node("n1")
        .bundle("web", meta.clone())
        .replica("web", "n1", 3, 500)
        .raw(keys().cleanup("web"), serde_json::json!({"at": 600}));
    let (_, out) = cleaned.reconcile(1000);
    let a = &puts(&out)[&keys().assignment("n1", "web")];
    assert_eq!(a["replicas"], serde_json::json!([0]));
    assert_eq!(a["cleanup"], 600, "the agents are told to forget too");
    // A failure after the cleanup still counts.
    let again = Cluster::new()
        .node("n1")
        .bundle("web", meta)
        .replica("web", "n1", 3, 700)
        .raw(keys().cleanup("web"), serde_json::json!({"at": 600}));
    let (_, out) = again.reconcile(1000);
    assert!(!puts(&out).contains_key(&keys().assignment("n1", "web")));
}

#[test]
fn a_ban_moves_replicas_off_a_node_until_cleared() {
    let mut cache = web_placed_on_one_of_two();
    let first = View::read(&keys(), &cache).current[&ReplicaKey::new("web", 0)].clone();
    let other = if first == "n1" { "n2" } else { "n1" };
    let bans = crate::model::cluster::Bans {
        nodes: vec![first.clone()],
        prefer: None,
    };
    let kv = Kv::first_write(keys().bans("web"), serde_json::to_vec(&bans).unwrap(), 300);
    cache.items.insert(kv.key.clone(), kv);
    let moved = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert_eq!(
        puts(&moved)[&keys().assignment(other, "web")]["replicas"],
        serde_json::json!([0])
    );
    assert!(deletes(&moved).contains(&keys().assignment(&first, "web")));
    // The bundle's own spec is left alone: the ban is the controller's, not written into it.
    assert!(!puts(&moved).contains_key(&keys().bundle("web")));
}

/// A bundle `name` of `replicas` (per host too) with extra spec fields.
fn spec(name: &str, replicas: u32, extra: serde_json::Value) -> (String, serde_json::Value) {
    let mut spec = serde_json::json!({
        "docker": {"image": "busybox", "replicas": replicas, "replicasPerHost": replicas},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    (
        keys().bundle(name),
        serde_json::json!({
            "apiVersion": crate::model::API_VERSION,
            "kind": crate::model::KIND,
            "metadata": {"name": name},
            "spec": spec,
        }),
    )
}

/// Replica `bundle-i` running on a node, reporting a role when given one.
fn running(bundle: &str, i: u32, node: &str, role: Option<&str>) -> Kv {
    let mut st = serde_json::to_value(ReplicaStatus {
        bundle: bundle.into(),
        index: i,
        node: node.into(),
        state: crate::model::cluster::ReplicaState::Running,
        generation: 1,
        ..Default::default()
    })
    .unwrap();
    if let Some(role) = role {
        st["primitive"] =
            serde_json::json!({"state": "started", "role": role, "restarts": 0, "last": []});
    }
    Kv::first_write(
        keys().replica(bundle, i),
        serde_json::to_vec(&st).unwrap(),
        300 + i as i64,
    )
}

/// The node (of a two-node cluster, n1 and n2) where `out` placed replica `i` of `bundle`.
fn placed_on(out: &Outcome, bundle: &str, i: u32) -> &'static str {
    if assigned(out, "n1", bundle).is_some_and(|r| r.as_array().unwrap().contains(&i.into())) {
        "n1"
    } else {
        "n2"
    }
}

fn put(cache: &mut Cache, kv: Kv) {
    cache.items.insert(kv.key.clone(), kv);
}

fn assigned(out: &Outcome, node: &str, bundle: &str) -> Option<serde_json::Value> {
    puts(out)
        .get(&keys().assignment(node, bundle))
        .map(|a| a["replicas"].clone())
}

#[test]
fn an_ordered_bundle_starts_after_the_first_and_stops_before_it() {
    let (k, v) = spec("db", 2, serde_json::json!({}));
    let (ak, av) = spec(
        "app",
        1,
        serde_json::json!({"orders": [{"id": "db-then-app", "first": "db"}]}),
    );
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .raw(k, v)
        .raw(ak, av)
        .reconcile(1000);
    assert_eq!(assigned(&out, "n1", "db"), Some(serde_json::json!([0, 1])));
    assert_eq!(assigned(&out, "n1", "app"), None);
    let rows = &puts(&out)[&keys().bundle_status("app")]["replicaRows"];
    assert_eq!(
        rows[0]["reason"],
        "waiting for bundle db to start (order db-then-app)"
    );
    assert!(
        !reasons(&out)
            .iter()
            .any(|(r, _, _)| *r == "FailedScheduling"),
        "{:?}",
        out.events
    );
    // The db's assignment names the app as what stops first.
    assert_eq!(
        puts(&out)[&keys().assignment("n1", "db")]["stopAfter"],
        serde_json::json!(["app"])
    );
    apply(&mut cache, &out);
    // One of two db replicas started: still waiting; both: the app is assigned.
    put(&mut cache, running("db", 0, "n1", None));
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert_eq!(assigned(&next, "n1", "app"), None);
    put(&mut cache, running("db", 1, "n1", None));
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert_eq!(assigned(&next, "n1", "app"), Some(serde_json::json!([0])));
    apply(&mut cache, &next);
    put(&mut cache, running("app", 0, "n1", None));

    // Both deleted at once: the app's assignment goes, the db's stays while the app's
    // replica is still there, then goes.
    cache.items.remove(&keys().bundle("db"));
    cache.items.remove(&keys().bundle("app"));
    let gone = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    let dels = deletes(&gone);
    assert!(dels.contains(&keys().assignment("n1", "app")), "{dels:?}");
    assert!(!dels.contains(&keys().assignment("n1", "db")), "{dels:?}");
    apply(&mut cache, &gone);
    let still = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(!deletes(&still).contains(&keys().assignment("n1", "db")));
    cache.items.remove(&keys().replica("app", 0));
    let last = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(deletes(&last).contains(&keys().assignment("n1", "db")));
}

#[test]
fn a_mandatory_order_stops_the_then_bundle_when_the_first_stops_and_an_optional_does_not() {
    for (kind, app_runs) in [("Mandatory", false), ("Optional", true)] {
        let (k, v) = spec(
            "db",
            1,
            serde_json::json!({"metaAttributes": [{"name": "target-role", "value": "Stopped"}]}),
        );
        let (ak, av) = spec(
            "app",
            1,
            serde_json::json!({"orders": [{"first": "db", "kind": kind}]}),
        );
        let (_, out) = Cluster::new()
            .node("n1")
            .raw(k, v)
            .raw(ak, av)
            .reconcile(1000);
        assert_eq!(
            assigned(&out, "n1", "app").is_some(),
            app_runs,
            "{kind}: {:?}",
            puts(&out)
        );
    }
}

/// Two bundles placed on nodes n1 and n2, the pass's writes applied.
fn on_two_nodes(
    (k, v): (String, serde_json::Value),
    (ak, av): (String, serde_json::Value),
) -> (Cache, Outcome) {
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .node("n2")
        .raw(k, v)
        .raw(ak, av)
        .reconcile(1000);
    apply(&mut cache, &out);
    (cache, out)
}

#[test]
fn an_order_after_a_promote_waits_for_a_promoted_replica_and_interleave_for_the_local_one() {
    let (k, v) = spec(
        "db",
        1,
        serde_json::json!({"docker": {"image": "busybox", "replicas": 2, "promotedMax": 1}}),
    );
    let (ak, av) = spec(
        "app",
        1,
        serde_json::json!({"orders": [{"first": "db", "firstAction": "promote"}]}),
    );
    let (mut cache, out) = on_two_nodes((k, v), (ak, av));
    let db_on = |i: u32| placed_on(&out, "db", i);
    put(&mut cache, running("db", 0, db_on(0), Some("unpromoted")));
    put(&mut cache, running("db", 1, db_on(1), Some("unpromoted")));
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    let app_assigned =
        |o: &Outcome| assigned(o, "n1", "app").is_some() || assigned(o, "n2", "app").is_some();
    assert!(!app_assigned(&next), "{:?}", puts(&next));
    put(&mut cache, running("db", 1, db_on(1), Some("promoted")));
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(app_assigned(&next), "{:?}", puts(&next));

    // Interleaved: a replica waits only for the first's replica on its own node.
    let (k, v) = spec(
        "db",
        1,
        serde_json::json!({"docker": {"image": "busybox", "replicas": 2}}),
    );
    let (ak, av) = spec(
        "app",
        1,
        serde_json::json!({
            "docker": {"image": "busybox", "replicas": 2},
            "metaAttributes": [{"name": "interleave", "value": "true"}],
            "orders": [{"first": "db"}],
            "colocations": [{"with": "db", "score": "INFINITY"}],
        }),
    );
    let (mut cache, out) = on_two_nodes((k, v), (ak, av));
    let on_n1 = assigned(&out, "n1", "db").unwrap()[0].as_u64().unwrap() as u32;
    put(&mut cache, running("db", on_n1, "n1", None));
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(assigned(&next, "n1", "app").is_some(), "{:?}", puts(&next));
    assert!(assigned(&next, "n2", "app").is_none(), "{:?}", puts(&next));
}

#[test]
fn a_replica_kept_for_the_stop_order_is_never_placed_twice() {
    // db-0 on n1 must move (n1 goes to standby) while app, after it, is being stopped:
    // db-0 stays on n1 until app's replica is gone, and is not assigned to n2 meanwhile.
    let (k, v) = spec("db", 1, serde_json::json!({}));
    let (ak, av) = spec("app", 1, serde_json::json!({"orders": [{"first": "db"}]}));
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .raw(k, v)
        .raw(ak, av)
        .reconcile(1000);
    apply(&mut cache, &out);
    put(&mut cache, running("db", 0, "n1", None));
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    apply(&mut cache, &next);
    put(&mut cache, running("app", 0, "n1", None));
    // n2 joins, n1 goes to standby: everything moves; app's replica still reports on n1.
    let n2 = NodeInfo {
        name: "n2".into(),
        ..Default::default()
    };
    put(
        &mut cache,
        Kv::first_write(keys().node("n2"), serde_json::to_vec(&n2).unwrap(), 400),
    );
    put(
        &mut cache,
        Kv::first_write(keys().standby("n1"), b"{}".to_vec(), 401),
    );
    let moving = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(
        deletes(&moving).contains(&keys().assignment("n1", "app")),
        "{:?}",
        moving.writes
    );
    assert!(!deletes(&moving).contains(&keys().assignment("n1", "db")));
    assert_eq!(assigned(&moving, "n2", "db"), None, "{:?}", puts(&moving));
}

/// Replica `bundle-i` on `node`, its primitive started and having run notification
/// `notified` (0: none).
fn notified(bundle: &str, i: u32, node: &str, notified: u64) -> Kv {
    let mut kv = running(bundle, i, node, None);
    let mut st: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    st["primitive"] = serde_json::json!({
        "state": "started", "restarts": 0, "last": [], "notified": notified,
    });
    kv.value = serde_json::to_vec(&st).unwrap();
    kv
}

/// Bundle "db" of `replicas` (three per host), Pacemaker's Stateful, `notify=true`.
fn notifying_db(replicas: u32) -> (String, serde_json::Value) {
    spec(
        "db",
        replicas,
        serde_json::json!({
            "docker": {"image": "busybox", "replicas": replicas, "replicasPerHost": 3},
            "primitive": {"id": "db-st", "class": "ocf", "provider": "pacemaker", "type": "Stateful"},
            "metaAttributes": [{"name": "notify", "value": "true"}],
        }),
    )
}

#[test]
fn notifications_wrap_each_operation_in_pre_and_post_rounds() {
    let (k, v) = notifying_db(2);
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .raw(k.clone(), v.clone())
        .reconcile(1000);
    let a = |out: &Outcome| puts(out).get(&keys().assignment("n1", "db")).cloned();
    let pass = |cache: &Cache| reconcile(&keys(), &View::read(&keys(), cache), &cache.items, 1000);
    // Nothing runs yet: no one to tell, so the start goes ahead under a pre round.
    let first = a(&out).unwrap();
    assert_eq!(first["replicas"], serde_json::json!([0, 1]));
    assert_eq!(first["notify"]["kind"], "pre");
    assert_eq!(first["notify"]["operation"], "start");
    assert_eq!(first["notify"]["vars"]["start_uname"], "db-0 db-1");
    assert_eq!(first["notify"]["vars"]["active_uname"], " ");
    // Beside each uname, the node its replica runs on (ocf_attribute_target's map).
    assert_eq!(first["notify"]["vars"]["all_uname"], "db-0 db-1");
    assert_eq!(first["notify"]["vars"]["all_hosts"], "n1 n1");
    apply(&mut cache, &out);
    // Both started: the post round goes to both.
    put(&mut cache, notified("db", 0, "n1", 0));
    put(&mut cache, notified("db", 1, "n1", 0));
    let out = pass(&cache);
    let post = a(&out).unwrap();
    assert_eq!(post["notify"]["kind"], "post");
    assert_eq!(post["notify"]["id"], 2);
    assert_eq!(post["notify"]["targets"], serde_json::json!([0, 1]));
    apply(&mut cache, &out);
    // Scaled to 3 before the post round was run: nothing moves until both ran it.
    let (_, mut v3) = spec("db", 3, serde_json::json!({}));
    v3["spec"] = v["spec"].clone();
    v3["spec"]["docker"]["replicas"] = 3.into();
    cache.items.get_mut(&k).unwrap().value = serde_json::to_vec(&v3).unwrap();
    cache.items.get_mut(&k).unwrap().mod_revision += 1000;
    assert_eq!(a(&pass(&cache)), None, "waits for the post round to be run");
    put(&mut cache, notified("db", 0, "n1", 2));
    put(&mut cache, notified("db", 1, "n1", 2));
    let out = pass(&cache);
    let pre = a(&out).unwrap();
    assert_eq!(
        pre["replicas"],
        serde_json::json!([0, 1]),
        "not started before the pre round"
    );
    let scheduled = |out: &Outcome| {
        reasons(out)
            .iter()
            .any(|(r, o, _)| *r == "Scheduled" && o == "replica/db-2")
    };
    assert!(
        !scheduled(&out),
        "not scheduled while held: {:?}",
        out.events
    );
    assert_eq!(
        (pre["notify"]["kind"].as_str(), pre["notify"]["id"].as_u64()),
        (Some("pre"), Some(3))
    );
    assert_eq!(pre["notify"]["vars"]["start_resource"], "db-st:2");
    assert_eq!(pre["notify"]["vars"]["active_uname"], "db-0 db-1");
    assert_eq!(pre["notify"]["vars"]["inactive_resource"], "db-st:2");
    apply(&mut cache, &out);
    put(&mut cache, notified("db", 0, "n1", 3));
    assert_eq!(
        a(&pass(&cache)),
        None,
        "one target has not run the pre round"
    );
    put(&mut cache, notified("db", 1, "n1", 3));
    let out = pass(&cache);
    assert_eq!(a(&out).unwrap()["replicas"], serde_json::json!([0, 1, 2]));
    assert!(scheduled(&out), "scheduled once assigned: {:?}", out.events);
    apply(&mut cache, &out);
    assert_eq!(
        a(&pass(&cache)),
        None,
        "the new replica has not started yet"
    );
    put(&mut cache, notified("db", 2, "n1", 0));
    let post = a(&pass(&cache)).unwrap();
    assert_eq!(
        (
            post["notify"]["kind"].as_str(),
            post["notify"]["id"].as_u64()
        ),
        (Some("post"), Some(4))
    );
    assert_eq!(post["notify"]["targets"], serde_json::json!([0, 1, 2]));
}

#[test]
fn a_move_sends_one_replica_to_the_node_and_then_nothing_moves() {
    let cluster = Cluster::new().node("n1").node("n2").node("n3").raw(
        spec("web", 2, serde_json::json!({})).0,
        {
            let (_, mut v) = spec("web", 2, serde_json::json!({}));
            v["spec"]["docker"]["replicasPerHost"] = 1.into();
            v
        },
    );
    let (mut cache, out) = cluster.reconcile(1000);
    apply(&mut cache, &out);
    let view = View::read(&keys(), &cache);
    let on: BTreeSet<String> = view.current.values().cloned().collect();
    let to = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| !on.contains(*n))
        .unwrap();
    let kept = view.current[&ReplicaKey::new("web", 0)].clone();
    let bans = crate::model::cluster::Bans {
        nodes: vec![],
        prefer: Some(to.to_string()),
    };
    put(
        &mut cache,
        Kv::first_write(keys().bans("web"), serde_json::to_vec(&bans).unwrap(), 300),
    );
    let moved = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert_eq!(
        puts(&moved)[&keys().assignment(to, "web")]["replicas"],
        serde_json::json!([1]),
        "the highest replica moves"
    );
    apply(&mut cache, &moved);
    let view = View::read(&keys(), &cache);
    assert_eq!(
        view.current[&ReplicaKey::new("web", 0)],
        kept,
        "the other stays"
    );
    let again = reconcile(&keys(), &view, &cache.items, 1000);
    assert!(
        !again
            .writes
            .iter()
            .any(|w| matches!(w, Write::Put { key, .. } if key.contains("/assignments/"))),
        "once it is there nothing more moves: {:?}",
        again.writes
    );
}

#[test]
fn a_ban_outlives_the_replica_status_its_node_agent_deletes() {
    let meta = serde_json::json!([{"name": "migration-threshold", "value": "1"}]);
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .bundle("web", meta)
        .replica("web", "n1", 1, 500)
        .reconcile(1000);
    let rows = &puts(&out)[&keys().bundle_status("web")]["replicaRows"];
    assert_eq!(
        rows[0]["failCounts"],
        serde_json::json!({"n1": 1}),
        "{rows}"
    );
    apply(&mut cache, &out);
    // Its agent stopped it and deleted its status: the failure still bans it from n1.
    cache.items.remove(&keys().replica("web", 0));
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    assert!(
        !puts(&next).contains_key(&keys().assignment("n1", "web")),
        "{:?}",
        puts(&next)
    );
    assert!(
        !puts(&next).contains_key(&keys().bundle_status("web")),
        "nothing changed: nothing written"
    );
}

#[test]
fn ordered_instances_stop_one_after_another_highest_first_also_when_deleted() {
    let (k, v) = spec(
        "db",
        3,
        serde_json::json!({"metaAttributes": [{"name": "ordered", "value": "true"}]}),
    );
    let mut cache = Cluster::new().node("n1").raw(k.clone(), v).cache();
    let assigned_now = |cache: &Cache| {
        View::read(&keys(), cache)
            .assignments
            .get(&("n1".to_string(), "db".to_string()))
            .map(|a| a.replicas.clone())
            .unwrap_or_default()
    };
    // Started one after another (ordered starts), all three run.
    for i in 0..3 {
        let out = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
        apply(&mut cache, &out);
        put(&mut cache, running("db", i, "n1", None));
    }
    assert_eq!(assigned_now(&cache), [0, 1, 2]);
    // Deleted: db-2 goes first; the others wait while it is still stopping.
    cache.items.remove(&k);
    let out = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    apply(&mut cache, &out);
    assert_eq!(assigned_now(&cache), [0, 1]);
    let out = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    apply(&mut cache, &out);
    assert_eq!(assigned_now(&cache), [0, 1], "db-2 is still stopping");
    cache.items.remove(&keys().replica("db", 2));
    let out = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    apply(&mut cache, &out);
    assert_eq!(assigned_now(&cache), [0]);
    cache.items.remove(&keys().replica("db", 1));
    let out = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    apply(&mut cache, &out);
    assert!(assigned_now(&cache).is_empty());
}

#[test]
fn a_notification_round_no_target_runs_goes_on_after_its_deadline() {
    let (k, v) = notifying_db(1);
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .raw(k.clone(), v.clone())
        .reconcile(1000);
    apply(&mut cache, &out);
    put(&mut cache, notified("db", 0, "n1", 0));
    let out = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    apply(&mut cache, &out);
    // The post-start round went to db-0, which never reports it run (an agent too old to
    // know the verb, say): a scale up waits, and says when it will stop waiting.
    let mut v2 = v.clone();
    v2["spec"]["docker"]["replicas"] = 2.into();
    cache.items.get_mut(&k).unwrap().value = serde_json::to_vec(&v2).unwrap();
    cache.items.get_mut(&k).unwrap().mod_revision += 1000;
    let waiting = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1010);
    assert!(
        !puts(&waiting).contains_key(&keys().assignment("n1", "db")),
        "{:?}",
        puts(&waiting)
    );
    let deadline = 1000 + super::super::notify::DEADLINE;
    assert_eq!(waiting.requeue_at, Some(deadline));
    let after = reconcile(
        &keys(),
        &View::read(&keys(), &cache),
        &cache.items,
        deadline,
    );
    let a = &puts(&after)[&keys().assignment("n1", "db")];
    assert_eq!(a["notify"]["kind"], "pre", "{a}");
    assert_eq!(a["notify"]["operation"], "start", "{a}");
}

/// A promotion score an agent stored as a node attribute (`crm_master -N <node>`, as galera
/// names its bootstrap node from another replica) decides the promotion, over the scores the
/// replicas report; with `container-attribute-target=host` it is the host's attribute.
#[test]
fn stored_promotion_scores_choose_the_promoted_replica_also_on_the_host() {
    use crate::model::attributes::Section;
    for host_target in [false, true] {
        let mut spec_json = serde_json::json!({
            "docker": {"image": "busybox", "replicas": 2, "promotedMax": 1},
            "primitive": {"id": "galera", "class": "ocf", "provider": "heartbeat", "type": "galera"},
        });
        if host_target {
            spec_json["metaAttributes"] =
                serde_json::json!([{"name": "container-attribute-target", "value": "host"}]);
        }
        let (k, v) = spec("db", 1, spec_json);
        let (mut cache, out) = Cluster::new()
            .node("n1")
            .node("n2")
            .raw(k, v)
            .reconcile(1000);
        apply(&mut cache, &out);
        let on = |i: u32| placed_on(&out, "db", i);
        put(&mut cache, running("db", 0, on(0), Some("unpromoted")));
        put(&mut cache, running("db", 1, on(1), Some("unpromoted")));
        let owner = if host_target {
            on(1).to_string()
        } else {
            "db-1".into()
        };
        put(
            &mut cache,
            Kv::first_write(
                keys().attribute(Section::Status, &owner, "master-galera"),
                b"100".to_vec(),
                900,
            ),
        );
        let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
        let promoted = puts(&next)
            .get(&keys().assignment(on(1), "db"))
            .map(|a| a["promoted"].clone());
        assert_eq!(
            promoted,
            Some(serde_json::json!([1])),
            "host target {host_target}: {:?}",
            puts(&next)
        );
    }
}

/// A replica whose status, from before its node registered anew, says promoted (its host
/// died promoted and came back) does not hold the promotion: the replica promoted since
/// keeps it and is not demoted.
#[test]
fn a_promotion_reported_under_a_dead_registration_is_not_held() {
    let (k, v) = spec(
        "db",
        1,
        serde_json::json!({"docker": {"image": "busybox", "replicas": 2, "promotedMax": 1}}),
    );
    let (mut cache, out) = Cluster::new()
        .node("n1")
        .node("n2")
        .raw(k, v)
        .reconcile(1000);
    apply(&mut cache, &out);
    let on = |i: u32| placed_on(&out, "db", i);
    put(&mut cache, running("db", 1, on(1), Some("promoted")));
    // ReplicaKey 0's status is older than its node's registration (another lease).
    let mut stale = running("db", 0, on(0), Some("promoted"));
    let mut st: serde_json::Value = serde_json::from_slice(&stale.value).unwrap();
    st["lease"] = 7.into();
    stale.value = serde_json::to_vec(&st).unwrap();
    put(&mut cache, stale);
    let next = reconcile(&keys(), &View::read(&keys(), &cache), &cache.items, 1000);
    let promoted = |n: &str| {
        puts(&next)
            .get(&keys().assignment(n, "db"))
            .map(|a| a["promoted"].clone())
    };
    assert_ne!(
        promoted(on(1)),
        Some(serde_json::json!([])),
        "{:?}",
        puts(&next)
    );
    assert_ne!(
        promoted(on(0)),
        Some(serde_json::json!([0])),
        "{:?}",
        puts(&next)
    );
}
