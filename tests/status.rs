//! `berth status` as crm_mon prints failures: the Migration Summary (fail counts per node
//! and replica, with the migration-threshold) and Failed Resource Actions (real controller,
//! node agent, etcd and dockerd).

mod common;

use std::time::Duration;

use berth::store::Expect;
use common::{berth, httpd_bundle, stdout, test_image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_fail_counts_and_failed_actions_as_crm_mon_does() {
    test_image();
    let c = common::one_node("status").await;
    let mut b = httpd_bundle(&format!("{}-crash", c.tag), 1, 1, 157);
    b.spec.docker.as_mut().unwrap().run_command = Some("/bin/sh -c 'exit 3'".into());
    c.store.put_bundle(&b, Expect::Absent).await.unwrap();
    let replica = format!("{}-0", b.name());
    let node = c.node.name.clone();
    let out = common::eventually(
        Duration::from_secs(60),
        "fail counts in berth status",
        || async {
            let out = stdout(&tokio::task::block_in_place(|| {
                berth(&c.p, &["status"], None)
            }));
            out.contains("Migration Summary:").then_some(out)
        },
    )
    .await;
    assert!(out.contains(&format!("  * Node: {node}:")), "{out}");
    assert!(
        out.contains(&format!(
            "    * {replica}: migration-threshold=1000000 fail-count="
        )),
        "{out}"
    );
    let actions = out
        .split("Failed Resource Actions:")
        .nth(1)
        .unwrap_or_default();
    assert!(
        actions.contains(&format!("  * {replica} on {node} '")),
        "{out}"
    );
    c.store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    common::container_gone(&format!("{}-docker-0", b.name()), Duration::from_secs(30)).await;
}

/// `berth standby NODE` (pcs node standby): the replica moves to another node and the
/// standby node runs nothing; `berth status` lists it as crm_mon does; `unstandby` lets
/// replicas go there again (real controller, two node agents, etcd and dockerd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_standby_hands_its_replicas_to_another() {
    test_image();
    let p = common::TestPrefix::new("standby");
    let store = p.store().await;
    let tag = format!("standby{}", std::process::id() % 100_000);
    let n1 = common::TestNode::start(&p, &format!("{tag}-a")).await;
    let n2 = common::TestNode::start(&p, &format!("{tag}-b")).await;
    let _ctl = common::TestController::start(&p, "ctl").await;
    let mut b = httpd_bundle(&format!("{tag}-web"), 1, 1, 158);
    b.spec.locations.push(berth::model::Location {
        node: Some(n1.name.clone()),
        label: None,
        score: "100".into(),
        ..Default::default()
    });
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    let on = |node: String| {
        let store = store.clone();
        let name = b.name().to_string();
        async move {
            common::replica_status(&store, &name, 0)
                .await
                .filter(|s| {
                    s.node == node && s.state == berth::model::cluster::ReplicaState::Running
                })
                .map(|_| ())
        }
    };
    common::eventually(
        Duration::from_secs(60),
        "the replica on its preferred node",
        || on(n1.name.clone()),
    )
    .await;
    let cli = |args: &[&str]| {
        let o = tokio::task::block_in_place(|| berth(&p, args, None));
        assert!(o.status.success(), "{args:?}: {}", common::stderr(&o));
        stdout(&o)
    };
    let said = cli(&["standby", &n1.name]);
    assert!(said.contains("in standby"), "{said}");
    common::eventually(
        Duration::from_secs(60),
        "the replica on the other node",
        || on(n2.name.clone()),
    )
    .await;
    let label = format!("label=berth.io/node={}", n1.name);
    common::eventually(
        Duration::from_secs(30),
        "nothing left on the standby node",
        || async {
            common::docker_try(&["ps", "-aq", "--filter", &label])
                .filter(|ids| ids.is_empty())
                .map(|_| ())
        },
    )
    .await;
    let out = cli(&["status"]);
    assert!(
        out.contains(&format!("  * Node {}: standby", n1.name)),
        "{out}"
    );
    let online = out
        .lines()
        .find(|l| l.contains("* Online:"))
        .unwrap_or_default();
    assert!(
        !online.contains(&n1.name) && online.contains(&n2.name),
        "{out}"
    );
    cli(&["unstandby", &n1.name]);
    // Out of standby, the preferred node may take it again (a location score is not a
    // move: berth, as Pacemaker with stickiness, leaves a running replica where it is).
    let out = cli(&["status"]);
    assert!(
        !out.contains(&format!("Node {}: standby", n1.name)),
        "{out}"
    );
    // `berth ban` (crm_resource --ban): off the node it runs on now, back to the other.
    let said = cli(&["ban", b.name(), &n2.name]);
    assert!(said.contains("banned from"), "{said}");
    common::eventually(
        Duration::from_secs(60),
        "the replica back on the first node",
        || on(n1.name.clone()),
    )
    .await;
    let said = cli(&["clear", b.name()]);
    assert!(said.contains("bans and moves cleared"), "{said}");
    // `berth move` (crm_resource --move): to the other node, and it stays there once the
    // preference is cleared.
    let said = cli(&["move", b.name(), &n2.name]);
    assert!(said.contains("moving to"), "{said}");
    common::eventually(
        Duration::from_secs(60),
        "the replica moved to the second node",
        || on(n2.name.clone()),
    )
    .await;
    let said = cli(&["clear", b.name()]);
    assert!(said.contains("bans and moves cleared"), "{said}");
    assert!(
        store
            .get(&store.keys().bans(b.name()))
            .await
            .unwrap()
            .is_none(),
        "the bans key is gone"
    );
    // Cleared, it stays: placement as the controller now sees the cluster (the bundle
    // still prefers the first node by 100) moves nothing.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, berth::model::manifest::to_yaml(&[b.desired()])).unwrap();
    let plan = cli(&["plan", "-f", manifest.to_str().unwrap()]);
    assert!(plan.contains("no changes"), "{plan}");
    assert!(on(n2.name.clone()).await.is_some(), "cleared, it stays");
    store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    common::container_gone(&format!("{}-docker-0", b.name()), Duration::from_secs(30)).await;
    drop((n1, n2));
}

/// `berth cleanup BUNDLE` (crm_resource --cleanup): a replica banned from the only node by
/// migration-threshold after it failed is placed and started again, and its fail counts are
/// gone from `berth status` (real controller, node agent, etcd and dockerd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_forgets_failures_and_the_replica_runs_again() {
    test_image();
    let c = common::one_node("cleanup").await;
    let data = tempfile::tempdir().unwrap();
    let mut b = httpd_bundle(&format!("{}-flaky", c.tag), 1, 1, 159);
    // Fails until the test creates /data/ok, then serves.
    b.spec.docker.as_mut().unwrap().run_command = Some(
        "/bin/sh -c 'test -e /data/ok && exec /bin/httpd -f -p 80 -h /var/www/html; exit 3'".into(),
    );
    b.spec.storage_mappings = vec![berth::model::StorageMapping {
        id: "data".into(),
        source_dir: Some(data.path().display().to_string()),
        target_dir: "/data".into(),
        ..Default::default()
    }];
    b.spec.meta_attributes.push(berth::model::NvPair {
        id: None,
        name: "migration-threshold".into(),
        value: Some("1".into()),
    });
    c.store.put_bundle(&b, Expect::Absent).await.unwrap();
    common::eventually(
        Duration::from_secs(60),
        "the replica banned after failing",
        || async {
            common::bundle_status(&c.store, b.name())
                .await
                .filter(|s| {
                    s.replica_rows
                        .first()
                        .is_some_and(|r| r.reason.contains("over migration-threshold"))
                })
                .map(|_| ())
        },
    )
    .await;
    std::fs::write(data.path().join("ok"), "").unwrap();
    let o = tokio::task::block_in_place(|| berth(&c.p, &["cleanup", b.name()], None));
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(stdout(&o).contains("failures cleaned up"), "{}", stdout(&o));
    common::eventually(
        Duration::from_secs(60),
        "the replica running again",
        || async {
            common::replica_status(&c.store, b.name(), 0)
                .await
                .filter(|s| {
                    s.state == berth::model::cluster::ReplicaState::Running
                        && s.fail_counts.values().all(|n| *n == 0)
                })
                .map(|_| ())
        },
    )
    .await;
    let out = stdout(&tokio::task::block_in_place(|| {
        berth(&c.p, &["status"], None)
    }));
    assert!(!out.contains("Migration Summary:"), "{out}");
    let o = tokio::task::block_in_place(|| berth(&c.p, &["cleanup", "no-such-bundle"], None));
    assert!(!o.status.success() && common::stderr(&o).contains("not found"));
    c.store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    common::container_gone(&format!("{}-docker-0", b.name()), Duration::from_secs(30)).await;
}
