//! Unusable stored values are never deletions (real etcd and dockerd): a bundle value that
//! does not parse keeps its replicas running as last placed and shows Invalid; fixing it
//! resumes normal work; hostile values beside good bundles do not stop the controller; an
//! unusable assignment does not make a node agent remove containers.

mod common;

use std::time::Duration;

use berth::model::cluster::{Assignment, ReplicaState, ReplicaStatus};
use berth::store::{Expect, Store};
use common::{
    TestController, TestNode, TestPrefix, berth, docker, eventually, httpd_bundle, test_image,
};

const WAIT: Duration = Duration::from_secs(40);

async fn running(store: &Store, b: &str, i: u32) -> ReplicaStatus {
    eventually(WAIT, &format!("{b}-{i} running"), || async {
        common::replica_status(store, b, i)
            .await
            .filter(|s| s.state == ReplicaState::Running && !s.container_id.is_empty())
    })
    .await
}

fn container_id(name: &str) -> String {
    docker(&["inspect", "--format", "{{.Id}} {{.State.Running}}", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_keeps_replicas_running_shows_invalid_and_a_fix_resumes() {
    test_image();
    let p = TestPrefix::new("invalid");
    let store = p.store().await;
    let tag = format!("invalid{}", std::process::id() % 100_000);
    let node = TestNode::start(&p, &format!("{tag}-n")).await;
    let _ctl = TestController::start(&p, "ctl").await;
    let b = httpd_bundle(&format!("{tag}-b"), 1, 3, 94);
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    let before = running(&store, b.name(), 0).await;
    let id = container_id(&b.container_name(0));
    assert!(id.ends_with("true"), "{id}");

    // What the issue did: `etcdctl put <bundle> 'spec: {'`.
    let key = store.keys().bundle(b.name());
    store
        .put(&key, b"spec: {".to_vec(), Expect::Any)
        .await
        .unwrap();
    let st = eventually(WAIT, "the bundle status to say Invalid", || async {
        common::bundle_status(&store, b.name())
            .await
            .filter(|s| s.invalid.is_some())
    })
    .await;
    assert!(
        st.conditions.iter().any(|c| c.kind == "Valid"
            && c.status == berth::model::ConditionStatus::False
            && c.reason == "Invalid"),
        "{st:?}"
    );
    assert_eq!(st.replica_rows.len(), 1, "the last good value's rows stay");
    // The same reconcile that wrote the status kept the assignment.
    let assignment = store.keys().assignment(&node.name, b.name());
    assert!(store.get(&assignment).await.unwrap().is_some());
    assert_eq!(
        container_id(&b.container_name(0)),
        id,
        "the replica kept running"
    );

    // The CLI says so: get, describe, status.
    let got = berth(&p, &["get", "bundles"], None);
    let out = common::stdout(&got);
    assert!(out.contains("<invalid>"), "{out}");
    let described = common::stdout(&berth(&p, &["describe", "bundle", b.name()], None));
    assert!(described.contains("Invalid:"), "{described}");
    let status = common::stdout(&berth(&p, &["status"], None));
    assert!(
        status.contains("INVALID (running as last placed)"),
        "{status}"
    );

    // Fixing it (and scaling to 2) resumes: replica 1 starts, replica 0 is untouched.
    let mut fixed = b.clone();
    fixed.spec.docker.as_mut().unwrap().replicas = Some(2);
    store.put_bundle(&fixed, Expect::Any).await.unwrap();
    running(&store, b.name(), 1).await;
    eventually(WAIT, "the Invalid mark gone", || async {
        common::bundle_status(&store, b.name())
            .await
            .filter(|s| s.invalid.is_none() && s.ready_replicas == 2)
    })
    .await;
    assert_eq!(container_id(&b.container_name(0)), id);
    assert_eq!(
        common::replica_status(&store, b.name(), 0)
            .await
            .unwrap()
            .container_id,
        before.container_id
    );

    // Only a real delete removes it.
    store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    common::container_gone(&b.container_name(0), WAIT).await;
}

/// Hostile values (the fuzz corpus's kind: garbage bytes, deep nesting, non-UTF-8, a value
/// over the size limit, absurd numbers) put beside a good bundle: each shows Invalid, and the
/// controller keeps reconciling the good one (a scale-up takes effect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_beside_good_bundles_do_not_stop_the_controller() {
    test_image();
    let p = TestPrefix::new("garbage");
    let store = p.store().await;
    let tag = format!("garbage{}", std::process::id() % 100_000);
    let _node = TestNode::start(&p, &format!("{tag}-n")).await;
    let _ctl = TestController::start(&p, "ctl").await;
    let deep = 100_000;
    let mut big = b"kind: Bundle\nmetadata: {annotations: {a: \"".to_vec();
    big.resize(1_400 * 1024, b'x');
    big.extend_from_slice(b"\"}}\nspec: {docker: {image: x}}\n");
    let values: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x80, 0x12],
        format!("{}{}", "[".repeat(deep), "]".repeat(deep)).into_bytes(),
        format!("{}{}", "<a>".repeat(deep), "</a>".repeat(deep)).into_bytes(),
        b"<bundle id=\"x\"><docker image=\"x:1\" replicas=\"1\" options=\"-\xc3\xa9\"/></bundle>"
            .to_vec(),
        b"spec: {docker: {image: x, replicas: 50000000}}".to_vec(),
        b"spec: {docker: {image: x, replicas: 99999999999999999999999}}".to_vec(),
        big,
    ];
    let names: Vec<String> = (0..values.len()).map(|i| format!("{tag}-bad{i}")).collect();
    for (n, v) in names.iter().zip(&values) {
        store
            .put(&store.keys().bundle(n), v.clone(), Expect::Any)
            .await
            .unwrap();
    }
    let mut good = httpd_bundle(&format!("{tag}-good"), 1, 3, 95);
    store.put_bundle(&good, Expect::Absent).await.unwrap();
    running(&store, good.name(), 0).await;
    for n in &names {
        eventually(WAIT, &format!("{n} shown invalid"), || async {
            common::bundle_status(&store, n)
                .await
                .filter(|s| s.invalid.is_some())
        })
        .await;
    }
    good.spec.docker.as_mut().unwrap().replicas = Some(2);
    store.put_bundle(&good, Expect::Any).await.unwrap();
    running(&store, good.name(), 1).await;
    // Nothing was placed for the bad ones.
    let (_, assignments) = store.list(&store.keys().root()).await.unwrap();
    for n in &names {
        assert!(
            !assignments
                .iter()
                .any(|kv| kv.key.contains("/assignments/") && kv.key.ends_with(&format!("/{n}"))),
            "{n} was placed"
        );
    }
    for n in &names {
        store
            .delete(&store.keys().bundle(n), Expect::Any)
            .await
            .unwrap();
    }
    store.delete_bundle(good.name(), Expect::Any).await.unwrap();
}

/// A node agent given an assignment it cannot use (garbage, or a bundle its key does not
/// name) keeps what the last usable one said; without one, it leaves the bundle's
/// containers alone. No controller: assignments are written by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_assignment_does_not_remove_containers() {
    test_image();
    let p = TestPrefix::new("badassign");
    let store = p.store().await;
    let tag = format!("badassign{}", std::process::id() % 100_000);
    let node = TestNode::start(&p, &format!("{tag}-n")).await;
    let a = httpd_bundle(&format!("{tag}-a"), 1, 3, 96);
    let assign = |b: &berth::model::Bundle| {
        serde_json::to_vec(&Assignment {
            bundle: b.clone().into(),
            replicas: vec![0],
            managed: true,
            promoted: vec![],
            pinned: vec![],
            cleanup: 0,
            stop_after: vec![],
            notify: None,
        })
        .unwrap()
    };
    let key_a = store.keys().assignment(&node.name, a.name());
    store.put(&key_a, assign(&a), Expect::Any).await.unwrap();
    running(&store, a.name(), 0).await;
    let id = container_id(&a.container_name(0));

    let mut wrong = httpd_bundle(&format!("{tag}-other"), 1, 3, 96);
    wrong.metadata.generation = Some(2);
    for garbage in [b"{not json".to_vec(), assign(&wrong)] {
        store.put(&key_a, garbage, Expect::Any).await.unwrap();
        // A second bundle's assignment after it: once that runs, the agent has read the
        // garbage before it (events arrive in order).
        let c = httpd_bundle(&format!("{tag}-c"), 1, 3, 97);
        let key_c = store.keys().assignment(&node.name, c.name());
        store.put(&key_c, assign(&c), Expect::Any).await.unwrap();
        running(&store, c.name(), 0).await;
        assert_eq!(container_id(&a.container_name(0)), id, "kept running");
        store.delete(&key_c, Expect::Any).await.unwrap();
        common::container_gone(&c.container_name(0), WAIT).await;
    }
    store.delete(&key_a, Expect::Any).await.unwrap();
    common::container_gone(&a.container_name(0), WAIT).await;
}

/// Two bundles whose replica addresses overlap: `berth apply` refuses the second, naming
/// the field, and writes nothing; put anyway (as etcdctl would), the controller refuses it
/// (Invalid, nothing placed) and the first keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_addresses_are_refused_at_apply_and_by_the_controller() {
    test_image();
    let p = TestPrefix::new("overlap");
    let store = p.store().await;
    let tag = format!("overlap{}", std::process::id() % 100_000);
    let _node = TestNode::start(&p, &format!("{tag}-n")).await;
    let _ctl = TestController::start(&p, "ctl").await;
    let first = httpd_bundle(&format!("{tag}-a"), 2, 3, 101); // 127.0.101.10-11
    store.put_bundle(&first, Expect::Absent).await.unwrap();
    running(&store, first.name(), 0).await;
    let id = container_id(&first.container_name(0));

    let mut second = httpd_bundle(&format!("{tag}-b"), 2, 3, 101);
    second.spec.network.as_mut().unwrap().ip_range_start = Some("127.0.101.11".into());
    let yaml = berth::model::manifest::to_yaml(std::slice::from_ref(&second));
    let out = berth(&p, &["apply", "-f", "-"], Some(&yaml));
    assert!(!out.status.success(), "an overlapping bundle was applied");
    let err = common::stderr(&out);
    assert!(
        err.contains("spec.network.ipRangeStart: the replicas' addresses overlap bundle")
            && err.contains(first.name()),
        "{err}"
    );
    let key = store.keys().bundle(second.name());
    assert!(store.get(&key).await.unwrap().is_none(), "nothing written");

    // Written around the CLI: the controller refuses it.
    store
        .put(&key, yaml.into_bytes(), Expect::Absent)
        .await
        .unwrap();
    let st = eventually(WAIT, "the second bundle shown invalid", || async {
        common::bundle_status(&store, second.name())
            .await
            .filter(|s| s.invalid.is_some())
    })
    .await;
    assert!(st.invalid.unwrap().contains("overlap"));
    let (_, kvs) = store.list(&store.keys().root()).await.unwrap();
    assert!(
        !kvs.iter()
            .any(|kv| kv.key.contains("/assignments/") && kv.key.ends_with(second.name())),
        "the second bundle was placed"
    );
    assert_eq!(container_id(&first.container_name(0)), id);
    store.delete(&key, Expect::Any).await.unwrap();
    store
        .delete_bundle(first.name(), Expect::Any)
        .await
        .unwrap();
    common::container_gone(&first.container_name(0), WAIT).await;
}
