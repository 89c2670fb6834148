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
