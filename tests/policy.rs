//! Host policy (real etcd and dockerd): privileged things are opt-in per node. The
//! controller places a bundle only on a node that permits what it asks for, and says which
//! permission is missing while none does; a node agent given such a bundle anyway refuses
//! to run it.

mod common;

use std::time::Duration;

use berth::model::cluster::ReplicaState;
use berth::model::policy::Permits;
use berth::store::Expect;
use common::{TestController, TestNode, TestPrefix, eventually, httpd_bundle, test_image};

const WAIT: Duration = Duration::from_secs(40);

/// (Privileged containers cannot start on the machines this is tested on: runc is denied
/// the capabilities. The privileged bundle is checked up to placement; the bundle with
/// added capabilities and a device runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_bundles_are_placed_only_where_a_node_permits_them() {
    test_image();
    let p = TestPrefix::new("policy");
    let store = p.store().await;
    let tag = format!("policy{}", std::process::id() % 100_000);
    let plain = TestNode::start(&p, &format!("{tag}-plain")).await;
    let _ctl = TestController::start(&p, "ctl").await;
    let mut privileged = httpd_bundle(&format!("{tag}-p"), 1, 1, 98);
    privileged.spec.docker.as_mut().unwrap().options = Some("--stop-timeout 1 --privileged".into());
    let mut caps = httpd_bundle(&format!("{tag}-c"), 1, 1, 99);
    caps.spec.docker.as_mut().unwrap().options =
        Some("--stop-timeout 1 --cap-add NET_ADMIN --device /dev/null:/dev/xnull".into());
    store.put_bundle(&privileged, Expect::Absent).await.unwrap();
    store.put_bundle(&caps, Expect::Absent).await.unwrap();
    // Only the plain node is online: pending, saying what is missing and how to allow it.
    for (b, flags) in [
        (
            &privileged,
            vec!["privileged mode (berth node --allow-privileged)"],
        ),
        (
            &caps,
            vec![
                "--allow-capabilities",
                "devices (berth node --allow-devices)",
            ],
        ),
    ] {
        let st = eventually(
            WAIT,
            "the replica pending with the missing permission",
            || async {
                common::bundle_status(&store, b.name()).await.filter(|s| {
                    s.replica_rows
                        .first()
                        .is_some_and(|r| r.reason.contains("not permitting"))
                })
            },
        )
        .await;
        let reason = &st.replica_rows[0].reason;
        for f in flags {
            assert!(reason.contains(f), "{reason}");
        }
        assert!(
            common::docker_try(&["inspect", &b.container_name(0)]).is_none(),
            "nothing started on the plain node"
        );
    }

    // A node that permits them takes both.
    let permissive = TestNode::start_permitting(
        &p,
        &format!("{tag}-priv"),
        Permits {
            privileged: true,
            capabilities: true,
            devices: true,
            ..Permits::default()
        },
    )
    .await;
    let r = eventually(
        WAIT,
        "the capabilities bundle running on the permissive node",
        || async {
            common::replica_status(&store, caps.name(), 0)
                .await
                .filter(|s| s.state == ReplicaState::Running)
        },
    )
    .await;
    assert_eq!(r.node, permissive.name);
    let added = common::docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.CapAdd}} {{len .HostConfig.Devices}}",
        &caps.container_name(0),
    ]);
    assert_eq!(added, "[NET_ADMIN] 1");
    eventually(
        WAIT,
        "the privileged bundle placed on the permissive node",
        || async {
            common::bundle_status(&store, privileged.name())
                .await
                .filter(|s| {
                    s.replica_rows
                        .first()
                        .is_some_and(|r| r.node == permissive.name)
                })
        },
    )
    .await;
    drop(plain);
    store
        .delete_bundle(privileged.name(), Expect::Any)
        .await
        .unwrap();
    store.delete_bundle(caps.name(), Expect::Any).await.unwrap();
}

/// No controller: an assignment written by hand for a node that does not permit what the
/// bundle asks. The agent reports why and starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_agent_refuses_what_it_does_not_permit() {
    test_image();
    let p = TestPrefix::new("policyagent");
    let store = p.store().await;
    let tag = format!("policyagent{}", std::process::id() % 100_000);
    let node = TestNode::start(&p, &format!("{tag}-n")).await;
    let mut b = httpd_bundle(&format!("{tag}-b"), 1, 1, 100);
    b.spec.storage_mappings = vec![berth::model::StorageMapping {
        id: "etc".into(),
        source_dir: Some("/etc".into()),
        target_dir: "/host-etc".into(),
        ..Default::default()
    }];
    common::assign(&store, &node.name, &b, &[0]).await;
    let st = eventually(WAIT, "the replica failed with the reason", || async {
        common::replica_status(&store, b.name(), 0)
            .await
            .filter(|s| s.state == ReplicaState::Failed)
    })
    .await;
    let why = st.last_failure.unwrap().reason;
    assert!(
        why.contains("not permitted on node") && why.contains("host directory /etc"),
        "{why}"
    );
    assert!(common::docker_try(&["inspect", &b.container_name(0)]).is_none());
}
