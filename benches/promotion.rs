//! A promotion moving to a higher score, against the real etcd and dockerd: one node agent and
//! a controller run 3 replicas of the project's promotable test agent (`ocf:berth:stateful`,
//! 1 s monitor, promoted-max 1). Each round, a replica that is not promoted gets a score above
//! every other (a file its next monitor reports through `crm_attribute -p`); measured until
//! it reports itself promoted and no other does, both from the moment the score is written
//! (so including the wait for the next monitor, 0-1 s) and from the moment the score first
//! shows in its replica status (the handover itself: the controller's choice, demote, then
//! promote, each through etcd and the control channel).
//!
//! Run: `bash scripts/setup.sh && cargo bench --bench promotion`

#[path = "../tests/common/mod.rs"]
mod common;

use berth::model::cluster::{Phase, Role};
use std::time::{Duration, Instant};

use berth::model::cluster::PrimitiveState;
use berth::store::{Expect, Store};
use common::{TestController, TestNode, TestPrefix, docker, ocf_bundle, ocf_test_image};

async fn prims(store: &Store, b: &str) -> Vec<Option<PrimitiveState>> {
    let mut out = Vec::new();
    for i in 0..3 {
        let kv = store.get(&store.keys().replica(b, i)).await.unwrap();
        out.push(kv.and_then(|kv| {
            serde_json::from_slice::<berth::model::cluster::ReplicaStatus>(&kv.value)
                .ok()?
                .primitive
        }));
    }
    out
}

fn promoted(p: &[Option<PrimitiveState>]) -> Vec<usize> {
    (0..p.len())
        .filter(|i| {
            p[*i]
                .as_ref()
                .is_some_and(|p| p.role == Some(Role::Promoted))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    ocf_test_image();
    let p = TestPrefix::new("promotion-bench");
    let store = p.store().await;
    let _node = TestNode::start(&p, "pb-n").await;
    let _ctl = TestController::start(&p, "ctl").await;
    let mut b = ocf_bundle("pb-db", 3, 91, "berth", "stateful");
    b.spec.docker.as_mut().unwrap().promoted_max = Some(1);
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    let poll = |what: &'static str| {
        let store = store.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                let p = prims(&store, "pb-db").await;
                let one = promoted(&p);
                if one.len() == 1
                    && p.iter()
                        .all(|p| p.as_ref().is_some_and(|p| p.state == Phase::Started))
                {
                    return one[0];
                }
                assert!(Instant::now() < end, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let mut current = poll("the first promotion").await;
    let (mut total, mut handover) = (Vec::new(), Vec::new());
    for round in 0..6 {
        let next = (current + 1) % 3;
        let score = 50 + 10 * round;
        let t0 = Instant::now();
        docker(&[
            "exec",
            &b.container_name(next as u32),
            "sh",
            "-c",
            &format!("echo {score} > /tmp/stateful/score"),
        ]);
        let mut seen = None;
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let p = prims(&store, "pb-db").await;
            // The score reached etcd: it shows, or the controller already acted on it (the
            // promoted one is being demoted), should a 5 ms poll miss the score itself.
            let acting = p[current].as_ref().is_some_and(|p| {
                p.role != Some(Role::Promoted) || p.wanted_role == Some(Role::Unpromoted)
            });
            if seen.is_none()
                && (p[next].as_ref().is_some_and(|p| p.score == Some(score)) || acting)
            {
                seen = Some(Instant::now());
            }
            if promoted(&p) == [next] {
                break;
            }
            assert!(Instant::now() < end, "timed out in round {round}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let done = Instant::now();
        total.push(done - t0);
        handover.push(done - seen.unwrap_or(done));
        current = next;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (what, mut v) in [
        ("score written → promotion moved", total),
        ("score in the replica status → promotion moved", handover),
    ] {
        v.sort();
        println!(
            "{what}: median {:.0} ms (min {:.0}, max {:.0}) over {}",
            ms(v[v.len() / 2]),
            ms(v[0]),
            ms(v[v.len() - 1]),
            v.len()
        );
    }
    store.delete_bundle("pb-db", Expect::Any).await.unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while common::docker_try(&["inspect", &b.container_name(0)]).is_some() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
