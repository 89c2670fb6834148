//! Node loss → replicas running elsewhere, against the real etcd and dockerd: a node agent
//! whose etcd traffic goes through a proxy runs 2 replicas (a location score keeps them
//! there); the "host" dies (agent stopped, proxy cut, its containers removed); measured until
//! the bundle status shows both replicas running on the other node. The lease TTL bounds it.
//!
//! Run: `bash scripts/setup.sh && cargo bench --bench failover`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use berth::model::{Bundle, Location};
use berth::store::Expect;
use common::{
    Proxy, TestController, TestNode, TestPrefix, docker, etcd_endpoint, httpd_bundle, test_image,
};

fn bundle(name: &str, prefer: &str) -> Bundle {
    let mut b = httpd_bundle(name, 2, 2, 90);
    b.spec.locations = vec![Location {
        node: Some(prefer.into()),
        label: None,
        score: "100".into(),
        ..Default::default()
    }];
    b
}

async fn all_on(p: &TestPrefix, store: &berth::store::Store, b: &str, node: &str) -> bool {
    let _ = p;
    let Some(st) = store
        .get_bundle(b)
        .await
        .unwrap()
        .and_then(|v| v.value.status)
    else {
        return false;
    };
    st.ready_replicas == 2
        && st
            .replica_rows
            .iter()
            .all(|r| r.node == node && r.state == berth::model::cluster::ReplicaState::Running)
}

#[tokio::main]
async fn main() {
    test_image();
    println!("| lease TTL | node lost → 2 replicas running elsewhere |");
    println!("| --- | --- |");
    for ttl in [3u64, 5] {
        let mut times = Vec::new();
        for round in 0..3 {
            let p = TestPrefix::new(&format!("failover-bench-{ttl}-{round}"));
            let store = p.store().await;
            let proxy = Proxy::start(etcd_endpoint()).await;
            let (na, nb) = (format!("fb{ttl}{round}-a"), format!("fb{ttl}{round}-b"));
            let mut a = TestNode::start_via(&p, &na, Some(proxy.addr.to_string()), ttl).await;
            let _b = TestNode::start(&p, &nb).await;
            let _ctl = TestController::start(&p, "ctl").await;
            let b = bundle(&format!("fb{ttl}{round}"), &na);
            store.put_bundle(&b, Expect::Absent).await.unwrap();
            while !all_on(&p, &store, b.name(), &na).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let t0 = Instant::now();
            a.crash();
            proxy.sever();
            for i in 0..2 {
                docker(&["rm", "-f", &b.container_name(i)]);
            }
            while !all_on(&p, &store, b.name(), &nb).await {
                assert!(t0.elapsed() < Duration::from_secs(60), "no failover");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            times.push(t0.elapsed());
            store.delete_bundle(b.name(), Expect::Any).await.unwrap();
            while !docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=berth.io/bundle={}", b.name()),
            ])
            .is_empty()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        times.sort();
        println!(
            "| {ttl} s | median {:.2} s (min {:.2}, max {:.2}) over 3 |",
            times[1].as_secs_f64(),
            times[0].as_secs_f64(),
            times[2].as_secs_f64()
        );
    }
}
