//! Pacemaker's `ordered=true` on a bundle: its instances start one after another (real
//! controller, node agent, etcd and dockerd).

mod common;

use std::time::Duration;

use berth::model::NvPair;
use berth::store::Expect;
use common::{docker, eventually, httpd_bundle, test_image};

/// Docker's RFC 3339 time with its fraction padded to nine digits (Go trims trailing zeros,
/// which would make plain text comparison wrong), so that times compare as text.
fn sortable(at: &str) -> String {
    let at = at.trim().trim_end_matches('Z');
    let (secs, frac) = at.split_once('.').unwrap_or((at, ""));
    format!("{secs}.{frac:0<9}Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_instances_start_one_after_another() {
    test_image();
    let c = common::one_node("ordered").await;
    let mut b = httpd_bundle(&format!("{}-db", c.tag), 3, 3, 156);
    b.spec.meta_attributes.push(NvPair {
        id: None,
        name: "ordered".into(),
        value: Some("true".into()),
    });
    c.store.put_bundle(&b, Expect::Absent).await.unwrap();
    let names: Vec<String> = (0..3).map(|i| format!("{}-docker-{i}", b.name())).collect();
    // Each container's start time (RFC 3339 with nanoseconds, so they sort as text).
    let started = eventually(Duration::from_secs(60), "all three to run", || async {
        names
            .iter()
            .map(|n| {
                let s = common::docker_try(&[
                    "inspect",
                    "-f",
                    "{{.State.Running}} {{.State.StartedAt}}",
                    n,
                ])?;
                let (running, at) = s.split_once(' ')?;
                (running == "true").then(|| sortable(at))
            })
            .collect::<Option<Vec<String>>>()
    })
    .await;
    assert!(
        started[0] < started[1] && started[1] < started[2],
        "started out of order: {started:?}"
    );
    // Not created together either: each was created after the one before it had started.
    for i in 1..3 {
        let created = sortable(&docker(&["inspect", "-f", "{{.Created}}", &names[i]]));
        assert!(
            created > started[i - 1],
            "{} created at {created}, before {} started at {}",
            names[i],
            names[i - 1],
            started[i - 1]
        );
    }
    c.store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    for n in &names {
        common::container_gone(n, Duration::from_secs(30)).await;
    }
}
